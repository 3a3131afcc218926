"""An append-only log that tests can await: the simulator's way to synchronise without sleeping."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from .errors import SimulatorTimeoutError

T = TypeVar("T")


class Journal(Generic[T]):
    """Append-only list whose items can be awaited.

    ``await journal.wait(predicate, timeout_s=...)`` returns the first item at or after position ``since``
    that matches, whether it was appended before the call or arrives later.
    """

    def __init__(self, what: str, describe: Callable[[T], str] = repr) -> None:
        self._what = what
        self._describe = describe
        self._items: list[T] = []
        self._times: list[float] = []  # time.perf_counter() at each append (for the benchmark)
        self._waiters: list[tuple[Callable[[T], bool], asyncio.Future[T]]] = []

    def __len__(self) -> int:
        return len(self._items)

    @property
    def items(self) -> Sequence[T]:
        return tuple(self._items)

    def appended_at(self, index: int) -> float:
        """When item ``index`` was appended (``time.perf_counter()``)."""
        return self._times[index]

    def append(self, item: T) -> None:
        self._items.append(item)
        self._times.append(time.perf_counter())
        keep: list[tuple[Callable[[T], bool], asyncio.Future[T]]] = []
        for predicate, future in self._waiters:
            if future.done():
                continue
            try:
                matched = predicate(item)
            except Exception as exc:
                future.set_exception(exc)
                continue
            if matched:
                future.set_result(item)
            else:
                keep.append((predicate, future))
        self._waiters = keep

    def find(self, predicate: Callable[[T], bool], *, since: int = 0) -> T | None:
        for item in self._items[since:]:
            if predicate(item):
                return item
        return None

    async def wait(
        self,
        predicate: Callable[[T], bool],
        *,
        timeout_s: float,
        since: int = 0,
        looking_for: str = "",
    ) -> T:
        found = self.find(predicate, since=since)
        if found is not None:
            return found
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        entry = (predicate, future)
        self._waiters.append(entry)
        try:
            async with asyncio.timeout(timeout_s):
                return await future
        except TimeoutError:
            recent = [self._describe(item) for item in self._items[since:][-8:]]
            seen = "\n  ".join(recent) if recent else "(nothing)"
            raise SimulatorTimeoutError(
                f"timed out after {timeout_s}s waiting for {looking_for or self._what}; "
                f"last {self._what} seen:\n  {seen}"
            ) from None
        finally:
            if entry in self._waiters:
                self._waiters.remove(entry)
