"""Voice messages: what Discord's API takes as one, and how Discord's phone apps play a message's audio.

The API side (Discord's docs, ``resources/message``: "Voice Messages" and the attachment request structure;
``topics/opcodes-and-status-codes``: 50159-50162 and 50173; ``topics/permissions``: SEND_VOICE_MESSAGES). A
create-message request with the flag IS_VOICE_MESSAGE (``1 << 13``):

- needs Send Voice Messages in the channel, not Attach Files (403/50173 without it);
- carries nothing but the one file: no content, embeds, stickers, components or poll (400/50159);
- has exactly one attachment, an audio file by its name (Discord sets the content type from it) (400/50160);
- gives that attachment ``duration_secs`` (a positive number) and ``waveform`` (400/50161 without them);
- ``waveform`` is base64 of one byte per point, at most 256 points (the spec caps the text at 400 characters);
  Discord does not document the error for a longer or undecodable one: the simulator answers 400/50035 at
  ``attachments.<n>.waveform``;
- can never be edited afterwards (400/50162).

Interaction responses and webhook followups keep no voice flag (Discord ignores a voice message's fields
there, discord-api-docs#7153): only channel messages are voice messages.

The phone side (:func:`on_phone`): Discord's mobile apps don't play audio attachments inline, they offer them
as files to download; they play voice messages inline, with the waveform and the duration the message gave.
Discord's docs say its own clients upload "a 1 channel, 48000 Hz, 32kbps Opus stream in an OGG container" and
that Vorbis in Ogg may not play on phones, so a voice message plays inline here only when its file decodes as
Opus in an Ogg container. The API takes any audio file as a voice message; the phone is where a wrong one
fails, as it would for a person holding one.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import Any

import av
import av.error

from .cdn import guess_content_type
from .errors import ApiError, field_error, invalid_form_body
from .models import Permission, SimMessage
from .wire import UploadedFile

IS_VOICE_MESSAGE = 1 << 13
MAX_WAVEFORM_POINTS = 256

VOICE_EXTRA_CONTENT = 50159
VOICE_SINGLE_AUDIO = 50160
VOICE_METADATA = 50161
VOICE_NO_EDIT = 50162
VOICE_NOT_HERE = 50173
#: Body errors a voice message can get (the router logs them as validation failures, like 50035).
VOICE_BODY_ERRORS = (VOICE_EXTRA_CONTENT, VOICE_SINGLE_AUDIO, VOICE_METADATA, VOICE_NO_EDIT)

_EXTRA_FIELDS = ("content", "embeds", "sticker_ids", "components", "poll")


def is_voice(payload: dict[str, Any]) -> bool:
    flags = payload.get("flags")
    return isinstance(flags, int) and bool(flags & IS_VOICE_MESSAGE)


def require_voice_permission(perms: int) -> None:
    if not perms & Permission.SEND_VOICE_MESSAGES:
        raise ApiError(403, VOICE_NOT_HERE, "You cannot send voice messages in this channel.")


def cannot_edit() -> ApiError:
    return ApiError(400, VOICE_NO_EDIT, "Voice messages cannot be edited.")


def check_voice_message(payload: dict[str, Any], files: list[UploadedFile]) -> None:
    """Raise Discord's error if ``payload`` (flagged IS_VOICE_MESSAGE) with ``files`` is no voice message."""
    if any(payload.get(key) for key in _EXTRA_FIELDS):
        raise ApiError(400, VOICE_EXTRA_CONTENT, "Voice messages do not support additional content.")
    listed = payload.get("attachments") or []
    single = ApiError(400, VOICE_SINGLE_AUDIO, "Voice messages must have a single audio attachment.")
    if len(files) != 1 or len(listed) > 1:
        raise single
    upload = files[0]
    meta: dict[str, Any] = next((m for m in listed if str(m.get("id")) == str(upload.index)), {})
    if not guess_content_type(str(meta.get("filename") or upload.filename)).startswith("audio/"):
        raise single
    duration, waveform = meta.get("duration_secs"), meta.get("waveform")
    if not isinstance(duration, int | float) or isinstance(duration, bool) or duration <= 0 or not waveform:
        raise ApiError(400, VOICE_METADATA, "Voice messages must have supporting metadata.")
    where = ["attachments", listed.index(meta) if meta in listed else 0, "waveform"]
    try:
        points = base64.b64decode(str(waveform), validate=True)
    except (binascii.Error, ValueError):
        raise invalid_form_body(field_error(where, "BASE_TYPE_BAD_BASE64", "Invalid base64 data.")) from None
    if not 1 <= len(points) <= MAX_WAVEFORM_POINTS:
        raise invalid_form_body(
            field_error(where, "BASE_TYPE_MAX_LENGTH", f"Must be {MAX_WAVEFORM_POINTS} or fewer in length.")
        )


@dataclass(frozen=True)
class PhonePlayback:
    """What a phone shows for a message's audio."""

    inline: bool  # a player in the message, with a waveform; else a file to download
    why: str
    duration_s: float | None = None  # the length the player shows (the message's duration_secs)
    waveform: bytes = b""  # the points the player draws


def on_phone(message: SimMessage) -> PhonePlayback:
    """How Discord's mobile apps show ``message``'s audio (see the module's docstring)."""
    audio = [a for a in message.attachments if a.content_type.startswith("audio/")]
    if not audio:
        return PhonePlayback(False, "no audio in the message")
    if not message.flags & IS_VOICE_MESSAGE:
        return PhonePlayback(False, "an audio attachment: the app offers it as a file to download")
    attachment = audio[0]
    try:
        with av.open(io.BytesIO(attachment.data), "r") as container:
            stream = container.streams.audio[0]
            codec = stream.codec_context.name
            kind = container.format.name
            frames = sum(1 for _ in container.decode(stream))
    except (av.error.FFmpegError, IndexError) as exc:
        return PhonePlayback(False, f"the file doesn't decode ({exc})")
    if "ogg" not in kind.split(",") or codec != "opus" or frames == 0:
        return PhonePlayback(False, f"{codec} in {kind}, not Opus in Ogg: the app can't play it")
    points = base64.b64decode(attachment.waveform or "")
    return PhonePlayback(True, "a voice message", attachment.duration_secs, points)
