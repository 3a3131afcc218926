"""How far along a job is, and when its prediction should end.

Replicate's models print their progress in their logs as tqdm bars (`` 52%|█████▏    | 780/1503
[00:15<00:14, 50.60it/s]``, rewritten with carriage returns as the run goes). :func:`read_bar` finds the newest
bar in the last few KiB of a prediction's logs, whatever else is there (other output, ANSI colours, a line cut
off mid-write, megabytes of junk). A :class:`Forecast` turns what each poll or webhook shows into the card's
:class:`Progress` and an :class:`EndWindow` for the poller: when the bar will be full, plus how long the model
takes after that (learned per model from the jobs it saw end), or, with no bar, the model's recent run times.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass, field

from bot.text import clock

# Only this much of the end of the logs is read: the newest bar is there, and hostile logs cost nothing more.
TAIL_CHARS = 4096
_ANSI = re.compile(r"\x1b\[[0-?]{0,32}[ -/]{0,8}[@-~]|\x1b[@-Z\\-_]")
_TIME = r"\d{1,3}(?::\d{1,2}){1,2}"
_BAR = re.compile(
    r"(?P<pct>\d{1,3})%\|[^|]{0,256}\|\s{0,8}(?P<n>\d{1,12})/(?P<total>\d{1,12})"
    rf"(?:\s{{0,8}}\[(?P<elapsed>{_TIME})<(?P<left>{_TIME}|\?)"
    r",\s{0,8}(?P<rate>\?|\d{1,12}(?:\.\d{1,6})?[kMG]?)\s{0,2}(?P<unit>[A-Za-z]{1,8}/s|s/[A-Za-z]{1,8})"
    r"[^\]]{0,256}(?P<close>\]))?"
)
_MAX_S = 86_400.0
_SCALE = {"k": 1e3, "M": 1e6, "G": 1e9}


@dataclass(frozen=True)
class BarReading:
    """The newest tqdm bar in a prediction's logs."""

    n: int
    total: int
    elapsed_s: float | None
    left_s: float | None  # from the bar's rate when it shows one (finer than its whole seconds)

    @property
    def fraction(self) -> float:
        return self.n / self.total

    @property
    def full(self) -> bool:
        return self.n >= self.total


def _seconds(text: str) -> float:
    value = 0.0
    for part in text.split(":"):
        value = value * 60 + int(part)
    return value


def _reading(match: re.Match[str]) -> BarReading | None:
    n, total, pct = int(match["n"]), int(match["total"]), int(match["pct"])
    if total <= 0 or n > total or pct > 100 or abs(pct - 100 * n / total) > 1.5:
        return None  # not a bar, or one cut off mid-number ("780/15" of "780/1503")
    elapsed = _seconds(match["elapsed"]) if match["elapsed"] else None
    left: float | None = None
    rate_text, unit = match["rate"], match["unit"] or ""
    if rate_text and rate_text != "?":
        rate = float(rate_text.rstrip("kMG")) * _SCALE.get(rate_text[-1], 1.0)
        per_s = (1.0 / rate if rate > 0 else 0.0) if unit.startswith("s/") else rate
        if per_s > 0:
            left = (total - n) / per_s
    if left is None and match["left"] and match["left"] != "?":
        left = _seconds(match["left"])
    if (elapsed is not None and elapsed > _MAX_S) or (left is not None and not 0 <= left <= _MAX_S):
        return None
    return BarReading(n, total, elapsed, left)


def read_bar(logs: str | None) -> BarReading | None:
    """The newest complete tqdm bar in the last :data:`TAIL_CHARS` of ``logs`` (None if there is none)."""
    if not logs:
        return None
    tail = _ANSI.sub("", logs[-TAIL_CHARS:])
    pieces = re.split(r"[\r\n]", tail)
    for index in range(len(pieces) - 1, -1, -1):
        last = index == len(pieces) - 1
        for match in reversed(list(_BAR.finditer(pieces[index]))):
            if last and not match["close"]:
                continue  # the line being written: wait for its end
            if (reading := _reading(match)) is not None:
                return reading
    return None


# -- what a card shows ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Progress:
    """How far along a job is, as people see it."""

    fraction: float | None = None  # of the model's run, when its logs say
    left_s: float | None = None  # about how long until the output, when we can tell
    received_bytes: int | None = None  # a long call's answer so far (an ElevenLabs song)
    elapsed_s: float | None = None

    def shown(self) -> tuple[int | None, int | None, int | None]:
        """What a person would see change: the whole percent, the seconds left (coarser when long), MiB/10."""
        left = None
        if self.left_s is not None:
            left = round(self.left_s) if self.left_s < 60 else 60 + round(self.left_s / 10)
        received = None if self.received_bytes is None else self.received_bytes // (100 * 1024)
        return (None if self.fraction is None else percent(self.fraction), left, received)


BAR_CELLS = 10


def percent(fraction: float) -> int:
    """The whole percent, rounded as tqdm rounds it (780/1503: 52)."""
    return min(100, max(0, round(fraction * 100)))


def bar(fraction: float) -> str:
    filled = percent(fraction) * BAR_CELLS // 100  # as full as the percent shown beside it says
    return "▓" * filled + "░" * (BAR_CELLS - filled)


def left_text(seconds: float) -> str:
    if seconds < 1.5:
        return "almost done"
    if seconds < 60:
        return f"about {round(seconds)} s left"
    return f"about {clock(seconds)} left"


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def progress_text(progress: Progress, *, elapsed: bool = False) -> str:
    """``▓▓▓▓▓░░░░░ 52% · about 14 s left``; a long call: ``1.2 MiB received``; ``elapsed``: with the time so far."""
    parts: list[str] = []
    if progress.fraction is not None:
        parts.append(f"{bar(progress.fraction)} {percent(progress.fraction)}%")
    if progress.received_bytes:
        parts.append(f"{mib(progress.received_bytes)} received")
    if elapsed and progress.elapsed_s is not None:
        parts.append(f"{clock(progress.elapsed_s)} elapsed")
    if progress.left_s is not None:
        parts.append(left_text(progress.left_s))
    return " · ".join(parts)


def combined(progresses: list[Progress]) -> Progress | None:
    """One card's progress for several jobs (a batch): the mean share done, the longest time left."""
    if len(progresses) <= 1:
        return progresses[0] if progresses else None
    fractions = [p.fraction for p in progresses if p.fraction is not None]
    lefts = [p.left_s for p in progresses if p.left_s is not None]
    return Progress(
        fraction=sum(fractions) / len(progresses) if len(fractions) == len(progresses) else None,
        left_s=max(lefts) if lefts else None,
    )


# -- when a prediction should end ----------------------------------------------------------------------


@dataclass(frozen=True)
class EndWindow:
    """When a prediction should end (the poller's clock): most likely between ``earliest`` and ``latest``.

    ``look_at``: a poll then would narrow the window most (just before its bar can be full: the bar's time left
    is finest close to its end). ``rough``: only a guess (the model's recent run times, or a bar that has
    hardly started): it says when the end can't be yet, not when to look closely."""

    earliest: float
    latest: float
    look_at: float | None = None
    rough: bool = False


@dataclass(frozen=True)
class Outlook:
    progress: Progress | None
    window: EndWindow | None


# A bar's time left is trusted to this share (its rate is an average: the rest of the run may be faster or
# slower), and never closer than this. A bar under a second old or 2 % in has hardly settled its rate (warm-up):
# a rough guess.
_SPREAD = 0.1
_MIN_SPREAD_S = 0.2
_EARLY_FRACTION = 0.02
_EARLY_S = 1.0
_EARLY_SPREAD = 0.5
_NARROW_S = 1.0  # a bar's end known no better than this is looked at again before it can be full
# A model's time after its bar is full, until a few jobs have shown theirs; then the recent ones, with a margin.
_PRIOR_AFTER_BAR_S = (0.0, 1.0)
_AFTER_BAR_MARGIN_S = 0.1
_AFTER_BAR_SAMPLES = 20
_AFTER_BAR_MIN_SAMPLES = 3
_AFTER_BAR_MAX_UNCERTAINTY_S = 2.0  # observations vaguer than this (late notice) teach nothing
# Without a bar: the model's recent run time (on average, whatever their lengths), give or take this share of it.
_TYPICAL_SPREAD = 0.75
_FORGET_AFTER_S = 3 * 3600.0  # a job not heard of for this long is dropped (it ended some other way)


@dataclass
class _Run:
    model: str
    last_seen: float  # the prediction was still running then
    typical: tuple[float, float] | None = None  # (submitted at, the model's usual run time)
    started: float | None = None  # first seen processing
    bar_ends: tuple[float, float] | None = None  # when its bar is (or was) full, earliest and latest
    early: bool = False  # bar_ends comes from a bar that had hardly started
    full: bool = False
    below_full_at: float | None = None  # last seen with its bar not yet full
    reading: BarReading | None = None
    read_at: float = 0.0


@dataclass
class Forecast:
    """What each job's prediction has shown, and each model's time after a full bar, learned as jobs end."""

    _runs: dict[str, _Run] = field(default_factory=dict)
    _after_bar: dict[str, deque[float]] = field(default_factory=dict)
    _pruned_at: float = 0.0

    def after_bar(self, model: str) -> tuple[float, float]:
        """How long ``model`` runs after its bar is full: the range of its recent jobs (or a prior)."""
        seen = self._after_bar.get(model)
        if seen is None or len(seen) < _AFTER_BAR_MIN_SAMPLES:
            return _PRIOR_AFTER_BAR_S
        ordered = sorted(seen)
        trim = len(ordered) // 10  # the odd outlier
        kept = ordered[trim : len(ordered) - trim]
        return kept[0] - _AFTER_BAR_MARGIN_S, kept[-1] + _AFTER_BAR_MARGIN_S

    def observe(
        self,
        job_id: str,
        model: str,
        *,
        processing: bool,
        logs: str | None,
        now: float,
        submitted_at: float | None = None,
        typical_run_s: float | None = None,
    ) -> Outlook:
        """A poll or webhook showed the job's prediction still running (``processing``, or still starting).

        ``typical_run_s``: how long the model's recent jobs took from submission (None: unknown).
        """
        self._prune(now)
        run = self._runs.get(job_id)
        if run is None:
            run = self._runs[job_id] = _Run(model, last_seen=now)
        run.last_seen = now
        run.typical = (submitted_at, typical_run_s) if submitted_at is not None and typical_run_s else None
        if processing and run.started is None:
            run.started = now
        reading = read_bar(logs) if processing else None
        if reading is not None:
            self._read(run, reading, now)
        return Outlook(self._progress(run, now), self._window(run, now))

    def progress_at(self, job_id: str, now: float) -> Progress | None:
        """How far along the job should be by ``now``: its bar moved on at its rate since it was last read (but
        never shown full before it was seen full)."""
        run = self._runs.get(job_id)
        return None if run is None else self._progress(run, now)

    def left_s(self, job_id: str, now: float) -> float | None:
        """About how long until the job's prediction ends, if there is an estimate."""
        run = self._runs.get(job_id)
        window = None if run is None else self._window(run, now)
        return None if window is None else max(0.0, (window.earliest + window.latest) / 2 - now)

    def _progress(self, run: _Run, now: float) -> Progress | None:
        window = self._window(run, now)
        left = None if window is None else max(0.0, (window.earliest + window.latest) / 2 - now)
        fraction = None
        if run.reading is not None:
            fraction = run.reading.fraction
            if not run.full and run.bar_ends is not None and not run.early:
                bar_end = (run.bar_ends[0] + run.bar_ends[1]) / 2
                if bar_end > run.read_at:
                    moved = min(1.0, (now - run.read_at) / (bar_end - run.read_at))
                    fraction = min(0.99, fraction + (1 - fraction) * max(0.0, moved))
        elapsed = now - run.started if run.started is not None else None
        return Progress(fraction, left, elapsed_s=elapsed) if (fraction is not None or left is not None) else None

    def _read(self, run: _Run, reading: BarReading, now: float) -> None:
        if run.full and not reading.full:
            run.full, run.bar_ends = False, None  # a second bar (a long track made in windows)
        run.reading, run.read_at = reading, now
        if not reading.full:
            run.below_full_at = now
            if reading.left_s is not None:
                run.early = reading.fraction < _EARLY_FRACTION or (reading.elapsed_s or 0.0) < _EARLY_S
                spread = max(_MIN_SPREAD_S, (_EARLY_SPREAD if run.early else _SPREAD) * reading.left_s)
                run.bar_ends = (now + reading.left_s - spread, now + reading.left_s + spread)
            return
        if run.full:
            return  # it was full before: when it filled is known as well as it will be
        run.full, run.early = True, False
        # It filled after it was last seen short, and by now; the last estimate narrows that.
        earliest = run.below_full_at if run.below_full_at is not None else (run.started or now)
        latest = now
        if run.bar_ends is not None:
            earliest = max(earliest, min(run.bar_ends[0], now))
            latest = min(now, max(run.bar_ends[1], earliest))
        run.bar_ends = (min(earliest, latest), latest)

    def _window(self, run: _Run, now: float) -> EndWindow | None:
        if run.bar_ends is not None:
            low, high = self.after_bar(run.model)
            bar_low, bar_high = run.bar_ends
            look_at = bar_low if not run.full and bar_high - bar_low > _NARROW_S and bar_low > now else None
            return EndWindow(bar_low + low, bar_high + high, look_at=look_at, rough=run.early)
        if run.typical is not None:
            submitted_at, run_s = run.typical
            latest = submitted_at + run_s * (1 + _TYPICAL_SPREAD)
            if latest > now:
                return EndWindow(submitted_at + run_s * (1 - _TYPICAL_SPREAD), latest, rough=True)
        return None

    def running(self) -> list[str]:
        """The jobs being followed."""
        return list(self._runs)

    def ended(self, job_id: str, *, now: float, succeeded: bool) -> None:
        """The job's prediction ended (seen ``now``). A success teaches how long the model runs after its bar."""
        run = self._runs.pop(job_id, None)
        if run is None or not succeeded or run.bar_ends is None or run.early:
            return
        # It ended after it was last seen running and by now; its bar filled within bar_ends.
        low, high = run.last_seen - run.bar_ends[1], now - run.bar_ends[0]
        if high - low <= _AFTER_BAR_MAX_UNCERTAINTY_S:
            seen = self._after_bar.setdefault(run.model, deque(maxlen=_AFTER_BAR_SAMPLES))
            seen.append(max(-60.0, min(60.0, (low + high) / 2)))

    def forget(self, job_id: str) -> None:
        self._runs.pop(job_id, None)

    def _prune(self, now: float) -> None:
        if now - self._pruned_at < 60.0:
            return
        self._pruned_at = now
        for job_id in [j for j, run in self._runs.items() if now - run.last_seen > _FORGET_AFTER_S]:
            self.forget(job_id)


@dataclass
class Throttle:
    """At most one event per key every ``every_s`` (the rest are dropped); keeps at most ``max_keys`` keys."""

    every_s: float
    max_keys: int = 20_000
    _last: dict[str, float] = field(default_factory=dict)

    def allow(self, key: str, now: float) -> bool:
        last = self._last.get(key)
        if last is not None and 0 <= now - last < self.every_s:
            return False
        if len(self._last) >= self.max_keys:
            self._last = {k: t for k, t in self._last.items() if 0 <= now - t < self.every_s}
            if len(self._last) >= self.max_keys:
                return False  # a flood of distinct keys: take none until it passes
        self._last[key] = now
        return True

    def wait_s(self, key: str, now: float) -> float:
        """How long until an event for ``key`` is let through (0: now)."""
        last = self._last.get(key)
        return 0.0 if last is None or not 0 <= now - last < self.every_s else last + self.every_s - now

    def forget(self, key: str) -> None:
        self._last.pop(key, None)
