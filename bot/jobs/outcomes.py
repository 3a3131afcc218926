"""How a job leaves its provider: failed with a reason, or succeeded with its file stored.

Either way its scheduler slot is freed, its poll stops, the outcome is counted, its card is told, and its card
unit (the job, or its batch) is handed to delivery (``on_ended``), which posts whatever is ready.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot import metrics
from bot.jobs.phase import CardFeed
from bot.jobs.poller import Poller
from bot.jobs.scheduler import Scheduler
from bot.jobs.tasks import Tasks
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)


class Outcomes:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        cards: CardFeed,
        scheduler: Scheduler,
        poller: Poller,
        tasks: Tasks,
        clock: Callable[[], float],
        on_ended: Callable[[Job], None],
    ) -> None:
        """``on_ended(job)``: the job's card unit may be ready to deliver (delivery looks)."""
        self._repo = repo
        self._cards = cards
        self._scheduler = scheduler
        self._poller = poller
        self._tasks = tasks
        self._clock = clock
        self._on_ended = on_ended

    async def fail(self, job_id: str, reason: str, *, detail: str | None = None) -> bool:
        """Move the job to failed with ``reason`` (shown on its card); False if it had already moved on."""
        won = await self._repo.transition(job_id, JobStatus.FAILED, error=reason, now=self._clock())
        if won:
            log.info("job %s failed: %s", job_id, detail or reason)
            self._tasks.storage_ok(job_id)
            job = await self._repo.get(job_id)
            if job is not None:
                self.released(job, "failed")
            self._poller.unschedule(job_id)
            self._cards.done_uploading(job_id)
            await self._cards.notify(job_id)
            if job is not None and job.batch_id:
                self._on_ended(job)  # the other variations may all be done now
        return won

    async def succeeded(self, job: Job) -> None:
        """The job's output is stored (it won the move to succeeded): free it and deliver it."""
        self._poller.unschedule(job.id)
        self._cards.done_uploading(job.id)
        self.released(job, "succeeded")
        self._on_ended(job)

    def left(self, job: Job) -> None:
        """The job is no longer at its provider, which another process may have seen first (a webhook it heard):
        its slot here is free and its polls stop."""
        self._scheduler.released(job.provider)
        self._poller.unschedule(job.id)

    def released(self, job: Job, outcome: str) -> None:
        """A job stopped using its provider (succeeded, failed or canceled): count it; its slot (free in the
        database already) may start another job."""
        self._scheduler.released(job.provider)
        metrics.record_job_finished(job.model, outcome, self._clock() - job.created_at)
