"""The gateway websocket: HELLO, IDENTIFY/READY/GUILD_CREATE, heartbeats, RESUME with replay, op 7 and op 9.

Frames are plain JSON text (discord.py only decompresses binary frames). Every dispatch is kept in the
session's buffer so a RESUME replays what the client missed. Test controls: :meth:`Gateway.drop`,
:meth:`Gateway.request_reconnect`, :meth:`Gateway.invalidate`, and :meth:`Gateway.hold` (accept sockets
but withhold HELLO, to queue events during an outage).
"""

from __future__ import annotations

import asyncio
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
CLOSE_INVALID_INTENTS = 4013
CLOSE_DISALLOWED_INTENTS = 4014


@dataclass(frozen=True)
class GatewayEvent:
    """Connection milestones: kind is "connect", "ready", "resumed", "invalid_session" or "closed"."""

    kind: str
    session_id: str | None
    path: str
    seq: int = 0

    def __str__(self) -> str:
        return f"{self.kind} session={self.session_id} path={self.path} seq={self.seq}"


@dataclass
class Session:
    id: str
    intents: int
    seq: int = 0
    frames: list[dict[str, Any]] = field(default_factory=list)
    ws: web.WebSocketResponse | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

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
    ) -> None:
        self.state = state
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.allowed_privileged_intents = allowed_privileged_intents
        self.base_ws_url = ""
        self.sessions: dict[str, Session] = {}
        self.current: Session | None = None
        self.events: Journal[GatewayEvent] = Journal("gateway events", str)
        self.received: list[dict[str, Any]] = []
        self._open = asyncio.Event()
        self._open.set()
        self._sockets: set[web.WebSocketResponse] = set()
        state.listeners.append(self._on_message_event)

    @property
    def url(self) -> str:
        return f"{self.base_ws_url}/gateway"

    @property
    def resume_url(self) -> str:
        return f"{self.base_ws_url}/gateway-resume"

    # ------------------------------------------------------------------ dispatching to the bot

    async def dispatch(self, event: str, data: dict[str, Any]) -> None:
        """Send a dispatch to the bot's current session (buffered for replay while disconnected)."""
        if self.current is None:
            raise SimulatorError(f"cannot send {event}: the bot has not identified on the gateway")
        await self.current.dispatch(event, data)

    async def _on_message_event(self, event: MessageEvent) -> None:
        session = self.current
        msg = event.message
        if session is None or msg.is_ephemeral:
            return
        needed = INTENT_DIRECT_MESSAGES if msg.guild_id is None else INTENT_GUILD_MESSAGES
        if not session.intents & needed:
            return
        if event.kind == "delete":
            data: dict[str, Any] = {"id": str(msg.id), "channel_id": str(msg.channel_id)}
            if msg.guild_id is not None:
                data["guild_id"] = str(msg.guild_id)
            await session.dispatch("MESSAGE_DELETE", data)
            return
        visible = self.state.content_visible(msg, session.intents)
        name = "MESSAGE_CREATE" if event.kind == "create" else "MESSAGE_UPDATE"
        await session.dispatch(name, self.state.message_payload(msg, visible=visible))

    # ------------------------------------------------------------------ test controls

    async def drop(self, *, code: int = 4000) -> None:
        """Close the bot's socket abnormally; discord.py reconnects to ``resume_gateway_url`` and RESUMEs."""
        session = self.current
        if session is not None and session.ws is not None:
            ws, session.ws = session.ws, None
            await ws.close(code=code, message=b"simulated drop")

    async def request_reconnect(self) -> None:
        """Op 7: the client closes and RESUMEs."""
        if self.current is not None and self.current.ws is not None:
            await self.current.ws.send_str(json.dumps({"op": RECONNECT, "d": None}))

    async def invalidate(self, *, resumable: bool = False) -> None:
        """Op 9: with ``resumable=False`` the session is forgotten and the client IDENTIFYs again."""
        session = self.current
        if session is None:
            return
        if not resumable:
            self.sessions.pop(session.id, None)
        if session.ws is not None:
            await session.ws.send_str(json.dumps({"op": INVALID_SESSION, "d": resumable}))

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
                session = await self._on_frame(ws, request.path, frame) or session
        finally:
            self._sockets.discard(ws)
            if session is not None and session.ws is ws:
                session.ws = None
            self.events.append(GatewayEvent("closed", None if session is None else session.id, request.path))
        return ws

    async def _on_frame(self, ws: web.WebSocketResponse, path: str, frame: dict[str, Any]) -> Session | None:
        op, data = frame.get("op"), frame.get("d")
        if op == HEARTBEAT:
            await ws.send_str(json.dumps({"op": HEARTBEAT_ACK}))
        elif op == IDENTIFY:
            return await self._identify(ws, path, data or {})
        elif op == RESUME:
            return await self._resume(ws, path, data or {})
        elif op == REQUEST_MEMBERS:
            await self._members_chunk(data or {})
        return None

    async def _identify(self, ws: web.WebSocketResponse, path: str, data: dict[str, Any]) -> Session | None:
        if data.get("token") != self.state.token:
            await ws.close(code=CLOSE_AUTHENTICATION_FAILED, message=b"Authentication failed.")
            return None
        intents = data.get("intents")
        if not isinstance(intents, int) or intents < 0:
            await ws.close(code=CLOSE_INVALID_INTENTS, message=b"Invalid intent(s).")
            return None
        privileged = INTENT_MESSAGE_CONTENT | INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES
        if intents & privileged & ~self.allowed_privileged_intents:
            await ws.close(code=CLOSE_DISALLOWED_INTENTS, message=b"Disallowed intent(s).")
            return None
        if self.current is not None and self.current.ws is not None and self.current.ws is not ws:
            await self.current.ws.close(code=4009, message=b"Session replaced.")
        session = Session(secrets.token_hex(16), intents, ws=ws)
        self.sessions[session.id] = session
        self.current = session
        self.state.intents = intents
        s = self.state
        ready = {
            "v": 10,
            "user": {**s.user_payload(s.bot), "verified": True, "mfa_enabled": False, "flags": 0, "email": None},
            "guilds": [{"id": str(g), "unavailable": True} for g in s.guilds],
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
            ready["shard"] = data["shard"]
        await session.dispatch("READY", ready)
        for guild in s.guilds.values():
            await session.dispatch("GUILD_CREATE", s.guild_payload(guild))
        self.events.append(GatewayEvent("ready", session.id, path, session.seq))
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
            self.current = session
            for frame in session.frames:
                if frame["s"] > seq:
                    await session.send(frame)
            session.seq += 1
            resumed = {"op": 0, "t": "RESUMED", "s": session.seq, "d": {}}
            session.frames.append(resumed)
            await session.send(resumed)
        self.events.append(GatewayEvent("resumed", session.id, path, seq))
        return session

    async def _members_chunk(self, data: dict[str, Any]) -> None:
        guild = self.state.guilds.get(int(data.get("guild_id") or 0))
        if guild is None or self.current is None:
            return
        members = [self.state.member_payload(guild, uid) for uid in guild.member_roles]
        chunk: dict[str, Any] = {"guild_id": str(guild.id), "members": members, "chunk_index": 0, "chunk_count": 1}
        if data.get("nonce") is not None:
            chunk["nonce"] = data["nonce"]
        await self.current.dispatch("GUILD_MEMBERS_CHUNK", chunk)
