"""The test-facing :class:`DiscordSimulator`: one aiohttp server on 127.0.0.1 with gateway, REST and CDN."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, ClassVar, Self

import discord
import discord.asset
import discord.gateway
import discord.http
import yarl
from aiohttp import web

from .cdn import Cdn
from .clock import SimClock
from .commands import CHAT_INPUT, CommandStore, SyncedCommand
from .errors import ApiError, SimulatorError, rate_limited
from .gateway import Gateway, GatewayEvent
from .handles import DEFAULT_TIMEOUT_S
from .interactions import InteractionService
from .models import (
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_PRESENCES,
    INTENT_MESSAGE_CONTENT,
    GuildConfig,
    MemberConfig,
    MessageEvent,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
)
from .rest import RestApi
from .router import API_PREFIX, Ctx, Injection, RestCall, Router, ValidationFailure
from .sharding import MAX_GUILDS_PER_SHARD, RECOMMENDED_GUILDS_PER_SHARD, shard_of
from .state import SimState
from .users import Services, SimUser


@dataclass(frozen=True)
class Mark:
    """Positions in the message and request logs; pass as ``since=`` to ignore what came before."""

    messages: int
    requests: int


class DiscordSimulator:
    """A local Discord (gateway + REST + CDN) for the real discord.py client. See the package docstring."""

    _installed: ClassVar[DiscordSimulator | None] = None

    def __init__(
        self,
        guilds: Sequence[GuildConfig] | None = None,
        *,
        clock: SimClock | None = None,
        bot_name: str = "Encore",
        allowed_privileged_intents: int = INTENT_MESSAGE_CONTENT | INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES,
        heartbeat_interval_ms: int = 41_250,
        cdn_url_lifetime_s: float = 86_400.0,
        response_deadline_s: float = 3.0,
        token_lifetime_s: float = 900.0,
        guild_ready_timeout_s: float = 0.1,
        max_guilds_per_shard: int = MAX_GUILDS_PER_SHARD,
        recommended_guilds_per_shard: int = RECOMMENDED_GUILDS_PER_SHARD,
        max_concurrency: int = 1,
        enforce_identify_rate: bool = False,
        shard_multiple: int = 1,
    ) -> None:
        self.clock = clock or SimClock()
        self.cdn = Cdn(self.clock, url_lifetime_s=cdn_url_lifetime_s)
        self.state = SimState(self.clock, self.cdn, bot_name=bot_name)
        for config in guilds if guilds is not None else [GuildConfig()]:
            self.state.add_guild(config)
        self.commands = CommandStore()
        self.router = Router(self.clock, self.state.token)
        self.gateway = Gateway(
            self.state,
            heartbeat_interval_ms=heartbeat_interval_ms,
            allowed_privileged_intents=allowed_privileged_intents,
            max_guilds_per_shard=max_guilds_per_shard,
            recommended_guilds_per_shard=recommended_guilds_per_shard,
            max_concurrency=max_concurrency,
            enforce_identify_rate=enforce_identify_rate,
            shard_multiple=shard_multiple,
        )
        self.interactions = InteractionService(
            self.state,
            self.gateway.dispatch,
            response_deadline_s=response_deadline_s,
            token_lifetime_s=token_lifetime_s,
        )
        RestApi(self.state, self.commands, self.gateway.bot_info).register(self.router)
        self.interactions.register(self.router)
        self._services = Services(self.state, self.commands, self.interactions, self.router)
        self.guild_ready_timeout_s = guild_ready_timeout_s
        self.base_url = ""
        self._runner: web.AppRunner | None = None
        self._saved: tuple[str, yarl.URL, str] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Listen on 127.0.0.1 (a free port)."""
        app = web.Application(client_max_size=512 * 1024 * 1024)
        app.router.add_get("/gateway", self.gateway.handle)
        app.router.add_get("/gateway-resume", self.gateway.handle)
        app.router.add_route("*", API_PREFIX + "/{tail:.*}", self.router.handle)
        app.router.add_get("/attachments/{tail:.*}", self.cdn.handle)
        app.router.add_get("/media/attachments/{tail:.*}", self.cdn.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        self._runner = runner
        port = runner.addresses[0][1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.cdn.base_url = self.base_url
        self.gateway.base_ws_url = f"ws://127.0.0.1:{port}"

    async def close(self) -> None:
        """Close sockets and stop listening (close the bot first, or it will try to reconnect)."""
        self.uninstall()
        await self.gateway.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        await self.start()
        self.install()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    def install(self) -> None:
        """Point discord.py at the simulator: ``Route.BASE``, ``DEFAULT_GATEWAY`` (a yarl.URL), ``Asset.BASE``."""
        if not self.base_url:
            raise SimulatorError("start() the simulator before install()")
        if DiscordSimulator._installed is not None and DiscordSimulator._installed is not self:
            raise SimulatorError("another DiscordSimulator is installed")
        if self._saved is None:
            ws = discord.gateway.DiscordWebSocket
            self._saved = (discord.http.Route.BASE, ws.DEFAULT_GATEWAY, discord.asset.Asset.BASE)
        discord.http.Route.BASE = f"{self.base_url}{API_PREFIX}"
        discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(self.gateway.url)
        discord.asset.Asset.BASE = self.base_url  # pyright: ignore[reportAttributeAccessIssue]
        DiscordSimulator._installed = self

    def uninstall(self) -> None:
        """Restore what :meth:`install` replaced."""
        if self._saved is not None:
            route_base, gateway, asset_base = self._saved
            discord.http.Route.BASE = route_base
            discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = gateway
            discord.asset.Asset.BASE = asset_base  # pyright: ignore[reportAttributeAccessIssue]
            self._saved = None
        if DiscordSimulator._installed is self:
            DiscordSimulator._installed = None

    # ------------------------------------------------------------------ identity and world

    @property
    def token(self) -> str:
        """The bot token the client must log in with."""
        return self.state.token

    @property
    def application_id(self) -> int:
        return self.state.application_id

    @property
    def bot_id(self) -> int:
        """The bot user's id (equal to the application id, as for real bots)."""
        return self.state.bot.id

    @property
    def api_url(self) -> str:
        return f"{self.base_url}{API_PREFIX}"

    @property
    def guild(self) -> SimGuild:
        """The first configured guild."""
        return next(iter(self.state.guilds.values()))

    @property
    def guilds(self) -> list[SimGuild]:
        return list(self.state.guilds.values())

    def channel(self, name_or_id: str | int, *, guild_id: int | None = None) -> SimChannel:
        """A channel by id, or by name in ``guild_id`` (default: the first guild)."""
        if isinstance(name_or_id, int):
            return self.state.channel(name_or_id)
        guild = self.state.guilds[guild_id] if guild_id is not None else self.guild
        for cid in guild.channel_ids:
            if self.state.channels[cid].name == name_or_id:
                return self.state.channels[cid]
        raise SimulatorError(f"no channel {name_or_id!r} in guild {guild.id}")

    @property
    def default_channel_id(self) -> int:
        """The first channel of the first guild (where users act by default)."""
        return self.guild.channel_ids[0]

    def user(self, username: str = "alice", *, guild_id: int | None = None, member: bool = True) -> SimUser:
        """The simulated user ``username``; created (as a member of ``guild_id``/the first guild) if new.

        ``member=False`` makes a user who shares no guild with the bot (reachable only by DM).
        """
        guild = self.state.guilds[guild_id] if guild_id is not None else self.guild
        account = next((a for a in self.state.accounts.values() if a.username == username and not a.bot), None)
        if account is None:
            account = (
                self.state.add_member(guild, MemberConfig(username))
                if member
                else self.state.account_for(MemberConfig(username))
            )
        elif member and account.id not in guild.member_roles:
            self.state.add_member(guild, MemberConfig(username, id=account.id))
        return SimUser(self._services, account, guild.id if member else None, guild.channel_ids[0])

    async def set_bot_permissions(self, channel_id: int, permissions: int) -> None:
        """Change what the bot may do in a channel (sends CHANNEL_UPDATE with the new overwrites)."""
        channel = self.state.channel(channel_id)
        channel.bot_permissions = int(permissions)
        if self.gateway.shards and channel.guild_id is not None:
            await self.gateway.dispatch("CHANNEL_UPDATE", self.state.channel_payload(channel))

    # ------------------------------------------------------------------ the bot's client

    def client_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``discord.Client``/``commands.Bot``: a short ``guild_ready_timeout``."""
        return {"guild_ready_timeout": self.guild_ready_timeout_s}

    def prepare_client(self, client: discord.Client) -> None:
        """Same as :meth:`client_kwargs` for a client built elsewhere (sets its ``guild_ready_timeout``)."""
        client._connection.guild_ready_timeout = self.guild_ready_timeout_s

    def guilds_of(self, client: discord.Client) -> list[int]:
        """The ids of the guilds on ``client``'s shards (every guild for an unsharded client)."""
        count = client.shard_count or 1
        if isinstance(client, discord.AutoShardedClient):
            shard_ids = list(client.shard_ids or range(count))
        else:
            shard_ids = [client.shard_id or 0]
        return [g for g in self.state.guilds if shard_of(g, count) in shard_ids]

    async def wait_until_ready(self, client: discord.Client, *, timeout_s: float = 10.0) -> None:
        """Until ``on_ready`` has fired and every guild on the client's shards is in its cache."""
        async with asyncio.timeout(timeout_s):
            await client.wait_until_ready()
            while any(client.get_guild(g) is None for g in self.guilds_of(client)):
                await client.wait_for("guild_available")

    @contextlib.asynccontextmanager
    async def running(self, client: discord.Client, *, timeout_s: float = 10.0) -> AsyncIterator[discord.Client]:
        """Start ``client`` against the simulator, wait until ready, and close it afterwards.

        A client that dies (e.g. on a malformed payload) fails the ``async with``.
        """
        self.prepare_client(client)
        task = asyncio.create_task(client.start(self.token), name="discord-sim-client")
        ready = asyncio.create_task(self.wait_until_ready(client, timeout_s=timeout_s))
        try:
            await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                ready.cancel()
                await task
                raise SimulatorError("the client stopped before it was ready")
            await ready
            yield client
        finally:
            ready.cancel()
            await client.close()
            async with asyncio.timeout(timeout_s):
                await asyncio.gather(task, return_exceptions=False)

    # ------------------------------------------------------------------ observing the bot

    def mark(self) -> Mark:
        return Mark(len(self.state.message_events), len(self.router.calls))

    @property
    def requests(self) -> Sequence[RestCall]:
        """Every REST call so far (method, route template, body, files, status, response)."""
        return self.router.calls.items

    def requests_to(self, route: str) -> list[RestCall]:
        """Calls to ``route``, e.g. ``"POST /channels/{channel_id}/messages"``."""
        return [c for c in self.router.calls.items if c.route == route]

    @property
    def validation_failures(self) -> list[ValidationFailure]:
        """Requests rejected for their body (50035 schema/rule errors, 50006 empty message)."""
        return list(self.router.validation_failures)

    def assert_answered_in_time(self) -> None:
        """Fail unless every first response came within the deadline: a late one is refused with 10062, and
        the user sees "The application did not respond"."""
        late = self.interactions.late_answers
        if late:
            names = ", ".join(f"{rec.name or rec.type} ({rec.id})" for rec in late)
            deadline = self.interactions.response_deadline_s
            raise AssertionError(f"{len(late)} interaction(s) answered after the {deadline:g} s deadline: {names}")

    def take_validation_failures(self) -> list[ValidationFailure]:
        """Return and forget the failures so far (for tests that provoke them on purpose)."""
        failures = list(self.router.validation_failures)
        self.router.validation_failures.clear()
        return failures

    def assert_no_validation_failures(self) -> None:
        if self.router.validation_failures:
            lines = "\n  ".join(str(f) for f in self.router.validation_failures)
            raise AssertionError(f"the bot sent invalid request bodies:\n  {lines}")

    @property
    def messages(self) -> list[SimMessage]:
        """Current versions of all messages, oldest first (deleted ones excluded)."""
        return [m for m in self.state.messages.values() if not m.deleted]

    def message(self, message_id: int) -> SimMessage:
        """Current version of a message."""
        msg = self.state.messages.get(message_id)
        if msg is None:
            raise SimulatorError(f"no message {message_id}")
        return msg

    def read_attachment(self, attachment: SimAttachment | int) -> bytes:
        att = self.cdn.get(attachment if isinstance(attachment, int) else attachment.id)
        if att is None:
            raise SimulatorError(f"no attachment {attachment}")
        return att.data

    def attachment_url(self, attachment: SimAttachment) -> str:
        """A freshly signed CDN URL for ``attachment``."""
        return self.cdn.urls(attachment)[0]

    def commands_synced(self, guild_id: int | None = None) -> list[SyncedCommand]:
        """Commands as last synced globally (``None``) or for ``guild_id``."""
        return self.commands.list(guild_id)

    def command(self, name: str, *, type: int = CHAT_INPUT, guild_id: int | None = None) -> SyncedCommand:
        cmd = self.commands.find(name, type, guild_id)
        if cmd is None:
            raise SimulatorError(f"command {name!r} (type {type}) was not synced")
        return cmd

    async def wait_for_sync(
        self, guild_id: int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> list[SyncedCommand]:
        """The first command sync for ``guild_id`` (None: global), past or future."""
        record = await self.commands.syncs.wait(lambda r: r.guild_id == guild_id, timeout_s=timeout_s)
        return record.commands

    async def _wait_event(
        self, pred: Callable[[MessageEvent], bool], since: Mark | None, timeout_s: float, what: str
    ) -> SimMessage:
        start = since.messages if since else 0
        event = await self.state.message_events.wait(pred, timeout_s=timeout_s, since=start, looking_for=what)
        return event.message

    async def wait_for_message(
        self,
        channel_id: int | None = None,
        predicate: Callable[[SimMessage], bool] | None = None,
        *,
        from_bot: bool = True,
        since: Mark | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> SimMessage:
        """The first message created (by the bot, unless ``from_bot=False``) matching the filters."""

        def pred(ev: MessageEvent) -> bool:
            m = ev.message
            return (
                ev.kind == "create"
                and (channel_id is None or m.channel_id == channel_id)
                and (not from_bot or m.author_id == self.bot_id)
                and (predicate is None or predicate(m))
            )

        return await self._wait_event(pred, since, timeout_s, f"a new message in channel {channel_id}")

    async def wait_for_edit(
        self,
        message_id: int,
        predicate: Callable[[SimMessage], bool] | None = None,
        *,
        since: Mark | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> SimMessage:
        """The first edited version of ``message_id`` matching ``predicate``."""

        def pred(ev: MessageEvent) -> bool:
            return ev.kind == "edit" and ev.message.id == message_id and (predicate is None or predicate(ev.message))

        return await self._wait_event(pred, since, timeout_s, f"an edit of message {message_id}")

    async def wait_for_delete(self, message_id: int, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> SimMessage:
        def pred(ev: MessageEvent) -> bool:
            return ev.kind == "delete" and ev.message.id == message_id

        return await self._wait_event(pred, None, timeout_s, f"deletion of message {message_id}")

    async def wait_for_file(
        self,
        channel_id: int | None = None,
        predicate: Callable[[SimAttachment], bool] | None = None,
        *,
        since: Mark | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> SimAttachment:
        """The first file the bot posted or attached by an edit (any route) matching the filters."""

        def matching(m: SimMessage) -> list[SimAttachment]:
            return [a for a in m.attachments if predicate is None or predicate(a)]

        def pred(ev: MessageEvent) -> bool:
            m = ev.message
            ok_channel = channel_id is None or m.channel_id == channel_id
            return ev.kind != "delete" and m.author_id == self.bot_id and ok_channel and bool(matching(m))

        return matching(await self._wait_event(pred, since, timeout_s, f"a file in channel {channel_id}"))[0]

    async def wait_for_request(
        self,
        route: str | None = None,
        predicate: Callable[[RestCall], bool] | None = None,
        *,
        status: int | None = None,
        since: Mark | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> RestCall:
        """The first REST call to ``route`` (e.g. ``"PATCH /channels/{channel_id}/messages/{message_id}"``)."""

        def pred(c: RestCall) -> bool:
            return (
                (route is None or c.route == route)
                and (status is None or c.status == status)
                and (predicate is None or predicate(c))
            )

        start = since.requests if since else 0
        return await self.router.calls.wait(pred, timeout_s=timeout_s, since=start, looking_for=f"a call to {route}")

    # ------------------------------------------------------------------ faults

    def inject_rate_limit(
        self,
        route: str | None = None,
        *,
        times: int | None = 1,
        retry_after_s: float = 0.05,
        is_global: bool = False,
        when: Callable[[Ctx], bool] | None = None,
    ) -> Injection:
        """Answer the next ``times`` calls to ``route`` (None: any) with 429 (``Via`` + ``retry_after``).

        ``times=None``: every matching call; ``when`` (given the parsed call) picks which calls match.
        Each route gets its own ``X-RateLimit-Bucket``, as on Discord; a global limit has scope ``global``.
        """
        bucket = hashlib.sha256((route or "any").encode()).hexdigest()[:32]
        error = rate_limited(retry_after_s, is_global=is_global, scope="global" if is_global else "user", bucket=bucket)
        injection = Injection(route, error, times, when=when)
        self.router.inject(injection)
        return injection

    def inject_error(
        self,
        route: str | None,
        *,
        status: int,
        code: int = 0,
        message: str = "Injected error",
        times: int | None = 1,
        when: Callable[[Ctx], bool] | None = None,
    ) -> Injection:
        """Answer the next ``times`` calls to ``route`` with ``status``/``code`` (see ``inject_rate_limit``)."""
        injection = Injection(route, ApiError(status, code, message), times, when=when)
        self.router.inject(injection)
        return injection

    async def _reconnected(self, mark: int, timeout_s: float, kind: str, count: int) -> GatewayEvent:
        """The last of ``count`` gateway events of ``kind`` after position ``mark``."""
        if count == 0:
            raise SimulatorError("no gateway session is connected")
        events = self.gateway.events
        async with asyncio.timeout(timeout_s):
            while True:
                event = await events.wait(lambda e: e.kind == kind, since=mark, timeout_s=timeout_s, looking_for=kind)
                mark = events.items.index(event, mark) + 1
                count -= 1
                if count == 0:
                    return event

    async def drop_gateway(
        self, *, resume: bool = True, shard_id: int | None = None, timeout_s: float = 10.0
    ) -> GatewayEvent:
        """Cut the bot's gateway connections (every shard's, or only ``shard_id``'s) and wait until they are back.

        ``resume=True``: the socket closes abnormally; the client RESUMEs and missed events are replayed.
        ``resume=False``: op 9 (not resumable); the client IDENTIFYs again and gets READY + GUILD_CREATEs.
        """
        mark = len(self.gateway.events)
        if resume:
            count = await self.gateway.drop(shard_id=shard_id)
            return await self._reconnected(mark, timeout_s, "resumed", count)
        count = await self.gateway.invalidate(resumable=False, shard_id=shard_id)
        return await self._reconnected(mark, timeout_s, "ready", count)

    async def request_reconnect(self, *, shard_id: int | None = None, timeout_s: float = 10.0) -> GatewayEvent:
        """Send op 7 RECONNECT (to every shard, or ``shard_id``) and wait for the RESUMEs."""
        mark = len(self.gateway.events)
        count = await self.gateway.request_reconnect(shard_id=shard_id)
        return await self._reconnected(mark, timeout_s, "resumed", count)

    @contextlib.asynccontextmanager
    async def gateway_outage(self, *, shard_id: int | None = None, timeout_s: float = 10.0) -> AsyncIterator[None]:
        """Inside the block the bot is disconnected (every shard, or only ``shard_id``; events queue up); on
        exit it RESUMEs and gets them."""
        mark = len(self.gateway.events)
        self.gateway.hold()
        try:
            count = await self.gateway.drop(shard_id=shard_id)
            yield
        finally:
            self.gateway.release()
        await self._reconnected(mark, timeout_s, "resumed", count)
