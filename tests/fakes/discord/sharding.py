"""Guild sharding as Discord does it (developer docs, Gateway: Sharding, Get Gateway Bot).

A session that IDENTIFYs with ``shard: [shard_id, num_shards]`` gets the events of the guilds with
``(guild_id >> 22) % num_shards == shard_id``; events without a guild (DMs) go to shard 0 only. A session
without ``shard`` is shard ``[0, 1]``: every guild. A shard that would hold more than Discord's maximum of
guilds (2,500; configurable here) is refused with close code 4011, a malformed shard with 4010 (as is, for
a large bot, a shard count that is not a multiple of the one Discord gave it).

``GET /gateway/bot`` recommends a shard count (about one shard per 1,000 guilds, never so few that a
shard is over the maximum) and reports the session start limit, whose ``max_concurrency`` says how
many shards may IDENTIFY in the same 5 seconds: one per bucket ``shard_id % max_concurrency``.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from .clock import DISCORD_EPOCH_MS

#: Discord's limit: a shard (or an unsharded session) may hold at most this many guilds.
MAX_GUILDS_PER_SHARD = 2500
#: Discord recommends about one shard per this many guilds.
RECOMMENDED_GUILDS_PER_SHARD = 1000
#: Each bucket of ``max_concurrency`` may IDENTIFY once per this many seconds.
IDENTIFY_WINDOW_S = 5.0
#: Session starts a bot may make per day (Discord's default; ``remaining`` counts down with each IDENTIFY).
SESSION_START_TOTAL = 1000
DAY_S = 86_400.0

Shard = tuple[int, int]
UNSHARDED: Shard = (0, 1)


def shard_of(guild_id: int | None, shard_count: int) -> int:
    """The shard that gets ``guild_id``'s events (a DM's, with no guild: shard 0)."""
    return 0 if guild_id is None else (guild_id >> 22) % shard_count


def guild_id_on_shard(shard_id: int, shard_count: int, index: int = 0) -> int:
    """A guild id (a snowflake from 2020, so it never meets the simulator's own ids) that lands on ``shard_id``
    of ``shard_count``; ``index`` makes distinct ones."""
    if not 0 <= shard_id < shard_count:
        raise ValueError(f"shard {shard_id} is not one of {shard_count}")
    base_ms = 1_577_836_800_000 - DISCORD_EPOCH_MS  # 2020-01-01
    ms = base_ms + index * shard_count
    ms += (shard_id - ms % shard_count) % shard_count
    return (ms << 22) | (1 << 17) | index


def parse_shard(value: Any) -> Shard | None:
    """IDENTIFY's ``shard`` as ``(shard_id, num_shards)``; absent is ``(0, 1)``; None if Discord refuses it."""
    if value is None:
        return UNSHARDED
    if not isinstance(value, list) or len(value) != 2:
        return None
    shard_id, count = value
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (shard_id, count)):
        return None
    if count < 1 or not 0 <= shard_id < count:
        return None
    return (shard_id, count)


def recommended_shards(guild_ids: Iterable[int], *, per_shard: int, max_per_shard: int, multiple: int = 1) -> int:
    """Discord's recommendation: about ``per_shard`` guilds a shard, no shard over ``max_per_shard``, and for a
    large bot a multiple of the count Discord gave it."""
    if max_per_shard < 1 or per_shard < 1 or multiple < 1:
        raise ValueError("a shard holds at least one guild, and the counts are at least 1")
    ids = list(guild_ids)
    count = max(1, math.ceil(len(ids) / per_shard))
    count = math.ceil(count / multiple) * multiple
    while ids and max(Counter(shard_of(g, count) for g in ids).values()) > max_per_shard:
        count += multiple
    return count
