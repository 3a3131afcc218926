"""Taking jobs up again from what the database says: at startup, and after storage trouble.

Every unfinished job is resumed by its state: queued, it waits for its turn again (the queue is in the database:
the scheduler looks); at a provider that keeps predictions, it is polled; succeeded, it is delivered from the stored
file. A long call died with the process and isn't run again by itself (it costs money): it fails as
*interrupted*, with Retry. CardFeed of jobs that ended just before a crash are brought up to date.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.jobs.dispatch import Dispatch
from bot.jobs.outcomes import Outcomes
from bot.jobs.phase import CardFeed
from bot.jobs.poller import Poller
from bot.jobs.scheduler import Scheduler
from bot.jobs.submit import Submitter
from bot.jobs.tasks import Tasks
from bot.providers.base import OnRestart
from bot.providers.plugins import Registry
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

INTERRUPTED = (
    "Interrupted: Encore restarted while this was being made. It wasn't run again by itself because it costs "
    "money; press Retry to make it again."
)


class Reconcile:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        registry: Registry,
        scheduler: Scheduler,
        poller: Poller,
        cards: CardFeed,
        outcomes: Outcomes,
        dispatch: Dispatch,
        submitter: Submitter,
        tasks: Tasks,
        clock: Callable[[], float],
    ) -> None:
        self._repo = repo
        self._registry = registry
        self._scheduler = scheduler
        self._poller = poller
        self._cards = cards
        self._outcomes = outcomes
        self._dispatch = dispatch
        self._submitter = submitter
        self._tasks = tasks
        self._clock = clock

    async def resume_all(self) -> None:
        """At startup: resume every unfinished job, and bring up to date the cards behind their jobs."""
        jobs = await self._repo.list_active()
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        for job in jobs:
            self.resume(job)
        # Jobs that ended just before the last stop (a crash) may have cards that never showed it.
        for job in await self._repo.list_cards_behind():
            self._tasks.spawn(self._cards.notify(job.id), name=f"card:{job.id}")

    def resume(self, job: Job) -> None:
        if self._registry.spec(job.provider).on_restart is OnRestart.INTERRUPTED and job.status.is_active_at_provider:
            # The call died with the process; running it again would cost money again: ask first.
            self._tasks.spawn(self._outcomes.fail(job.id, INTERRUPTED), name=f"interrupted:{job.id}")
            return
        if job.status == JobStatus.QUEUED:
            self._scheduler.kick(job.provider)
        elif job.status.is_active_at_provider:
            self._poller.schedule(job.id, due=self._clock())
        elif job.status == JobStatus.SUCCEEDED:
            self._dispatch.kick(job)

    async def pick_up(self, job_id: str) -> None:
        """Take a job up again from what the database says, as a restart would (after storage trouble)."""
        job = await self._repo.get(job_id)
        if job is None or job.status.is_terminal:
            self._tasks.storage_ok(job_id)
        elif job.status == JobStatus.QUEUED:
            self._submitter.start(job.id)  # it keeps its turn, if it had one here (else submit leaves it)
            self._scheduler.kick(job.provider)
        else:
            self.resume(job)
