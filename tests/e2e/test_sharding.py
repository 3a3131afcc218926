"""Sharding end to end: Encore as Discord's ``AutoShardedBot``, in one process or split over several.

Servers A (shard 0 of 2) and B (shard 1 of 2) share their members: alice, bob and mod, who moderates in A
only. A process holding both shards serves both servers; a process holding one gets only its servers'
interactions (and shard 0 the DMs'); a bot with too few shards is refused by Discord (4011) and says what to
set. Two processes on one database (Encore's jobs live there; an SQLite file stands in for the PostgreSQL
the processes of a real deployment share) each answer their own servers, and either can post to the other's:
a job started on one is delivered by the other, over REST, to a server that process has never seen.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from bot.config import Secrets
from bot.discord.run import run_bot
from bot.discord.shards import IDENTIFY_WINDOW_S
from bot.errors import StartupError
from bot.records import JobStatus
from tests.e2e.conftest import Encore, accepted, card_status, default_guild, job_id_of, status_is
from tests.e2e.test_delivery import _big_musicgen
from tests.fakes.audio import wav_info
from tests.fakes.discord import DiscordSimulator, GuildConfig, MemberConfig
from tests.fakes.discord.sharding import guild_id_on_shard, shard_of
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import free_port

ALICE, BOB, MOD = 2_000_000_000_000_001, 2_000_000_000_000_002, 2_000_000_000_000_003
MIB = 1024 * 1024


def server(name: str, shard_id: int, index: int, *, moderator: bool, premium_tier: int = 0) -> GuildConfig:
    """A server on ``shard_id`` of 2 with alice, bob and mod (a moderator here only if ``moderator``)."""
    return default_guild(
        name=name,
        id=guild_id_on_shard(shard_id, 2, index),
        premium_tier=premium_tier,
        members=[
            MemberConfig("alice", id=ALICE),
            MemberConfig("bob", id=BOB),
            MemberConfig("mod", id=MOD, roles=["Moderators"] if moderator else []),
        ],
    )


A_AND_B = [server("Server A", 0, 0, moderator=True, premium_tier=2), server("Server B", 1, 1, moderator=False)]
two_servers = pytest.mark.parametrize("guilds", [A_AND_B])


def routed_to(sim: DiscordSimulator, interaction_id: int) -> tuple[int, int] | None:
    """The shard whose session got the interaction (None: no session holds its shard)."""
    routed = sim.gateway.routed.find(lambda r: r.ref == str(interaction_id))
    assert routed is not None, f"interaction {interaction_id} was never sent"
    return routed.shard


async def refused_start(encore: Encore, *, shard_count: int) -> str:
    """Run the bot as ``python -m bot run`` does, with ``shard_count``; the one line its refused start says."""
    settings = encore.configure(discord={"shard_count": shard_count})
    secrets = Secrets(
        discord_token=SecretStr(encore.sim.token), env={"REPLICATE_API_TOKEN": SecretStr(encore.fake.token)}
    )
    with pytest.raises(StartupError) as caught:
        await run_bot(settings, secrets, **encore.sim.client_kwargs())
    message = caught.value.user_message
    assert "\n" not in message
    return message


# ---------------------------------------------------------------------------------------------- one process


@two_servers
async def test_one_process_holding_both_shards_serves_both_servers(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    a, b = sim.guilds
    assert (shard_of(a.id, 2), shard_of(b.id, 2)) == (0, 1)
    sim.gateway.max_concurrency = 2  # both shards may identify at once (else Encore waits Discord's 5 s)
    fake.auto_advance = True
    encore.configure(discord={"shard_count": 2})
    bot = await encore.start()
    assert (bot.shard_count, sorted(bot.shards)) == (2, [0, 1])
    assert sorted(g.id for g in bot.guilds) == [a.id, b.id]

    for guild, shard in ((a, 0), (b, 1)):
        handle = await sim.user("alice", guild_id=guild.id).slash("music generate", prompt="two shards", duration=2)
        assert routed_to(sim, handle.id) == (shard, 2)
        audio = await handle.wait_file()
        assert round(wav_info(audio.data).duration_s) == 2
        await handle.wait_original(status_is("Done"))
    assert not [e for e in sim.gateway.events.items if e.kind in ("invalid_session", "refused")]


async def test_commands_in_dms_reach_the_process_holding_shard_zero(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    encore.configure(discord={"dev_guild_ids": [], "shard_count": 2})  # global commands: DMs have them
    sim.gateway.max_concurrency = 2
    await encore.start()
    handle = await sim.user("alice").slash("music generate", dm=True, prompt="a dm on shard zero", duration=2)
    assert routed_to(sim, handle.id) == (0, 2)
    assert round(wav_info((await handle.wait_file()).data).duration_s) == 2


@two_servers
async def test_a_process_holding_some_shards_gets_only_their_servers(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    a, b = sim.guilds
    fake.auto_advance = True
    encore.configure(discord={"shard_count": 2, "shard_ids": [1]})
    bot = await encore.start()
    assert [g.id for g in bot.guilds] == [b.id]
    assert sorted(bot.shards) == [1]

    in_b = await sim.user("alice", guild_id=b.id).slash("music generate", prompt="my shard", duration=2)
    assert routed_to(sim, in_b.id) == (1, 2)
    await accepted(in_b)
    in_a = await sim.user("alice", guild_id=a.id).slash("music generate", prompt="not my shard", duration=2)
    assert routed_to(sim, in_a.id) is None  # shard 0 is no session's: Discord has no one to give it to
    await in_b.wait_file()
    jobs = await bot.service.jobs_of(ALICE)
    assert [(job.guild_id, job.prompt) for job in jobs] == [(b.id, "my shard")]
    assert in_a.response_type is None


@pytest.mark.parametrize(
    "guilds",
    [[server("One", 0, 0, moderator=True), server("Two", 0, 1, moderator=True), server("Three", 1, 2, moderator=True)]],
)
async def test_too_few_shards_for_discord_stop_the_start_with_what_to_set(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """Discord holds at most 2,500 servers on a shard (the simulator: 2). With shard_count = 1 the start stops
    with one line that says what to set; left automatic, Encore connects as many shards as Discord says."""
    sim.gateway.max_guilds_per_shard = 2
    sim.gateway.max_concurrency = 2
    message = await refused_start(encore, shard_count=1)
    assert "Discord refused shard 0 (4011 sharding required)" in message
    assert "[discord] shard_count = 1 is too few; set shard_count to at least 2 (Discord recommends 2)" in message
    refused = sim.gateway.events.find(lambda e: e.kind == "refused")
    assert refused is not None
    assert (refused.shard, refused.code) == ((0, 1), 4011)

    encore.configure()  # shard_count = 0: as Discord recommends
    bot = await encore.start()
    assert bot.shard_count == 2
    assert sorted(g.id for g in bot.guilds) == sorted(g.id for g in sim.guilds)
    handle = await sim.user("alice", guild_id=sim.guilds[2].id).slash("music help")
    assert routed_to(sim, handle.id) == (1, 2)
    assert (await handle.wait_response()).type == 4  # answered


@two_servers
@pytest.mark.parametrize("max_concurrency", [1, 2])
async def test_shards_identify_as_fast_as_discord_allows(
    encore: Encore, sim: DiscordSimulator, caplog: pytest.LogCaptureFixture, max_concurrency: int
) -> None:
    """Discord takes one IDENTIFY per 5 s per bucket (``shard_id % max_concurrency``) and answers a faster one
    with op 9: Encore waits only when a bucket needs it (discord.py alone waits 5 s before every shard)."""
    sim.gateway.enforce_identify_rate = True
    sim.gateway.max_concurrency = max_concurrency
    encore.configure(discord={"shard_count": 2})
    caplog.set_level(logging.INFO, logger="bot.discord.shards")
    bot = await encore.start()
    assert sorted(g.id for g in bot.guilds) == sorted(g.id for g in sim.guilds)
    assert not [e for e in sim.gateway.events.items if e.kind == "invalid_session"]  # never too soon
    waits = [r.getMessage() for r in caplog.records if "to identify (Discord's identify rate)" in r.getMessage()]
    if max_concurrency == 1:
        assert [w.split(" waits")[0] for w in waits] == ["shard 1"]  # shard 1 shares shard 0's bucket
    else:
        assert waits == []  # a bucket each: both at once
        events = sim.gateway.events
        ready = [i for i, e in enumerate(events.items) if e.kind == "ready"]
        # shard 1 identified right after shard 0 (in milliseconds), not after discord.py's own 5 s
        assert events.appended_at(ready[1]) - events.appended_at(ready[0]) < IDENTIFY_WINDOW_S


@two_servers
async def test_a_shard_count_discord_refuses_stops_the_start_with_what_to_set(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """A large bot must run a multiple of the shard count Discord gave it (here 2): 3 is refused (4010)."""
    sim.gateway.shard_multiple = 2
    sim.gateway.max_concurrency = 4  # discord.py launches every shard before it reads a refusal: all at once
    message = await refused_start(encore, shard_count=3)
    assert "Discord refused shard 0 (4010 invalid shard): [discord] shard_count = 3 with shard_ids all" in message
    assert "set shard_count = 0 to use Discord's (Discord recommends 2)" in message


# ---------------------------------------------------------------------------------------------- two processes


@contextlib.asynccontextmanager
async def second_process(encore: Encore, *, webhooks: bool = False) -> AsyncIterator[Encore]:
    """``encore`` holds shard 0 of 2 and another Encore shard 1, both on ``encore``'s database. ``webhooks``:
    the provider's webhooks for jobs either starts reach the second (as a load balancer may send them)."""
    other = Encore(encore.sim, encore.fake, encore.data_dir)
    other.configure(with_webhooks=webhooks, discord={"shard_count": 2, "shard_ids": [1]})
    if webhooks:
        assert other.settings.webhooks.public_url is not None
        encore.configure(
            webhooks={"public_url": str(other.settings.webhooks.public_url), "port": free_port()},
            jobs={"webhook_grace_s": 60.0},  # the first never polls in this test: the webhook tells the second
            discord={"shard_count": 2, "shard_ids": [0]},
        )
    else:
        encore.configure(discord={"shard_count": 2, "shard_ids": [0]})
    try:
        await other.start()
        await encore.start()
        yield other
    finally:
        await other.stop()


@two_servers
async def test_a_job_started_on_one_process_is_delivered_by_the_other(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """The webhook for a job started in server A (shard 0, the first process) reaches the second process,
    which holds only server B: it posts the track to A's channel by REST, as big as A's boost allows."""
    a, _ = sim.guilds
    _big_musicgen(fake)  # an 11.5 MB WAV: A (tier 2) takes it as it is; the smallest limit would refit it
    async with second_process(encore, webhooks=True) as other:
        assert encore.bot is not None
        assert other.bot is not None
        assert encore.bot.get_guild(a.id) is not None
        assert other.bot.get_guild(a.id) is None  # never seen by the second process

        handle = await sim.user("alice", guild_id=a.id).slash("music generate", prompt="handed over")
        assert routed_to(sim, handle.id) == (0, 2)
        card = await accepted(handle)
        pid = await fake.wait_for_prediction()
        assert str(fake.prediction(pid).webhook).startswith(str(other.settings.webhooks.public_url))
        await fake.succeed(pid)

        delivery = await sim.wait_for_message(card.channel_id, lambda m: bool(m.attachments), timeout_s=30)
        assert delivery.reply_to == card.id  # a channel message: the second process has no interaction token
        audio = delivery.attachments[0]
        assert audio.filename.endswith(".wav")
        assert audio.size > 10 * MIB  # A's limit (50 MiB), read from Discord, not the 10 MiB fallback
        assert [c.params["guild_id"] for c in sim.requests_to("GET /guilds/{guild_id}")] == [str(a.id)]
        await sim.wait_for_edit(card.id, status_is("Done"))
        job = await other.bot.service.get(job_id_of(card))
        assert job.status == JobStatus.DELIVERED
        audio_posts = [m for m in sim.messages if any(x.filename.endswith(".wav") for x in m.attachments)]
        assert len(audio_posts) == 1


@two_servers
async def test_a_moderator_cancels_from_a_server_of_the_other_process(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """mod moderates server A (the first process's). From server B, which only the second process holds,
    `/music cancel` of alice's job in A works for mod, read from Discord; bob, no moderator in A, is refused."""
    a, b = sim.guilds
    async with second_process(encore):
        handle = await sim.user("alice", guild_id=a.id).slash("music generate", prompt="cancel me from afar")
        card = await accepted(handle)
        job_id = job_id_of(card)
        pid = await fake.wait_for_prediction()
        await fake.begin(pid)
        await handle.wait_original(status_is("Generating"))

        refused = await sim.user("bob", guild_id=b.id).slash("music cancel", job=job_id)
        assert routed_to(sim, refused.id) == (1, 2)
        answer = await refused.wait_message()
        assert answer.is_ephemeral
        assert "or a moderator of the server it was made in" in answer.content
        assert fake.prediction(pid).status == "processing"

        canceled = await sim.user("mod", guild_id=b.id).slash("music cancel", job=job_id)
        assert routed_to(sim, canceled.id) == (1, 2)
        answer = await canceled.wait_message(lambda m: "Canceled job" in m.content)
        assert answer.is_ephemeral
        assert "Canceled by a moderator." in card_status(await sim.wait_for_edit(card.id, status_is("Canceled")))
        assert (await fake.wait_for_status(pid)).status == "canceled"
