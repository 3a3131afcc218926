"""The simulated world: accounts, guilds, channels and messages, and the JSON payloads built from them."""

from __future__ import annotations

import base64
import re
import secrets
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from . import errors
from .cdn import Cdn
from .clock import SimClock, SnowflakeFactory
from .models import (
    DM_UPLOAD_LIMIT,
    INTENT_MESSAGE_CONTENT,
    Account,
    GuildConfig,
    MemberConfig,
    MessageEvent,
    SimAttachment,
    SimChannel,
    SimGuild,
    SimMessage,
    SimRole,
)
from .waiting import Journal

_USER_MENTION = re.compile(r"<@!?(\d+)>")
_ROLE_MENTION = re.compile(r"<@&(\d+)>")

MessageListener = Callable[[MessageEvent], Awaitable[None]]


def _sid(value: int | None) -> str | None:
    return None if value is None else str(value)


class SimState:
    """Everything the simulated Discord knows. REST, gateway and users all read and change it here."""

    def __init__(self, clock: SimClock, cdn: Cdn, *, bot_name: str = "Encore") -> None:
        self.clock = clock
        self.cdn = cdn
        self.ids = SnowflakeFactory(clock)
        self.application_id = self.ids.next()
        self.bot = Account(self.application_id, bot_name, bot=True)
        self.token = (
            base64.b64encode(str(self.bot.id).encode()).decode().rstrip("=") + ".Gsim00." + secrets.token_urlsafe(27)
        )
        self.accounts: dict[int, Account] = {self.bot.id: self.bot}
        self.guilds: dict[int, SimGuild] = {}
        self.channels: dict[int, SimChannel] = {}
        self.messages: dict[int, SimMessage] = {}
        self.dm_channels: dict[int, int] = {}
        #: interaction id -> {"type", "name", "user_id"} for message ``interaction_metadata``
        self.interaction_meta: dict[int, dict[str, Any]] = {}
        #: intents of the bot's current gateway session (governs content visibility on REST too)
        self.intents = 0
        self.message_events: Journal[MessageEvent] = Journal("message events", str)
        self.listeners: list[MessageListener] = []
        self._nonces: dict[tuple[int, int, str], tuple[int, float]] = {}

    # ------------------------------------------------------------------ building the world

    def add_guild(self, config: GuildConfig) -> SimGuild:
        gid = config.id or self.ids.next()
        humans = [self.account_for(m) for m in config.members]
        owner = humans[0].id if humans else self.bot.id
        bot_perms = int(config.bot_permissions)
        bot_role = SimRole(self.ids.next(), self.bot.username, bot_perms, position=1, managed=True)
        guild = SimGuild(gid, config.name, config.premium_tier, owner, bot_role.id, bot_perms)
        guild.joined_at = self.clock.now()
        guild.preferred_locale = config.preferred_locale
        guild.roles = [SimRole(gid, "@everyone", int(config.everyone_permissions)), bot_role]
        by_name: dict[str, int] = {}
        for pos, rc in enumerate(config.roles, start=2):
            role = SimRole(rc.id or self.ids.next(), rc.name, int(rc.permissions), position=pos)
            guild.roles.append(role)
            by_name[rc.name] = role.id
        guild.member_roles[self.bot.id] = [bot_role.id]
        for member, account in zip(config.members, humans, strict=True):
            guild.member_roles[account.id] = [by_name[r] for r in member.roles]
        for pos, cc in enumerate(config.channels):
            perms = int(config.bot_permissions if cc.bot_permissions is None else cc.bot_permissions)
            channel = SimChannel(cc.id or self.ids.next(), cc.name, cc.type, gid, pos, perms, cc.topic, cc.nsfw)
            names = {"@everyone": gid, **by_name}
            channel.role_overwrites = {names[name]: (int(a), int(d)) for name, (a, d) in cc.overwrites.items()}
            self.channels[channel.id] = channel
            guild.channel_ids.append(channel.id)
        self.guilds[gid] = guild
        return guild

    def account_for(self, member: MemberConfig) -> Account:
        if member.id is not None and member.id in self.accounts:
            return self.accounts[member.id]
        account = Account(
            member.id or self.ids.next(),
            member.username,
            member.global_name,
            dms_open=member.dms_open,
            locale=member.locale,
        )
        self.accounts[account.id] = account
        return account

    def add_member(self, guild: SimGuild, member: MemberConfig) -> Account:
        account = self.account_for(member)
        names = {r.name: r.id for r in guild.roles}
        guild.member_roles[account.id] = [names[r] for r in member.roles]
        return account

    def dm_channel(self, user_id: int) -> SimChannel:
        """The DM channel between the bot and ``user_id`` (created on first use)."""
        if user_id not in self.dm_channels:
            channel = SimChannel(self.ids.next(), "", type=1, recipient_id=user_id)
            self.channels[channel.id] = channel
            self.dm_channels[user_id] = channel.id
        return self.channels[self.dm_channels[user_id]]

    # ------------------------------------------------------------------ lookups (raise ApiError)

    def channel(self, channel_id: int | str) -> SimChannel:
        channel = self.channels.get(int(channel_id)) if str(channel_id).isdigit() else None
        if channel is None:
            raise errors.unknown_channel()
        return channel

    def message(self, channel_id: int, message_id: int | str) -> SimMessage:
        msg = self.messages.get(int(message_id)) if str(message_id).isdigit() else None
        if msg is None or msg.deleted or msg.channel_id != channel_id:
            raise errors.unknown_message()
        return msg

    def guild_of(self, channel: SimChannel) -> SimGuild | None:
        return None if channel.guild_id is None else self.guilds[channel.guild_id]

    def upload_limit(self, channel: SimChannel) -> int:
        guild = self.guild_of(channel)
        return DM_UPLOAD_LIMIT if guild is None else guild.upload_limit

    def bot_permissions(self, channel: SimChannel) -> int:
        """What the bot may do in ``channel`` (DMs: everything a DM allows)."""
        return channel.bot_permissions if channel.guild_id is not None else (1 << 53) - 1

    def content_visible(self, msg: SimMessage, intents: int | None = None) -> bool:
        """Reference 1.7: without MESSAGE_CONTENT only own messages, DMs and bot mentions show content."""
        intents = self.intents if intents is None else intents
        return bool(
            intents & INTENT_MESSAGE_CONTENT
            or msg.author_id == self.bot.id
            or msg.guild_id is None
            or self.bot.id in msg.mentions
        )

    # ------------------------------------------------------------------ messages

    def find_nonce(self, channel_id: int, author_id: int, nonce: str, window_s: float = 300.0) -> SimMessage | None:
        hit = self._nonces.get((channel_id, author_id, nonce))
        if hit is None or self.clock.now() - hit[1] > window_s:
            return None
        msg = self.messages.get(hit[0])
        return None if msg is None or msg.deleted else msg

    def resolve_mentions(
        self,
        content: str,
        allowed: dict[str, Any] | None,
        reply_author: int | None,
    ) -> tuple[list[int], list[int], bool]:
        """``(user ids, role ids, everyone)`` actually pinged, applying ``allowed_mentions`` like Discord."""
        parse = ["users", "roles", "everyone"] if allowed is None else (allowed.get("parse") or [])
        in_text = [int(m) for m in _USER_MENTION.findall(content) if int(m) in self.accounts]
        if "users" in parse:
            users = in_text
        else:
            listed = {int(u) for u in (allowed or {}).get("users") or []}
            users = [u for u in in_text if u in listed]
        roles_text = [int(r) for r in _ROLE_MENTION.findall(content)]
        if "roles" in parse:
            roles = roles_text
        else:
            listed_roles = {int(r) for r in (allowed or {}).get("roles") or []}
            roles = [r for r in roles_text if r in listed_roles]
        ping_reply = True if allowed is None else bool(allowed.get("replied_user", False))
        if reply_author is not None and ping_reply and reply_author not in users:
            users.append(reply_author)
        everyone = "everyone" in parse and ("@everyone" in content or "@here" in content)
        return list(dict.fromkeys(users)), roles, everyone

    async def publish(self, kind: str, msg: SimMessage) -> SimMessage:
        """Store ``msg`` as the current version, log the event and tell listeners (the gateway)."""
        self.messages[msg.id] = msg
        if kind == "create" and msg.nonce is not None:
            self._nonces[(msg.channel_id, msg.author_id, str(msg.nonce))] = (msg.id, self.clock.now())
        event = MessageEvent(kind, msg, len(self.message_events))
        self.message_events.append(event)
        for listener in self.listeners:
            await listener(event)
        return msg

    # ------------------------------------------------------------------ payloads

    def user_payload(self, account: Account) -> dict[str, Any]:
        return {
            "id": str(account.id),
            "username": account.username,
            "discriminator": "0",
            "global_name": account.global_name,
            "avatar": None,
            "bot": account.bot,
            "public_flags": 0,
        }

    def member_payload(self, guild: SimGuild, user_id: int, *, with_user: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "roles": [str(r) for r in guild.member_roles.get(user_id, [])],
            "joined_at": self.clock.iso(guild.joined_at),
            "nick": None,
            "avatar": None,
            "deaf": False,
            "mute": False,
            "flags": 0,
            "pending": False,
            "premium_since": None,
            "communication_disabled_until": None,
        }
        if with_user:
            data["user"] = self.user_payload(self.accounts[user_id])
        return data

    def role_payload(self, role: SimRole) -> dict[str, Any]:
        return {
            "id": str(role.id),
            "name": role.name,
            "permissions": str(role.permissions),
            "position": role.position,
            "color": 0,
            "hoist": False,
            "managed": role.managed,
            "mentionable": False,
            "flags": 0,
        }

    def channel_payload(self, channel: SimChannel) -> dict[str, Any]:
        if channel.is_dm:
            assert channel.recipient_id is not None
            return {
                "id": str(channel.id),
                "type": 1,
                "last_message_id": None,
                "recipients": [self.user_payload(self.accounts[channel.recipient_id])],
            }
        guild = self.guilds[channel.guild_id or 0]
        overwrites: list[dict[str, Any]] = [
            {"id": str(role_id), "type": 0, "allow": str(allow), "deny": str(deny)}
            for role_id, (allow, deny) in channel.role_overwrites.items()
        ]
        # The bot's member overwrite takes it from what its roles give it here to its configured permissions.
        base = guild.role_overwritten(self.bot.id, channel)
        if base != channel.bot_permissions:
            allow, deny = channel.bot_permissions & ~base, base & ~channel.bot_permissions
            overwrites.append({"id": str(self.bot.id), "type": 1, "allow": str(allow), "deny": str(deny)})
        return {
            "id": str(channel.id),
            "type": channel.type,
            "guild_id": str(guild.id),
            "name": channel.name,
            "position": channel.position,
            "permission_overwrites": overwrites,
            "topic": channel.topic,
            "nsfw": channel.nsfw,
            "last_message_id": None,
            "rate_limit_per_user": 0,
            "parent_id": None,
            "flags": 0,
        }

    def guild_payload(self, guild: SimGuild) -> dict[str, Any]:
        """GUILD_CREATE ``d``: ``member_count`` equals ``len(members)`` so discord.py never waits on chunks."""
        members = [self.member_payload(guild, uid) for uid in guild.member_roles]
        return {
            "id": str(guild.id),
            "name": guild.name,
            "icon": None,
            "splash": None,
            "banner": None,
            "description": None,
            "owner_id": str(guild.owner_id),
            "premium_tier": guild.premium_tier,
            "premium_subscription_count": [0, 2, 7, 14][guild.premium_tier],
            "member_count": len(members),
            "large": False,
            "unavailable": False,
            "joined_at": self.clock.iso(guild.joined_at),
            "roles": [self.role_payload(r) for r in guild.roles],
            "channels": [self.channel_payload(self.channels[c]) for c in guild.channel_ids],
            "members": members,
            "threads": [],
            "emojis": [],
            "stickers": [],
            "features": [],
            "voice_states": [],
            "presences": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "soundboard_sounds": [],
            "verification_level": 0,
            "default_message_notifications": 0,
            "explicit_content_filter": 0,
            "mfa_level": 0,
            "nsfw_level": 0,
            "afk_timeout": 300,
            "afk_channel_id": None,
            "system_channel_id": None,
            "rules_channel_id": None,
            "public_updates_channel_id": None,
            "preferred_locale": guild.preferred_locale,
            "application_id": None,
            "max_members": 500000,
        }

    def attachment_payload(self, att: SimAttachment) -> dict[str, Any]:
        url, proxy_url = self.cdn.urls(att)
        data: dict[str, Any] = {
            "id": str(att.id),
            "filename": att.filename,
            "size": att.size,
            "url": url,
            "proxy_url": proxy_url,
            "content_type": att.content_type,
        }
        if att.description is not None:
            data["description"] = att.description
        if att.ephemeral:
            data["ephemeral"] = True
        if att.duration_secs is not None:
            data["duration_secs"] = att.duration_secs
            data["waveform"] = att.waveform
        return data

    def message_payload(self, msg: SimMessage, *, visible: bool = True, with_reference: bool = True) -> dict[str, Any]:
        """A message as Discord sends it; ``visible=False`` blanks what the content intent hides."""
        data: dict[str, Any] = {
            "id": str(msg.id),
            "channel_id": str(msg.channel_id),
            "type": msg.type,
            "content": msg.content if visible else "",
            "author": self.user_payload(self.accounts[msg.author_id]),
            "attachments": [self.attachment_payload(a) for a in msg.attachments] if visible else [],
            "embeds": list(msg.embeds) if visible else [],
            "components": list(msg.components) if visible else [],
            "mentions": [self.user_payload(self.accounts[u]) for u in msg.mentions],
            "mention_roles": [str(r) for r in msg.mention_roles],
            "mention_everyone": msg.mention_everyone,
            "pinned": False,
            "tts": msg.tts,
            "timestamp": self.clock.iso(msg.created_at),
            "edited_timestamp": None if msg.edited_at is None else self.clock.iso(msg.edited_at),
            "flags": msg.flags,
        }
        if msg.guild_id is not None:
            data["guild_id"] = str(msg.guild_id)
            guild = self.guilds[msg.guild_id]
            if msg.webhook_id is None and msg.author_id in guild.member_roles:
                data["member"] = self.member_payload(guild, msg.author_id, with_user=False)
        if msg.nonce is not None:
            data["nonce"] = msg.nonce
        if msg.webhook_id is not None:
            data["webhook_id"] = str(msg.webhook_id)
        if msg.application_id is not None:
            data["application_id"] = str(msg.application_id)
        if msg.poll is not None and visible:
            data["poll"] = msg.poll
        meta = self.interaction_meta.get(msg.interaction_id or 0)
        if meta is not None:
            user = self.user_payload(self.accounts[meta["user_id"]])
            data["interaction_metadata"] = {
                "id": str(msg.interaction_id),
                "type": meta["type"],
                "name": meta["name"],
                "user": user,
                "authorizing_integration_owners": {"0": str(msg.guild_id)} if msg.guild_id else {"1": user["id"]},
            }
            data["interaction"] = {
                "id": str(msg.interaction_id),
                "type": meta["type"],
                "name": meta["name"],
                "user": user,
            }
        if msg.message_reference is not None:
            ref = msg.message_reference
            data["message_reference"] = {
                "type": ref.get("type", 0),
                "message_id": str(ref["message_id"]),
                "channel_id": _sid(ref.get("channel_id")),
                "guild_id": _sid(ref.get("guild_id")),
            }
            if with_reference:
                target = self.messages.get(int(ref["message_id"]))
                data["referenced_message"] = (
                    None
                    if target is None or target.deleted
                    else self.message_payload(target, visible=self.content_visible(target), with_reference=False)
                )
        return data

    def messages_in(self, channel_id: int) -> Sequence[SimMessage]:
        return [m for m in self.messages.values() if m.channel_id == channel_id and not m.deleted]
