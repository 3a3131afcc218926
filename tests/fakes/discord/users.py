"""Simulated humans: they invoke commands, click, submit modals and post messages, as a Discord client would.

Every action is checked the way the Discord client checks it (the command was synced, options exist and
have the right type, the button is on the message and enabled, required modal fields are filled) and
raises :class:`SimulatorError` otherwise. Interactions return an :class:`InteractionHandle` (see
``handles.py``) to await the bot's answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeAlias

from .cdn import guess_content_type
from .commands import (
    ATTACHMENT,
    BOOLEAN,
    CHANNEL,
    CHAT_INPUT,
    INTEGER,
    MENTIONABLE,
    MESSAGE,
    NUMBER,
    ROLE,
    STRING,
    USER,
    USER_OPTION,
    CommandStore,
    SyncedCommand,
)
from .errors import SimulatorError
from .handles import InteractionHandle
from .interactions import APPLICATION_COMMAND, AUTOCOMPLETE, MESSAGE_COMPONENT, MODAL_SUBMIT, InteractionService
from .models import Account, Permission, SimAttachment, SimChannel, SimMessage, SimRole, iter_components
from .router import Router
from .state import SimState


@dataclass(frozen=True)
class SimFile:
    """A file a simulated user uploads (attachment option or message attachment)."""

    filename: str
    data: bytes
    content_type: str | None = None
    description: str | None = None

    @classmethod
    def from_path(cls, path: str | Path) -> SimFile:
        p = Path(path)
        return cls(p.name, p.read_bytes())


#: what ``slash(..., option=value)`` accepts: str, int, float, bool, SimFile (attachment), a user
#: (SimUser, Account or id), a channel (SimChannel or id) or a role (SimRole or id)
OptionValue: TypeAlias = "str | int | float | bool | SimFile | Account | SimUser | SimChannel | SimRole"
#: event-loop turns a client in the same loop gets to digest a response (measured need: 2)
_CATCH_UP_ITERATIONS = 20


@dataclass(frozen=True)
class Services:
    state: SimState
    commands: CommandStore
    interactions: InteractionService
    router: Router


class SimUser:
    """A human member of a guild (or a DM partner). Get one with ``sim.user("alice")``."""

    def __init__(self, services: Services, account: Account, guild_id: int | None, default_channel_id: int) -> None:
        self._svc = services
        self.account = account
        self.guild_id = guild_id
        self.default_channel_id = default_channel_id

    def __repr__(self) -> str:
        return f"<SimUser {self.account.username} id={self.id}>"

    @property
    def id(self) -> int:
        return self.account.id

    @property
    def username(self) -> str:
        return self.account.username

    @property
    def mention(self) -> str:
        return self.account.mention

    # ------------------------------------------------------------------ helpers

    async def _see_latest(self) -> None:
        """Act like a human who saw the bot's last output: only after the bot's client has taken it in.

        Waits until every REST response is on the wire, then yields the event loop a few times so a
        client in the same loop finishes handling them (e.g. registers the view of the message it just
        sent) before this user's next interaction reaches it. No real time passes.
        """
        await self._svc.router.idle()
        for _ in range(_CATCH_UP_ITERATIONS):
            await asyncio.sleep(0)

    def _channel(self, channel_id: int | None, dm: bool) -> SimChannel:
        state = self._svc.state
        if dm:
            return state.dm_channel(self.id)
        channel = state.channels.get(channel_id or self.default_channel_id)
        if channel is None:
            raise SimulatorError(f"no channel {channel_id}")
        guild = state.guild_of(channel)
        if guild is not None and self.id not in guild.member_roles:
            raise SimulatorError(f"{self.username} is not a member of guild {guild.id}")
        if guild is not None and not guild.channel_permissions(self.id, channel):
            raise SimulatorError(f"{self.username} can't see channel {channel.name!r}")
        return channel

    def _command(self, name: str, type_: int, channel: SimChannel) -> SyncedCommand:
        cmd = self._svc.commands.find(name, type_, channel.guild_id)
        if cmd is None:
            synced = {scope: [c.name for c in cmds] for scope, cmds in self._svc.commands.scopes.items()}
            raise SimulatorError(f"command {name!r} (type {type_}) was never synced for this channel; synced: {synced}")
        contexts = cmd.payload.get("contexts")
        context = 1 if channel.is_dm else 0
        if contexts is not None and context not in contexts:
            raise SimulatorError(f"command {name!r} is not available in context {context}")
        if channel.is_dm and cmd.guild_id is not None:
            raise SimulatorError(f"guild command {name!r} cannot be used in DMs")
        required = cmd.payload.get("default_member_permissions")
        guild = self._svc.state.guild_of(channel)
        if required is not None and guild is not None:
            have = guild.member_permissions(self.id)
            if int(required) & ~have:
                raise SimulatorError(f"{self.username} lacks permissions {required} for {name!r}")
        return cmd

    def _resolved_user(self, resolved: dict[str, Any], user_id: int, channel: SimChannel) -> None:
        state = self._svc.state
        if user_id not in state.accounts:
            raise SimulatorError(f"unknown user {user_id}")
        resolved.setdefault("users", {})[str(user_id)] = state.user_payload(state.accounts[user_id])
        guild = state.guild_of(channel)
        if guild is not None and user_id in guild.member_roles:
            member = state.member_payload(guild, user_id, with_user=False)
            member["permissions"] = str(guild.channel_permissions(user_id, channel))
            resolved.setdefault("members", {})[str(user_id)] = member

    def _option(self, defn: dict[str, Any], value: Any, resolved: dict[str, Any], channel: SimChannel) -> Any:
        """Check ``value`` against the synced option and return its wire value (filling ``resolved``)."""
        t, name, state = defn["type"], defn["name"], self._svc.state
        if t == STRING:
            if not isinstance(value, str):
                raise SimulatorError(f"option {name!r} takes a string, got {value!r}")
            if not defn.get("min_length", 0) <= len(value) <= defn.get("max_length", 6000):
                raise SimulatorError(f"option {name!r}: length {len(value)} outside the allowed range")
        elif t in (INTEGER, NUMBER):
            ok = isinstance(value, int) if t == INTEGER else isinstance(value, int | float)
            if not ok or isinstance(value, bool):
                raise SimulatorError(f"option {name!r} takes {'an integer' if t == INTEGER else 'a number'}")
            lo, hi = defn.get("min_value"), defn.get("max_value")
            if (lo is not None and value < lo) or (hi is not None and value > hi):
                raise SimulatorError(f"option {name!r}: {value} outside [{lo}, {hi}]")
        elif t == BOOLEAN:
            if not isinstance(value, bool):
                raise SimulatorError(f"option {name!r} takes a boolean")
        elif t == ATTACHMENT:
            if not isinstance(value, SimFile):
                raise SimulatorError(f"option {name!r} takes a SimFile")
            att = state.cdn.add(
                SimAttachment(
                    id=state.ids.next(),
                    channel_id=channel.id,
                    filename=value.filename,
                    data=value.data,
                    content_type=value.content_type or guess_content_type(value.filename),
                    description=value.description,
                    ephemeral=True,
                )
            )
            resolved.setdefault("attachments", {})[str(att.id)] = state.attachment_payload(att)
            return str(att.id)
        elif t in (USER_OPTION, MENTIONABLE) and isinstance(value, Account | SimUser | int):
            uid = value if isinstance(value, int) else value.id
            self._resolved_user(resolved, uid, channel)
            return str(uid)
        elif t == CHANNEL and isinstance(value, SimChannel | int):
            target = state.channels.get(value if isinstance(value, int) else value.id)
            if target is None:
                raise SimulatorError(f"option {name!r}: unknown channel")
            data = state.channel_payload(target)
            data["permissions"] = str(state.bot_permissions(target))
            resolved.setdefault("channels", {})[str(target.id)] = data
            return str(target.id)
        elif t in (ROLE, MENTIONABLE) and isinstance(value, SimRole | int):
            guild = state.guild_of(channel)
            role = guild.role(value if isinstance(value, int) else value.id) if guild else None
            if role is None:
                raise SimulatorError(f"option {name!r}: unknown role")
            resolved.setdefault("roles", {})[str(role.id)] = state.role_payload(role)
            return str(role.id)
        else:
            raise SimulatorError(f"option {name!r} (type {t}) cannot take {value!r}")
        choices = defn.get("choices")
        if choices and value not in [c["value"] for c in choices]:
            raise SimulatorError(f"option {name!r}: {value!r} is not one of {[c['value'] for c in choices]}")
        return value

    def _command_data(
        self,
        command: str,
        values: Mapping[str, Any],
        channel: SimChannel,
        *,
        focused: str | None = None,
    ) -> tuple[SyncedCommand, dict[str, Any]]:
        words = command.strip().lstrip("/").split()
        if not words:
            raise SimulatorError("empty command")
        cmd = self._command(words[0], CHAT_INPUT, channel)
        chain, defs = cmd.find_path(words[1:])
        by_name = {d["name"]: d for d in defs}
        unknown = set(values) - set(by_name)
        if unknown:
            raise SimulatorError(f"/{command}: unknown options {sorted(unknown)}; has {sorted(by_name)}")
        resolved: dict[str, Any] = {}
        options: list[dict[str, Any]] = []
        for defn in defs:
            name = defn["name"]
            if name == focused:
                if not defn.get("autocomplete"):
                    raise SimulatorError(f"option {name!r} has no autocomplete")
                options.append(
                    {"name": name, "type": defn["type"], "value": str(values.get(name, "")), "focused": True}
                )
            elif name in values:
                options.append(
                    {"name": name, "type": defn["type"], "value": self._option(defn, values[name], resolved, channel)}
                )
            elif defn.get("required") and focused is None:
                raise SimulatorError(f"/{command}: required option {name!r} missing")
        for sub in reversed(chain):
            options = [{"name": sub["name"], "type": sub["type"], "options": options}]
        data: dict[str, Any] = {"id": str(cmd.id), "name": cmd.name, "type": CHAT_INPUT, "options": options}
        if resolved:
            data["resolved"] = resolved
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        return cmd, data

    async def _interact(
        self,
        type_: int,
        data: dict[str, Any],
        channel: SimChannel,
        *,
        name: str = "",
        command_type: int | None = None,
        message: SimMessage | None = None,
    ) -> InteractionHandle:
        svc = self._svc
        await self._see_latest()
        rec = await svc.interactions.create(
            type_, data, user_id=self.id, channel=channel, name=name, command_type=command_type, message=message
        )
        return InteractionHandle(rec, svc.state, svc.interactions, svc.router)

    def _current(self, message: SimMessage | int) -> SimMessage:
        mid = message if isinstance(message, int) else message.id
        current = self._svc.state.messages.get(mid)
        if current is None or current.deleted:
            raise SimulatorError(f"message {mid} does not exist (or was deleted)")
        return current

    # ------------------------------------------------------------------ application commands

    async def slash(
        self,
        command: str,
        /,
        *,
        channel_id: int | None = None,
        dm: bool = False,
        options: Mapping[str, OptionValue] | None = None,
        **kwargs: OptionValue,
    ) -> InteractionHandle:
        """Invoke ``/command`` (``"music generate"`` for a subcommand) with typed option values."""
        channel = self._channel(channel_id, dm)
        values = {**(options or {}), **kwargs}
        cmd, data = self._command_data(command, values, channel)
        return await self._interact(
            APPLICATION_COMMAND, data, channel, name=command.strip().lstrip("/"), command_type=cmd.type
        )

    async def autocomplete(
        self,
        command: str,
        /,
        focused: str,
        value: str = "",
        *,
        channel_id: int | None = None,
        dm: bool = False,
        **other: OptionValue,
    ) -> InteractionHandle:
        """Type into option ``focused`` of ``/command``; await ``handle.wait_choices()``."""
        channel = self._channel(channel_id, dm)
        cmd, data = self._command_data(command, {**other, focused: value}, channel, focused=focused)
        return await self._interact(AUTOCOMPLETE, data, channel, name=cmd.name, command_type=cmd.type)

    async def message_command(self, name: str, message: SimMessage | int) -> InteractionHandle:
        """Use the message context menu ``name`` on ``message``."""
        target = self._current(message)
        channel = (
            self._channel(target.channel_id, False) if target.guild_id else self._svc.state.channel(target.channel_id)
        )
        cmd = self._command(name, MESSAGE, channel)
        state = self._svc.state
        data: dict[str, Any] = {
            "id": str(cmd.id),
            "name": cmd.name,
            "type": MESSAGE,
            "target_id": str(target.id),
            "resolved": {"messages": {str(target.id): state.message_payload(target)}},
        }
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        return await self._interact(APPLICATION_COMMAND, data, channel, name=cmd.name, command_type=MESSAGE)

    async def user_command(
        self, name: str, target: SimUser | Account | int, *, channel_id: int | None = None
    ) -> InteractionHandle:
        """Use the user context menu ``name`` on ``target``."""
        channel = self._channel(channel_id, False)
        cmd = self._command(name, USER, channel)
        uid = target if isinstance(target, int) else target.id
        resolved: dict[str, Any] = {}
        self._resolved_user(resolved, uid, channel)
        data: dict[str, Any] = {
            "id": str(cmd.id),
            "name": cmd.name,
            "type": USER,
            "target_id": str(uid),
            "resolved": resolved,
        }
        if cmd.guild_id is not None:
            data["guild_id"] = str(cmd.guild_id)
        return await self._interact(APPLICATION_COMMAND, data, channel, name=cmd.name, command_type=USER)

    # ------------------------------------------------------------------ components and modals

    def _component(self, msg: SimMessage, custom_id: str | None, label: str | None) -> dict[str, Any]:
        for comp in iter_components(msg.components):
            if (custom_id is not None and comp.get("custom_id") == custom_id) or (
                custom_id is None and label is not None and comp.get("label") == label
            ):
                if comp.get("disabled"):
                    raise SimulatorError(f"component {custom_id or label!r} is disabled")
                if not comp.get("custom_id"):
                    raise SimulatorError(f"component {label!r} has no custom_id (a link button?)")
                return comp
        raise SimulatorError(f"message {msg.id} has no component {custom_id or label!r}; has {msg.custom_ids()}")

    async def click(
        self, message: SimMessage | int, custom_id: str | None = None, *, label: str | None = None
    ) -> InteractionHandle:
        """Click the button with ``custom_id`` (or ``label``) on the current version of ``message``."""
        msg = self._current(message)
        comp = self._component(msg, custom_id, label)
        if comp.get("type") != 2:
            raise SimulatorError(f"component {comp.get('custom_id')!r} is not a button")
        data = {"custom_id": comp["custom_id"], "component_type": 2, "id": comp.get("id")}
        return await self._interact(MESSAGE_COMPONENT, data, self._svc.state.channel(msg.channel_id), message=msg)

    async def forge_click(self, message: SimMessage | int, custom_id: str) -> InteractionHandle:
        """A button interaction for ``custom_id`` on ``message``, whatever the message shows (the button may be
        disabled or missing): what a modified client can send. Discord's docs tell apps to validate the data of
        component interactions themselves ("ensuring that the custom_id originates from the received message"),
        so a bot must answer such a click sensibly."""
        msg = self._current(message)
        data = {"custom_id": custom_id, "component_type": 2}
        return await self._interact(MESSAGE_COMPONENT, data, self._svc.state.channel(msg.channel_id), message=msg)

    async def select(self, message: SimMessage | int, custom_id: str, values: Sequence[str]) -> InteractionHandle:
        """Choose ``values`` in the select menu ``custom_id`` on ``message``."""
        msg = self._current(message)
        comp = self._component(msg, custom_id, None)
        if comp.get("type") not in (3, 5, 6, 7, 8):
            raise SimulatorError(f"component {custom_id!r} is not a select menu")
        if comp.get("type") == 3:
            allowed = [o["value"] for o in comp.get("options") or []]
            if any(v not in allowed for v in values):
                raise SimulatorError(f"select {custom_id!r}: {list(values)} not all in {allowed}")
        if not comp.get("min_values", 1) <= len(values) <= comp.get("max_values", 1):
            raise SimulatorError(f"select {custom_id!r}: wrong number of values")
        data = {"custom_id": custom_id, "component_type": comp["type"], "values": list(values), "id": comp.get("id")}
        return await self._interact(MESSAGE_COMPONENT, data, self._svc.state.channel(msg.channel_id), message=msg)

    async def submit_modal(
        self, opened_by: InteractionHandle, values: Mapping[str, str | Sequence[str]]
    ) -> InteractionHandle:
        """Fill in and submit the modal the bot showed in answer to ``opened_by``.

        ``values`` is keyed by each input's ``custom_id`` or its label; a list value answers a select.
        """
        rec = opened_by.record
        if rec.modal is None:
            raise SimulatorError(f"interaction {rec.id} was not answered with a modal")
        modal = rec.modal
        unused = dict(values)
        rows: list[dict[str, Any]] = []

        def answer(field: dict[str, Any], label: str | None) -> dict[str, Any]:
            cid = field["custom_id"]
            key = cid if cid in unused else label if label in unused else None
            value = unused.pop(key) if key is not None else None
            if field.get("type") == 4:
                text = "" if value is None else str(value)
                if field.get("required", True) and not text:
                    raise SimulatorError(f"modal field {label or cid!r} is required")
                if text and not field.get("min_length", 0) <= len(text) <= field.get("max_length", 4000):
                    raise SimulatorError(f"modal field {label or cid!r}: length {len(text)} not allowed")
                return {"type": 4, "custom_id": cid, "value": text, "id": field.get("id")}
            chosen = [] if value is None else [value] if isinstance(value, str) else list(value)
            return {"type": field["type"], "custom_id": cid, "values": chosen, "id": field.get("id")}

        for comp in modal.get("components") or []:
            if comp.get("type") == 1:
                inner = [answer(c, c.get("label")) for c in comp.get("components") or []]
                rows.append({"type": 1, "id": comp.get("id"), "components": inner})
            elif comp.get("type") == 18:
                rows.append(
                    {"type": 18, "id": comp.get("id"), "component": answer(comp["component"], comp.get("label"))}
                )
        if unused:
            raise SimulatorError(f"modal has no fields {sorted(unused)}")
        message = None if rec.message_id is None else self._current(rec.message_id)
        data = {"custom_id": modal["custom_id"], "components": rows}
        channel = self._svc.state.channel(rec.channel_id)
        return await self._interact(MODAL_SUBMIT, data, channel, name=rec.name, message=message)

    # ------------------------------------------------------------------ messages

    async def send_message(
        self,
        content: str = "",
        *,
        channel_id: int | None = None,
        dm: bool = False,
        files: Sequence[SimFile] = (),
        reply_to: SimMessage | int | None = None,
        ping_reply: bool = True,
        mention_bot: bool = False,
    ) -> SimMessage:
        """Post a message (MESSAGE_CREATE reaches the bot, subject to its intents).

        ``reply_to`` makes it a reply (which pings the replied-to author unless ``ping_reply=False``);
        ``mention_bot`` prefixes a ``<@bot>`` mention.
        """
        state = self._svc.state
        channel = self._channel(channel_id, dm)
        await self._see_latest()
        if mention_bot:
            content = f"{state.bot.mention} {content}".rstrip()
        reference = None
        reply_author = None
        if reply_to is not None:
            target = self._current(reply_to)
            reference = {
                "type": 0,
                "message_id": target.id,
                "channel_id": target.channel_id,
                "guild_id": target.guild_id,
            }
            reply_author = target.author_id if ping_reply else None
        attachments = [
            state.cdn.add(
                SimAttachment(
                    id=state.ids.next(),
                    channel_id=channel.id,
                    filename=f.filename,
                    data=f.data,
                    content_type=f.content_type or guess_content_type(f.filename),
                    description=f.description,
                )
            )
            for f in files
        ]
        mentions, roles, everyone = state.resolve_mentions(content, None, reply_author)
        msg = SimMessage(
            id=state.ids.next(),
            channel_id=channel.id,
            guild_id=channel.guild_id,
            author_id=self.id,
            content=content,
            type=19 if reference else 0,
            attachments=attachments,
            mentions=mentions,
            mention_roles=roles,
            mention_everyone=everyone,
            message_reference=reference,
            created_at=state.clock.now(),
        )
        return await state.publish("create", msg)

    async def delete_message(self, message: SimMessage | int) -> SimMessage:
        """Delete a message, as its author or a member with Manage Messages in its channel (MESSAGE_DELETE
        reaches the bot; the message is gone from REST fetches)."""
        state = self._svc.state
        target = self._current(message)
        channel = self._channel(target.channel_id, dm=False) if target.guild_id is not None else None
        await self._see_latest()
        if target.author_id != self.id and channel is not None:
            guild = state.guild_of(channel)
            if guild is None or not guild.channel_permissions(self.id, channel) & Permission.MANAGE_MESSAGES:
                raise SimulatorError(f"{self.username} may not delete message {target.id}")
        return await state.publish("delete", target.evolve(deleted=True))
