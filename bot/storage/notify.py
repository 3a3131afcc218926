"""Notices between Encore's processes: a change one process stores (a pause, a server's settings, a reload, new
work) reaches every process sharing the database promptly.

A :class:`Notifier` carries short notices on named channels (``"pause"``, ``"guild_settings"``, ...).
``publish(channel, payload)`` sends one to every subscriber of the channel in every process, this one included
(``Notice.origin`` says which process sent it); ``subscribe(channel, handler)`` registers an async handler.
A notice is a hint, never the data: its handler reads what changed from the database. So a notice that is lost
costs only time: after the connection that hears them was lost, and every ``recheck_s`` besides, each handler
is called with a notice marked ``missed`` (read everything again).

- SQLite (:class:`LocalNotifier`): one process; notices go from publisher to subscribers in memory.
- PostgreSQL (:class:`PostgresNotifier`): ``NOTIFY`` on one channel (:data:`PG_CHANNEL`; the notice's own
  channel travels in its payload), heard by ``LISTEN`` on a connection of the notifier's own (asyncpg's
  ``add_listener``), made again when it is lost. A notice published inside a transaction is sent when the
  transaction commits, so its subscribers read what it wrote (and not at all if it rolls back).

Handlers run one notice at a time, in the order they subscribed; one that fails is logged and the others still
run. Channel names are short words (letters, digits, ``_ . : -``); payloads a few hundred bytes at most.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg

from bot.background import OwnedTask
from bot.storage.backend import Backend
from bot.storage.postgres import PostgresDatabase
from bot.storage.postgres_values import connection_lost

log = logging.getLogger(__name__)

PG_CHANNEL = "encore"  # the one PostgreSQL channel every notice travels on
MAX_PAYLOAD_BYTES = 4000  # PostgreSQL takes up to 8000 bytes a notice, the envelope included
_CHANNEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_.:-]{0,62}$")
_RETRY_FIRST_S = 0.1  # a lost connection is made again after this long, doubling up to _RETRY_MAX_S
_RETRY_MAX_S = 5.0
_PING_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Notice:
    channel: str
    payload: str = ""
    origin: str = ""  # the process that published it ("" for a missed notice)
    missed: bool = False  # notices may have been lost: read everything again


Handler = Callable[[Notice], Awaitable[None]]


class Notifier(Protocol):
    """What the rest of Encore uses of a notifier (both backends)."""

    origin: str

    def subscribe(self, channel: str, handler: Handler) -> None: ...

    async def publish(self, channel: str, payload: str = "") -> None: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


def _checked(channel: str, payload: str) -> None:
    if not _CHANNEL_NAME.match(channel):
        raise ValueError(f"not a channel name: {channel!r}")
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"a notice's payload is at most {MAX_PAYLOAD_BYTES} bytes")


class _Dispatcher:
    """Subscribers, and the one task that hands them notices in order."""

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._handlers: dict[str, list[Handler]] = {}
        self._queue: asyncio.Queue[Notice] = asyncio.Queue()
        self._task = OwnedTask("notices")

    def subscribe(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with every notice on ``channel`` (after the handlers that subscribed before it)."""
        _checked(channel, "")
        self._handlers.setdefault(channel, []).append(handler)

    def _hand_over(self, notice: Notice) -> None:
        if notice.channel in self._handlers:
            self._queue.put_nowait(notice)

    def _missed_everywhere(self) -> None:
        """Every subscriber reads everything again (notices may have been lost)."""
        for channel in self._handlers:
            self._queue.put_nowait(Notice(channel, missed=True))

    async def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        await self._task.stop()

    async def _run(self) -> None:
        while True:
            notice = await self._queue.get()
            for handler in list(self._handlers.get(notice.channel, ())):
                try:
                    await handler(notice)
                except Exception:
                    log.exception("a handler of %s notices failed", notice.channel)


class LocalNotifier(_Dispatcher):
    """One process (SQLite): a notice goes straight to this process's subscribers."""

    async def publish(self, channel: str, payload: str = "") -> None:
        _checked(channel, payload)
        self._hand_over(Notice(channel, payload, self.origin))


class PostgresNotifier(_Dispatcher):
    """Several processes on one PostgreSQL: ``NOTIFY`` to send, ``LISTEN`` on a connection of its own to hear."""

    def __init__(
        self,
        db: PostgresDatabase,
        origin: str,
        *,
        recheck_s: float = 30.0,
        connect_timeout_s: float = 10.0,
    ) -> None:
        super().__init__(origin)
        self._db = db
        self.recheck_s = recheck_s
        self._connect_timeout_s = connect_timeout_s
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._supervisor = OwnedTask("notices-listen")
        self.reconnects = 0  # how often the listening connection was made again

    @property
    def backend_pid(self) -> int | None:
        """The server process of the listening connection (None while there is none)."""
        connection = self._connection
        return None if connection is None or connection.is_closed() else connection.get_server_pid()

    async def publish(self, channel: str, payload: str = "") -> None:
        """Send a notice to every process (in the current task's transaction, if any: sent when it commits).
        Raises a :class:`~bot.errors.StorageError` if the database can't take it."""
        _checked(channel, payload)
        body = json.dumps({"c": channel, "p": payload, "o": self.origin}, separators=(",", ":"))
        await self._db.read("SELECT pg_notify(?, ?)", (PG_CHANNEL, body))

    async def start(self) -> None:
        """Start listening (at once if the server answers; else a task keeps trying) and handing out notices."""
        await super().start()
        try:
            await self._connect()
        except Exception as exc:
            if not _connection_trouble(exc):
                raise
            log.warning("can't listen for other processes' notices yet (%s); trying again", exc)
        self._supervisor.start(self._supervise)

    async def stop(self) -> None:
        await self._supervisor.stop()
        await self._close()
        await super().stop()

    async def _connect(self) -> None:
        connection = await asyncpg.connect(
            self._db.url,
            timeout=self._connect_timeout_s,  # type: ignore[arg-type]  # asyncpg takes any number of seconds
            server_settings={"application_name": f"{self._db.application_name} listen"[:63]},
        )
        try:
            connection.add_termination_listener(self._on_termination)
            await connection.add_listener(PG_CHANNEL, self._on_notify)
        except BaseException:
            connection.terminate()
            raise
        self._lost.clear()
        self._connection = connection

    async def _close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                async with asyncio.timeout(_PING_TIMEOUT_S):
                    await connection.close()
            except Exception:  # closing a connection that is going anyway
                connection.terminate()

    def _on_termination(self, connection: Any) -> None:
        if connection is self._connection:
            self._lost.set()

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            body = json.loads(payload)
            notice = Notice(str(body["c"]), str(body.get("p", "")), str(body.get("o", "")))
        except (ValueError, KeyError, TypeError):
            log.warning("ignoring a notice that isn't Encore's: %.100r", payload)
            return
        self._hand_over(notice)

    async def _supervise(self) -> None:
        """Keep the listening connection: make it again when it is lost (then every subscriber reads everything
        again: notices sent meanwhile were lost), and every ``recheck_s`` check it answers and have every
        subscriber read everything again (a notice may have been lost without the connection noticing)."""
        delay = _RETRY_FIRST_S
        while True:
            if self._connection is None or self._connection.is_closed():
                self._connection = None
                try:
                    await self._connect()
                except Exception as exc:
                    if not _connection_trouble(exc):
                        raise
                    log.warning("can't listen for other processes' notices (%s); trying again in %.1f s", exc, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _RETRY_MAX_S)
                    continue
                delay = _RETRY_FIRST_S
                self.reconnects += 1
                log.info("listening for other processes' notices again")
                self._missed_everywhere()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.recheck_s):
                    await self._lost.wait()
            if self._lost.is_set():
                log.warning("the connection that hears other processes' notices was lost; making it again")
                await self._close()
                continue
            if await self._answers():
                self._missed_everywhere()
            else:
                await self._close()

    async def _answers(self) -> bool:
        connection = self._connection
        if connection is None:
            return False
        try:
            async with asyncio.timeout(_PING_TIMEOUT_S):
                await connection.fetchval("SELECT 1")
        except Exception as exc:
            if not _connection_trouble(exc):
                raise
            log.warning("the connection that hears other processes' notices doesn't answer (%s)", exc)
            return False
        return True


def _connection_trouble(exc: BaseException) -> bool:
    return connection_lost(exc) or isinstance(exc, asyncpg.PostgresError | asyncpg.InterfaceError)


def notifier_for(db: Backend, origin: str, *, recheck_s: float = 30.0) -> Notifier:
    """The notifier that goes with ``db``: across processes on PostgreSQL, in this process on SQLite."""
    if isinstance(db, PostgresDatabase):
        return PostgresNotifier(db, origin, recheck_s=recheck_s, connect_timeout_s=db.connect_timeout_s)
    return LocalNotifier(origin)
