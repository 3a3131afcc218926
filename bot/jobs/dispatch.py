"""Delivery: finished files handed to the listener, one loop per card unit, retried, never posted twice.

A card unit is a job, or a batch of variations (delivered together once none is still running). One loop
per unit runs at a time; news that arrives while it runs makes it look again. Each attempt is counted in
the database before it is made, so a crash can't retry without limit; Discord's nonce (the listener's
business) keeps a retry after a crash from posting twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from bot.config import Settings
from bot.errors import DeliveryError, StorageError
from bot.jobs.outcomes import Outcomes
from bot.jobs.phase import CardFeed, JobListener
from bot.jobs.tasks import Tasks
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)


class Dispatch:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        listener: JobListener,
        cards: CardFeed,
        tasks: Tasks,
        transfers: asyncio.Semaphore,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
        outcomes: Outcomes,
    ) -> None:
        self._repo = repo
        self._listener = listener
        self._cards = cards
        self._tasks = tasks
        self._transfers = transfers
        self._settings = settings
        self._clock = clock
        self._outcomes = outcomes
        self._dirty: set[str] = set()  # delivery units with news since their last look

    def kick(self, job: Job) -> None:
        """Deliver the job's card unit (the job, or its batch once every variation is done) soon.

        One delivery loop per unit at a time; news that arrives while it runs makes it look again.
        """
        key = f"deliver:{job.card_key}"
        self._dirty.add(key)
        if not self._tasks.running(key):
            self._tasks.pipeline(key, self._loop(key, job.id))

    async def _loop(self, key: str, job_id: str) -> None:
        while key in self._dirty:
            self._dirty.discard(key)
            try:
                await self._deliver(job_id)
            except StorageError as exc:
                if await self._tasks.wait_for_storage(job_id, exc):
                    self._dirty.add(key)  # look again

    async def _deliver(self, job_id: str) -> None:
        while True:
            job = await self._repo.get(job_id)
            if job is None:
                return
            members = await self._repo.list_batch(job.batch_id) if job.batch_id else [job]
            if any(m.status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING) for m in members):
                return  # variations still running: the last one to finish delivers them all
            ready = [m for m in members if m.status == JobStatus.SUCCEEDED]
            if not ready:
                return
            lead = ready[0]
            attempt = await self._repo.count_delivery_attempt(lead.id)
            if attempt == 0:
                return
            if await self._attempt(ready, attempt):
                return
            if not await self._tasks.nap(self._tasks.retry_delay(attempt)):
                return  # stopping: the next start delivers it from the stored file

    async def _attempt(self, ready: list[Job], attempt: int) -> bool:
        """One delivery attempt of ``ready`` (the ``attempt``-th); True when it is over (delivered, or failed
        for good), False to try again after a nap."""
        lead = ready[0]
        limit = self._settings().jobs.delivery_attempts
        try:
            async with self._transfers:
                message_id = await self._listener.deliver(ready)
        except DeliveryError as exc:
            if not exc.retryable or attempt >= limit:
                for member in ready:
                    await self._outcomes.fail(member.id, exc.user_message, detail=str(exc))
                return True
            log.warning("job %s: delivery attempt %d failed: %s", lead.id, attempt, exc)
            return False
        except Exception:
            if attempt >= limit:
                log.exception("job %s: delivery failed for good", lead.id)
                for member in ready:
                    await self._outcomes.fail(member.id, DeliveryError.default_message)
                return True
            log.exception("job %s: delivery attempt %d crashed", lead.id, attempt)
            return False
        for member in ready:
            await self._tasks.record(
                partial(
                    self._repo.transition,
                    member.id,
                    JobStatus.DELIVERED,
                    delivery_message_id=message_id,
                    now=self._clock(),
                )
            )
            self._tasks.storage_ok(member.id)
        log.info("job %s delivered (%d file(s))", lead.id, len(ready))
        await self._cards.notify(lead.id)
        return True
