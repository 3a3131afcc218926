"""Self-tests of the Discord simulator, part 1: gateway, REST errors, CDN and the content intent.

Each test runs the real discord.py client against a fresh simulator on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import discord
import pytest
from discord.http import Route
from yarl import URL

from tests.fakes.discord import (
    MIB,
    ChannelConfig,
    DiscordSimulator,
    GuildConfig,
    MemberConfig,
    Permission,
    RoleConfig,
    SimClock,
    SimFile,
    SimulatorError,
)


class Recorder(discord.Client):
    """A plain client that queues every message it sees."""

    def __init__(self, *, intents: discord.Intents, **kwargs: Any) -> None:
        super().__init__(intents=intents, **kwargs)
        self.seen: asyncio.Queue[discord.Message] = asyncio.Queue()

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        """discord.py sleeps 5 s before every re-IDENTIFY; not needed against the simulator."""

    async def on_message(self, message: discord.Message) -> None:
        await self.seen.put(message)

    async def next_message(self, *, from_user: bool = True) -> discord.Message:
        async with asyncio.timeout(5):
            while True:
                message = await self.seen.get()
                if not from_user or not message.author.bot:
                    return message

    def text_channel(self, channel_id: int) -> discord.TextChannel:
        channel = self.get_channel(channel_id)
        assert isinstance(channel, discord.TextChannel)
        return channel


@pytest.fixture
async def client(sim: DiscordSimulator, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Recorder]:
    bot = Recorder(intents=discord.Intents.default(), **sim.client_kwargs())
    async with sim.running(bot):
        yield bot
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "the client logged errors"


def audio_file(size: int = 64, name: str = "track.mp3") -> discord.File:
    return discord.File(io.BytesIO(b"\x00" * size), name)


# ---------------------------------------------------------------------------------------------- gateway


async def test_handshake_ready_and_guild_create(sim: DiscordSimulator, client: Recorder) -> None:
    assert client.user is not None
    assert client.user.id == sim.bot_id
    assert client.application_id == sim.application_id
    guild = client.get_guild(sim.guild.id)
    assert guild is not None
    assert guild.name == "Encore Test Server"
    assert guild.me is not None
    assert [c.name for c in guild.text_channels] == ["general"]
    assert guild.member_count == 2  # members are cached only with the members intent
    assert guild.filesize_limit == 10 * MIB
    identify = next(f for f in sim.gateway.received if f["op"] == 2)
    assert identify["d"]["token"] == sim.token
    assert identify["d"]["intents"] == discord.Intents.default().value
    assert [c.route for c in sim.requests[:2]] == ["GET /users/@me", "GET /oauth2/applications/@me"]
    assert all(c.authorized for c in sim.requests)


async def test_premium_tier_sets_upload_limit_and_bot_permissions_show_in_cache() -> None:
    config = GuildConfig(
        premium_tier=2,
        channels=[
            ChannelConfig("general"),
            ChannelConfig("read-only", bot_permissions=int(Permission.VIEW_CHANNEL | Permission.READ_MESSAGE_HISTORY)),
        ],
    )
    async with DiscordSimulator(guilds=[config]) as sim:
        bot = Recorder(intents=discord.Intents.default())
        async with sim.running(bot):
            guild = bot.get_guild(sim.guild.id)
            assert guild is not None
            assert guild.filesize_limit == 50 * MIB
            read_only = bot.text_channel(sim.channel("read-only").id)
            perms = read_only.permissions_for(guild.me)
            assert perms.read_messages
            assert perms.read_message_history
            assert not perms.send_messages
            assert not perms.attach_files
            # 11 MiB is fine at tier 2
            general = bot.text_channel(sim.channel("general").id)
            sent = await general.send(file=audio_file(11 * MIB))
            assert sent.attachments[0].size == 11 * MIB


async def test_channel_overwrites_reach_discord_py_and_bind_members() -> None:
    view, manage = int(Permission.VIEW_CHANNEL), int(Permission.MANAGE_MESSAGES)
    config = GuildConfig(
        channels=[
            ChannelConfig("general"),
            ChannelConfig("staff", overwrites={"@everyone": (0, view), "Moderators": (view, 0)}),
            ChannelConfig("stage", overwrites={"DJ": (manage, 0)}),
        ],
        members=[MemberConfig("alice"), MemberConfig("bob", roles=["DJ"]), MemberConfig("mod", roles=["Moderators"])],
        roles=[RoleConfig("Moderators"), RoleConfig("DJ")],
    )
    async with DiscordSimulator(guilds=[config]) as sim:
        bot = Recorder(intents=discord.Intents.default(), **sim.client_kwargs())
        async with sim.running(bot):
            guild = bot.get_guild(sim.guild.id)
            assert guild is not None
            staff, stage, general = (bot.text_channel(sim.channel(name).id) for name in ("staff", "stage", "general"))
            assert staff.permissions_for(guild.me).value == sim.channel("staff").bot_permissions
            for name in ("bob", "mod"):
                user = sim.user(name)
                member = await guild.fetch_member(user.id)
                for channel in (staff, stage, general):
                    # discord.py's own arithmetic over the overwrites agrees with what interactions carry
                    # (discord.py drops voice permissions in text channels, so those aren't compared)
                    expected = sim.guild.channel_permissions(user.id, sim.channel(channel.id))
                    text_only = ~discord.Permissions.voice().value
                    assert channel.permissions_for(member).value & text_only == expected & text_only, name
            assert staff.permissions_for(await guild.fetch_member(sim.user("alice").id)).manage_messages  # the owner
            bob = await guild.fetch_member(sim.user("bob").id)
            assert stage.permissions_for(bob).manage_messages
            assert not general.permissions_for(bob).manage_messages
            assert not staff.permissions_for(bob).read_messages
            assert staff.permissions_for(await guild.fetch_member(sim.user("mod").id)).read_messages
            with pytest.raises(SimulatorError, match="can't see"):
                await sim.user("bob").send_message("hello?", channel_id=staff.id)


async def test_bad_token_is_a_login_failure(sim: DiscordSimulator) -> None:
    bot = discord.Client(intents=discord.Intents.default())
    with pytest.raises(discord.LoginFailure):
        await bot.login("not-the-token")
    await bot.close()
    assert sim.requests[-1].status == 401


async def test_privileged_intent_not_enabled_is_fatal() -> None:
    async with DiscordSimulator(allowed_privileged_intents=0) as sim:
        bot = Recorder(intents=discord.Intents.default() | discord.Intents(message_content=True))
        with pytest.raises(discord.PrivilegedIntentsRequired):
            async with asyncio.timeout(10):
                await bot.start(sim.token)
        await bot.close()


async def test_resume_replays_events_missed_during_an_outage(sim: DiscordSimulator, client: Recorder) -> None:
    alice = sim.user("alice")
    async with sim.gateway_outage():
        posted = await alice.send_message("while you were away", mention_bot=True)
    seen = await client.next_message()
    assert seen.id == posted.id
    assert seen.content.endswith("while you were away")
    resumed = [e for e in sim.gateway.events.items if e.kind == "resumed"]
    assert len(resumed) == 1
    assert resumed[0].path == "/gateway-resume"
    assert sum(1 for e in sim.gateway.events.items if e.kind == "ready") == 1


async def test_drop_resume_and_reconnect(sim: DiscordSimulator, client: Recorder) -> None:
    alice = sim.user("alice")
    await sim.drop_gateway(resume=True)
    await alice.send_message("after drop", mention_bot=True)
    assert (await client.next_message()).content.endswith("after drop")

    await sim.request_reconnect()
    await alice.send_message("after op 7", mention_bot=True)
    assert (await client.next_message()).content.endswith("after op 7")

    event = await sim.drop_gateway(resume=False)
    assert event.kind == "ready"
    await sim.wait_until_ready(client)
    await alice.send_message("after op 9", mention_bot=True)
    assert (await client.next_message()).content.endswith("after op 9")
    assert sum(1 for f in sim.gateway.received if f["op"] == 2) == 2


async def test_heartbeats_are_acknowledged(sim: DiscordSimulator, client: Recorder) -> None:
    assert any(f["op"] == 1 for f in sim.gateway.received)
    assert client.latency != float("inf")


# ---------------------------------------------------------------------------------------------- content intent


async def test_message_content_intent_rule(sim: DiscordSimulator, client: Recorder) -> None:
    alice = sim.user("alice")
    await alice.send_message("plain", files=[SimFile("a.ogg", b"OggS")])
    plain = await client.next_message()
    assert plain.content == ""
    assert plain.attachments == []

    await alice.send_message("hey you", mention_bot=True, files=[SimFile("b.ogg", b"OggS")])
    mentioned = await client.next_message()
    assert mentioned.content.endswith("hey you")
    assert [a.filename for a in mentioned.attachments] == ["b.ogg"]

    await alice.send_message("psst", dm=True)
    dm = await client.next_message()
    assert dm.content == "psst"
    assert isinstance(dm.channel, discord.DMChannel)

    mine = await client.text_channel(sim.default_channel_id).send("bot says")
    own = await client.next_message(from_user=False)
    assert own.id == mine.id
    assert own.content == "bot says"

    await alice.send_message("reply, no ping", reply_to=mine.id, ping_reply=False)
    assert (await client.next_message()).content == ""
    await alice.send_message("reply with ping", reply_to=mine.id)
    pinged = await client.next_message()
    assert pinged.content == "reply with ping"
    assert pinged.reference is not None
    assert pinged.reference.message_id == mine.id

    fetched = await client.text_channel(sim.default_channel_id).fetch_message(plain.id)
    assert fetched.content == ""


async def test_message_content_intent_shows_everything() -> None:
    async with DiscordSimulator() as sim:
        bot = Recorder(intents=discord.Intents.default() | discord.Intents(message_content=True))
        async with sim.running(bot):
            await sim.user("alice").send_message("plain", files=[SimFile("a.mp3", b"ID3")])
            seen = await bot.next_message()
            assert seen.content == "plain"
            assert seen.attachments[0].content_type == "audio/mpeg"
            assert await seen.attachments[0].read() == b"ID3"


# ---------------------------------------------------------------------------------------------- REST


async def test_reply_with_reference_and_allowed_mentions(sim: DiscordSimulator, client: Recorder) -> None:
    alice = sim.user("alice")
    await alice.send_message("make me a song", mention_bot=True)
    request = await client.next_message()
    reply = await request.reply(
        f"{request.author.mention} here it is",
        file=audio_file(name="song.mp3"),
        allowed_mentions=discord.AllowedMentions(users=[request.author], replied_user=False),
    )
    stored = sim.message(reply.id)
    assert stored.reply_to == request.id
    assert stored.type == 19
    assert stored.mentions == [alice.id]
    assert stored.attachment("song.mp3").content_type == "audio/mpeg"
    body = sim.requests_to("POST /channels/{channel_id}/messages")[-1].body
    assert body["message_reference"]["message_id"] == request.id
    assert body["enforce_nonce"] is True
    silent = await request.reply("no ping", mention_author=False, allowed_mentions=discord.AllowedMentions.none())
    assert sim.message(silent.id).mentions == []
    found = await sim.wait_for_message(sim.default_channel_id, lambda m: m.content == "no ping")
    assert found.id == silent.id


async def test_edit_fetch_delete_typing_and_dm(sim: DiscordSimulator, client: Recorder) -> None:
    channel = client.text_channel(sim.default_channel_id)
    async with channel.typing():
        sent = await channel.send("v1", file=audio_file(name="a.mp3"))
    edited = await sent.edit(content="v2", attachments=[*sent.attachments, audio_file(name="b.mp3")])
    assert [a.filename for a in edited.attachments] == ["a.mp3", "b.mp3"]
    version = await sim.wait_for_edit(sent.id, lambda m: m.content == "v2")
    assert version.version == 1
    fetched = await channel.fetch_message(sent.id)
    assert fetched.content == "v2"
    assert (await client.fetch_channel(channel.id)).id == channel.id
    await sent.delete()
    await sim.wait_for_delete(sent.id)
    with pytest.raises(discord.NotFound) as unknown:
        await channel.fetch_message(sent.id)
    assert unknown.value.code == 10008
    with pytest.raises(discord.NotFound) as no_channel:
        await client.fetch_channel(12345)
    assert no_channel.value.code == 10003

    user = await client.fetch_user(sim.user("alice").id)
    dm = await user.send("hello in private", file=audio_file(name="c.ogg"))
    assert isinstance(dm.channel, discord.DMChannel)
    assert sim.message(dm.id).guild_id is None
    assert any(c.route == "POST /channels/{channel_id}/typing" for c in sim.requests)


async def test_members_delete_their_own_messages_and_moderators_anyones(
    sim: DiscordSimulator, client: Recorder
) -> None:
    channel = client.text_channel(sim.default_channel_id)
    sent = await channel.send("the bot's")
    bob = sim.user("bob")  # a plain member
    with pytest.raises(SimulatorError, match="may not delete"):
        await bob.delete_message(sent.id)
    await bob.delete_message(await bob.send_message("bob's"))
    await sim.user("alice").delete_message(sent.id)  # the owner may
    await sim.wait_for_delete(sent.id)
    with pytest.raises(discord.NotFound):
        await channel.fetch_message(sent.id)


async def test_dm_to_a_user_with_closed_dms_is_refused() -> None:
    guild = GuildConfig(members=[MemberConfig("alice"), MemberConfig("carol", dms_open=False)])
    async with DiscordSimulator(guilds=[guild]) as sim:
        bot = Recorder(intents=discord.Intents.default())
        async with sim.running(bot):
            carol = await bot.fetch_user(sim.user("carol").id)
            with pytest.raises(discord.Forbidden) as refused:
                await carol.send("your track")
            assert refused.value.code == 50007


async def test_nonce_deduplicates(sim: DiscordSimulator, client: Recorder) -> None:
    channel = client.text_channel(sim.default_channel_id)
    first = await channel.send("once", nonce="job-1")
    again = await channel.send("once", nonce="job-1")
    assert again.id == first.id
    assert len([m for m in sim.messages if m.content == "once"]) == 1


async def test_error_codes_for_channel_messages(sim: DiscordSimulator, client: Recorder) -> None:
    channel = client.text_channel(sim.default_channel_id)
    target = await channel.send("target")
    with pytest.raises(discord.HTTPException) as too_large:
        await channel.send(file=audio_file(10 * MIB + 1))
    assert too_large.value.status == 413
    assert too_large.value.code == 40005

    with pytest.raises(discord.HTTPException) as empty:
        await channel.send()
    assert empty.value.status == 400
    assert empty.value.code == 50006

    with pytest.raises(discord.HTTPException) as invalid:
        await channel.send("x" * 2001, embed=discord.Embed(title="t" * 300))
    assert invalid.value.code == 50035
    assert "content" in invalid.value.text
    assert "embeds.0.title" in invalid.value.text
    failures = sim.take_validation_failures()
    assert [f.code for f in failures] == [50006, 50035]

    await sim.set_bot_permissions(channel.id, int(Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES))
    with pytest.raises(discord.Forbidden) as no_files:
        await channel.send(file=audio_file())
    assert no_files.value.code == 50013
    with pytest.raises(discord.Forbidden) as no_history:
        await channel.send("re", reference=channel.get_partial_message(target.id))
    assert no_history.value.code == 160002
    guild = client.get_guild(sim.guild.id)
    assert guild is not None
    assert not channel.permissions_for(guild.me).attach_files


def _buttons(count: int, prefix: str = "b") -> dict[str, Any]:
    """An action row of ``count`` buttons."""
    return {
        "type": 1,
        "components": [{"type": 2, "style": 2, "label": "x", "custom_id": f"{prefix}{i}"} for i in range(count)],
    }


async def test_component_limits_are_discords(sim: DiscordSimulator, client: Recorder) -> None:
    """A message holds at most 5 action rows of at most 5 buttons, each custom id 1 to 100 characters and
    unique: Discord's own spec and rules, sent raw (discord.py's View would refuse them before sending)."""
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=sim.default_channel_id)
    full = [_buttons(5, prefix=f"r{row}:") for row in range(5)]
    sent = await client.http.request(route, json={"content": "a full grid", "components": full})
    assert len(sim.message(int(sent["id"])).custom_ids()) == 25

    too_many = (
        ([*full, _buttons(1, prefix="r5:")], "components"),  # six rows
        ([_buttons(6)], "components.0.components"),  # six buttons in a row
        ([{"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": "c" * 101}]}], "custom_id"),
        ([{"type": 1, "components": [{"type": 2, "style": 2, "label": "x", "custom_id": "same"}] * 2}], "components"),
    )
    for components, where in too_many:
        with pytest.raises(discord.HTTPException) as refused:
            await client.http.request(route, json={"content": "too much", "components": components})
        assert (refused.value.status, refused.value.code) == (400, 50035)
        assert where in refused.value.text
    assert [f.code for f in sim.take_validation_failures()] == [50035] * len(too_many)
    assert not [m for m in sim.messages if m.content == "too much"]


async def test_rate_limit_is_retried(sim: DiscordSimulator, client: Recorder) -> None:
    sim.inject_rate_limit("POST /channels/{channel_id}/messages", retry_after_s=0.01)
    sent = await client.text_channel(sim.default_channel_id).send("eventually")
    statuses = [c.status for c in sim.requests_to("POST /channels/{channel_id}/messages")]
    assert statuses == [429, 200]
    assert sim.message(sent.id).content == "eventually"


async def test_rate_limit_answer_is_discords(sim: DiscordSimulator, client: Recorder) -> None:
    route = "POST /channels/{channel_id}/messages"
    injection = sim.inject_rate_limit(route, retry_after_s=0.01, is_global=True)
    before = time.time()
    await client.text_channel(sim.default_channel_id).send("throttled")
    limited = sim.requests_to(route)[0]
    assert (limited.status, limited.response) == (
        429,
        {"message": "You are being rate limited.", "retry_after": 0.01, "global": True},  # no "code"
    )
    assert injection.hits == 1
    assert injection.error.status == 429
    headers = injection.error.response_headers()
    assert headers["Via"]
    assert headers["X-RateLimit-Global"] == "true"
    assert headers["X-RateLimit-Scope"] == "global"
    sent_at = float(headers["X-RateLimit-Reset"]) - 0.01  # computed when sent, in real epoch seconds
    assert before - 0.001 <= sent_at <= time.time() + 0.001
    sim.inject_rate_limit("PATCH /channels/{channel_id}/messages/{message_id}")
    buckets = {i.error.response_headers()["X-RateLimit-Bucket"] for i in sim.router.injections}
    assert len(buckets) == 2  # one bucket per route, as Discord has


async def test_injection_picks_calls_by_their_body(sim: DiscordSimulator, client: Recorder) -> None:
    route = "POST /channels/{channel_id}/messages"
    injection = sim.inject_error(
        route, status=503, times=None, when=lambda ctx: str(ctx.payload.get("content", "")).startswith("fail")
    )
    channel = client.text_channel(sim.default_channel_id)
    for _ in range(2):
        with pytest.raises(discord.DiscordServerError):
            await channel.send("fail me")
    await channel.send("let me through")
    assert [(c.body["content"], c.status) for c in sim.requests_to(route)] == [
        ("fail me", 503),
        ("fail me", 503),
        ("let me through", 200),
    ]
    assert injection.hits == 2
    assert injection.times is None  # still armed


async def test_injected_server_error_surfaces(sim: DiscordSimulator, client: Recorder) -> None:
    sim.inject_error("GET /channels/{channel_id}", status=403, code=50001, message="Missing Access")
    with pytest.raises(discord.Forbidden):
        await client.fetch_channel(sim.default_channel_id)


# ---------------------------------------------------------------------------------------------- CDN


async def test_cdn_urls_expire_on_the_simulated_clock() -> None:
    clock = SimClock()
    async with DiscordSimulator(clock=clock, cdn_url_lifetime_s=3600) as sim:
        bot = Recorder(intents=discord.Intents.default(), **sim.client_kwargs())
        async with sim.running(bot):
            await sim.user("alice").send_message("here", mention_bot=True, files=[SimFile("take.wav", b"RIFF")])
            seen = await bot.next_message()
            attachment = seen.attachments[0]
            assert attachment.content_type == "audio/wav"
            assert "ex=" in attachment.url
            assert "hm=" in attachment.url
            assert await attachment.read() == b"RIFF"
            clock.advance(3601)
            with pytest.raises(discord.NotFound):
                await attachment.read()
            channel = bot.text_channel(sim.default_channel_id)
            refreshed = await channel.fetch_message(seen.id)
            assert await refreshed.attachments[0].read() == b"RIFF"
            assert sim.read_attachment(sim.message(seen.id).attachments[0]) == b"RIFF"


async def test_cdn_signatures_that_are_not_ascii_are_refused_not_crashed() -> None:
    async with DiscordSimulator() as sim:
        bot = Recorder(intents=discord.Intents.default(), **sim.client_kwargs())
        async with sim.running(bot):
            await sim.user("alice").send_message("here", mention_bot=True, files=[SimFile("take.wav", b"RIFF")])
            url = URL((await bot.next_message()).attachments[0].url)
            async with aiohttp.ClientSession() as http:
                for signature in ("%C3%A9t%C3%A9", "%ED%A0%80", "%FF"):
                    forged = url.with_query({**url.query, "hm": "x"}).human_repr().replace("hm=x", f"hm={signature}")
                    async with http.get(URL(forged, encoded=True)) as response:
                        assert response.status == 404, signature


async def test_unsynced_command_is_refused(sim: DiscordSimulator, client: Recorder) -> None:
    with pytest.raises(SimulatorError, match="never synced"):
        await sim.user("alice").slash("music generate", prompt="x")
