"""The one retry policy of every provider call, on top of ``tenacity``.

Which failures are retried is the caller's to say, because only the caller knows whether trying again is
safe: a read or a cancel may be repeated on any 429, 5xx, timeout or dropped connection; a create (or a
file upload) only when its answer proves nothing was made (a 429, a connection that never opened).

How long to wait is the same everywhere: capped exponential backoff with jitter (the ``n``-th retry waits
between half and all of ``min(max_s, base_s * 2**n)``), except that a ``Retry-After`` the provider sent
wins, up to ``retry_after_max_s``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TypeVar

import tenacity

from bot.errors import ProviderRateLimitError

log = logging.getLogger(__name__)

T = TypeVar("T")
# Whether this failure may be retried (it is re-raised as it is when not, or after the last try).
RetryIf = Callable[[BaseException], bool]


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """A ``Retry-After`` header (seconds or an HTTP date) as seconds from now; None if absent or unreadable."""
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # an HTTP date is always GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """``retries`` tries after the first (a provider's ``max_retries``), waiting as the module says."""

    retries: int
    base_s: float
    max_s: float
    retry_after_max_s: float
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep

    def wait_s(self, retry: int, error: BaseException | None) -> float:
        """How long to wait before retry number ``retry`` (0 for the first) after ``error``."""
        if isinstance(error, ProviderRateLimitError) and error.retry_after_s is not None:
            return min(error.retry_after_s, self.retry_after_max_s)
        ceiling = min(self.max_s, self.base_s * 2**retry)
        return random.uniform(ceiling / 2, ceiling)  # noqa: S311 - jitter, not crypto

    def _wait(self, state: tenacity.RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome is not None else None
        return self.wait_s(state.attempt_number - 1, error)

    async def call(self, attempt: Callable[[], Awaitable[T]], *, retry_if: RetryIf, what: str) -> T:
        """``attempt()`` until it returns, or fails in a way ``retry_if`` refuses, or the retries are spent;
        then its last exception is raised unchanged. ``what`` names the call in the logs.

        The first try is made directly: almost every call succeeds at once, and tenacity's machinery costs about
        0.1 ms of CPU a call (a poll's fifth). Only a failure worth retrying enters it, as its first attempt.
        """
        try:
            return await attempt()
        except Exception as exc:
            if self.retries < 1 or not retry_if(exc):
                raise
            first: list[BaseException] = [exc]

        def before_sleep(state: tenacity.RetryCallState) -> None:
            error = state.outcome.exception() if state.outcome is not None else None
            log.info("%s failed (%s); retrying in %.2f s", what, _describe(error), state.upcoming_sleep)

        retrying = tenacity.AsyncRetrying(
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=self._wait,
            retry=tenacity.retry_if_exception(retry_if),
            before_sleep=before_sleep,
            reraise=True,
            sleep=self.sleep,
        )

        async def once() -> T:  # a coroutine function, so tenacity awaits what ``attempt`` returns
            if first:
                raise first.pop()  # the first try, made above: tenacity waits and logs as if it had made it
            return await attempt()

        return await retrying(once)


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "no error"
    return str(error) or type(error).__name__
