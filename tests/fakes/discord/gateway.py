"""The gateway websocket: HELLO, IDENTIFY/READY/GUILD_CREATE, heartbeats, RESUME with replay, op 7 and op 9.

Frames are plain JSON text (discord.py only decompresses binary frames). Every dispatch is kept in the
session's buffer so a RESUME replays what the client missed. Test controls: :meth:`Gateway.drop`,
:meth:`Gateway.request_reconnect`, :meth:`Gateway.invalidate` (each for every shard's session, or one
shard's), and :meth:`Gateway.hold` (accept sockets but withhold HELLO, to queue events during an outage).

Sharding (``sharding.py``): each session holds a shard ``[shard_id, num_shards]`` (``[0, 1]`` without one)
and gets only that shard's guilds in READY and GUILD_CREATE, and only their events; events without a guild
(DMs) go to shard 0. Discord lets several sessions hold the same shard; here an event goes to one of them,
the one that identified or resumed last (a restarted bot takes over from the one it replaces). Refusals:
4010 for a malformed shard, 4011 for a session that would hold more than ``max_guilds_per_shard`` guilds.
With ``enforce_identify_rate`` a second IDENTIFY in the same bucket (``shard_id % max_concurrency``) within
5 s gets op 9, as on Discord; it is off by default because tests restart bots faster than that, and it
counts real time (clients wait for it with real sleeps), not the simulated clock. Every dispatch is
recorded in :attr:`Gateway.routed`: which session and shard it went to, or none.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from .errors import SimulatorError
from .models import (
    INTENT_DIRECT_MESSAGES,
    INTENT_GUILD_MEMBERS,
    INTENT_GUILD_MESSAGES,
    INTENT_GUILD_PRESENCES,
    INTENT_MESSAGE_CONTENT,
    MessageEvent,
)
from .sharding import (
    DAY_S,
    IDENTIFY_WINDOW_S,
    MAX_GUILDS_PER_SHARD,
    RECOMMENDED_GUILDS_PER_SHARD,
    SESSION_START_TOTAL,
    Shard,
    parse_shard,
    recommended_shards,
    shard_of,
)
from .state import SimState
from .waiting import Journal

log = logging.getLogger(__name__)

HELLO, HEARTBEAT, IDENTIFY, RESUME, RECONNECT, REQUEST_MEMBERS, INVALID_SESSION, HEARTBEAT_ACK = (
    10,
    1,
    2,
    6,
    7,
    8,
    9,
    11,
)
CLOSE_AUTHENTICATION_FAILED = 4004
CLOSE_INVALID_SHARD = 4010
CLOSE_SHARDING_REQUIRED = 4011
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014


@dataclass(frozen=True)
class GatewayEvent:
    """Connection milestones: kind is "connect", "ready", "resumed", "invalid_session", "refused" (closed
    by the gateway with ``code``: 4004, 4010, 4011, 4013, 4014) or "closed"."""

    kind: str
    session_id: str | None
    path: str
    seq: int = 0
    shard: Shard | None = None
    code: int | None = None

    def __str__(self) -> str:
        extra = "" if self.shard is None else f" shard={list(self.shard)}"
        extra += "" if self.code is None else f" code={self.code}"
        return f"{self.kind} session={self.session_id} path={self.path} seq={self.seq}{extra}"


@dataclass(frozen=True)
class Routed:
    """Where one dispatch went: the session (and its shard) that got it, or None if no session holds its
    shard (Discord drops it: an interaction there is never answered)."""

    event: str
    guild_id: int | None
    ref: str | None  # the payload's id (an interaction's, a message's), if it has one
    shard: Shard | None
    session_id: str | None

    def __str__(self) -> str:
        where = "nowhere" if self.shard is None else f"shard {list(self.shard)} session {self.session_id}"
        return f"{self.event} {self.ref} (guild {self.guild_id}) -> {where}"


@dataclass
class Session:
    id: str
    intents: int
    shard: Shard = (0, 1)
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    #: when it last identified or resumed (a counter): of several sessions holding a shard, the last gets its events
    active: int = 0

    def holds(self, guild_id: int | None) -> bool:
        """Whether this session's shard gets ``guild_id``'s events (None: a DM's, shard 0's)."""
        shard_id, count = self.shard
        return shard_of(guild_id, count) == shard_id

    async def send(self, frame: dict[str, Any]) -> None:
        ws = self.ws
        if ws is None or ws.closed:
            return
        try:
            await ws.send_str(json.dumps(frame))
        except (ConnectionError, RuntimeError):
            self.ws = None

    async def dispatch(self, event: str, data: Any) -> None:
        async with self.lock:
            self.seq += 1
            frame = {"op": 0, "t": event, "s": self.seq, "d": data}
            self.frames.append(frame)
            await self.send(frame)


class Gateway:
    """Serves ``/gateway`` (first connection) and ``/gateway-resume`` (the ``resume_gateway_url``)."""

    def __init__(
        self,
        state: SimState,
        *,
        heartbeat_interval_ms: int = 41_250,
        allowed_privileged_intents: int = INTENT_MESSAGE_CONTENT | INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES,
        max_guilds_per_shard: int = MAX_GUILDS_PER_SHARD,
        recommended_guilds_per_shard: int = RECOMMENDED_GUILDS_PER_SHARD,
        max_concurrency: int = 1,
        session_start_total: int = SESSION_START_TOTAL,
        enforce_identify_rate: bool = False,
        shard_multiple: int = 1,
    ) -> None:
        self.state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_privileged_intents = allowed_privileged_intents
        self.max_guilds_per_shard = max_guilds_per_shard
        self.recommended_guilds_per_shard = recommended_guilds_per_shard
        self.max_concurrency = max_concurrency
        self.session_start_total = session_start_total
        self.enforce_identify_rate = enforce_identify_rate
        #: large bot sharding: the shard count must be a multiple of this (Discord gives large bots theirs)
        self.shard_multiple = shard_multiple
        self.base_ws_url = ""
        self.sessions: dict[str, Session] = {}
        #: per shard, the session that last identified or resumed on it
        self.shards: dict[Shard, Session] = {}
        self.events: Journal[GatewayEvent] = Journal("gateway events", str)
        self.routed: Journal[Routed] = Journal("gateway dispatches", str)
        self.received: list[dict[str, Any]] = []
        self._open = asyncio.Event()
        self._open.set()
        self._sockets: set[web.WebSocketResponse] = set()
        self._activations = itertools.count(1)
        self._identified_at: dict[int, float] = {}  # bucket (shard_id % max_concurrency) -> loop time
        self._session_starts: list[float] = []  # simulated times of the IDENTIFYs of the last day
        state.listeners.append(self._on_message_event)

    @property
    def url(self) -> str:
        return f"{self.base_ws_url}/gateway"

    @property
    def resume_url(self) -> str:
        return f"{self.base_ws_url}/gateway-resume"

    @property
    def current(self) -> Session | None:
        """The session that identified or resumed last (of any shard)."""
        return max(self.shards.values(), key=lambda s: s.active, default=None)

    # ------------------------------------------------------------------ sharding

    def receiver(self, guild_id: int | None) -> Session | None:
        """The session that gets ``guild_id``'s events (None: a DM's): the last active one holding its shard."""
        return max((s for s in self.shards.values() if s.holds(guild_id)), key=lambda s: s.active, default=None)

    def recommended_shards(self) -> int:
        return recommended_shards(
            self.state.guilds,
            per_shard=self.recommended_guilds_per_shard,
            max_per_shard=self.max_guilds_per_shard,
            multiple=self.shard_multiple,
        )

    def bot_info(self) -> dict[str, Any]:
        """``GET /gateway/bot``: the URL, the recommended shard count and the session start limit."""
        now = self.state.clock.now()
        self._session_starts = [t for t in self._session_starts if now - t < DAY_S]
        first = self._session_starts[0] if self._session_starts else now
        limit = {
            "total": self.session_start_total,
            "remaining": max(0, self.session_start_total - len(self._session_starts)),
            "reset_after": int((first + DAY_S - now) * 1000) if self._session_starts else 0,
            "max_concurrency": self.max_concurrency,
        }
        return {"url": self.url, "shards": self.recommended_shards(), "session_start_limit": limit}

    # ------------------------------------------------------------------ dispatching to the bot

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the session holding its guild's shard (shard 0 without a ``guild_id``); buffered
        for replay while that session is disconnected, dropped if no session holds the shard."""
        if not self.shards:
            raise SimulatorError(f"cannot send {event}: the bot has not identified on the gateway")
        raw_guild = data.get("guild_id")
        guild_id = int(raw_guild) if raw_guild is not None else None
        session = self.receiver(guild_id)
        self._route(event, data, guild_id, session)
        if session is not None:
            await session.dispatch(event, data)

    def _route(self, event: str, data: dict[str, Any], guild_id: int | None, session: Session | None) -> None:
        ref = data.get("id")
        self.routed.append(
            Routed(
                event,
                guild_id,
                None if ref is None else str(ref),
                None if session is None else session.shard,
                None if session is None else session.id,
            )
        )

    async def _on_message_event(self, event: MessageEvent) -> None:
        msg = event.message
        if not self.shards or msg.is_ephemeral:
            return
        session = self.receiver(msg.guild_id)
        needed = INTENT_DIRECT_MESSAGES if msg.guild_id is None else INTENT_GUILD_MESSAGES
        if session is None or not session.intents & needed:
            return
        if event.kind == "delete":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            name = "MESSAGE_DELETE"
        else:
            visible = self.state.content_visible(msg, session.intents)
            name = "MESSAGE_CREATE" if event.kind == "create" else "MESSAGE_UPDATE"
            data = self.state.message_payload(msg, visible=visible)
        self._route(name, data, msg.guild_id, session)
        await session.dispatch(name, data)

    # ------------------------------------------------------------------ test controls

    def _connected(self, shard_id: int | None) -> list[Session]:
        """The sessions events go to (one per shard) that are connected now, or only those of ``shard_id``."""
        return [s for s in self.shards.values() if s.ws is not None and (shard_id is None or s.shard[0] == shard_id)]

    async def drop(self, *, code: int = 4000, shard_id: int | None = None) -> int:
        """Close the sockets abnormally (every shard's, or ``shard_id``'s); discord.py reconnects to
        ``resume_gateway_url`` and RESUMEs. Returns how many were closed."""
        sessions = self._connected(shard_id)
        for session in sessions:
            if session.ws is not None:
                ws, session.ws = session.ws, None
                await ws.close(code=code, message=b"simulated drop")
        return len(sessions)

    async def request_reconnect(self, *, shard_id: int | None = None) -> int:
        """Op 7: the client closes and RESUMEs. Returns how many sessions were asked."""
        sessions = self._connected(shard_id)
        for session in sessions:
            if session.ws is not None:
                await session.ws.send_str(json.dumps({"op": RECONNECT, "d": None}))
        return len(sessions)

    async def invalidate(self, *, resumable: bool = False, shard_id: int | None = None) -> int:
        """Op 9: with ``resumable=False`` the sessions are forgotten and the client IDENTIFYs again."""
        sessions = self._connected(shard_id)
        for session in sessions:
            if not resumable:
                self.sessions.pop(session.id, None)
            if session.ws is not None:
                await session.ws.send_str(json.dumps({"op": INVALID_SESSION, "d": resumable}))
        return len(sessions)

    def hold(self) -> None:
        """Accept new sockets but send no HELLO until :meth:`release`."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    async def close(self) -> None:
        self._open.set()
        for ws in list(self._sockets):
            await ws.close(code=1001, message=b"simulator closing")

    # ------------------------------------------------------------------ the socket

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(max_msg_size=0)
        await ws.prepare(request)
        self._sockets.add(ws)
        self.events.append(GatewayEvent("connect", None, request.path))
        session: Session | None = None
        try:
            await self._open.wait()
            if ws.closed:
                return ws
            await ws.send_str(json.dumps({"op": HELLO, "d": {"heartbeat_interval": self.heartbeat_interval_ms}}))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                frame = json.loads(msg.data)
                self.received.append(frame)
                session = await self._on_frame(ws, request.path, frame, session) or session
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.events.append(
                GatewayEvent(
                    "closed",
                    None if session is None else session.id,
                    request.path,
                    shard=None if session is None else session.shard,
                    code=ws.close_code,
                )
            )
        return ws

    async def _on_frame(
        self, ws: web.WebSocketResponse, path: str, frame: dict[str, Any], session: Session | None
    ) -> Session | None:
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            return await self._identify(ws, path, data or {})
        elif op == RESUME:
            return await self._resume(ws, path, data or {})
        elif op == REQUEST_MEMBERS and session is not None:
            await self._members_chunk(session, data or {})
        return None

    async def _refuse(self, ws: web.WebSocketResponse, path: str, code: int, reason: str, shard: Shard | None) -> None:
        self.events.append(GatewayEvent("refused", None, path, shard=shard, code=code))
        await ws.close(code=code, message=reason.encode())

    def _identify_too_soon(self, shard: Shard) -> bool:
        """Discord's identify rate: one IDENTIFY per bucket (``shard_id % max_concurrency``) per 5 s."""
        if not self.enforce_identify_rate:
            return False
        bucket = shard[0] % self.max_concurrency
        now = asyncio.get_running_loop().time()
        last = self._identified_at.get(bucket)
        if last is not None and now - last < IDENTIFY_WINDOW_S:
            return True
        self._identified_at[bucket] = now
        return False

    async def _identify(self, ws: web.WebSocketResponse, path: str, data: dict[str, Any]) -> Session | None:
        if data.get("token") != self.state.token:
            await self._refuse(ws, path, CLOSE_AUTHENTICATION_FAILED, "Authentication failed.", None)
            return None
        shard = parse_shard(data.get("shard"))
        if shard is None or shard[1] % self.shard_multiple:
            await self._refuse(ws, path, CLOSE_INVALID_SHARD, "Invalid shard.", None)
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await self._refuse(ws, path, CLOSE_INVALID_INTENTS, "Invalid intent(s).", shard)
            return None
        privileged = INTENT_MESSAGE_CONTENT | INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES
        if intents & privileged & ~self.allowed_privileged_intents:
            await self._refuse(ws, path, CLOSE_DISALLOWED_INTENTS, "Disallowed intent(s).", shard)
            return None
        if self._identify_too_soon(shard):
            self.events.append(GatewayEvent("invalid_session", None, path, shard=shard))
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        s = self.state
        session = Session(secrets.token_hex(16), intents, shard, ws=ws, active=next(self._activations))
        guilds = [g for g in s.guilds.values() if session.holds(g.id)]
        if len(guilds) > self.max_guilds_per_shard:
            await self._refuse(ws, path, CLOSE_SHARDING_REQUIRED, "Sharding required.", shard)
            return None
        self._session_starts.append(s.clock.now())
        self.sessions[session.id] = session
        self.shards[shard] = session
        s.intents = intents
        ready = {
            "v": 10,
            "user": {**s.user_payload(s.bot), "verified": True, "mfa_enabled": False, "flags": 0, "email": None},
            "guilds": [{"id": str(g.id), "unavailable": True} for g in guilds],
            "session_id": session.id,
            "session_type": "normal",
            "resume_gateway_url": self.resume_url,
            "application": {"id": str(s.application_id), "flags": (1 << 18) | (1 << 19)},
            "private_channels": [],
            "relationships": [],
            "presences": [],
            "guild_join_requests": [],
            "geo_ordered_rtc_regions": ["simulated"],
            "user_settings": {},
        }
        if "shard" in data:
            ready["shard"] = list(shard)
        await session.dispatch("READY", ready)
        for guild in guilds:
            await session.dispatch("GUILD_CREATE", s.guild_payload(guild))
        self.events.append(GatewayEvent("ready", session.id, path, session.seq, shard=shard))
        return session

    async def _resume(self, ws: web.WebSocketResponse, path: str, data: dict[str, Any]) -> Session | None:
        session = self.sessions.get(str(data.get("session_id")))
        seq = data.get("seq") or 0
        if data.get("token") != self.state.token or session is None or seq > session.seq:
            self.events.append(GatewayEvent("invalid_session", None, path))
            await ws.send_str(json.dumps({"op": INVALID_SESSION, "d": False}))
            return None
        async with session.lock:
            session.ws = ws
            session.active = next(self._activations)
            self.shards[session.shard] = session
            for frame in session.frames:
                if frame["s"] > seq:
                    await session.send(frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}
            session.frames.append(resumed)
            await session.send(resumed)
        self.events.append(GatewayEvent("resumed", session.id, path, seq, shard=session.shard))
        return session

    async def _members_chunk(self, session: Session, data: dict[str, Any]) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None or not session.holds(guild.id):
            return
        members = [self.state.member_payload(guild, uid) for uid in guild.member_roles]
        chunk: dict[str, Any] = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await session.dispatch("GUILD_MEMBERS_CHUNK", chunk)
