"""Taking jobs up again from what the database says: at startup, after storage trouble, and when another
process sharing the database stopped.

Every unfinished job is resumed by its state: queued, it waits for its turn again (the queue is in the database:
the scheduler looks); at a provider that keeps predictions, it is polled; succeeded, it is delivered from the stored
file. A long call died with the process and isn't run again by itself (it costs money): it fails as
*interrupted*, with Retry. CardFeed of jobs that ended just before a crash are brought up to date.

With several processes, a job at its provider belongs to the process that holds its lease (``bot.jobs.leases``):
this one takes up only those whose lease it wins, at startup and then at every round of the lease keeper
(:meth:`Reconcile.adopt_orphans`), which also delivers finished cards nobody is delivering. So a process that
dies loses nothing: its jobs are taken over once their leases run out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from bot.jobs.dispatch import Dispatch
from bot.jobs.leases import Kind, Leases
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

_ADOPT_AT_ONCE = 500  # jobs taken over in one round of the lease keeper (the next round takes more)

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
        leases: Leases,
        polled: frozenset[str],
    ) -> None:
        """``polled``: the prediction providers this process can poll."""
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
        self._leases = leases
        self._polled = [name for name in sorted(polled) if registry.spec(name).on_restart is OnRestart.POLL]
        self._called = [name for name in registry if registry.spec(name).on_restart is OnRestart.INTERRUPTED]

    async def resume_all(self) -> None:
        """At startup: resume every unfinished job (those at a provider whose lease this process wins), and bring
        up to date the cards behind their jobs."""
        jobs = await self._repo.list_active()
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        for job in jobs:
            if not job.status.is_active_at_provider:
                self.resume(job)  # queued: a turn; succeeded: delivery (under the card's lease)
        # At a provider: only those no other process holds.
        while await self.adopt_orphans(deliveries=False) >= _ADOPT_AT_ONCE:
            pass
        # Jobs that ended just before the last stop (a crash) may have cards that never showed it.
        for job in await self._repo.list_cards_behind():
            self._tasks.spawn(self._cards.notify(job.id), name=f"card:{job.id}")

    def resume(self, job: Job) -> None:
        if self._registry.spec(job.provider).on_restart is OnRestart.INTERRUPTED and job.status.is_active_at_provider:
            # The call died with its process; running it again would cost money again: ask first.
            self._tasks.spawn(self._interrupted(job.id), name=f"interrupted:{job.id}")
            return
        if job.status == JobStatus.QUEUED:
            self._scheduler.kick(job.provider)
        elif job.status.is_active_at_provider:
            self._poller.schedule(job.id, due=self._clock())
        elif job.status == JobStatus.SUCCEEDED:
            self._dispatch.kick(job)

    async def adopt_orphans(self, *, deliveries: bool = True) -> int:
        """Take over jobs no live lease covers (their process stopped, or died and its leases ran out): jobs at a
        provider, and (``deliveries``) finished cards not changed for a lease's time. Returns how many."""
        lease_s = self._leases.lease_s
        adopted = 0
        # Polled jobs (unless being fetched) and long calls.
        for kinds, providers, kind in (
            ((Kind.POLL, Kind.FETCH), self._polled, Kind.POLL),
            ((Kind.CALL,), self._called, Kind.CALL),
        ):
            jobs = await self._leases.repo.unleased_at_provider(
                kinds, providers, now=self._clock(), limit=_ADOPT_AT_ONCE
            )
            won = await self._leases.take_all(kind, [job.id for job in jobs]) if jobs else set()
            for job in jobs:
                if job.id not in won:
                    continue  # another process took it first
                log.debug("job %s: taking it up (no process held it)", job.id)
                adopted += 1
                if kind is Kind.CALL:
                    self._tasks.spawn(self._interrupted(job.id), name=f"interrupted:{job.id}")
                else:
                    self.resume(job)
        if deliveries:
            now = self._clock()
            for job in await self._leases.repo.undelivered(
                Kind.DELIVER, now=now, quiet_since=now - lease_s(), limit=_ADOPT_AT_ONCE
            ):
                log.info("job %s: delivering it (no process was)", job.id)
                adopted += 1
                self._dispatch.kick(job)
        if adopted:
            log.info("took up %d job(s) no process held", adopted)
        return adopted

    async def _interrupted(self, job_id: str) -> None:
        try:
            await self._outcomes.fail(job_id, INTERRUPTED)
        finally:
            await self._leases.release(Kind.CALL, job_id)

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
