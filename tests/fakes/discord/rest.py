"""REST endpoints with bot authentication: login, command sync, channels, messages, DMs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from . import errors
from .commands import CommandStore, command_rules
from .messages import compose, edit, require_permissions
from .models import INTENT_MESSAGE_CONTENT, Permission, SimGuild
from .router import Ctx, Reply, Router
from .state import SimState
from .validation import message_rules
from .voice import IS_VOICE_MESSAGE, cannot_edit

# GUILD_CREATE's extra fields (Discord's Gateway Events, Guild Create), absent from GET /guilds/{guild.id}.
_GATEWAY_ONLY_GUILD_FIELDS = frozenset(
    {
        "joined_at",
        "large",
        "unavailable",
        "member_count",
        "voice_states",
        "members",
        "channels",
        "threads",
        "presences",
        "stage_instances",
        "guild_scheduled_events",
        "soundboard_sounds",
    }
)


class RestApi:
    """Handlers for the bot-token routes of reference 2.6 (and a few discord.py helpers use)."""

    def __init__(self, state: SimState, commands: CommandStore, gateway_bot: Callable[[], dict[str, Any]]) -> None:
        """``gateway_bot``: what ``GET /gateway/bot`` answers (the gateway's URL, shards, session start limit)."""
        self.state = state
        self.commands = commands
        self._gateway_bot = gateway_bot

    def register(self, router: Router) -> None:
        add = router.add
        add("GET", "/users/@me", self.get_me)
        add("GET", "/oauth2/applications/@me", self.get_application)
        add("GET", "/gateway", self.get_gateway, auth=False)
        add("GET", "/gateway/bot", self.get_gateway_bot)
        add("GET", "/users/{user_id}", self.get_user)
        add("POST", "/users/@me/channels", self.create_dm)
        add("GET", "/guilds/{guild_id}", self.get_guild)
        add("GET", "/guilds/{guild_id}/members/{user_id}", self.get_member)
        for template in (
            "/applications/{application_id}/commands",
            "/applications/{application_id}/guilds/{guild_id}/commands",
        ):
            add("GET", template, self.get_commands)
            add("PUT", template, self.put_commands, rules=command_rules)
        add("GET", "/channels/{channel_id}", self.get_channel)
        add("POST", "/channels/{channel_id}/typing", self.typing)
        add("GET", "/channels/{channel_id}/messages", self.get_messages)
        add("POST", "/channels/{channel_id}/messages", self.create_message, rules=message_rules)
        add("GET", "/channels/{channel_id}/messages/{message_id}", self.get_message)
        add("PATCH", "/channels/{channel_id}/messages/{message_id}", self.edit_message, rules=message_rules)
        add("DELETE", "/channels/{channel_id}/messages/{message_id}", self.delete_message)
        add("POST", "/attachments/refresh-urls", self.refresh_urls)

    # ------------------------------------------------------------------ identity

    async def get_me(self, ctx: Ctx) -> Reply:
        data = self.state.user_payload(self.state.bot)
        data.update(verified=True, mfa_enabled=False, flags=0, email=None, locale="en-US", premium_type=0)
        return Reply(data)

    async def get_application(self, ctx: Ctx) -> Reply:
        s = self.state
        content_flag = 1 << 18 if s.intents & INTENT_MESSAGE_CONTENT else 1 << 19
        return Reply(
            {
                "id": str(s.application_id),
                "name": s.bot.username,
                "description": "Simulated application",
                "icon": None,
                "bot_public": True,
                "bot_require_code_grant": False,
                "owner": s.user_payload(next(iter(a for a in s.accounts.values() if not a.bot), s.bot)),
                "team": None,
                "verify_key": "0" * 64,
                "flags": (1 << 15) | (1 << 13) | content_flag,
                "summary": "",
                "rpc_origins": [],
                "interactions_endpoint_url": None,
                "bot": s.user_payload(s.bot),
                "approximate_guild_count": len(s.guilds),
            }
        )

    async def get_gateway(self, ctx: Ctx) -> Reply:
        return Reply({"url": self._gateway_bot()["url"]})

    async def get_gateway_bot(self, ctx: Ctx) -> Reply:
        return Reply(self._gateway_bot())

    async def get_user(self, ctx: Ctx) -> Reply:
        account = self.state.accounts.get(int(ctx.params["user_id"])) if ctx.params["user_id"].isdigit() else None
        if account is None:
            raise errors.unknown_user()
        return Reply(self.state.user_payload(account))

    def _guild(self, ctx: Ctx) -> SimGuild:
        guild = self.state.guilds.get(int(ctx.params["guild_id"])) if ctx.params["guild_id"].isdigit() else None
        if guild is None:
            raise errors.ApiError(404, 10004, "Unknown Guild")
        return guild

    async def get_guild(self, ctx: Ctx) -> Reply:
        """A guild as REST gives it: roles and settings, but none of GUILD_CREATE's channels, members or
        other gateway-only fields (whichever shard, or process, holds it)."""
        guild = self._guild(ctx)
        data = {k: v for k, v in self.state.guild_payload(guild).items() if k not in _GATEWAY_ONLY_GUILD_FIELDS}
        if ctx.query.get("with_counts", "").lower() == "true":
            data |= {"approximate_member_count": len(guild.member_roles), "approximate_presence_count": 0}
        return Reply(data)

    async def get_member(self, ctx: Ctx) -> Reply:
        guild = self._guild(ctx)
        uid = int(ctx.params["user_id"]) if ctx.params["user_id"].isdigit() else 0
        if uid not in guild.member_roles:
            raise errors.ApiError(404, 10007, "Unknown Member")
        return Reply(self.state.member_payload(guild, uid))

    async def create_dm(self, ctx: Ctx) -> Reply:
        raw = str(ctx.payload.get("recipient_id"))
        account = self.state.accounts.get(int(raw)) if raw.isdigit() else None
        if account is None or account.bot:
            raise errors.invalid_form_body(
                errors.field_error(["recipient_id"], "NUMBER_TYPE_COERCE", f'Value "{raw}" is not snowflake.')
            )
        return Reply(self.state.channel_payload(self.state.dm_channel(account.id)))

    # ------------------------------------------------------------------ commands

    def _scope(self, ctx: Ctx) -> int | None:
        if ctx.params["application_id"] != str(self.state.application_id):
            raise errors.ApiError(403, 50001, "Missing Access")
        gid = ctx.params.get("guild_id")
        if gid is None:
            return None
        if not gid.isdigit() or int(gid) not in self.state.guilds:
            raise errors.ApiError(403, 50001, "Missing Access")
        return int(gid)

    async def get_commands(self, ctx: Ctx) -> Reply:
        return Reply([c.payload for c in self.commands.list(self._scope(ctx))])

    async def put_commands(self, ctx: Ctx) -> Reply:
        scope = self._scope(ctx)
        body = ctx.body.payload if isinstance(ctx.body.payload, list) else []
        synced = self.commands.bulk_overwrite(body, scope, self.state.application_id, self.state.ids.next)
        return Reply([c.payload for c in synced])

    # ------------------------------------------------------------------ channels and messages

    async def get_channel(self, ctx: Ctx) -> Reply:
        channel = self.state.channel(ctx.params["channel_id"])
        if not self.state.bot_permissions(channel) & Permission.VIEW_CHANNEL:
            raise errors.missing_access()
        return Reply(self.state.channel_payload(channel))

    async def typing(self, ctx: Ctx) -> Reply:
        channel = self.state.channel(ctx.params["channel_id"])
        require_permissions(self.state.bot_permissions(channel), ctx.body, send=True)
        return Reply(status=204)

    def _readable(self, ctx: Ctx) -> int:
        channel = self.state.channel(ctx.params["channel_id"])
        perms = self.state.bot_permissions(channel)
        if not perms & Permission.VIEW_CHANNEL or not perms & Permission.READ_MESSAGE_HISTORY:
            raise errors.missing_access()
        return channel.id

    async def get_messages(self, ctx: Ctx) -> Reply:
        channel_id = self._readable(ctx)
        limit = min(100, int(ctx.query.get("limit", "50")))
        found = [m for m in self.state.messages_in(channel_id) if not m.is_ephemeral]
        if "before" in ctx.query:
            found = [m for m in found if m.id < int(ctx.query["before"])]
        if "after" in ctx.query:
            found = [m for m in found if m.id > int(ctx.query["after"])]
            found = found[:limit]
        found = sorted(found, key=lambda m: m.id, reverse=True)[:limit]
        s = self.state
        return Reply([s.message_payload(m, visible=s.content_visible(m)) for m in found])

    async def get_message(self, ctx: Ctx) -> Reply:
        msg = self.state.message(self._readable(ctx), ctx.params["message_id"])
        if msg.is_ephemeral:
            raise errors.unknown_message()
        return Reply(self.state.message_payload(msg, visible=self.state.content_visible(msg)))

    async def create_message(self, ctx: Ctx) -> Reply:
        s = self.state
        channel = s.channel(ctx.params["channel_id"])
        if channel.is_dm and not s.accounts[channel.recipient_id or 0].dms_open:
            raise errors.cannot_message_user()
        perms = s.bot_permissions(channel)
        require_permissions(perms, ctx.body, send=True, voice_ok=True)
        payload = ctx.payload
        if payload.get("message_reference") and not perms & Permission.READ_MESSAGE_HISTORY:
            raise errors.reply_without_history()
        nonce = payload.get("nonce")
        if payload.get("enforce_nonce") and nonce is not None:
            existing = s.find_nonce(channel.id, s.bot.id, str(nonce))
            if existing is not None:
                return Reply(s.message_payload(existing))
        msg = compose(s, channel, ctx.body, author_id=s.bot.id, limit=s.upload_limit(channel), voice_ok=True)
        await s.publish("create", msg)
        return Reply(s.message_payload(msg))

    async def edit_message(self, ctx: Ctx) -> Reply:
        s = self.state
        channel = s.channel(ctx.params["channel_id"])
        msg = s.message(channel.id, ctx.params["message_id"])
        if msg.is_ephemeral:
            raise errors.unknown_message()
        if msg.author_id != s.bot.id:
            raise errors.cannot_edit_others_message()
        if msg.flags & IS_VOICE_MESSAGE:
            raise cannot_edit()
        require_permissions(s.bot_permissions(channel), ctx.body, send=False)
        new = edit(s, msg, ctx.body, limit=s.upload_limit(channel))
        await s.publish("edit", new)
        return Reply(s.message_payload(new))

    async def delete_message(self, ctx: Ctx) -> Reply:
        s = self.state
        channel = s.channel(ctx.params["channel_id"])
        msg = s.message(channel.id, ctx.params["message_id"])
        if msg.is_ephemeral:
            raise errors.unknown_message()
        if msg.author_id != s.bot.id and not s.bot_permissions(channel) & Permission.MANAGE_MESSAGES:
            raise errors.missing_permissions()
        await s.publish("delete", msg.evolve(deleted=True))
        return Reply(status=204)

    async def refresh_urls(self, ctx: Ctx) -> Reply:
        urls: list[Any] = ctx.payload.get("attachment_urls") or []
        refreshed = [{"original": u, "refreshed": self.state.cdn.refresh(str(u))} for u in urls]
        return Reply({"refreshed_urls": [r for r in refreshed if r["refreshed"] is not None]})
