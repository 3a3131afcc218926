"""Interactions: creating them for simulated users, and the token-authenticated routes that answer them.

Enforced rules (reference 1.1): the first response within ``response_deadline_s`` (3 s, else 404/10062),
only once (400/40060), the token for ``token_lifetime_s`` (15 min, else 401/50027), callback types per
interaction type, the legacy "first followup after a defer edits the loading message", files and embeds
against ``app_permissions``, and the interaction's ``attachment_size_limit``. Time is the simulator's clock
(:class:`~tests.fakes.discord.clock.SimClock`), which a test moves with ``advance()``: "the database was
stuck for ten seconds" is ``sim.clock.advance(10)`` while the bot waits, and an answer that was waiting on it
arrives too late, deterministically. Late first responses are kept in ``late_answers``.

Deleting the loading message of a defer ends its loading state: a followup after that is a new message and
keeps its own ephemeral flag (the legacy edit needs a loading message to edit).
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import field_error
from .messages import compose, edit, require_permissions
from .models import EPHEMERAL, LOADING, SimChannel, SimMessage
from .router import Ctx, Reply, Router
from .state import SimState
from .validation import callback_rules, message_rules
from .waiting import Journal
from .wire import RequestBody

PING, APPLICATION_COMMAND, MESSAGE_COMPONENT, AUTOCOMPLETE, MODAL_SUBMIT = 1, 2, 3, 4, 5
#: callback types Discord accepts per interaction type (6 and 7 only where there is a message to update)
_ALLOWED_CALLBACKS = {
    PING: {1},
    APPLICATION_COMMAND: {4, 5, 9},
    MESSAGE_COMPONENT: {4, 5, 6, 7, 9},
    AUTOCOMPLETE: {8},
    MODAL_SUBMIT: {4, 5},
}

Dispatch = Callable[[str, dict[str, Any]], Awaitable[None]]


@dataclass
class InteractionRecord:
    """Server-side state of one interaction."""

    id: int
    token: str
    type: int
    payload: dict[str, Any]
    channel_id: int
    guild_id: int | None
    user_id: int
    created_at: float
    app_permissions: int
    size_limit: int
    name: str = ""
    command_type: int | None = None
    #: the message carrying the clicked component (component and modal-submit-from-component interactions)
    message_id: int | None = None
    response_type: int | None = None
    original_id: int | None = None
    loading: bool = False
    followup_ids: list[int] = field(default_factory=list)
    modal: dict[str, Any] | None = None
    choices: list[dict[str, Any]] | None = None
    #: position in ``state.message_events`` when the interaction was created
    event_cursor: int = 0


@dataclass(frozen=True)
class CallbackRecord:
    """The bot's accepted initial response. ``message`` is set for types 4, 5 (loading) and 7."""

    interaction_id: int
    type: int
    data: dict[str, Any]
    message: SimMessage | None

    def __str__(self) -> str:
        return f"interaction {self.interaction_id} answered with type {self.type}"


class InteractionService:
    def __init__(
        self,
        state: SimState,
        dispatch: Dispatch,
        *,
        response_deadline_s: float = 3.0,
        token_lifetime_s: float = 900.0,
    ) -> None:
        self.state = state
        self._dispatch = dispatch
        self.response_deadline_s = response_deadline_s
        self.token_lifetime_s = token_lifetime_s
        self.by_id: dict[int, InteractionRecord] = {}
        self.by_token: dict[str, InteractionRecord] = {}
        self.callbacks: Journal[CallbackRecord] = Journal("interaction callbacks", str)
        #: interactions whose first response came after the deadline (the user saw "did not respond")
        self.late_answers: list[InteractionRecord] = []

    def register(self, router: Router) -> None:
        router.add(
            "POST",
            "/interactions/{interaction_id}/{interaction_token}/callback",
            self.callback,
            auth=False,
            rules=callback_rules,
        )
        router.add("POST", "/webhooks/{webhook_id}/{webhook_token}", self.followup, auth=False, rules=message_rules)
        for template in (
            "/webhooks/{webhook_id}/{webhook_token}/messages/@original",
            "/webhooks/{webhook_id}/{webhook_token}/messages/{message_id}",
        ):
            router.add("GET", template, self.get_message, auth=False)
            router.add("PATCH", template, self.edit_message, auth=False, rules=message_rules)
            router.add("DELETE", template, self.delete_message, auth=False)

    # ------------------------------------------------------------------ creating interactions

    async def create(
        self,
        type_: int,
        data: dict[str, Any],
        *,
        user_id: int,
        channel: SimChannel,
        name: str = "",
        command_type: int | None = None,
        message: SimMessage | None = None,
    ) -> InteractionRecord:
        """Register an interaction and send INTERACTION_CREATE to the bot."""
        s = self.state
        guild = s.guild_of(channel)
        rec = InteractionRecord(
            id=s.ids.next(),
            token="aW50ZXJhY3Rpb246" + secrets.token_urlsafe(64),
            type=type_,
            payload={},
            channel_id=channel.id,
            guild_id=channel.guild_id,
            user_id=user_id,
            created_at=s.clock.now(),
            app_permissions=s.bot_permissions(channel),
            size_limit=s.upload_limit(channel),
            name=name,
            command_type=command_type,
            message_id=None if message is None else message.id,
            event_cursor=len(s.message_events),
        )
        payload: dict[str, Any] = {
            "id": str(rec.id),
            "application_id": str(s.application_id),
            "type": type_,
            "data": data,
            "token": rec.token,
            "version": 1,
            "channel_id": str(channel.id),
            "channel": s.channel_payload(channel),
            "app_permissions": str(rec.app_permissions),
            "locale": s.accounts[user_id].locale,
            "entitlements": [],
            "attachment_size_limit": rec.size_limit,
            "context": 0 if guild is not None else 1,
        }
        if guild is not None:
            member = s.member_payload(guild, user_id)
            member["permissions"] = str(guild.channel_permissions(user_id, channel))
            payload.update(
                guild_id=str(guild.id),
                guild={"id": str(guild.id), "locale": guild.preferred_locale, "features": []},
                guild_locale=guild.preferred_locale,
                member=member,
                authorizing_integration_owners={"0": str(guild.id)},
            )
        else:
            payload.update(user=s.user_payload(s.accounts[user_id]), authorizing_integration_owners={"1": str(user_id)})
        if message is not None:
            payload["message"] = s.message_payload(message)
        rec.payload = payload
        self.by_id[rec.id] = rec
        self.by_token[rec.token] = rec
        s.interaction_meta[rec.id] = {"type": type_, "name": name, "user_id": user_id}
        await self._dispatch("INTERACTION_CREATE", payload)
        return rec

    # ------------------------------------------------------------------ the initial response

    async def callback(self, ctx: Ctx) -> Reply:
        s = self.state
        iid = ctx.params["interaction_id"]
        rec = self.by_id.get(int(iid)) if iid.isdigit() else None
        if rec is None or rec.token != ctx.params["interaction_token"]:
            raise errors.unknown_interaction()
        if rec.response_type is not None:
            raise errors.already_acknowledged()
        if s.clock.now() - rec.created_at > self.response_deadline_s:
            self.late_answers.append(rec)
            raise errors.unknown_interaction()
        ctype = int(ctx.payload.get("type") or 0)
        data: dict[str, Any] = ctx.payload.get("data") or {}
        allowed = set(_ALLOWED_CALLBACKS[rec.type])
        if rec.type == MODAL_SUBMIT and rec.message_id is not None:
            allowed |= {6, 7}
        if ctype not in allowed:
            raise errors.invalid_form_body(
                field_error(["type"], "INTERACTION_RESPONSE_TYPE_INVALID", f"Invalid interaction response type {ctype}")
            )
        inner = RequestBody(payload=data, files=ctx.body.files, multipart=ctx.body.multipart)
        message: SimMessage | None = None
        channel = s.channel(rec.channel_id)
        if ctype == 4:
            require_permissions(rec.app_permissions, inner, send=False)
            message = compose(
                s,
                channel,
                inner,
                author_id=s.bot.id,
                limit=rec.size_limit,
                msg_type=self._response_message_type(rec),
                allow_ephemeral=True,
                interaction_id=rec.id,
                webhook_id=s.application_id,
            )
            rec.original_id = message.id
        elif ctype == 5:
            flags = LOADING | (int(data.get("flags") or 0) & EPHEMERAL)
            message = SimMessage(
                id=s.ids.next(),
                channel_id=channel.id,
                guild_id=channel.guild_id,
                author_id=s.bot.id,
                type=self._response_message_type(rec),
                flags=flags,
                created_at=s.clock.now(),
                webhook_id=s.application_id,
                application_id=s.application_id,
                interaction_id=rec.id,
            )
            rec.original_id, rec.loading = message.id, True
        elif ctype in (6, 7):
            rec.original_id = rec.message_id
            if ctype == 7:
                require_permissions(rec.app_permissions, inner, send=False)
                message = edit(s, s.messages[rec.message_id or 0], inner, limit=rec.size_limit)
        elif ctype == 8:
            rec.choices = list(data.get("choices") or [])
        elif ctype == 9:
            rec.modal = data
        rec.response_type = ctype
        if message is not None:
            await s.publish("edit" if ctype == 7 else "create", message)
        self.callbacks.append(CallbackRecord(rec.id, ctype, data, message))
        if ctx.query.get("with_response", "false").lower() not in ("1", "true"):
            return Reply(status=204)
        return Reply(self._callback_body(rec, ctype, message))

    def _response_message_type(self, rec: InteractionRecord) -> int:
        if rec.type == APPLICATION_COMMAND:
            return 20 if rec.command_type == 1 else 23
        return 0

    def _callback_body(self, rec: InteractionRecord, ctype: int, message: SimMessage | None) -> dict[str, Any]:
        interaction: dict[str, Any] = {"id": str(rec.id), "type": rec.type}
        if rec.original_id is not None and ctype in (4, 5, 6, 7):
            current = self.state.messages.get(rec.original_id)
            interaction.update(
                response_message_id=str(rec.original_id),
                response_message_loading=rec.loading,
                response_message_ephemeral=bool(current is not None and current.is_ephemeral),
            )
        body: dict[str, Any] = {"interaction": interaction}
        if message is not None and ctype in (4, 7):
            body["resource"] = {"type": ctype, "message": self.state.message_payload(message)}
        return body

    # ------------------------------------------------------------------ the interaction webhook

    def _by_token(self, ctx: Ctx) -> InteractionRecord:
        if ctx.params["webhook_id"] != str(self.state.application_id):
            raise errors.unknown_webhook()
        rec = self.by_token.get(ctx.params["webhook_token"])
        if rec is None or self.state.clock.now() - rec.created_at > self.token_lifetime_s:
            raise errors.invalid_webhook_token()
        return rec

    def _target(self, rec: InteractionRecord, ctx: Ctx) -> SimMessage:
        raw = ctx.params.get("message_id", "@original")
        if raw == "@original" or (raw.isdigit() and rec.original_id == int(raw)):
            mid = rec.original_id
        elif raw.isdigit() and int(raw) in rec.followup_ids:
            mid = int(raw)
        else:
            mid = None
        msg = None if mid is None else self.state.messages.get(mid)
        if msg is None or msg.deleted:
            raise errors.unknown_message()
        return msg

    async def followup(self, ctx: Ctx) -> Reply:
        s = self.state
        rec = self._by_token(ctx)
        if rec.response_type in (None, 8, 9):
            raise errors.unknown_webhook()
        require_permissions(rec.app_permissions, ctx.body, send=False)
        original = s.messages.get(rec.original_id or 0)
        if rec.loading and not rec.followup_ids and original is not None and not original.deleted:
            # Legacy behaviour: the first followup after a type-5 defer fills in the loading message,
            # keeping the defer's ephemeral flag.
            msg = edit(s, original, ctx.body, limit=rec.size_limit)
            rec.loading = False
            rec.followup_ids.append(msg.id)
            await s.publish("edit", msg)
        else:
            msg = compose(
                s,
                s.channel(rec.channel_id),
                ctx.body,
                author_id=s.bot.id,
                limit=rec.size_limit,
                msg_type=self._response_message_type(rec),
                allow_ephemeral=True,
                interaction_id=rec.id,
                webhook_id=s.application_id,
            )
            rec.followup_ids.append(msg.id)
            await s.publish("create", msg)
        if ctx.query.get("wait", "false").lower() not in ("1", "true"):
            return Reply(status=204)
        return Reply(s.message_payload(msg))

    async def get_message(self, ctx: Ctx) -> Reply:
        return Reply(self.state.message_payload(self._target(self._by_token(ctx), ctx)))

    async def edit_message(self, ctx: Ctx) -> Reply:
        rec = self._by_token(ctx)
        msg = self._target(rec, ctx)
        require_permissions(rec.app_permissions, ctx.body, send=False)
        new = edit(self.state, msg, ctx.body, limit=rec.size_limit)
        if msg.id == rec.original_id:
            rec.loading = False
        await self.state.publish("edit", new)
        return Reply(self.state.message_payload(new))

    async def delete_message(self, ctx: Ctx) -> Reply:
        rec = self._by_token(ctx)
        msg = self._target(rec, ctx)
        if msg.id == rec.original_id:
            rec.loading = False
        await self.state.publish("delete", msg.evolve(deleted=True))
        return Reply(status=204)
