"""Self-tests of the Discord simulator, part 3: sharding as Discord does it.

Guilds are on shard ``(guild_id >> 22) % num_shards``; READY lists only a shard's guilds and only its
events reach it; DMs go to shard 0; ``GET /gateway/bot`` recommends a shard count; a malformed shard is
refused with 4010 and a session holding too many guilds with 4011. The clients are the real discord.py
``AutoShardedClient`` (one process holding several shards, or one shard each as separate processes would)
and the plain, unsharded ``Client``.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import aiohttp
import discord
import pytest
from discord import app_commands

from tests.fakes.discord import DiscordSimulator, GuildConfig, MemberConfig, SimulatorError
from tests.fakes.discord.gateway import CLOSE_INVALID_SHARD, CLOSE_SHARDING_REQUIRED, IDENTIFY, INVALID_SESSION
from tests.fakes.discord.sharding import guild_id_on_shard, parse_shard, recommended_shards, shard_of


def on_shard(shard_id: int, count: int, index: int, name: str | None = None) -> GuildConfig:
    """A guild on ``shard_id`` of ``count`` with members alice (everywhere) and a member of its own."""
    gid = guild_id_on_shard(shard_id, count, index)
    return GuildConfig(
        name=name or f"guild {index} (shard {shard_id}/{count})",
        id=gid,
        members=[MemberConfig("alice", id=ALICE), MemberConfig(f"member{index}")],
    )


ALICE = 1_000_000_000_000_001  # one user, a member of every guild here


class ShardedProbe(discord.AutoShardedClient):
    """A sharded client with a global ``/where`` command that answers with its name; it records every message
    and interaction it gets."""

    def __init__(self, name: str, **options: Any) -> None:
        super().__init__(intents=discord.Intents.default(), **options)
        self.name = name
        self.tree = app_commands.CommandTree(self)
        self.messages: list[discord.Message] = []
        self.interactions: list[discord.Interaction[Any]] = []
        self._new_message = asyncio.Event()

        @self.tree.command(name="where", description="Which client answers")
        async def where(interaction: discord.Interaction[Any]) -> None:
            await interaction.response.send_message(
                f"{self.name} on shard {interaction.guild and interaction.guild.shard_id}"
            )

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py waits 5 s before each shard's IDENTIFY but the first; the simulator doesn't need it
        unless told to enforce the identify rate."""

    async def setup_hook(self) -> None:
        await self.tree.sync()

    async def on_message(self, message: discord.Message) -> None:
        self.messages.append(message)
        self._new_message.set()

    def saw(self, message_id: int) -> bool:
        return any(m.id == message_id for m in self.messages)

    async def wait_for_message(self, message_id: int) -> None:
        async with asyncio.timeout(5):
            while not self.saw(message_id):
                self._new_message.clear()
                await self._new_message.wait()

    async def on_interaction(self, interaction: discord.Interaction[Any]) -> None:
        self.interactions.append(interaction)


@pytest.fixture
def four_guilds() -> list[GuildConfig]:
    return [on_shard(0, 2, 0), on_shard(1, 2, 1), on_shard(0, 2, 2), on_shard(1, 2, 3)]


def ready_frames(sim: DiscordSimulator) -> dict[tuple[int, int], dict[str, Any]]:
    """READY of each shard's session, by shard."""
    return {shard: next(f["d"] for f in s.frames if f["t"] == "READY") for shard, s in sim.gateway.shards.items()}


# ---------------------------------------------------------------------------------------------- the rules


def test_the_sharding_formula_and_the_ids_made_for_a_shard() -> None:
    assert shard_of(None, 4) == 0  # a DM
    assert shard_of(41771983423143937, 1) == 0
    assert shard_of(41771983423143937, 2) == (41771983423143937 >> 22) % 2
    made = [guild_id_on_shard(shard, 3, index) for shard in range(3) for index in range(5)]
    assert len(set(made)) == len(made)
    assert [shard_of(g, 3) for g in made] == [s for s in range(3) for _ in range(5)]
    with pytest.raises(ValueError, match="not one of"):
        guild_id_on_shard(3, 3)


def test_identify_shards_discord_accepts_and_refuses() -> None:
    assert parse_shard(None) == (0, 1)
    assert parse_shard([0, 1]) == (0, 1)
    assert parse_shard([3, 4]) == (3, 4)
    for bad in ([1, 1], [4, 4], [-1, 2], [0, 0], [0], [0, 1, 2], ["0", "2"], [True, 2], (0, 2), "0,2"):
        assert parse_shard(bad) is None, bad


def test_recommended_shards() -> None:
    ids = [guild_id_on_shard(0, 1, i) for i in range(10)]
    assert recommended_shards([], per_shard=1000, max_per_shard=2500) == 1
    assert recommended_shards(ids, per_shard=1000, max_per_shard=2500) == 1
    assert recommended_shards(ids, per_shard=4, max_per_shard=2500) == 3
    # never so few that a shard holds more than the maximum, however the ids fall
    crowded = [guild_id_on_shard(0, 2, i) for i in range(6)]  # all on shard 0 of 2
    count = recommended_shards(crowded, per_shard=3, max_per_shard=3)
    assert count > 2
    assert max(sum(1 for g in crowded if shard_of(g, count) == s) for s in range(count)) <= 3
    # a large bot: always a multiple of the count Discord gave it
    assert recommended_shards(ids, per_shard=4, max_per_shard=2500, multiple=16) == 16


# ---------------------------------------------------------------------------------------------- REST


async def test_gateway_bot_recommends_shards_and_counts_session_starts(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds, recommended_guilds_per_shard=2, max_concurrency=16) as sim:
        headers = {"Authorization": f"Bot {sim.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:

            async def gateway_bot() -> dict[str, Any]:
                async with http.get(f"{sim.api_url}/gateway/bot") as response:
                    assert response.status == 200
                    return await response.json()

            before = await gateway_bot()
            assert before["url"] == sim.gateway.url
            assert before["shards"] == 2
            assert before["session_start_limit"] == {
                "total": 1000,
                "remaining": 1000,
                "reset_after": 0,
                "max_concurrency": 16,
            }
            async with http.get(f"{sim.api_url}/gateway") as response:
                assert (await response.json()) == {"url": sim.gateway.url}

            client = ShardedProbe("auto", **sim.client_kwargs())
            async with sim.running(client):
                assert client.shard_count == 2  # what /gateway/bot recommended
                assert sorted(client.shards) == [0, 1]
            after = await gateway_bot()
            assert after["session_start_limit"]["remaining"] == 998  # one session start per shard
            assert 0 < after["session_start_limit"]["reset_after"] <= 86_400_000
        async with aiohttp.ClientSession() as anonymous, anonymous.get(f"{sim.api_url}/gateway/bot") as response:
            assert response.status == 401


async def test_get_guild_over_rest_has_no_gateway_fields(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        client = discord.Client(intents=discord.Intents.default())
        async with client:
            await client.login(sim.token)
            target = sim.guilds[1]
            guild = await client.fetch_guild(target.id)
            assert (guild.id, guild.name, guild.premium_tier) == (target.id, target.name, 0)
            assert guild.filesize_limit == 10 * 1024 * 1024
            assert {r.name for r in guild.roles} >= {"@everyone"}
            call = sim.requests_to("GET /guilds/{guild_id}")[-1]
            assert call.response is not None
            assert not {"channels", "members", "joined_at", "member_count"} & set(call.response)
            with pytest.raises(discord.NotFound):
                await client.fetch_guild(guild_id_on_shard(0, 1, 99))


# ---------------------------------------------------------------------------------------------- one process


async def test_one_client_holding_every_shard_gets_every_guild(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        client = ShardedProbe("both", shard_count=2, **sim.client_kwargs())
        async with sim.running(client):
            assert sorted(g.id for g in client.guilds) == sorted(g.id for g in sim.guilds)
            for guild in client.guilds:
                assert guild.shard_id == shard_of(guild.id, 2)
            identifies = [f["d"]["shard"] for f in sim.gateway.received if f["op"] == IDENTIFY]
            assert sorted(identifies) == [[0, 2], [1, 2]]
            for (shard_id, count), ready in ready_frames(sim).items():
                assert ready["shard"] == [shard_id, count]
                listed = [int(g["id"]) for g in ready["guilds"]]
                assert listed == [g.id for g in sim.guilds if shard_of(g.id, count) == shard_id]
                assert len(listed) == 2
            assert not [r for r in sim.gateway.routed.items if r.shard is None]
            # a guild's command is answered on its shard; a DM's on shard 0
            for guild in sim.guilds:
                handle = await sim.user("alice", guild_id=guild.id).slash("where")
                reply = await handle.wait_message()
                assert reply.content == f"both on shard {shard_of(guild.id, 2)}"
                routed = sim.gateway.routed.find(lambda r, h=handle: r.ref == str(h.id))
                assert routed is not None
                assert routed.shard == (shard_of(guild.id, 2), 2)
            dm = await sim.user("alice").slash("where", dm=True)
            assert (await dm.wait_message()).content == "both on shard None"
            routed = sim.gateway.routed.find(lambda r: r.ref == str(dm.id))
            assert routed is not None
            assert routed.shard == (0, 2)


# ---------------------------------------------------------------------------------------------- several processes


@pytest.fixture
async def split(four_guilds: list[GuildConfig]) -> AsyncIterator[tuple[DiscordSimulator, ShardedProbe, ShardedProbe]]:
    """Two clients as two processes would run them: shard 0 of 2, and shard 1 of 2."""
    async with DiscordSimulator(four_guilds) as sim:
        zero = ShardedProbe("zero", shard_count=2, shard_ids=[0], **sim.client_kwargs())
        one = ShardedProbe("one", shard_count=2, shard_ids=[1], **sim.client_kwargs())
        async with sim.running(zero), sim.running(one):
            yield sim, zero, one
        sim.assert_no_validation_failures()


def guild_ids(client: discord.Client) -> list[int]:
    return sorted(g.id for g in client.guilds)


def on(sim: DiscordSimulator, shard_id: int) -> Sequence[int]:
    return sorted(g.id for g in sim.guilds if shard_of(g.id, 2) == shard_id)


async def test_each_shard_gets_only_its_guilds_and_their_events(
    split: tuple[DiscordSimulator, ShardedProbe, ShardedProbe],
) -> None:
    sim, zero, one = split
    assert guild_ids(zero) == on(sim, 0)
    assert guild_ids(one) == on(sim, 1)
    assert sim.guilds_of(zero) == on(sim, 0)

    for guild in sim.guilds:
        owner, other = (zero, one) if shard_of(guild.id, 2) == 0 else (one, zero)
        message = await sim.user(f"member{sim.guilds.index(guild)}", guild_id=guild.id).send_message(
            "hello", channel_id=guild.channel_ids[0]
        )
        await owner.wait_for_message(message.id)
        assert not other.saw(message.id)  # routed to one session only, at once
        handle = await sim.user("alice", guild_id=guild.id).slash("where")
        reply = await handle.wait_message()
        assert reply.content == f"{owner.name} on shard {shard_of(guild.id, 2)}"
        assert [i.id for i in owner.interactions if i.id == handle.id] == [handle.id]
        assert not [i for i in other.interactions if i.id == handle.id]


async def test_dms_go_to_shard_zero_only(split: tuple[DiscordSimulator, ShardedProbe, ShardedProbe]) -> None:
    sim, zero, one = split
    handle = await sim.user("alice").slash("where", dm=True)
    assert (await handle.wait_message()).content == "zero on shard None"
    dm = await sim.user("alice").send_message("hi there", dm=True)
    await zero.wait_for_message(dm.id)
    assert not one.saw(dm.id)
    assert not [i for i in one.interactions if i.id == handle.id]
    routed = sim.gateway.routed.find(lambda r: r.ref == str(dm.id))
    assert routed is not None
    assert (routed.event, routed.shard) == ("MESSAGE_CREATE", (0, 2))


async def test_a_shard_no_session_holds_drops_its_events(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        one = ShardedProbe("one", shard_count=2, shard_ids=[1], **sim.client_kwargs())
        async with sim.running(one):
            assert guild_ids(one) == on(sim, 1)
            guild = next(g for g in sim.guilds if shard_of(g.id, 2) == 0)
            handle = await sim.user("alice", guild_id=guild.id).slash("where")
            routed = sim.gateway.routed.find(lambda r: r.ref == str(handle.id))
            assert routed is not None
            assert (routed.shard, routed.session_id) == (None, None)
            assert not one.interactions  # nobody got it, so nobody can answer it
            # the shard it does hold is served
            served = next(g for g in sim.guilds if shard_of(g.id, 2) == 1)
            reply = await (await sim.user("alice", guild_id=served.id).slash("where")).wait_message()
            assert reply.content == "one on shard 1"


async def test_a_dropped_shard_resumes_on_its_own_shard(
    split: tuple[DiscordSimulator, ShardedProbe, ShardedProbe],
) -> None:
    sim, zero, one = split
    before = dict(sim.gateway.shards)
    event = await sim.drop_gateway(resume=True, shard_id=1)
    assert event.shard == (1, 2)
    assert sim.gateway.shards == before  # the same sessions, each on its shard
    assert one.get_shard(1) is not None
    assert zero.get_shard(0) is not None
    guild = next(g for g in sim.guilds if shard_of(g.id, 2) == 1)
    reply = await (await sim.user("alice", guild_id=guild.id).slash("where")).wait_message()
    assert reply.content == "one on shard 1"
    resumed = [e for e in sim.gateway.events.items if e.kind == "resumed"]
    assert [e.shard for e in resumed] == [(1, 2)]


# ---------------------------------------------------------------------------------------------- refusals


async def test_an_unsharded_session_holding_too_many_guilds_gets_4011() -> None:
    guilds = [on_shard(0, 2, 0), on_shard(0, 2, 1), on_shard(1, 2, 2)]
    async with DiscordSimulator(guilds, max_guilds_per_shard=2) as sim:
        plain = discord.Client(intents=discord.Intents.default(), **sim.client_kwargs())
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with sim.running(plain):
                pass
        assert closed.value.code == CLOSE_SHARDING_REQUIRED
        refused = sim.gateway.events.find(lambda e: e.kind == "refused")
        assert refused is not None
        assert (refused.shard, refused.code) == ((0, 1), CLOSE_SHARDING_REQUIRED)
        assert not sim.gateway.shards  # no session, no READY
        # one shard of one is no different
        single = ShardedProbe("single", shard_count=1, **sim.client_kwargs())
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with sim.running(single):
                pass
        assert closed.value.code == CLOSE_SHARDING_REQUIRED
        # two shards hold them (two and one); and /gateway/bot said so
        assert sim.gateway.recommended_shards() == 2
        sharded = ShardedProbe("sharded", shard_count=2, **sim.client_kwargs())
        async with sim.running(sharded):
            assert guild_ids(sharded) == sorted(g.id for g in sim.guilds)


async def test_a_shard_over_the_limit_gets_4011_too() -> None:
    guilds = [on_shard(0, 2, 0), on_shard(0, 2, 1), on_shard(0, 2, 2), on_shard(1, 2, 3)]
    async with DiscordSimulator(guilds, max_guilds_per_shard=2) as sim:
        crowded = ShardedProbe("crowded", shard_count=2, shard_ids=[0], **sim.client_kwargs())
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with sim.running(crowded):
                pass
        assert (closed.value.code, closed.value.shard_id) == (CLOSE_SHARDING_REQUIRED, 0)
        light = ShardedProbe("light", shard_count=2, shard_ids=[1], **sim.client_kwargs())
        async with sim.running(light):
            assert guild_ids(light) == [guilds[3].id]


async def test_a_shard_id_not_below_the_count_gets_4010(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        client = ShardedProbe("bad", shard_count=2, shard_ids=[2], **sim.client_kwargs())
        with pytest.raises(discord.ConnectionClosed) as closed:
            async with sim.running(client):
                pass
        assert (closed.value.code, closed.value.shard_id) == (CLOSE_INVALID_SHARD, 2)
        refused = sim.gateway.events.find(lambda e: e.kind == "refused")
        assert refused is not None
        assert refused.code == CLOSE_INVALID_SHARD


async def identify_raw(sim: DiscordSimulator, shard: Any) -> tuple[str, Any]:
    """IDENTIFY over a bare websocket; ("close", code), ("op", 9) or ("ready", READY's shard)."""
    async with aiohttp.ClientSession() as http, http.ws_connect(sim.gateway.url) as ws:
        hello = json.loads((await ws.receive()).data)
        assert hello["op"] == 10
        data: dict[str, Any] = {"token": sim.token, "intents": 0, "properties": {}}
        if shard is not None:
            data["shard"] = shard
        await ws.send_str(json.dumps({"op": IDENTIFY, "d": data}))
        msg = await ws.receive(timeout=5)
        if msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
            return "close", ws.close_code
        frame = json.loads(msg.data)
        if frame["op"] == INVALID_SESSION:
            return "op", INVALID_SESSION
        assert frame["t"] == "READY"
        return "ready", frame["d"].get("shard")


async def test_malformed_shards_get_4010_over_the_wire(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        for bad in ([2, 2], [0, 0], [-1, 2], ["0", "2"], [0], 7):
            assert await identify_raw(sim, bad) == ("close", CLOSE_INVALID_SHARD), bad
        assert await identify_raw(sim, [1, 2]) == ("ready", [1, 2])
        assert await identify_raw(sim, None) == ("ready", None)


async def test_a_large_bot_must_run_a_multiple_of_its_shard_count(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds, shard_multiple=4) as sim:
        assert sim.gateway.bot_info()["shards"] == 4
        assert await identify_raw(sim, [0, 2]) == ("close", CLOSE_INVALID_SHARD)
        assert await identify_raw(sim, None) == ("close", CLOSE_INVALID_SHARD)  # unsharded is [0, 1]
        assert await identify_raw(sim, [3, 8]) == ("ready", [3, 8])


async def test_the_identify_rate_is_one_per_bucket_per_five_seconds(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds, max_concurrency=2, enforce_identify_rate=True) as sim:
        assert await identify_raw(sim, [0, 4]) == ("ready", [0, 4])
        assert await identify_raw(sim, [1, 4]) == ("ready", [1, 4])  # another bucket: at once
        assert await identify_raw(sim, [2, 4]) == ("op", INVALID_SESSION)  # bucket 0 again, too soon
        assert await identify_raw(sim, [3, 4]) == ("op", INVALID_SESSION)  # bucket 1 again
        refused = [e for e in sim.gateway.events.items if e.kind == "invalid_session"]
        assert [e.shard for e in refused] == [(2, 4), (3, 4)]


async def test_test_controls_need_a_session(four_guilds: list[GuildConfig]) -> None:
    async with DiscordSimulator(four_guilds) as sim:
        with pytest.raises(SimulatorError, match="no gateway session"):
            await sim.drop_gateway()
