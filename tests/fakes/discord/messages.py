"""Turning a bot's message request (create, edit, interaction reply) into a stored message.

Shared by channel messages, interaction callbacks and webhook followups; each caller checks permissions
for its own route first.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .cdn import guess_content_type
from .errors import field_error, merge_errors
from .models import EPHEMERAL, IS_COMPONENTS_V2, LOADING, Permission, SimAttachment, SimChannel, SimMessage
from .state import SimState
from .validation import is_empty_message
from .voice import IS_VOICE_MESSAGE, check_voice_message, is_voice, require_voice_permission
from .wire import RequestBody, UploadedFile

#: flags a bot may set when creating a message (SUPPRESS_EMBEDS, SUPPRESS_NOTIFICATIONS, IS_COMPONENTS_V2)
_SETTABLE_FLAGS = (1 << 2) | (1 << 12) | IS_COMPONENTS_V2


def check_size(files: list[UploadedFile], limit: int) -> None:
    """Every file within the destination's limit, else 413/40005."""
    if any(f.size > limit for f in files):
        raise errors.request_too_large()


def require_permissions(perms: int, body: RequestBody, *, send: bool, voice_ok: bool = False) -> None:
    """403s: Missing Access without View Channel; Missing Permissions for sending, files or embeds.

    A voice message (``voice_ok``: a channel message may be one) needs Send Voice Messages instead of Attach
    Files (403/50173 without it)."""
    payload = body.payload if isinstance(body.payload, dict) else {}
    if send and not perms & Permission.VIEW_CHANNEL:
        raise errors.missing_access()
    if send and not perms & Permission.SEND_MESSAGES:
        raise errors.missing_permissions()
    if voice_ok and is_voice(payload):
        require_voice_permission(perms)
    elif body.files and not perms & Permission.ATTACH_FILES:
        raise errors.missing_permissions()
    if payload.get("embeds") and not perms & Permission.EMBED_LINKS:
        raise errors.missing_permissions()


def _new_attachment(
    state: SimState, upload: UploadedFile, meta: dict[str, Any], channel_id: int, *, ephemeral: bool
) -> SimAttachment:
    filename = str(meta.get("filename") or upload.filename)
    att = SimAttachment(
        id=state.ids.next(),
        channel_id=channel_id,
        filename=filename,
        data=upload.data,
        content_type=guess_content_type(filename),
        description=meta.get("description"),
        ephemeral=ephemeral,
        duration_secs=meta.get("duration_secs"),
        waveform=meta.get("waveform"),
    )
    return state.cdn.add(att)


def resolve_attachments(
    state: SimState,
    payload: dict[str, Any],
    files: list[UploadedFile],
    channel_id: int,
    existing: list[SimAttachment],
    *,
    ephemeral: bool,
) -> list[SimAttachment]:
    """New attachment list: kept existing ones (by id) plus uploads (``attachments[].id`` = file index)."""
    by_index = {f.index: f for f in files}
    listed = payload.get("attachments")
    if listed is None:
        uploads = [_new_attachment(state, f, {}, channel_id, ephemeral=ephemeral) for f in files]
        return [*existing, *uploads]
    kept_by_id = {a.id: a for a in existing}
    result: list[SimAttachment] = []
    used: set[int] = set()
    problems: dict[str, Any] = {}
    for pos, meta in enumerate(listed):
        raw_id = meta.get("id")
        att_id = int(raw_id) if str(raw_id).isdigit() else -1
        if att_id in kept_by_id:
            result.append(kept_by_id[att_id])
        elif att_id in by_index:
            result.append(_new_attachment(state, by_index[att_id], meta, channel_id, ephemeral=ephemeral))
            used.add(att_id)
        else:
            merge_errors(
                problems, field_error(["attachments", pos, "id"], "ATTACHMENT_NOT_FOUND", "Unknown attachment")
            )
    for f in files:
        if f.index not in used:
            result.append(_new_attachment(state, f, {}, channel_id, ephemeral=ephemeral))
    if problems:
        raise errors.invalid_form_body(problems)
    return result


def _components(payload: dict[str, Any]) -> list[dict[str, Any]]:
    """Store components as Discord echoes them: every component gets a numeric ``id``."""
    counter = 0

    def walk(comp: dict[str, Any]) -> dict[str, Any]:
        nonlocal counter
        counter += 1
        out = dict(comp)
        out.setdefault("id", counter)
        if isinstance(out.get("components"), list):
            out["components"] = [walk(c) for c in out["components"]]
        for key in ("accessory", "component"):
            if isinstance(out.get(key), dict):
                out[key] = walk(out[key])
        return out

    return [walk(c) for c in payload.get("components") or [] if isinstance(c, dict)]


def _embeds(payload: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"type": "rich", **e} for e in payload.get("embeds") or [] if isinstance(e, dict)]


def _reference(state: SimState, channel: SimChannel, payload: dict[str, Any]) -> dict[str, Any] | None:
    ref = payload.get("message_reference")
    if not ref:
        return None
    ref_channel = int(ref.get("channel_id") or channel.id)
    target = state.messages.get(int(ref["message_id"]))
    if target is None or target.deleted or target.channel_id != ref_channel:
        if ref.get("fail_if_not_exists", True):
            raise errors.invalid_form_body(
                field_error(["message_reference"], "MESSAGE_REFERENCE_UNKNOWN_MESSAGE", "Unknown message")
            )
        return None
    return {
        "type": int(ref.get("type") or 0),
        "message_id": target.id,
        "channel_id": target.channel_id,
        "guild_id": target.guild_id,
    }


def compose(
    state: SimState,
    channel: SimChannel,
    body: RequestBody,
    *,
    author_id: int,
    limit: int,
    msg_type: int = 0,
    extra_flags: int = 0,
    allow_ephemeral: bool = False,
    voice_ok: bool = False,
    interaction_id: int | None = None,
    webhook_id: int | None = None,
) -> SimMessage:
    """A new message from a bot request body (rules, size limit, attachments, reference, mentions).

    ``voice_ok``: the message may be a voice message (channel messages; interaction responses and followups
    drop the flag)."""
    payload: dict[str, Any] = body.payload if isinstance(body.payload, dict) else {}
    check_size(body.files, limit)
    voice = voice_ok and is_voice(payload)
    if voice:
        check_voice_message(payload, body.files)
    if is_empty_message(payload, len(body.files)) and not extra_flags & LOADING:
        raise errors.empty_message()
    settable = _SETTABLE_FLAGS | (EPHEMERAL if allow_ephemeral else 0) | (IS_VOICE_MESSAGE if voice else 0)
    flags = int(payload.get("flags") or 0) & settable
    flags |= extra_flags
    reference = _reference(state, channel, payload)
    reply_author = None
    if reference is not None and reference["type"] == 0:
        msg_type = 19 if msg_type == 0 else msg_type
        reply_author = state.messages[reference["message_id"]].author_id
    content = str(payload.get("content") or "")
    allowed = payload.get("allowed_mentions")
    mentions, roles, everyone = state.resolve_mentions(content, allowed, reply_author)
    return SimMessage(
        id=state.ids.next(),
        channel_id=channel.id,
        guild_id=channel.guild_id,
        author_id=author_id,
        content=content,
        type=msg_type,
        flags=flags,
        embeds=_embeds(payload),
        components=_components(payload),
        attachments=resolve_attachments(state, payload, body.files, channel.id, [], ephemeral=bool(flags & EPHEMERAL)),
        mentions=mentions,
        mention_roles=roles,
        mention_everyone=everyone,
        message_reference=reference,
        allowed_mentions=allowed,
        nonce=payload.get("nonce"),
        tts=bool(payload.get("tts")),
        poll=payload.get("poll"),
        created_at=state.clock.now(),
        webhook_id=webhook_id,
        application_id=state.application_id if webhook_id is not None else None,
        interaction_id=interaction_id,
    )


def edit(state: SimState, msg: SimMessage, body: RequestBody, *, limit: int) -> SimMessage:
    """The next version of ``msg`` after a PATCH: only the fields present in the body change."""
    payload: dict[str, Any] = body.payload if isinstance(body.payload, dict) else {}
    check_size(body.files, limit)
    changes: dict[str, Any] = {"edited_at": state.clock.now(), "version": msg.version + 1}
    if "content" in payload:
        changes["content"] = str(payload.get("content") or "")
    if "embeds" in payload:
        changes["embeds"] = _embeds(payload)
    if "components" in payload:
        changes["components"] = _components(payload)
    if "flags" in payload and payload["flags"] is not None:
        changes["flags"] = (msg.flags & ~_SETTABLE_FLAGS) | (int(payload["flags"]) & _SETTABLE_FLAGS)
    if "attachments" in payload or body.files:
        changes["attachments"] = resolve_attachments(
            state, payload, body.files, msg.channel_id, list(msg.attachments), ephemeral=msg.is_ephemeral
        )
    if "allowed_mentions" in payload or "content" in payload:
        allowed = payload.get("allowed_mentions", msg.allowed_mentions)
        content = changes.get("content", msg.content)
        reply_author = None
        if msg.reply_to is not None and msg.reply_to in state.messages:
            reply_author = state.messages[msg.reply_to].author_id
        mentions, roles, everyone = state.resolve_mentions(content, allowed, reply_author)
        changes.update(mentions=mentions, mention_roles=roles, mention_everyone=everyone, allowed_mentions=allowed)
    new = msg.evolve(**changes)
    new = new.evolve(flags=new.flags & ~LOADING)
    if is_empty_message(
        {"content": new.content, "embeds": new.embeds, "components": new.components, "poll": new.poll},
        0,
        len(new.attachments),
    ):
        raise errors.empty_message()
    return new
