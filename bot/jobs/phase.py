"""What a job card shows, and who hears of it: the card's phase, computed in one place.

The engine reports every move of a job through a :class:`JobListener` (Discord delivery, the CLI, a test's
recorder). A card follows its job, or every variation of a batch: :func:`card_phase` is the one rule for
what such a card shows, :func:`phase_of` the phase of one job's status.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from bot.jobs.scheduler import Scheduler
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)


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


class CardFeed:
    """The engine's side of every card: which jobs are being fetched (Uploading), each waiting job's place in
    line, and telling the listener how a card looks now."""

    def __init__(self, repo: JobsRepo, listener: JobListener, scheduler: Scheduler) -> None:
        self._repo = repo
        self._listener = listener
        self._scheduler = scheduler
        self._uploading: set[str] = set()  # jobs whose output is being fetched

    def done_uploading(self, job_id: str) -> None:
        self._uploading.discard(job_id)

    async def show(self, job: Job) -> tuple[Job, Phase, list[Job]]:
        """What the card of ``job`` shows: its first job, its phase, and every job on it."""
        members = await self._repo.list_batch(job.batch_id) if job.batch_id else [job]
        phase = card_phase(members, uploading=frozenset(self._uploading))
        if phase == Phase.QUEUED:
            members = [await self._with_queue_place(m) for m in members]
        return members[0], phase, members

    async def notify(self, job_id: str, *, uploading: bool = False) -> None:
        """Tell the listener how the card of ``job_id`` (its job, or its whole batch) looks now."""
        job = await self._repo.get(job_id)
        if job is None:
            return
        if uploading:
            self._uploading.add(job.id)
        else:
            self._uploading.discard(job.id)
        lead, phase, members = await self.show(job)
        try:
            await self._listener.job_updated(lead, phase, members)
        except Exception:
            log.exception("listener failed on job %s", job.id)

    async def _with_queue_place(self, job: Job) -> Job:
        """The job with its place in the queue and an estimate of the wait, for the card."""
        place = self._scheduler.position(job.id)
        if place is None:
            return job
        typical = await self._repo.typical_run_s(job.model)
        capacity = self._scheduler.capacity(job.provider) or 1
        eta = round(place * typical / capacity) if typical else None
        return job.model_copy(update={"result": {**job.result, "queue_position": place, "eta_s": eta}})
