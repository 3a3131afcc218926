"""A Discord simulator for end-to-end tests: the real, unmodified discord.py client talks to it on 127.0.0.1.

One aiohttp server provides the gateway websocket, the REST API under ``/api/v10`` and a CDN with signed,
expiring attachment URLs. Request bodies are validated against the official OpenAPI spec
(``tests/specs/discord-openapi.json``) plus the rules Discord enforces beyond it; errors come back with
Discord's status codes and bodies. Rules that depend on time read a simulated clock that moves only when
the test says so. The contract it follows is ``tests/specs/discord.md``; "reference N.N" in its modules cites
that file's sections.

Quick start::

    from tests.fakes.discord import DiscordSimulator, SimFile

    async def test_generate_sends_a_file() -> None:
        async with DiscordSimulator() as sim:             # start + install (Route.BASE, DEFAULT_GATEWAY)
            bot = make_bot(**sim.client_kwargs())          # any discord.Client / commands.Bot
            async with sim.running(bot):                   # start(sim.token), wait for on_ready + guilds
                await sim.wait_for_sync(sim.guild.id)      # if the bot syncs to a guild in setup_hook
                alice = sim.user("alice")
                handle = await alice.slash("music generate", prompt="calm piano", duration=10)
                assert (await handle.wait_response()).type == 5          # deferred
                audio = await handle.wait_file(lambda a: a.filename.endswith(".mp3"))
                assert audio.content_type == "audio/mpeg" and audio.data
            sim.assert_no_validation_failures()

Construction: ``DiscordSimulator(guilds=[GuildConfig(...)], clock=SimClock(), ...)``; the default is one
guild "Encore Test Server" (boost tier 0) with channel ``general`` and member ``alice``. ``GuildConfig``
takes ``channels=[ChannelConfig(name, bot_permissions=..., overwrites={role_name: (allow, deny)})]`` (role
overwrites, ``"@everyone"`` included: interactions carry each member's permissions in the channel, and a user
can't act in a channel they can't see), ``members=[MemberConfig(username, roles=...)]`` (the same ``id`` in
several guilds makes one user a member of each), ``roles=[RoleConfig(name, permissions)]``, ``premium_tier``
(upload limit 10/10/50/100 MiB) and ``bot_permissions``. Permission bits: :class:`Permission`.

Lifecycle: ``await sim.start()`` / ``await sim.close()``, or ``async with sim`` (which also installs);
``sim.install()`` / ``sim.uninstall()`` point discord.py at the simulator and restore it. Identity:
``sim.token``, ``sim.application_id``, ``sim.bot_id``, ``sim.api_url``.

on_ready: discord.py fires it ``guild_ready_timeout`` (default 2 s) after the last GUILD_CREATE. Tests pass
``**sim.client_kwargs()`` (``guild_ready_timeout=0.1``) to the client, or call ``sim.prepare_client(client)``
for a client built by project code (``sim.running`` does that). ``await sim.wait_until_ready(client)`` /
``sim.running(client)`` return once on_ready has fired and every guild is cached.

Re-IDENTIFY (``drop_gateway(resume=False)``) costs 5 s with an unmodified client: discord.py's
``Client.before_identify_hook`` sleeps before every IDENTIFY but the first; a test may override that hook
in its own Client subclass.

Users (``sim.user("alice")`` -> :class:`SimUser`): ``slash("music generate", prompt=..., duration=10,
file=SimFile(...))`` (string, integer, number, boolean, attachment, user, channel, role options, checked
against the synced command), ``autocomplete(command, focused, value)``, ``message_command(name, message)``,
``user_command(name, target)``, ``click(message, custom_id | label=)``, ``select(message, custom_id, values)``,
``submit_modal(handle, {custom_id_or_label: value})``, ``send_message(content, files=, reply_to=,
mention_bot=, dm=)``, ``delete_message(message)`` (its author, or a member with Manage Messages there).
Invalid actions (unsynced command, wrong option type, disabled button) raise :class:`SimulatorError`. Like a
human, a user acts only after the bot has taken in its last output: each action first waits until every REST
response is on the wire and yields the event loop a few turns (so a client in the same loop has, e.g.,
registered the view of the message it just sent). No real time passes.

Interactions return an :class:`InteractionHandle`: ``wait_response()`` (callback type/data),
``wait_original(pred)``, ``wait_followup(pred, index=)``, ``wait_message(pred)``, ``wait_file(pred)``,
``wait_modal()``, ``wait_choices()``, ``wait_error(code)``; ``original``, ``followups``, ``calls``. The
message waits skip a defer's loading message ("is thinking…"): they return what the user reads.

Observing the bot (all ``wait_*`` return past matches too; ``since=sim.mark()`` ignores them; each raises
:class:`SimulatorTimeoutError` with what was seen instead): ``wait_for_message(channel_id, pred)``,
``wait_for_edit(message_id, pred)``, ``wait_for_delete(message_id)``, ``wait_for_file(channel_id, pred)``,
``wait_for_request(route, pred, status=)``, ``wait_for_sync(guild_id)``; logs ``sim.requests``
(:class:`RestCall`: route template, body, files, status, response), ``sim.validation_failures``,
``sim.take_validation_failures()`` (for failures provoked on purpose), ``sim.assert_no_validation_failures()``,
``sim.messages``, ``sim.message(id)``, ``sim.read_attachment(att)``,
``sim.commands_synced(guild_id)``, ``sim.command(name)`` (a :class:`SyncedCommand`: ``payload`` as Discord stored
it, ``default_member_permissions`` as the bot registered it; members lacking those bits aren't offered it),
``sim.assert_answered_in_time()`` (no first response came after the 3 s deadline).

Faults and time: ``sim.clock.advance(seconds)`` (3 s first-response deadline -> 10062, 15 min token ->
50027, CDN URLs expire after ``cdn_url_lifetime_s``; the clock is injectable, ``DiscordSimulator(clock=...)``,
and frozen unless built with ``SimClock(realtime=True)``: a test makes the bot "slow" by holding what it
waits on and advancing the clock, with no sleep), ``sim.inject_rate_limit(route, retry_after_s=)``,
``sim.inject_error(route, status=, code=)`` (both take ``times=`` (None: every call) and ``when=`` (called with
the parsed call, route params and body, to pick which calls fail) and return the ``Injection``, whose ``hits``
count what it answered), ``await sim.set_bot_permissions(channel_id, perms)``,
``await sim.drop_gateway(resume=True|False)``, ``await sim.request_reconnect()``,
``async with sim.gateway_outage(): ...`` (events queue and are replayed on RESUME).

Voice messages (``tests/fakes/discord/voice.py``): a channel message flagged IS_VOICE_MESSAGE (``1 << 13``) must
be one audio file with ``duration_secs`` and a base64 ``waveform`` of at most 256 points, nothing else, sent
with Send Voice Messages, and is never edited (Discord's errors 50159-50162, 50173). ``on_phone(message)``
says how Discord's phone apps show a message's audio: inline with its waveform only for a voice message whose
file decodes as Opus in Ogg; an ordinary audio attachment is a file to download.

Content intent: without MESSAGE_CONTENT, MESSAGE_CREATE/UPDATE and REST fetches blank content, embeds,
attachments and components except for the bot's own messages, DMs and messages that mention the bot.

Sharding (reference 1.10): a session that IDENTIFYs with ``shard: [id, count]`` gets only the guilds with
``(guild_id >> 22) % count == id`` in READY and GUILD_CREATE, and only their events and interactions; DMs go
to shard 0; a shard no session holds gets nothing (``sim.gateway.routed`` records where each dispatch
went). ``GET /gateway/bot`` recommends a count and reports ``session_start_limit``. A malformed shard is
closed with 4010, a session holding more than ``max_guilds_per_shard`` guilds (Discord: 2,500; set it
small in tests) with 4011. ``DiscordSimulator(max_guilds_per_shard=, recommended_guilds_per_shard=,
max_concurrency=, enforce_identify_rate=, shard_multiple=)`` (a large bot's shard count must be a multiple
of ``shard_multiple``, else 4010); ``guild_id_on_shard(shard_id, count, index)`` (in
``sharding``) makes ``GuildConfig(id=...)`` land on a chosen shard (the simulator's own ids, all made at
one frozen instant, land on one shard). ``sim.running(client)`` waits for the guilds of the client's own
shards (``sim.guilds_of(client)``). ``drop_gateway``, ``request_reconnect`` and ``gateway_outage`` take
``shard_id=`` (default: every shard). Of several sessions on one shard, the last to identify or resume
gets its events (Discord allows several; it doesn't say which gets what).

Known gaps: no voice gateway, threads, reactions, polls beyond storage or stickers; the token reset when
session starts run out is not enforced; rate limits happen only when
injected (the identify rate only with ``enforce_identify_rate``); discord.py's own
``Interaction.is_expired()`` uses real time, not the simulated clock.
"""

from .clock import SimClock
from .commands import SyncedCommand
from .errors import ApiError, SimulatorError, SimulatorTimeoutError
from .gateway import GatewayEvent
from .handles import InteractionHandle
from .interactions import CallbackRecord
from .models import (
    DEFAULT_BOT_PERMISSIONS,
    DEFAULT_EVERYONE_PERMISSIONS,
    MIB,
    ChannelConfig,
    GuildConfig,
    MemberConfig,
    MessageEvent,
    Permission,
    RoleConfig,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
)
from .router import RestCall, ValidationFailure
from .simulator import DiscordSimulator, Mark
from .users import SimFile, SimUser
from .voice import IS_VOICE_MESSAGE, PhonePlayback, on_phone

__all__ = [
    "DEFAULT_BOT_PERMISSIONS",
    "DEFAULT_EVERYONE_PERMISSIONS",
    "IS_VOICE_MESSAGE",
    "MIB",
    "ApiError",
    "CallbackRecord",
    "ChannelConfig",
    "DiscordSimulator",
    "GatewayEvent",
    "GuildConfig",
    "InteractionHandle",
    "Mark",
    "MemberConfig",
    "MessageEvent",
    "Permission",
    "PhonePlayback",
    "RestCall",
    "RoleConfig",
    "SimAttachment",
    "SimChannel",
    "SimClock",
    "SimFile",
    "SimGuild",
    "SimMessage",
    "SimUser",
    "SimulatorError",
    "SimulatorTimeoutError",
    "SyncedCommand",
    "ValidationFailure",
    "on_phone",
]
