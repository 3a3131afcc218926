"""Fair scheduling: queued jobs go to each provider by turns between people, within a cap per provider, across
every process sharing the database.

A plain FIFO lets one person's batch hold everyone else up. Here, when a provider has a free slot, the person
who has been served least there goes next (among equals, whoever has waited longest) with their oldest job.
Slots are jobs at the provider (submitted, running, being fetched) and jobs being started there.

The database is the queue: a job takes its turn by a claim (``bot.storage.queue_repo``), one transaction per
provider at a time in every process, which counts the jobs in every process against the cap and claims the
next job by the rule above (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL). The process that claims a
job starts it (``start``). A round of claims runs when this process admits a job or one of its jobs leaves its
provider, and every ``[jobs] queue_check_s`` in case another process did (or a process is gone: a job whose
turn a gone process had is taken over). Each look also says this process is alive (``instances``).

A round is a locked transaction, and many jobs finish together: a round asked for because a job left is only
run when one statement without a lock finds a job to claim at that provider. None is missed: a job admitted
anywhere is in the database before its own process's round, which comes before this look or counts the slot
still taken and leaves the job for this look to find.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence

from bot.background import OwnedTask
from bot.config import JobSettings
from bot.errors import StorageError
from bot.records import Job, JobStatus
from bot.storage.instances_repo import InstancesRepo
from bot.storage.queue_repo import QueueRepo

log = logging.getLogger(__name__)

MOVED_NOTICES = 10  # waiting jobs whose cards are told they moved up (the rest learn when they get closer)
CLAIMS_PER_TRANSACTION = 16  # a backlog is claimed this many at a time
FORGET_GONE_S = 7 * 86_400.0  # processes gone this long are forgotten


def new_instance_id() -> str:
    """This process's name among those sharing the database: host, pid and a random part (a restart, or a
    second engine in one process, is another instance)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def queue_order(waiting: Sequence[tuple[str, int]], served: Mapping[int, int]) -> list[str]:
    """The order waiting jobs would start in: ``waiting`` is (job id, person), oldest first; whoever has been
    served least goes next, among equals whoever has waited longest, each with their oldest job."""
    people: OrderedDict[int, deque[str]] = OrderedDict()
    for job_id, person in waiting:
        people.setdefault(person, deque()).append(job_id)
    turns = dict(served)
    order: list[str] = []
    while people:
        person = min(people, key=lambda p: turns.get(p, 0))
        order.append(people[person].popleft())
        turns[person] = turns.get(person, 0) + 1
        if not people[person]:
            del people[person]
    return order


class Scheduler:
    def __init__(
        self,
        queue: QueueRepo,
        instances: InstancesRepo,
        capacities: dict[str, int],
        start: Callable[[str], None],
        *,
        settings: Callable[[], JobSettings],
        clock: Callable[[], float],
        on_moved: Callable[[list[str]], None] = lambda _: None,
        instance: str | None = None,
    ) -> None:
        """``start(job_id)`` starts a job this process claimed (the caller owns the task); ``on_moved`` hears
        which waiting jobs moved up the queue."""
        self._queue = queue
        self._instances = instances
        self._capacities = dict(capacities)
        self._start = start
        self._settings = settings
        self._clock = clock
        self._on_moved = on_moved
        self.instance = instance or new_instance_id()
        self.any_job = True  # this process starts anyone's jobs (the bot), or only its own (a terminal run)
        self._rounds: dict[str, asyncio.Future[None]] = {}  # per provider: the next round asked for
        self._sure: set[str] = set()  # providers whose next round runs without looking first
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._ticker = OwnedTask("queue:")
        self._running = False

    @property
    def reserved_for(self) -> str | None:
        """Who alone may start the jobs this process admits: itself when it starts only its own, else anyone."""
        return None if self.any_job else self.instance

    # -- life ------------------------------------------------------------------------------------------

    async def start(self, *, any_job: bool = True) -> None:
        """Say this process is alive and start looking at the queue; ``any_job``: start anyone's jobs, not only
        the ones this process admits (a terminal run's)."""
        self.any_job = any_job
        self._running = True
        try:
            await self._instances.beat(self.instance)
            await self._instances.forget_gone(older_than_s=FORGET_GONE_S)
        except StorageError as exc:
            log.warning("can't record this process in the database yet (%s); trying again shortly", exc)
        log.info("scheduler started as instance %s (%s jobs)", self.instance, "anyone's" if any_job else "its own")
        # The first look is over when start returns: what was waiting is claimed (and starting) by then.
        await asyncio.gather(*(self.dispatch(provider) for provider in self._capacities))
        self._ticker.start(self._tick)

    async def stop(self) -> None:
        """Stop claiming jobs (what this process claimed stays claimed until :meth:`leave`)."""
        self._running = False
        runners = list(self._runners.values())
        for runner in runners:  # cancelled with the look, not after it
            runner.cancel()
        await self._ticker.stop()
        await asyncio.gather(*runners, return_exceptions=True)
        for round_ in self._rounds.values():
            if not round_.done():
                round_.set_result(None)
        self._rounds.clear()
        self._sure.clear()

    async def leave(self) -> None:
        """This process stops (after its submissions stopped): the queued jobs whose turn it had wait for any
        process's turn again at once, and it is no longer counted alive. Storage trouble leaves them to be taken
        over once this process looks gone."""
        try:
            released = await self._queue.release(self.instance)
            await self._instances.leave(self.instance)
        except Exception as exc:  # storage trouble, or the database closed already: best effort
            log.warning("could not hand back this process's turns (%s); others take them over shortly", exc)
            return
        if released:
            log.info("handed back the turn of %d queued job(s)", released)

    # -- rounds ----------------------------------------------------------------------------------------

    def kick(self, provider: str, *, if_work: bool = False) -> asyncio.Future[None]:
        """Ask for a round of claims at ``provider``; the future is done when a round that began after this
        call has ended (rounds asked for while one runs are one more round). ``if_work``: the round may end at
        once when a look without a lock finds nothing to claim (unless another asked for it without)."""
        if not if_work:
            self._sure.add(provider)
        round_ = self._rounds.get(provider)
        if round_ is None:
            round_ = self._rounds[provider] = asyncio.get_running_loop().create_future()
        if not self._running:
            self._rounds.pop(provider, None)
            round_.set_result(None)
        elif provider not in self._runners:
            self._runners[provider] = asyncio.create_task(self._run(provider), name=f"queue[{provider}]:")
        return round_

    async def dispatch(self, provider: str) -> None:
        """Run a round of claims at ``provider`` now (joining one asked for already) and wait until it ends."""
        await asyncio.shield(self.kick(provider))

    def released(self, provider: str) -> asyncio.Future[None]:
        """A job left ``provider`` (done, failed, canceled) or the queue: its slot may start another (the future
        is done when the round asked for has ended)."""
        return self.kick(provider, if_work=True)

    async def _run(self, provider: str) -> None:
        try:
            while (round_ := self._rounds.pop(provider, None)) is not None:
                sure = provider in self._sure
                self._sure.discard(provider)
                try:
                    if sure or await self._has_work(provider):
                        await self._round(provider)
                except Exception:
                    log.exception("a round of claims at %s failed", provider)
                finally:
                    round_.set_result(None)
        finally:
            self._runners.pop(provider, None)

    async def _has_work(self, provider: str) -> bool:
        """Whether ``provider`` has a job this process may claim (storage trouble: assume so)."""
        try:
            return bool(
                await self._queue.providers_with_work(
                    owner=self.instance,
                    any_job=self.any_job,
                    gone_after_s=self._settings().process_timeout_s,
                    provider=provider,
                )
            )
        except StorageError:
            return True

    async def _round(self, provider: str) -> None:
        started = 0
        while True:
            settings = self._settings()
            try:
                claims = await self._queue.claim(
                    provider,
                    owner=self.instance,
                    cap=self.capacity(provider),
                    limit=CLAIMS_PER_TRANSACTION,
                    any_job=self.any_job,
                    gone_after_s=settings.process_timeout_s,
                    now=self._clock(),
                )
            except StorageError as exc:
                log.warning("can't look at the %s queue now (%s); trying again shortly", provider, exc)
                return
            for claim in claims:
                if claim.gone is not None:
                    log.info("job %s: taking over its turn from instance %s, which is gone", claim.job_id, claim.gone)
                self._start(claim.job_id)
            started += len(claims)
            if len(claims) < CLAIMS_PER_TRANSACTION:
                break
        if started:
            with contextlib.suppress(StorageError):  # only cards' places: they are told next time
                if moved := (await self.order(provider))[:MOVED_NOTICES]:
                    self._on_moved(moved)

    async def _tick(self) -> None:
        """Every ``queue_check_s``: say this process is alive, and claim what another process left to claim."""
        while True:
            await asyncio.sleep(self._settings().queue_check_s)  # (start made the first look)
            settings = self._settings()
            try:
                await self._instances.beat(self.instance)
                providers = await self._queue.providers_with_work(
                    owner=self.instance, any_job=self.any_job, gone_after_s=settings.process_timeout_s
                )
            except StorageError as exc:
                log.warning("can't look at the queue now (%s); trying again shortly", exc)
            except Exception:
                log.exception("looking at the queue failed; trying again shortly")
            else:
                for provider in providers:
                    self.kick(provider)

    # -- caps and places -------------------------------------------------------------------------------

    def set_capacities(self, capacities: dict[str, int]) -> None:
        """New caps (``/encore reload``): a raised cap starts waiting jobs now; under a lowered one the jobs at
        the provider finish, and no new one starts until they are under it."""
        self._capacities = dict(capacities)
        for provider in self._capacities:
            self.kick(provider)

    def capacity(self, provider: str) -> int:
        return self._capacities.get(provider, 0)

    async def order(self, provider: str) -> list[str]:
        """``provider``'s waiting jobs in the order they would start in (across every process)."""
        waiting = await self._queue.waiting(provider)
        return queue_order(waiting.jobs, waiting.served)

    async def position(self, job: Job) -> int | None:
        """1 for the next job its provider takes; None when the job isn't waiting."""
        if job.status != JobStatus.QUEUED or job.claimed_at is not None:
            return None
        order = await self.order(job.provider)
        return order.index(job.id) + 1 if job.id in order else None

    async def in_flight(self, provider: str) -> list[str]:
        """The jobs holding ``provider``'s slots now, in every process."""
        return await self._queue.in_flight(provider)
