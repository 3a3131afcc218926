"""Plain data: how a test configures the simulated world, and the records the simulator keeps.

Configuration (mutable, passed to ``DiscordSimulator(guilds=[...])``): :class:`GuildConfig`,
:class:`ChannelConfig`, :class:`MemberConfig`, :class:`RoleConfig`.

Records (frozen snapshots that tests receive): :class:`SimMessage`, :class:`SimAttachment`.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass, field
from typing import Any

MIB = 1024 * 1024


class Permission(enum.IntFlag):
    """Discord permission bits used by the simulator (https://discord.com/developers/docs/topics/permissions)."""

    CREATE_INSTANT_INVITE = 1 << 0
    ADMINISTRATOR = 1 << 3
    MANAGE_CHANNELS = 1 << 4
    ADD_REACTIONS = 1 << 6
    VIEW_CHANNEL = 1 << 10
    SEND_MESSAGES = 1 << 11
    MANAGE_MESSAGES = 1 << 13
    EMBED_LINKS = 1 << 14
    ATTACH_FILES = 1 << 15
    READ_MESSAGE_HISTORY = 1 << 16
    MENTION_EVERYONE = 1 << 17
    USE_EXTERNAL_EMOJIS = 1 << 18
    CONNECT = 1 << 20
    SPEAK = 1 << 21
    USE_APPLICATION_COMMANDS = 1 << 31
    SEND_MESSAGES_IN_THREADS = 1 << 38
    SEND_VOICE_MESSAGES = 1 << 46


P = Permission
ALL_PERMISSIONS = (1 << 53) - 1
#: What the bot gets in every channel unless configured otherwise: everything the reference says it needs
#: (Send Voice Messages for voice messages; Discord gives it to @everyone by default).
DEFAULT_BOT_PERMISSIONS = int(
    P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.READ_MESSAGE_HISTORY
    | P.ADD_REACTIONS
    | P.USE_EXTERNAL_EMOJIS
    | P.USE_APPLICATION_COMMANDS
    | P.SEND_MESSAGES_IN_THREADS
    | P.SEND_VOICE_MESSAGES
)
#: The @everyone role: what ordinary members (the simulated users) may do.
DEFAULT_EVERYONE_PERMISSIONS = int(
    P.CREATE_INSTANT_INVITE
    | P.VIEW_CHANNEL
    | P.SEND_MESSAGES
    | P.EMBED_LINKS
    | P.ATTACH_FILES
    | P.READ_MESSAGE_HISTORY
    | P.ADD_REACTIONS
    | P.USE_EXTERNAL_EMOJIS
    | P.CONNECT
    | P.SPEAK
    | P.USE_APPLICATION_COMMANDS
    | P.SEND_MESSAGES_IN_THREADS
    | P.SEND_VOICE_MESSAGES
)
#: Upload limit per file by guild boost tier; DMs get :data:`DM_UPLOAD_LIMIT`.
UPLOAD_LIMITS = {0: 10 * MIB, 1: 10 * MIB, 2: 50 * MIB, 3: 100 * MIB}
DM_UPLOAD_LIMIT = 10 * MIB

# Message flags
EPHEMERAL = 1 << 6
LOADING = 1 << 7
IS_COMPONENTS_V2 = 1 << 15

# Gateway intents
INTENT_GUILDS = 1 << 0
INTENT_GUILD_MEMBERS = 1 << 1
INTENT_GUILD_PRESENCES = 1 << 8
INTENT_GUILD_MESSAGES = 1 << 9
INTENT_DIRECT_MESSAGES = 1 << 12
INTENT_MESSAGE_CONTENT = 1 << 15
PRIVILEGED_INTENTS = INTENT_GUILD_MEMBERS | INTENT_GUILD_PRESENCES | INTENT_MESSAGE_CONTENT


@dataclass
class ChannelConfig:
    """A guild text channel. ``bot_permissions=None`` means the guild's ``bot_permissions``.

    ``overwrites`` maps a role name (``"@everyone"`` for everyone) to ``(allow, deny)`` bits in this channel,
    as Discord's role permission overwrites (e.g. a private channel: ``{"@everyone": (0, VIEW_CHANNEL)}``).
    """

    name: str = "general"
    id: int | None = None
    type: int = 0
    bot_permissions: int | None = None
    topic: str | None = None
    nsfw: bool = False
    overwrites: dict[str, tuple[int, int]] = field(default_factory=dict)


@dataclass
class RoleConfig:
    name: str
    permissions: int = 0
    id: int | None = None


@dataclass
class MemberConfig:
    """A human member; ``roles`` names roles from :attr:`GuildConfig.roles`."""

    username: str
    id: int | None = None
    global_name: str | None = None
    roles: list[str] = field(default_factory=list)
    dms_open: bool = True
    #: the language their Discord client is set to (an interaction's ``locale``)
    locale: str = "en-US"


@dataclass
class GuildConfig:
    """One guild. The bot is always a member; ``members`` are the humans."""

    name: str = "Encore Test Server"
    id: int | None = None
    premium_tier: int = 0
    channels: list[ChannelConfig] = field(default_factory=lambda: [ChannelConfig("general")])
    members: list[MemberConfig] = field(default_factory=lambda: [MemberConfig("alice")])
    roles: list[RoleConfig] = field(default_factory=list)
    bot_permissions: int = DEFAULT_BOT_PERMISSIONS
    everyone_permissions: int = DEFAULT_EVERYONE_PERMISSIONS
    #: the server's language (Community servers set it; ``guild_locale`` of its interactions)
    preferred_locale: str = "en-US"


@dataclass
class Account:
    """A Discord user (the bot or a simulated human)."""

    id: int
    username: str
    global_name: str | None = None
    bot: bool = False
    dms_open: bool = True
    locale: str = "en-US"

    @property
    def mention(self) -> str:
        return f"<@{self.id}>"


@dataclass
class SimRole:
    id: int
    name: str
    permissions: int
    position: int = 0
    managed: bool = False


@dataclass
class SimChannel:
    """A channel; for DMs ``guild_id`` is None and ``recipient_id`` is the human."""

    id: int
    name: str
    type: int = 0
    guild_id: int | None = None
    position: int = 0
    bot_permissions: int = DEFAULT_BOT_PERMISSIONS
    topic: str | None = None
    nsfw: bool = False
    recipient_id: int | None = None
    #: role id -> (allow, deny) in this channel
    role_overwrites: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def is_dm(self) -> bool:
        return self.type == 1


@dataclass
class SimGuild:
    id: int
    name: str
    premium_tier: int
    owner_id: int
    bot_role_id: int
    bot_permissions: int
    roles: list[SimRole] = field(default_factory=list)
    channel_ids: list[int] = field(default_factory=list)
    #: member user id -> role ids (the bot included)
    member_roles: dict[int, list[int]] = field(default_factory=dict)
    joined_at: float = 0.0
    preferred_locale: str = "en-US"

    @property
    def upload_limit(self) -> int:
        return UPLOAD_LIMITS.get(self.premium_tier, UPLOAD_LIMITS[0])

    def role(self, role_id: int) -> SimRole | None:
        return next((r for r in self.roles if r.id == role_id), None)

    def member_permissions(self, user_id: int) -> int:
        perms = 0
        for role in self.roles:
            if role.id == self.id or role.id in self.member_roles.get(user_id, []):
                perms |= role.permissions
        if user_id == self.owner_id or perms & Permission.ADMINISTRATOR:
            perms = ALL_PERMISSIONS
        return perms

    def role_overwritten(self, user_id: int, channel: SimChannel) -> int:
        """A member's permissions in ``channel`` after its role overwrites (Discord's order: @everyone first,
        then every role of the member at once). Member overwrites are not modelled for humans."""
        perms = self.member_permissions(user_id)
        if perms == ALL_PERMISSIONS:
            return perms
        allow, deny = channel.role_overwrites.get(self.id, (0, 0))
        perms = (perms & ~deny) | allow
        allow = deny = 0
        for role_id in self.member_roles.get(user_id, []):
            role_allow, role_deny = channel.role_overwrites.get(role_id, (0, 0))
            allow, deny = allow | role_allow, deny | role_deny
        return (perms & ~deny) | allow

    def channel_permissions(self, user_id: int, channel: SimChannel) -> int:
        """What a human member may do in ``channel`` (nothing at all without View Channel)."""
        perms = self.role_overwritten(user_id, channel)
        return perms if perms & Permission.VIEW_CHANNEL else 0


@dataclass(frozen=True)
class SimAttachment:
    """A stored file. ``data`` holds the bytes; URLs are signed fresh whenever a payload is built."""

    id: int
    channel_id: int
    filename: str
    data: bytes = field(repr=False)
    content_type: str = "application/octet-stream"
    description: str | None = None
    ephemeral: bool = False
    duration_secs: float | None = None
    waveform: str | None = None

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def spoiler(self) -> bool:
        """Discord's clients hide it until clicked: its name starts ``SPOILER_`` (how discord.py and Discord's own
        clients mark one; Discord then sets the attachment's IS_SPOILER flag)."""
        return self.filename.startswith("SPOILER_")


@dataclass(frozen=True)
class SimMessage:
    """One version of a message. Edits make a new version (``version`` + 1); the old one is unchanged."""

    id: int
    channel_id: int
    guild_id: int | None
    author_id: int
    content: str = ""
    type: int = 0
    flags: int = 0
    embeds: list[dict[str, Any]] = field(default_factory=list)
    components: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[SimAttachment] = field(default_factory=list)
    #: user ids actually pinged (after ``allowed_mentions``)
    mentions: list[int] = field(default_factory=list)
    mention_roles: list[int] = field(default_factory=list)
    mention_everyone: bool = False
    #: the ``message_reference`` as stored by Discord (ids as ints), or None
    message_reference: dict[str, Any] | None = None
    allowed_mentions: dict[str, Any] | None = None
    nonce: str | int | None = None
    tts: bool = False
    poll: dict[str, Any] | None = None
    created_at: float = 0.0
    edited_at: float | None = None
    webhook_id: int | None = None
    application_id: int | None = None
    #: the interaction this message answers (original response or followup)
    interaction_id: int | None = None
    version: int = 0
    deleted: bool = False

    @property
    def is_ephemeral(self) -> bool:
        return bool(self.flags & EPHEMERAL)

    @property
    def is_loading(self) -> bool:
        return bool(self.flags & LOADING)

    @property
    def reply_to(self) -> int | None:
        """Id of the message this one replies to."""
        ref = self.message_reference
        return None if ref is None else int(ref["message_id"])

    def attachment(self, filename: str) -> SimAttachment:
        """The attachment called ``filename`` (KeyError if absent)."""
        for att in self.attachments:
            if att.filename == filename:
                return att
        raise KeyError(filename)

    def custom_ids(self) -> list[str]:
        """Every component ``custom_id`` in the message, in order."""
        return [c["custom_id"] for c in iter_components(self.components) if c.get("custom_id")]

    def evolve(self, **changes: Any) -> SimMessage:
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class MessageEvent:
    """A bot-visible change: ``kind`` is "create", "edit" or "delete"; ``message`` is the new version."""

    kind: str
    message: SimMessage
    seq: int

    def __str__(self) -> str:
        m = self.message
        files = ",".join(a.filename for a in m.attachments)
        return f"#{self.seq} {self.kind} msg={m.id} ch={m.channel_id} author={m.author_id} {m.content[:60]!r} [{files}]"


def iter_components(components: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All components, depth first (action rows, sections, containers, labels included)."""
    out: list[dict[str, Any]] = []
    for comp in components:
        out.append(comp)
        out.extend(iter_components(comp.get("components") or []))
        for key in ("accessory", "component"):
            child = comp.get(key)
            if isinstance(child, dict):
                out.extend(iter_components([child]))
    return out
