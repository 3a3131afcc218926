"""Leases: which process does what to a job when several share one database.

Each step that must happen in one process at a time holds a lease (a row in ``leases``, see
``bot.storage.leases_repo``): polling a job's prediction (:data:`Kind.POLL`), fetching its output
(:data:`Kind.FETCH`), delivering its card (:data:`Kind.DELIVER`, keyed by the card) and making its long call
(:data:`Kind.CALL`). A lease is taken by a conditional upsert (absent, already ours, or expired) and lasts
``[jobs] lease_s``; a keeper task renews every lease this process still uses every third of that, and gives up
those it no longer uses. A lease another process took meanwhile is lost: the step stops here (``on_lost``).

When a process dies its leases run out, and the keeper of every other process looks for work nobody holds
(``on_tick``: ``Reconcile.adopt_orphans``) and takes it over, as a restart would. A clean stop gives every lease
up at once, so a rolling restart hands jobs over without waiting. On SQLite (one process) the same code runs and
every take wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from enum import StrEnum

from bot.background import OwnedTask
from bot.errors import StorageError
from bot.storage.leases_repo import LeasesRepo
from bot.storage.notify import Notice, Notifier

log = logging.getLogger(__name__)

CLI_HOLDER = "cli:"  # the holder ids of `python -m bot generate` runs start with this
RELEASED_CHANNEL = "leases_released"  # notices: a process gave its leases up (a clean stop): take its work now


class Kind(StrEnum):
    POLL = "poll"  # key: a job id
    FETCH = "fetch"  # key: a job id
    DELIVER = "deliver"  # key: a card (a job id, or a batch id)
    CALL = "call"  # key: a job id


def new_holder(role: str = "bot") -> str:
    """An id for this process's leases: its role, host, process id and a random part (unique to this run)."""
    return f"{role}:{socket.gethostname()[:40]}:{os.getpid()}:{secrets.token_hex(3)}"


class Leases:
    def __init__(
        self,
        repo: LeasesRepo,
        *,
        holder: str,
        lease_s: Callable[[], float],
        clock: Callable[[], float],
        notifier: Notifier | None = None,
    ) -> None:
        """``lease_s()``: how long a lease lasts (``[jobs] lease_s``, read at each take); ``notifier``: tells the
        other processes when this one gives its leases up, and hears when they do."""
        self._repo = repo
        self.holder = holder
        self._lease_s = lease_s
        self._clock = clock
        self._held: dict[tuple[Kind, str], float] = {}  # (kind, key) -> until when we know we hold it
        self._uses: dict[Kind, Callable[[str], bool]] = {}
        self._lost: dict[Kind, Callable[[str], None]] = {}
        self._on_tick: Callable[[], Awaitable[object]] | None = None
        self._task = OwnedTask("leases")
        self._wake = asyncio.Event()
        self._notifier = notifier
        self._notifier_origin = notifier.origin if notifier is not None else ""
        if notifier is not None:
            notifier.subscribe(RELEASED_CHANNEL, self._heard_released)

    @property
    def repo(self) -> LeasesRepo:
        return self._repo

    def lease_s(self) -> float:
        """How long a lease lasts now (``[jobs] lease_s``)."""
        return self._lease_s()

    def track(self, kind: Kind, *, uses: Callable[[str], bool], on_lost: Callable[[str], None]) -> None:
        """Leases of ``kind`` are renewed while ``uses(key)`` says this process still uses them; ``on_lost(key)``
        hears of one another process took (this process must stop that step)."""
        self._uses[kind] = uses
        self._lost[kind] = on_lost

    # -- taking and giving up ------------------------------------------------------------------------------

    def holds(self, kind: Kind, key: str) -> bool:
        """This process holds the lease with more than a third of its time left (no need to ask again)."""
        until = self._held.get((kind, key))
        return until is not None and until - self._clock() > self._lease_s() / 3

    async def take(self, kind: Kind, key: str) -> bool:
        """Take the lease (or renew it, if ours). False: another process holds it."""
        now = self._clock()
        until = now + self._lease_s()
        won = key in await self._repo.take(kind, [key], holder=self.holder, until=until, now=now)
        if won:
            self._held[(kind, key)] = until
        else:
            self._held.pop((kind, key), None)
        return won

    async def take_all(self, kind: Kind, keys: Sequence[str]) -> set[str]:
        """Take (or renew) many leases at once, in as few statements as the database allows (a restart taking up
        thousands of jobs); returns the keys this process now holds."""
        now = self._clock()
        until = now + self._lease_s()
        won = await self._repo.take(kind, keys, holder=self.holder, until=until, now=now)
        for key in keys:
            if key in won:
                self._held[(kind, key)] = until
            else:
                self._held.pop((kind, key), None)
        return won

    async def hold(self, kind: Kind, key: str) -> bool:
        """Whether this process may go on with ``key``: the lease is known to be ours, or taken now."""
        return self.holds(kind, key) or await self.take(kind, key)

    def forget(self, kind: Kind, key: str) -> None:
        """Stop renewing a lease (the step is over); it runs out by itself."""
        self._held.pop((kind, key), None)

    async def release(self, kind: Kind, key: str) -> None:
        """Give a lease up now, so another process may take the step at once (best effort: else it runs out)."""
        if self._held.pop((kind, key), None) is None:
            return
        try:
            await asyncio.shield(self._repo.release(kind, key, holder=self.holder))
        except StorageError as exc:
            log.warning("could not give up the %s lease of %s (it runs out by itself): %s", kind, key, exc)

    @contextlib.asynccontextmanager
    async def claim(self, kind: Kind, key: str) -> AsyncIterator[bool]:
        """``async with leases.claim(kind, key) as mine:`` the lease for the block (renewed while it runs), given
        up at its end; ``mine`` is False when another process holds it (do nothing then)."""
        mine = await self.take(kind, key)
        try:
            yield mine
        finally:
            if mine:
                await self.release(kind, key)

    # -- the keeper ----------------------------------------------------------------------------------------

    def start(self, on_tick: Callable[[], Awaitable[object]] | None = None) -> None:
        """Renew the leases in use every third of the lease time; ``on_tick`` runs after each renewal (taking
        over work whose process is gone)."""
        self._on_tick = on_tick
        self._task.start(self._run)

    def poke(self) -> None:
        """Run the keeper's next round now (after a takeover, there may be more)."""
        self._wake.set()

    async def halt(self) -> None:
        """Stop the keeper (its takeovers too); the leases held stay held until :meth:`stop`."""
        await self._task.stop()

    async def stop(self) -> None:
        """Stop renewing and give up every lease of this process, so the others take its work over at once."""
        await self.halt()
        self._held.clear()
        try:
            released = await self._repo.release_all(self.holder)
            if released and self._notifier is not None:
                await self._notifier.publish(RELEASED_CHANNEL)  # the others' keepers look at once
        except Exception as exc:  # stopping goes on whatever the database says: the leases run out by themselves
            log.warning("could not give up this process's leases (they run out by themselves): %s", exc)

    async def _heard_released(self, notice: Notice) -> None:
        if notice.origin != self._notifier_origin:
            self.poke()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._lease_s() / 3):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.renew()
                if self._on_tick is not None:
                    await self._on_tick()
            except StorageError as exc:
                log.warning("leases not renewed (%s); trying again shortly", exc)
            except Exception:
                log.exception("the lease keeper's round failed")

    async def renew(self) -> None:
        """One round: renew every lease still in use, forget the others, report those another process took."""
        by_kind: dict[Kind, list[str]] = {}
        for kind, key in list(self._held):
            uses = self._uses.get(kind)
            if uses is None or uses(key):
                by_kind.setdefault(kind, []).append(key)
            else:
                self._held.pop((kind, key), None)
        for kind, keys in by_kind.items():
            until = self._clock() + self._lease_s()
            won = await self._repo.renew(kind, keys, holder=self.holder, until=until)
            for key in keys:
                if key in won:
                    if (kind, key) in self._held:  # not given up meanwhile
                        self._held[(kind, key)] = until
                elif self._held.pop((kind, key), None) is not None:
                    log.warning("another process took the %s lease of %s; leaving it to that one", kind, key)
                    if (on_lost := self._lost.get(kind)) is not None:
                        on_lost(key)
