"""What the terminal gets from ``python -m bot``: exit codes, sizes and ages people read, errors as a
terminal shows them, and a hint naming what the operator should fix."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from bot.errors import BotError
from bot.jobs.limits import LimitError
from bot.provider_health import provider_health
from bot.providers.registry import PROVIDERS
from bot.records import Job, JobStatus

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def human_size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def human_age(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


def _terminal_moment(moment: datetime) -> str:
    """When a limit lifts, for a terminal: "in 5h 12m (at 00:00 UTC)"."""
    left = max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return f"in {human_age(left)} (at {moment.astimezone(UTC):%H:%M} UTC)"


def terminal_message(exc: BotError) -> str:
    """An error's message as a terminal shows it (times in plain text, no Discord markup)."""
    return exc.render(_terminal_moment) if isinstance(exc, LimitError) else exc.user_message


_OUTAGES = frozenset({"unavailable", "connection", "timeout", "uncertain", "rate_limited", "error"})


def failure_hint(members: Sequence[Job], *, verbose: bool) -> str | None:
    """In a terminal the user is the operator: name what to fix when a provider refused or failed us."""
    for provider in sorted({m.provider for m in members if m.status == JobStatus.FAILED}):
        health = provider_health(provider)
        if health.last_error_at is None or (health.last_ok_at or 0) > health.last_error_at:
            continue  # the provider answered fine: the job itself was the problem, and its reason says so
        declared = PROVIDERS.get(provider)  # what it is called, and the key the operator sets for it
        service = declared.title if declared else provider
        if health.last_error == "auth" and declared and declared.key_env:
            return f"{declared.key_env} was refused by {service}: set it to a valid key and try again"
        if health.last_error in _OUTAGES and not verbose:
            return f"no good answer from {service} ({health.last_error}); run again with --verbose to see why"
    return None
