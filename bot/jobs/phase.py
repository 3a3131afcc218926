"""What a job card shows, and who hears of it: the card's phase, computed in one place.

The engine reports every move of a job through a :class:`JobListener` (Discord delivery, the CLI, a test's
recorder). A card follows its job, or every variation of a batch: :func:`card_phase` is the one rule for
what such a card shows, :func:`phase_of` the phase of one job's status.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Protocol

from bot.jobs.models import Job, JobStatus


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
