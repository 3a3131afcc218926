"""Predictions that run by themselves, for as long as real ones do, printing tqdm bars as real models do.

With ``FakeReplicate(timing=RunTiming(...))`` every prediction goes on its own: it waits in ``starting`` (the
queue), sets up in ``processing`` (the model's own log lines: ``Using seed …``), then runs its progress bar
step by step, writing tqdm's lines into ``logs`` with carriage returns as tqdm does on a pipe (`` 52%|█████▏
| 780/1503 [00:15<00:14, 50.60it/s]``), then spends a while after the full bar (decoding, uploading the
output) before it succeeds. Each prediction's times come from its own seeded random stream (``seed`` and its
creation order), so a run is repeatable and no two predictions take the same time: the speed varies from one
prediction to the next (``rate_spread``) and from one update to the next (``rate_jitter``), the first steps
are slower (warm-up), and the time after the bar varies too. How many steps a model takes follows its input
(MusicGen: 50 a second of audio, plus 3, as audiocraft generates; the diffusion models: their ``steps``).

:func:`tqdm_line` formats one update exactly as tqdm's default ``format_meter`` does (bar of 10 cells,
``{rate:5.2f}it/s``, ``s/it`` when slower than one a second, ``?`` before the first rate).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from tests.fakes.models import FakeModel

_CHARSET = " " + "".join(chr(c) for c in range(0x258F, 0x2587, -1))  # " ▏▎▍▌▋▊▉█", tqdm's UTF bar


def _interval(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours:d}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


def _bar(fraction: float, cells: int = 10) -> str:
    symbols = len(_CHARSET) - 1
    full, part = divmod(int(fraction * cells * symbols), symbols)
    text = _CHARSET[-1] * full
    if full < cells:
        text += _CHARSET[part] + _CHARSET[0] * (cells - full - 1)
    return text


def tqdm_line(n: int, total: int, elapsed_s: float, rate: float | None) -> str:
    """One tqdm update as tqdm prints it (without the carriage return before it)."""
    fraction = n / total
    if rate:
        inverse = 1 / rate
        rate_text = f"{inverse:5.2f}s/it" if inverse > 1 else f"{rate:5.2f}it/s"
        left = _interval((total - n) / rate)
    else:
        rate_text, left = "?it/s", "?"
    return f"{fraction * 100:3.0f}%|{_bar(fraction)}| {n}/{total} [{_interval(elapsed_s)}<{left}, {rate_text}]"


def default_steps(model: FakeModel, inp: dict[str, Any]) -> int:
    """How many steps the model's bar has for this input."""
    if model.name == "musicgen":
        return 50 * int(inp.get("duration", 8)) + 3  # audiocraft: 50 tokens a second of audio (1503 for 30 s)
    for key in ("steps", "num_inference_steps"):
        if isinstance(inp.get(key), int) and inp[key] > 0:
            return int(inp[key])
    return 100


@dataclass(frozen=True)
class RunTiming:
    """How long predictions take when the fake runs them by itself. Times in seconds; spreads are the sigma of
    a log-normal factor (0: always the median)."""

    seed: int = 0
    queue_s: tuple[float, float] = (0.1, 1.0)  # starting: waiting for a warm instance (uniform)
    setup_s: tuple[float, float] = (0.2, 0.8)  # processing before the bar: inputs, the model's own lines
    rate_it_s: float = 50.0  # the bar's median speed (MusicGen large on an A100: about 50 tokens a second)
    rate_spread: float = 0.15  # from one prediction to the next
    rate_jitter: float = 0.05  # from one update to the next
    warmup_steps: int = 10  # the first steps run at half speed
    after_bar_s: float = 0.6  # after the full bar: decoding, writing and uploading the output (median)
    after_bar_spread: float = 0.3
    update_s: float = 0.1  # tqdm's mininterval: at most one update this often
    smoothing: float = 0.3  # tqdm's rate is an exponential moving average of this weight
    steps: Callable[[FakeModel, dict[str, Any]], int] = default_steps

    def plan(self, seq: int, model: FakeModel, inp: dict[str, Any]) -> RunPlan:
        """The times of the prediction created ``seq``-th (the same every run with the same seed)."""
        rng = random.Random(f"{self.seed}:{seq}")
        rate = self.rate_it_s * math.exp(rng.gauss(0.0, self.rate_spread))
        return RunPlan(
            queue_s=rng.uniform(*self.queue_s),
            setup_s=rng.uniform(*self.setup_s),
            steps=max(1, self.steps(model, inp)),
            rate_it_s=rate,
            after_bar_s=self.after_bar_s * math.exp(rng.gauss(0.0, self.after_bar_spread)),
            timing=self,
            rng=rng,
        )


@dataclass
class RunPlan:
    """One prediction's run: its times, and the speed of each stretch of its bar."""

    queue_s: float
    setup_s: float
    steps: int
    rate_it_s: float
    after_bar_s: float
    timing: RunTiming
    rng: random.Random

    def speed(self, step: int) -> float:
        """Steps a second around ``step`` (slower while warming up, a little different each update)."""
        warm = 0.5 if step < self.timing.warmup_steps else 1.0
        return max(1e-3, self.rate_it_s * warm * math.exp(self.rng.gauss(0.0, self.timing.rate_jitter)))


class Meter:
    """tqdm's bookkeeping for one bar: where it is, and the rate it shows (a moving average, as tqdm's)."""

    def __init__(self, total: int, smoothing: float) -> None:
        self.total = total
        self.n = 0
        self.elapsed_s = 0.0
        self._alpha = smoothing
        self._dn = self._dt = 0.0
        self._calls = 0

    def advance(self, steps: int, seconds: float) -> None:
        self.n = min(self.total, self.n + steps)
        self.elapsed_s += seconds
        beta = 1 - self._alpha
        self._dn = self._alpha * steps + beta * self._dn
        self._dt = self._alpha * seconds + beta * self._dt
        self._calls += 1

    @property
    def rate(self) -> float | None:
        return self._dn / self._dt if self._calls and self._dt > 0 else None

    def line(self) -> str:
        return tqdm_line(self.n, self.total, self.elapsed_s, self.rate)


def updates(plan: RunPlan) -> Iterator[tuple[float, int]]:
    """The bar's updates: (seconds since the previous one, steps done in them), until it is full."""
    done = 0
    while done < plan.steps:
        speed = plan.speed(done)
        steps = max(1, round(speed * plan.timing.update_s))
        steps = min(steps, plan.steps - done)
        yield steps / speed, steps
        done += steps
