"""What ``/healthz`` says of each provider: when Encore last had a good answer from it, and its last error.

Recorded by :func:`bot.metrics.provider_call` for every provider HTTP call; kept for the life of the process.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

# Error kinds after which the provider itself is fine: it answered, the request was the problem.
_ANSWERED_KINDS = frozenset({"input", "not_found", "busy"})


@dataclass
class ProviderHealth:
    """What ``/healthz`` reports per provider (wall-clock times, Unix seconds)."""

    last_ok_at: float | None = None
    last_error_at: float | None = None
    last_error: str | None = None


_HEALTH: dict[str, ProviderHealth] = {}


def provider_health(provider: str) -> ProviderHealth:
    return _HEALTH.get(provider) or ProviderHealth()


def record_outcome(provider: str, error: str | None) -> None:
    """One call to ``provider`` ended: fine (``error`` None), or with an error of that kind."""
    health = _HEALTH.setdefault(provider, ProviderHealth())
    if error is None or error in _ANSWERED_KINDS:
        health.last_ok_at = time.time()
    else:
        health.last_error_at = time.time()
        health.last_error = error
