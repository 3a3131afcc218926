"""Gateway shards: the identify rate Discord allows, each shard's health, and a refused shard as one line.

Encore is an :class:`discord.AutoShardedClient`: ``[discord] shard_count`` shards across all processes (0:
as many as Discord recommends in ``GET /gateway/bot``), of which this process connects ``shard_ids`` (empty:
all). Each shard gets only its servers' events and interactions, ``(guild_id >> 22) % shard_count``, and DMs
go to shard 0; posting is REST, so any process can post anywhere (see ``bot.discord.send``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable

import discord

from bot.config import DiscordSettings
from bot.errors import StartupError
from bot.web.ops import ShardState

log = logging.getLogger(__name__)

# Discord lets ``max_concurrency`` shards IDENTIFY per 5 s: one per bucket ``shard_id % max_concurrency``.
IDENTIFY_WINDOW_S = 5.0
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011


class IdentifyGate:
    """Spaces this process's IDENTIFYs as Discord asks: at most one per bucket per 5 s, buckets in parallel.

    discord.py's own hook sleeps 5 s before every IDENTIFY but the first, whatever ``max_concurrency`` is;
    this waits only when the same bucket identified less than 5 s ago. (Discord answers an IDENTIFY that is
    too soon with op 9, and discord.py identifies again, through here.)
    """

    def __init__(self, *, max_concurrency: int = 1, clock: Callable[[], float] = time.monotonic) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self._clock = clock
        self._last: dict[int, float] = {}
        self._locks: dict[int, asyncio.Lock] = {}

    async def wait_turn(self, shard_id: int) -> None:
        bucket = shard_id % self.max_concurrency
        async with self._locks.setdefault(bucket, asyncio.Lock()):
            last = self._last.get(bucket)
            if last is not None and (wait_s := last + IDENTIFY_WINDOW_S - self._clock()) > 0:
                log.info("shard %d waits %.1f s to identify (Discord's identify rate)", shard_id, wait_s)
                await asyncio.sleep(wait_s)
            self._last[bucket] = self._clock()


def shard_states(client: discord.AutoShardedClient) -> dict[int, ShardState]:
    """Each shard this process holds: up when the client is ready and the shard's websocket is open.

    Before the shard count is known (asked of Discord at connect) there is nothing to report: not up.
    """
    if client.shard_count is None:
        return {}
    ready = client.is_ready() and not client.is_closed()
    states: dict[int, ShardState] = {}
    for shard_id in client.shard_ids or range(client.shard_count):
        shard = client.get_shard(shard_id)
        if shard is None:  # not launched yet
            states[shard_id] = ShardState(up=False)
            continue
        latency = shard.latency
        states[shard_id] = ShardState(
            up=ready and not shard.is_closed(), latency_s=latency if math.isfinite(latency) else None
        )
    return states


def refused(exc: discord.ConnectionClosed, settings: DiscordSettings, recommended: int | None) -> StartupError | None:
    """Discord closed a shard for good with ``exc``: what to set, in one line (None: not a shard problem)."""
    shard = f"shard {exc.shard_id}" if exc.shard_id is not None else "the gateway connection"
    count = settings.shard_count
    advice = f"Discord recommends {recommended}" if recommended else "GET /gateway/bot says how many Discord recommends"
    if exc.code == CLOSE_SHARDING_REQUIRED:
        if count:
            what = f"[discord] shard_count = {count} is too few"
            fix = f"set shard_count to at least {recommended}" if recommended else "set a larger shard_count"
            return StartupError(
                f"Discord refused {shard} (4011 sharding required): the bot is in too many servers for one "
                f"shard to hold (at most 2,500 each) and {what}; {fix} ({advice}), or set shard_count = 0 to "
                "use Discord's recommendation"
            )
        return StartupError(
            f"Discord refused {shard} (4011 sharding required): the bot joined servers faster than Discord's "
            f"recommendation ({advice}) kept up with; start again, or set [discord] shard_count higher"
        )
    if exc.code == CLOSE_INVALID_SHARD:
        return StartupError(
            f"Discord refused {shard} (4010 invalid shard): [discord] shard_count = {count} with shard_ids "
            f"{settings.shard_ids or 'all'} is not a sharding Discord accepts for this bot (a large bot must run "
            f"a multiple of the shard count Discord gave it); set shard_count = 0 to use Discord's ({advice})"
        )
    return None
