"""The CLI's job listener: progress lines on stderr, and the finished files written where asked, tagged as
Discord's are and named the same way (``bot.naming``).

A line for each phase, then while the model runs the card's progress (``Generating ▓▓▓▓▓░░░░░ 52% · about
14 s left``, a song's bytes and time so far): a line for every tenth of the bar or MiB received, and one at
least every :data:`QUIET_S` seconds so a long wait shows it is still alive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import shutil
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TextIO

from bot.audio import off_loop
from bot.audio.fit import tag_copy
from bot.audio.loop import loop_label, make_loop
from bot.cli.render import failure_hint
from bot.errors import BotError, DeliveryError
from bot.jobs.phase import Phase, card_progress
from bot.jobs.progress import Progress, progress_text
from bot.naming import audio_filename, loop_filename, loop_tags, output_files, track_tags
from bot.records import Job

QUIET_S = 15.0  # a running job's line comes at least this often
_RUNNING = (Phase.STARTING, Phase.GENERATING)


def _step(progress: Progress | None) -> tuple[int | None, int | None]:
    """What earns a new line: another tenth of the bar, another MiB received."""
    if progress is None:
        return (None, None)
    cells = None if progress.fraction is None else math.floor(progress.fraction * 10)
    received = None if progress.received_bytes is None else progress.received_bytes // (1024 * 1024)
    return (cells, received)


class CliListener:
    """Reports progress on stderr and writes the finished files, tagged as delivered files are."""

    def __init__(
        self,
        out: Path | None,
        stream: TextIO,
        *,
        verbose: bool = False,
        max_input_s: float = 300.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``max_input_s``: the most of a track a loop (``--loop``) reads ([audio] max_input_s)."""
        self.out = out
        self.max_input_s = max_input_s
        self.stream = stream
        self.verbose = verbose
        self.card: str | None = None  # the card key (job id, or batch id) this CLI run waits for
        self.finished = asyncio.Event()
        self.final: list[Job] = []
        self.written: list[Path] = []
        self._clock = clock
        self._last: Phase | None = Phase.QUEUED  # the "Queued: ..." line says so already
        self._phase_at = clock()
        self._printed_at = clock()
        self._step: tuple[int | None, int | None] = (None, None)

    def _say(self, line: str) -> None:
        print(line, file=self.stream, flush=True)
        self._printed_at = self._clock()

    def _progress(self, phase: Phase, members: Sequence[Job]) -> Progress | None:
        """The card's progress, with the time so far (since the model started, or since this phase began)."""
        progress = card_progress(members) if phase in _RUNNING else None
        if progress is None or progress.elapsed_s is not None:
            return progress
        started = min((m.running_at for m in members if m.running_at), default=None) or self._phase_at
        return dataclasses.replace(progress, elapsed_s=max(0.0, self._clock() - started))

    @staticmethod
    def _with(line: str, progress: Progress | None) -> str:
        shown = progress_text(progress, elapsed=True) if progress is not None else ""
        if not shown:
            return line
        return line + (" " if progress is not None and progress.fraction is not None else " · ") + shown

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        if job.card_key != self.card:
            return
        progress = self._progress(phase, members)
        if phase != self._last:
            self._last, self._phase_at = phase, self._clock()
            line = f"[{job.card_key}] {phase.value}"
            errors = {m.error for m in members if m.error}
            if phase in (Phase.FAILED, Phase.CANCELED) and errors:
                line += ": " + "; ".join(sorted(errors))
            self._say(self._with(line, progress))
            self._step = _step(progress)
            if phase == Phase.FAILED and (hint := failure_hint(members, verbose=self.verbose)):
                print(f"error: {hint}", file=self.stream, flush=True)
        elif progress is not None and (_step(progress) != self._step or self._clock() - self._printed_at >= QUIET_S):
            self._step = _step(progress)
            self._say(self._with(f"[{job.card_key}] {phase.value}", progress))
        if phase in (Phase.DONE, Phase.FAILED, Phase.CANCELED):
            self.final = list(members)
            self.finished.set()

    def tick(self) -> None:
        """Called now and then while waiting: a running job that has been quiet a while says how long so far."""
        phase = self._last
        if self.card is None or phase is None or phase not in _RUNNING or self._clock() - self._printed_at < QUIET_S:
            return
        elapsed = self._clock() - self._phase_at
        self._say(f"[{self.card}] {phase.value} · {progress_text(Progress(elapsed_s=elapsed), elapsed=True)}")

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        if not jobs or jobs[0].card_key != self.card:
            raise DeliveryError(detail="not this CLI's job")
        for job in jobs:
            target = self._target(job)
            tags = track_tags(job)
            for name, source in output_files(job):
                path = target.with_name(f"{target.stem}-{name}{source.suffix}") if name else target
                await off_loop("fit", _write_tagged, source, path, tags)
                self.written.append(path)
            if job.context.get("loop_bars") and not job.result.get("files"):
                await self._write_loop(job, Path(job.output_path or ""), target)
            if job.image_path:
                image = Path(job.image_path)
                image_target = target.with_name(target.stem + "-spectrogram" + image.suffix)
                await asyncio.to_thread(_copy, image, image_target)
                self.written.append(image_target)
        return None

    async def _write_loop(self, job: Job, source: Path, target: Path) -> None:
        """The loop asked for with ``--loop``, next to the track and named like it (with its tempo and bars); the
        reason on stderr if there can be none (the track is written all the same)."""
        part = target.with_name(f"{target.stem}_loop.part.wav")
        bars = int(job.context["loop_bars"])
        try:
            made = await off_loop(
                "loop", make_loop, source, part, bars=bars, max_s=self.max_input_s, tags=loop_tags(job)
            )
        except BotError as exc:
            print(f"[{job.card_key}] no loop: {exc.user_message}", file=self.stream, flush=True)
            return
        path = target.with_name(loop_filename(target.stem, made))
        await asyncio.to_thread(made.path.replace, path)
        print(f"[{job.card_key}] loop: {loop_label(made)}", file=self.stream, flush=True)
        self.written.append(path)

    def _target(self, job: Job) -> Path:
        """``--out`` (a variation adds ``-v<n>-seed<seed>``), else the name Discord gives the file."""
        if self.out is None:
            return Path(audio_filename(job))
        if job.batch_size > 1:
            return self.out.with_name(f"{self.out.stem}-v{job.batch_index + 1}-seed{job.seed}{self.out.suffix}")
        return self.out


def _copy(source: Path, target: Path) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _write_tagged(source: Path, target: Path, tags: Mapping[str, str]) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    tag_copy(source, target, tags)
