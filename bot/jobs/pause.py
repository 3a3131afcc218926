"""The operator's pause (``/encore pause``): no new jobs until resumed; jobs in progress finish.

A pause is kept in the database (``bot_state``), so a restart stays paused.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime

from bot.records import Pause
from bot.storage.state_repo import StateRepo

log = logging.getLogger(__name__)

_PAUSE_KEY = "paused"  # in bot_state while the operator has paused new jobs


class PauseSwitch:
    def __init__(self, state: StateRepo | None, clock: Callable[[], float]) -> None:
        """``state``: where a pause is kept across restarts (None: in memory only)."""
        self._state = state
        self._clock = clock
        self.current: Pause | None = None

    @property
    def paused(self) -> bool:
        return self.current is not None

    async def load(self) -> None:
        """At startup: the pause kept from before, if any."""
        stored = await self._state.get(_PAUSE_KEY) if self._state is not None else None
        self.current = Pause.model_validate_json(stored) if stored else None
        if self.current is not None:
            since = datetime.fromtimestamp(self.current.at, UTC).isoformat(timespec="seconds")
            log.warning(
                "new jobs are paused (since %s, by %s): /encore resume takes them again", since, self.current.by
            )

    async def pause(self, *, by: int) -> Pause:
        """Refuse new jobs until :meth:`resume`. Pausing again keeps the first pause."""
        if self.current is not None:
            return self.current
        pause = Pause(by=by, at=self._clock())
        if self._state is not None:
            await self._state.put(_PAUSE_KEY, pause.model_dump_json(), now=pause.at)
        self.current = pause
        return pause

    async def resume(self) -> Pause | None:
        """Take new jobs again; returns the pause that ended (None: there was none)."""
        if self._state is not None:
            await self._state.delete(_PAUSE_KEY)
        previous, self.current = self.current, None
        return previous
