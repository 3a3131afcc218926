"""The poller: the safety net that finds every job's outcome even when no webhook arrives.

Each job at the provider is polled with backoff (``poll_initial_s`` growing by ``poll_factor`` up
to ``poll_max_s``); with webhooks on, a job is first polled only after ``webhook_grace_s``. Without
webhooks, a job whose end can be foreseen (:meth:`Poller.expect`: its progress bar, or its model's recent
run times) is polled when it should end instead: once at the start of its window, then every fraction of a
second through it, then with backoff again if it runs late. Those polls go first when the limit holds polls
back, so the precision goes to the jobs about to finish. The schedule lives in memory and is rebuilt from
the database at startup, so it is never the truth, only a reminder. A limit on polls per second keeps a
large backlog under the provider's rate limit, and a job whose poll was still throttled (429) when the
client gave up waits out the ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from bot.background import OwnedTask
from bot.config import JobSettings
from bot.errors import StorageError
from bot.jobs.progress import EndWindow

log = logging.getLogger(__name__)

_MAX_BACK_OFF_S = 300.0
# A foreseen end is trusted this far ahead (or ``poll_max_s``, if longer): a job that fails early is still seen.
_TRUST_AHEAD_S = 30.0
# Polls spread over an end's window (so that many, at most one per _MIN_GAP_S, at least one per _MAX_GAP_S),
# the first half a gap into it.
_WINDOW_POLLS = 3
_MIN_GAP_S = 0.2
_MAX_GAP_S = 0.5


@dataclass
class _Entry:
    due: float
    interval: float
    generation: int
    precise: bool = False  # aimed at a foreseen end: goes first when polls are held back


class Poller:
    def __init__(
        self,
        poll: Callable[[str], Awaitable[bool]],
        settings: JobSettings,
        *,
        webhooks_on: bool,
        clock: Callable[[], float],
        max_polls_per_s: float = 40.0,
        concurrency: int = 16,
    ) -> None:
        """``poll(job_id)`` polls one job's prediction and says whether it still needs polling."""
        self._poll = poll
        self._settings = settings
        self._webhooks_on = webhooks_on
        self._clock = clock
        self._min_gap_s = 1.0 / max_polls_per_s
        self._concurrency = concurrency
        self._entries: dict[str, _Entry] = {}
        self._heap: list[tuple[float, int, str]] = []  # routine polls (backoff)
        self._precise: list[tuple[float, int, str]] = []  # polls aimed at a foreseen end
        self._windows: dict[str, EndWindow] = {}
        self._generation = 0
        self._wake = asyncio.Event()
        self._task = OwnedTask("poller")
        self._inflight: set[asyncio.Task[None]] = set()
        self._not_before: dict[str, float] = {}  # the provider asked us to wait (429 Retry-After)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._entries

    def schedule(self, job_id: str, *, due: float | None = None) -> None:
        """Poll ``job_id`` at ``due`` (default: after the first interval, or the webhook grace)."""
        now = self._clock()
        first = self._settings.webhook_grace_s if self._webhooks_on else self._settings.poll_initial_s
        self._push(job_id, now + first if due is None else due, self._settings.poll_initial_s)

    def configure(self, settings: JobSettings) -> None:
        """New intervals (``/encore reload``). They apply to the next poll of every job already scheduled: none
        waits longer than the new limit (``poll_max_s``, or the webhook grace with webhooks on)."""
        self._settings = settings
        limit = max(settings.poll_max_s, settings.webhook_grace_s) if self._webhooks_on else settings.poll_max_s
        now = self._clock()
        for job_id, entry in list(self._entries.items()):
            interval, due = min(entry.interval, settings.poll_max_s), min(entry.due, now + limit)
            if (interval, due) != (entry.interval, entry.due):
                self._push(job_id, due, interval, precise=entry.precise)
        self._wake.set()

    def unschedule(self, job_id: str) -> None:
        self._entries.pop(job_id, None)  # its heap item goes stale and is skipped
        self._not_before.pop(job_id, None)
        self._windows.pop(job_id, None)

    def expect(self, job_id: str, window: EndWindow | None) -> None:
        """When ``job_id``'s prediction should end (None: no idea); its next poll is planned by it (poll mode)."""
        if window is None:
            self._windows.pop(job_id, None)
        elif job_id in self._entries:
            self._windows[job_id] = window

    def back_off(self, job_id: str, delay_s: float) -> None:
        """Poll ``job_id`` again no sooner than ``delay_s`` from now (the provider's ``Retry-After``, at most
        ``_MAX_BACK_OFF_S``), whatever its own interval says."""
        until = self._clock() + min(delay_s, _MAX_BACK_OFF_S)
        self._not_before[job_id] = max(self._not_before.get(job_id, 0.0), until)

    def _push(self, job_id: str, due: float, interval: float, *, precise: bool = False) -> None:
        self._generation += 1
        self._entries[job_id] = _Entry(due=due, interval=interval, generation=self._generation, precise=precise)
        heapq.heappush(self._precise if precise else self._heap, (due, self._generation, job_id))
        self._wake.set()

    def _plan(self, job_id: str, entry: _Entry, now: float) -> tuple[float, float, bool]:
        """The next poll of a job still running: (when, backoff interval after it, aimed at its end)."""
        grown = min(self._settings.poll_max_s, entry.interval * self._settings.poll_factor)
        window = None if self._webhooks_on else self._windows.get(job_id)
        if window is None:
            return now + entry.interval, grown, False
        ahead = now + max(self._settings.poll_max_s, _TRUST_AHEAD_S)
        if window.rough:  # a guess: no use looking before it can have ended (within the usual limit), then as usual
            return min(max(now + entry.interval, window.earliest), now + self._settings.poll_max_s), grown, False
        gap = min(max((window.latest - window.earliest) / _WINDOW_POLLS, _MIN_GAP_S), _MAX_GAP_S)
        if window.look_at is not None and window.look_at > now:  # a look just before the bar can end
            due = window.look_at
            return (ahead, entry.interval, False) if due > ahead else (due, entry.interval, True)
        if now < window.earliest:  # not yet: come back when it may end
            due = window.earliest + gap / 2
            return (ahead, entry.interval, False) if due > ahead else (due, entry.interval, True)
        if now <= window.latest:  # within it: a few polls through it
            return now + gap, entry.interval, True
        # Late: back off in proportion to how late, up to the usual limit.
        late = now - window.latest
        return now + min(max(late / 2, _MIN_GAP_S), self._settings.poll_max_s), entry.interval, False

    def start(self) -> None:
        self._task.start(self._run)

    async def stop(self) -> None:
        polls = list(self._inflight)
        for poll in polls:  # cancelled with the loop, not after it
            poll.cancel()
        await self._task.stop()
        await asyncio.gather(*polls, return_exceptions=True)

    def _top(self, heap: list[tuple[float, int, str]]) -> float | None:
        """When the first live item of ``heap`` is due (stale items are dropped)."""
        while heap:
            due, generation, job_id = heap[0]
            entry = self._entries.get(job_id)
            if entry is None or entry.generation != generation:
                heapq.heappop(heap)  # stale
                continue
            return due
        return None

    def _pop_due(self, now: float) -> str | None:
        """The next job to poll: a poll aimed at a foreseen end first, then the others, each in order of due."""
        for heap in (self._precise, self._heap):
            due = self._top(heap)
            if due is not None and due <= now:
                return heapq.heappop(heap)[2]
        return None

    def _next_due(self) -> float | None:
        dues = [due for due in (self._top(self._precise), self._top(self._heap)) if due is not None]
        return min(dues, default=None)

    async def _run(self) -> None:
        slots = asyncio.Semaphore(self._concurrency)
        while True:
            self._wake.clear()
            job_id = self._pop_due(self._clock())
            if job_id is None:
                next_due = self._next_due()
                timeout = None if next_due is None else max(0.0, next_due - self._clock())
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._wake.wait()
                continue
            await slots.acquire()
            task = asyncio.create_task(self._poll_one(job_id, slots), name=f"poll:{job_id}")
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)
            await asyncio.sleep(self._min_gap_s)  # rate limit: spread polls out

    async def _poll_one(self, job_id: str, slots: asyncio.Semaphore) -> None:
        entry = self._entries.get(job_id)
        try:
            again = await self._poll(job_id)
        except StorageError as exc:  # the database refused the news: poll again later
            log.warning("poll of job %s not recorded: %s", job_id, exc)
            again = True
        except Exception:
            log.exception("poll of job %s crashed", job_id)
            again = True
        finally:
            slots.release()
        not_before = self._not_before.pop(job_id, 0.0)
        current = self._entries.get(job_id)
        if current is None or entry is None or current.generation != entry.generation:
            return  # unscheduled or rescheduled meanwhile
        if again:
            due, interval, precise = self._plan(job_id, entry, self._clock())
            self._push(job_id, max(due, not_before), interval, precise=precise and due >= not_before)
        else:
            self._entries.pop(job_id, None)
            self._windows.pop(job_id, None)
