"""The operator's pause (``/encore pause``): no new jobs until resumed; jobs in progress finish.

A pause is kept in the database (``bot_state``), so a restart stays paused, and announced on the ``pause``
channel (``bot.storage.notify``), so every process sharing the database refuses new jobs at once: each reads
the pause again when it hears of one (and when notices may have been lost).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.errors import StorageError
from bot.records import Pause
from bot.storage.notify import Notice, Notifier
from bot.storage.state_repo import StateRepo

log = logging.getLogger(__name__)

_PAUSE_KEY = "paused"  # in bot_state while the operator has paused new jobs
CHANNEL = "pause"


class PauseSwitch:
    def __init__(self, state: StateRepo | None, clock: Callable[[], float], notifier: Notifier | None = None) -> None:
        """``state``: where a pause is kept across restarts (None: in memory only); ``notifier``: how the other
        processes hear of a change."""
        self._state = state
        self._clock = clock
        self._notifier = notifier
        self.current: Pause | None = None
        if notifier is not None and state is not None:
            notifier.subscribe(CHANNEL, self._heard)

    @property
    def paused(self) -> bool:
        return self.current is not None

    async def load(self) -> None:
        """At startup: the pause kept from before, if any."""
        self.current = await self._stored()
        if self.current is not None:
            since = datetime.fromtimestamp(self.current.at, UTC).isoformat(timespec="seconds")
            log.warning(
                "new jobs are paused (since %s, by %s): /encore resume takes them again", since, self.current.by
            )

    async def _stored(self) -> Pause | None:
        stored = await self._state.get(_PAUSE_KEY) if self._state is not None else None
        return Pause.model_validate_json(stored) if stored else None

    async def _heard(self, notice: Notice) -> None:
        """A process paused or resumed (or notices may have been lost): read the pause again."""
        del notice
        stored = await self._stored()
        if (stored is None) != (self.current is None):
            log.warning("new jobs are %s (by another process)", "paused" if stored else "taken again")
        self.current = stored

    async def pause(self, *, by: int) -> Pause:
        """Refuse new jobs until :meth:`resume`. Pausing again keeps the first pause."""
        if self.current is not None:
            return self.current
        pause = Pause(by=by, at=self._clock())
        if self._state is not None:
            await self._state.put(_PAUSE_KEY, pause.model_dump_json(), now=pause.at)
        self.current = pause
        await self._announce()
        return pause

    async def resume(self) -> Pause | None:
        """Take new jobs again; returns the pause that ended (None: there was none)."""
        if self._state is not None:
            await self._state.delete(_PAUSE_KEY)
        previous, self.current = self.current, None
        await self._announce()
        return previous

    async def _announce(self) -> None:
        if self._notifier is None or self._state is None:
            return
        try:
            await self._notifier.publish(CHANNEL)
        except StorageError as exc:  # stored: the other processes read it again within [storage] recheck_s
            log.warning("the other processes will hear of the pause late: %s", exc)
