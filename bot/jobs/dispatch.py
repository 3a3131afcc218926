"""Delivery: finished files handed to the listener, one loop per card unit, retried, never posted twice.

A card unit is a job, or a batch of variations (delivered together once none is still running). One loop
per unit runs at a time, in one process: the loop holds the card's delivery lease (``bot.jobs.leases``), so a
webhook heard by one process and a poll made by another never deliver it twice; news that arrives while it
runs makes it look again, and another process's news makes the holder look once more before it lets go. Each
attempt is counted in the database before it is made, so a crash can't retry without limit; Discord's nonce
(the listener's business) keeps a retry after a crash, here or in the process that takes over, from posting
twice.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from functools import partial

from bot.config import Settings
from bot.errors import DeliveryError, StorageError
from bot.jobs.leases import Kind, Leases
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
        leases: Leases,
    ) -> None:
        self._repo = repo
        self._listener = listener
        self._cards = cards
        self._tasks = tasks
        self._transfers = transfers
        self._settings = settings
        self._clock = clock
        self._outcomes = outcomes
        self._leases = leases
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
        card = key.removeprefix("deliver:")
        while key in self._dirty:
            self._dirty.discard(key)
            try:
                async with self._leases.claim(Kind.DELIVER, card) as mine:
                    if not mine:  # another process delivers this card (and looks again before it lets go)
                        log.debug("card %s is being delivered by another process", card)
                        return
                    waiting = await self._deliver(job_id)
                # A variation may have finished in another process while we held the card, its news refused by
                # our lease: look once more now that we don't.
                if waiting and not await self._running(job_id):
                    self._dirty.add(key)
            except StorageError as exc:
                if await self._tasks.wait_for_storage(job_id, exc):
                    self._dirty.add(key)  # look again

    async def _members(self, job_id: str) -> list[Job] | None:
        job = await self._repo.get(job_id)
        if job is None:
            return None
        return await self._repo.list_batch(job.batch_id) if job.batch_id else [job]

    async def _running(self, job_id: str) -> bool:
        """Whether a variation of the job's card is still being made."""
        members = await self._members(job_id) or []
        return any(m.status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING) for m in members)

    async def _deliver(self, job_id: str) -> bool:
        """Deliver the card of ``job_id`` if it is ready; True if it waits for variations still being made."""
        while True:
            members = await self._members(job_id)
            if members is None:
                return False
            if any(m.status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING) for m in members):
                return True  # variations still running: the last one to finish delivers them all
            ready = [m for m in members if m.status == JobStatus.SUCCEEDED]
            if not ready:
                return False
            lead = ready[0]
            attempt = await self._repo.count_delivery_attempt(lead.id)
            if attempt == 0:
                return False
            if await self._attempt(ready, attempt):
                return False
            if not await self._tasks.nap(self._tasks.retry_delay(attempt)):
                return False  # stopping: the next start delivers it from the stored file

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
