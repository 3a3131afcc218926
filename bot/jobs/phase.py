"""What a job card shows, and who hears of it: the card's phase, computed in one place.

The engine reports every move of a job through a :class:`JobListener` (Discord delivery, the CLI, a test's
recorder). A card follows its job, or every variation of a batch: :func:`card_phase` is the one rule for
what such a card shows, :func:`phase_of` the phase of one job's status. Besides its status, a job on a card
carries what only this process knows (in ``job.result``, read with :func:`progress_of`): its place in line
and the wait while queued (``queue_position``, ``eta_s``), how far along it is while it runs (``progress``).
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict
from enum import StrEnum
from typing import Protocol

from bot.background import OwnedTask
from bot.jobs.progress import Forecast, Progress, combined
from bot.jobs.scheduler import Scheduler
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

# Between a running job's polls (or webhooks), its card moves on by itself this often: its bar at its rate, the
# time left counting down. At most so many cards per turn, so thousands of running jobs cost no flood of edits.
PROGRESS_EVERY_S = 5.0
PROGRESS_CARDS_PER_TURN = 50


class Phase(StrEnum):
    """What a person sees on the job card."""

    QUEUED = "Queued"
    STARTING = "Starting"
    GENERATING = "Generating"
    UPLOADING = "Uploading"
    DONE = "Done"
    FAILED = "Failed"
    CANCELED = "Canceled"


#: A card in one of these phases shows how its jobs ended; it changes no more.
TERMINAL_PHASES = frozenset({Phase.DONE, Phase.FAILED, Phase.CANCELED})

_PROGRESS = (Phase.QUEUED, Phase.STARTING, Phase.GENERATING, Phase.UPLOADING)


class JobListener(Protocol):
    """Implemented by Discord delivery and by the CLI."""

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        """A job moved; update whatever shows it. Must not raise.

        ``job`` identifies the card (for a batch, its first variation) and ``phase`` is the card's phase;
        ``members`` are all the jobs on that card (one, or every variation of a batch).
        """
        ...

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        """Hand finished files (``job.output_path`` of each) to the user, together. Returns a message id.

        Raise :class:`DeliveryError` (``retryable=False`` when retrying cannot help).
        """
        ...


def phase_of(status: JobStatus) -> Phase:
    return {
        JobStatus.QUEUED: Phase.QUEUED,
        JobStatus.SUBMITTED: Phase.STARTING,
        JobStatus.RUNNING: Phase.GENERATING,
        JobStatus.SUCCEEDED: Phase.UPLOADING,
        JobStatus.DELIVERED: Phase.DONE,
        JobStatus.FAILED: Phase.FAILED,
        JobStatus.CANCELED: Phase.CANCELED,
    }[status]


def card_phase(members: Sequence[Job], *, uploading: frozenset[str] = frozenset()) -> Phase:
    """The phase a card shows for its jobs: the least advanced while any runs, else the outcome."""
    if all(m.status.is_terminal for m in members):
        if any(m.status == JobStatus.DELIVERED for m in members):
            return Phase.DONE
        if all(m.status == JobStatus.CANCELED for m in members):
            return Phase.CANCELED
        return Phase.FAILED
    active = [Phase.UPLOADING if m.id in uploading else phase_of(m.status) for m in members if not m.status.is_terminal]
    return min(active, key=_PROGRESS.index)


def progress_of(job: Job) -> Progress | None:
    """How far along ``job`` is, as its card was told (None: nothing known)."""
    shown = job.result.get("progress")
    if isinstance(shown, dict):
        return Progress(**{k: v for k, v in shown.items() if k in Progress.__dataclass_fields__})
    received = job.result.get("received_bytes")  # a long call's answer so far, stored with the job
    if received and job.status == JobStatus.RUNNING:
        return Progress(received_bytes=int(received))
    return None


def card_progress(members: Sequence[Job]) -> Progress | None:
    """How far along a card's running jobs are, together; None unless every one of them says."""
    active = [m for m in members if m.status.is_active_at_provider]
    found = [p for m in active if (p := progress_of(m)) is not None]
    return combined(found) if found and len(found) == len(active) else None


def start_eta_s(place: int, capacity: int, running_left: Sequence[float | None], typical: float | None) -> float | None:
    """About how long until the job ``place`` in line starts, with ``capacity`` slots (0: no cap) held by jobs
    that end in ``running_left`` seconds (None: unknown, taken as half a run), each next job taking ``typical``."""
    if capacity <= 0:
        return None
    half = typical / 2 if typical is not None else None
    known = [left if left is not None else half for left in running_left]
    if any(end is None for end in known):
        return None
    ends = sorted(end for end in known if end is not None)
    ends = ends[max(0, len(ends) - capacity) :]  # the cap was lowered: the first ends free no slot
    ends += [0.0] * (capacity - len(ends))  # free slots
    heapq.heapify(ends)
    start: float | None = None
    for _ in range(place):
        if not ends:
            return None
        start = heapq.heappop(ends)
        if typical is not None:
            heapq.heappush(ends, start + typical)
    return start


class CardFeed:
    """The engine's side of every card: which jobs are being fetched (Uploading), each waiting job's place in
    line, how far along each running job is, and telling the listener how a card looks now."""

    def __init__(
        self,
        repo: JobsRepo,
        listener: JobListener,
        scheduler: Scheduler,
        *,
        forecast: Forecast | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._repo = repo
        self._listener = listener
        self._scheduler = scheduler
        self._forecast = forecast or Forecast()
        self._clock = clock
        self._uploading: set[str] = set()  # jobs whose output is being fetched
        self._progress: dict[str, Progress] = {}  # running jobs: how far along, as last shown
        self._turns: deque[str] = deque()  # running jobs whose cards move on by themselves, in turn
        self._in_turns: set[str] = set()
        self._ticker = OwnedTask("progress")

    def start(self) -> None:
        if self._clock is not None:
            self._ticker.start(self._move_on)

    async def stop(self) -> None:
        await self._ticker.stop()

    async def _move_on(self) -> None:
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            try:
                await self.move_on()
            except Exception:
                log.exception("moving progress on failed")

    async def move_on(self) -> None:
        """One turn: the cards of up to :data:`PROGRESS_CARDS_PER_TURN` running jobs show how far along they
        should be by now."""
        assert self._clock is not None
        for _ in range(min(len(self._turns), PROGRESS_CARDS_PER_TURN)):
            job_id = self._turns.popleft()
            if job_id not in self._progress:
                self._in_turns.discard(job_id)
                continue  # it ended: out of the turns
            self._turns.append(job_id)
            progress = self._forecast.progress_at(job_id, self._clock())
            if progress is not None and self.set_progress(job_id, progress):
                await self.notify(job_id)

    def done_uploading(self, job_id: str) -> None:
        self._uploading.discard(job_id)
        self._progress.pop(job_id, None)

    def set_progress(self, job_id: str, progress: Progress | None) -> bool:
        """How far along ``job_id`` is now; True if its card would show something new."""
        before = self._progress.get(job_id)
        if progress is None:
            self._progress.pop(job_id, None)
        else:
            if before is None and job_id not in self._in_turns:
                self._turns.append(job_id)
                self._in_turns.add(job_id)
            self._progress[job_id] = progress
        return (before.shown() if before else None) != (progress.shown() if progress else None)

    async def show(self, job: Job) -> tuple[Job, Phase, list[Job]]:
        """What the card of ``job`` shows: its first job, its phase, and every job on it."""
        members = await self._repo.list_batch(job.batch_id) if job.batch_id else [job]
        phase = card_phase(members, uploading=frozenset(self._uploading))
        if phase == Phase.QUEUED:
            members = [await self._with_queue_place(m) for m in members]
        elif phase in (Phase.STARTING, Phase.GENERATING):
            members = [self._with_progress(m) for m in members]
        return members[0], phase, members

    def _with_progress(self, job: Job) -> Job:
        progress = self._progress.get(job.id)
        if progress is None or not job.status.is_active_at_provider:
            return job
        return job.model_copy(update={"result": {**job.result, "progress": asdict(progress)}})

    async def notify(self, job_id: str, *, uploading: bool = False) -> None:
        """Tell the listener how the card of ``job_id`` (its job, or its whole batch) looks now."""
        job = await self._repo.get(job_id)
        if job is None:
            return
        if uploading:
            self._uploading.add(job.id)
        else:
            self._uploading.discard(job.id)
        if not job.status.is_active_at_provider:
            self._progress.pop(job.id, None)
        lead, phase, members = await self.show(job)
        try:
            await self._listener.job_updated(lead, phase, members)
        except Exception:
            log.exception("listener failed on job %s", job.id)

    async def _with_queue_place(self, job: Job) -> Job:
        """The job with its place in the queue and an estimate of the wait, for the card."""
        place = await self._scheduler.position(job)
        if place is None:
            return job
        typical = await self._repo.typical_run_s(job.model)
        now = self._clock() if self._clock is not None else None
        running = await self._scheduler.in_flight(job.provider)
        lefts = [self._forecast.left_s(j, now) if now is not None else None for j in running]
        eta = start_eta_s(place, self._scheduler.capacity(job.provider), lefts, typical)
        eta_s = round(eta) if eta is not None else None
        return job.model_copy(update={"result": {**job.result, "queue_position": place, "eta_s": eta_s}})
