"""Notices between processes: on SQLite in this process, on PostgreSQL through LISTEN/NOTIFY between notifiers
of their own (as separate processes have), sent at commit, and heard again after the listening connection is
cut by the server."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from bot.storage.backend import Backend
from bot.storage.notify import LocalNotifier, Notice, Notifier, PostgresNotifier, notifier_for
from bot.storage.postgres import PostgresDatabase
from tests.conftest import StorageBackend

WAIT_S = 10.0


class Heard:
    """What one subscriber heard, to await."""

    def __init__(self, notifier: Notifier, channel: str) -> None:
        self.notices: asyncio.Queue[Notice] = asyncio.Queue()
        notifier.subscribe(channel, self._heard)

    async def _heard(self, notice: Notice) -> None:
        await self.notices.put(notice)

    async def next(self) -> Notice:
        async with asyncio.timeout(WAIT_S):
            return await self.notices.get()

    async def next_sent(self) -> Notice:
        """The next notice someone sent (not a periodic "read everything again")."""
        while (notice := await self.next()).missed:
            pass
        return notice


@pytest.fixture
async def notifier(db: Backend) -> AsyncIterator[Notifier]:
    notifier = notifier_for(db, "process-a", recheck_s=3600)
    await notifier.start()
    yield notifier
    await notifier.stop()


@pytest.mark.both_backends
async def test_a_notice_reaches_every_subscriber_of_its_channel_in_order(notifier: Notifier) -> None:
    order: list[str] = []

    async def first(notice: Notice) -> None:
        order.append(f"first:{notice.payload}")

    async def failing(notice: Notice) -> None:
        raise RuntimeError("a broken handler")

    notifier.subscribe("pause", first)
    notifier.subscribe("pause", failing)  # logged; the others still hear
    pause = Heard(notifier, "pause")
    settings = Heard(notifier, "guild_settings")
    await notifier.publish("guild_settings", "123")
    await notifier.publish("pause", "on")
    assert (await pause.next_sent()).payload == "on"
    assert order == ["first:on"]  # earlier subscribers were done first
    notice = await settings.next_sent()
    assert (notice.channel, notice.payload, notice.origin) == ("guild_settings", "123", "process-a")
    with pytest.raises(ValueError, match="channel"):
        await notifier.publish("no spaces please")
    with pytest.raises(ValueError, match="payload"):
        await notifier.publish("pause", "x" * 5000)


def test_sqlite_keeps_notices_in_this_process(db: Backend) -> None:
    assert isinstance(notifier_for(db, "p"), LocalNotifier)


@pytest.fixture
def postgres(backend: StorageBackend) -> StorageBackend:
    if backend.url is None:
        pytest.skip("PostgreSQL only")
    return backend


@contextlib.asynccontextmanager
async def other_process(
    backend: StorageBackend, tmp_path: Path, *, recheck_s: float
) -> AsyncIterator[PostgresNotifier]:
    """A second process's database and notifier (a pool of its own, a listening connection of its own)."""
    db = backend.database(tmp_path / "unused.sqlite3")
    assert isinstance(db, PostgresDatabase)
    await db.open(migrate=False)
    other = PostgresNotifier(db, "process-b", recheck_s=recheck_s)
    try:
        await other.start()
        yield other
    finally:
        await other.stop()
        await db.close()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_another_process_hears_a_notice_when_its_transaction_commits(
    postgres: StorageBackend, db: Backend, notifier: Notifier, tmp_path: Path
) -> None:
    async with other_process(postgres, tmp_path, recheck_s=3600) as other:
        heard = Heard(other, "pause")

        async def undone() -> None:
            async with db.transaction():
                await notifier.publish("pause", "rolled back")
                raise RuntimeError("the change is undone")

        with pytest.raises(RuntimeError):
            await undone()
        async with db.transaction():
            await notifier.publish("pause", "committed")
            await db.write("INSERT INTO bot_state (key, value, updated_at) VALUES ('paused', 'x', 0)")
        notice = await heard.next_sent()
        assert (notice.payload, notice.origin) == ("committed", "process-a")  # the rolled-back one never came
        assert heard.notices.empty()


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_a_lost_listening_connection_is_made_again_and_nothing_is_missed(
    postgres: StorageBackend, notifier: Notifier, tmp_path: Path
) -> None:
    """The server cuts the listening connection (a restart, a failover, an idle timeout): the notifier makes it
    again and has every subscriber read everything again (what was sent meanwhile was lost), then hears on."""
    async with other_process(postgres, tmp_path, recheck_s=3600) as other:
        heard = Heard(other, "pause")
        old_pid = other.backend_pid
        assert old_pid is not None
        assert postgres.url is not None
        admin = await asyncpg.connect(postgres.url)
        try:
            assert await admin.fetchval("SELECT pg_terminate_backend($1)", old_pid)
        finally:
            await admin.close()
        await notifier.publish("pause", "sent while nobody listened, maybe")
        # Either it came through (if the connection was back already) or a "read everything again" does.
        first = await heard.next()
        assert first.missed or first.payload == "sent while nobody listened, maybe"
        while not first.missed:
            first = await heard.next()
        assert other.reconnects == 1
        assert other.backend_pid not in (None, old_pid)
        await notifier.publish("pause", "after")
        while (notice := await heard.next_sent()).payload != "after":
            assert notice.payload == "sent while nobody listened, maybe"  # it came after all, once


@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_every_recheck_has_subscribers_read_again(postgres: StorageBackend, tmp_path: Path) -> None:
    async with other_process(postgres, tmp_path, recheck_s=0.05) as other:
        heard = Heard(other, "guild_settings")
        for _ in range(2):
            notice = await heard.next()
            assert notice.missed
            assert notice.channel == "guild_settings"
        assert other.reconnects == 0
