"""What a provider really handed back: audio (or an image where a model makes one), or a refusal.

A model's output is whatever its server (or a CDN, a proxy, a compromised host) sent: an HTML error page,
an executable, an MP3 named ``.png``. Nothing reaches Discord unless it is what it must be:

- audio: the file starts with the signature of a container Discord plays (WAV, MP3, Ogg, FLAC, MP4/M4A,
  WebM/Matroska, ADTS AAC, AIFF), FFmpeg finds that same container, it holds an audio stream and nothing
  else (cover art aside), and its first seconds decode to at least one sample;
- an image: a PNG, JPEG or WebP signature, and FFmpeg decodes a picture from it.

The file's extension and content type come from what was found, never from the URL or the server's
``Content-Type``. Blocking work: call :func:`verify_output` (it runs in a thread).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import av
import av.error
from av.stream import Disposition

from bot.audio import off_loop, open_input
from bot.errors import OutputError

_HEAD_BYTES = 64


class OutputKind(StrEnum):
    AUDIO = "audio"
    IMAGE = "image"


@dataclass(frozen=True)
class VerifiedOutput:
    extension: str  # ".mp3"
    content_type: str  # "audio/mpeg"


class OutputRejectedError(OutputError):
    """The output is not what the model should have made (not audio, not an image). Trying again won't help."""

    default_message = "The model sent back something that isn't audio, so I didn't post it. Please try again."
    retryable = False


def _is_mp3(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0 and head[1] & 0x06 != 0


def _is_adts(head: bytes) -> bool:
    return len(head) >= 2 and head[0] == 0xFF and head[1] & 0xF6 == 0xF0


# FFmpeg's demuxer name -> (signature check on the first bytes after any ID3v2 tag, extension, content type).
_AUDIO = {
    "wav": (lambda h: h[:4] in (b"RIFF", b"RF64", b"BW64") and h[8:12] == b"WAVE", ".wav", "audio/wav"),
    "mp3": (_is_mp3, ".mp3", "audio/mpeg"),
    "ogg": (lambda h: h[:4] == b"OggS", ".ogg", "audio/ogg"),
    "flac": (lambda h: h[:4] == b"fLaC", ".flac", "audio/flac"),
    "mov,mp4,m4a,3gp,3g2,mj2": (lambda h: h[4:8] == b"ftyp", ".m4a", "audio/mp4"),
    "matroska,webm": (lambda h: h[:4] == b"\x1a\x45\xdf\xa3", ".mka", "audio/x-matroska"),
    "aac": (_is_adts, ".aac", "audio/aac"),
    "aiff": (lambda h: h[:4] == b"FORM" and h[8:12] in (b"AIFF", b"AIFC"), ".aiff", "audio/aiff"),
}
# Which codec inside a generic container gives the usual name (Ogg Opus is ".opus", WebM is Opus or Vorbis).
_BY_CODEC = {
    ("ogg", "opus"): (".opus", "audio/ogg"),
    ("matroska,webm", "opus"): (".webm", "audio/webm"),
    ("matroska,webm", "vorbis"): (".webm", "audio/webm"),
}
_IMAGES = {
    "png_pipe": (lambda h: h[:8] == b"\x89PNG\r\n\x1a\n", ".png", "image/png"),
    "jpeg_pipe": (lambda h: h[:3] == b"\xff\xd8\xff", ".jpg", "image/jpeg"),
    "webp_pipe": (lambda h: h[:4] == b"RIFF" and h[8:12] == b"WEBP", ".webp", "image/webp"),
}
# What a refused file looks like, for the log (the card only says it wasn't audio).
_LOOKS_LIKE = (
    (b"\x7fELF", "an ELF executable"),
    (b"MZ", "a Windows executable"),
    (b"#!", "a script"),
    (b"PK\x03\x04", "a ZIP archive"),
    (b"%PDF", "a PDF"),
    (b"<", "HTML or XML"),
    (b"{", "JSON"),
)


def _head(path: Path) -> tuple[bytes, bytes]:
    """The first bytes of the file, and the first bytes after an ID3v2 tag if one leads (else the same)."""
    with path.open("rb") as handle:
        head = handle.read(_HEAD_BYTES)
        if head[:3] != b"ID3" or len(head) < 10:
            return head, head
        size = (head[6] & 0x7F) << 21 | (head[7] & 0x7F) << 14 | (head[8] & 0x7F) << 7 | (head[9] & 0x7F)
        handle.seek(10 + size + (10 if head[5] & 0x10 else 0))
        return head, handle.read(_HEAD_BYTES)


def _describe(head: bytes) -> str:
    stripped = head.lstrip()
    for magic, what in _LOOKS_LIKE:
        if stripped.startswith(magic):
            return what
    return f"unrecognised bytes {head[:8].hex()}"


_DECODE_S = 2  # seconds of audio decoded to prove a file is what it says


def _verify_audio(path: Path) -> VerifiedOutput:
    head, body = _head(path)
    try:
        with open_input(path) as container:
            name = container.format.name
            known = _AUDIO.get(name)
            if known is None:
                raise OutputRejectedError(detail=f"output is not audio ({_describe(head)}; FFmpeg: {name})")
            signed, extension, content_type = known
            if not signed(body):
                raise OutputRejectedError(detail=f"output does not start like {name} audio ({_describe(head)})")
            if not container.streams.audio:
                raise OutputRejectedError(detail=f"output ({name}) has no audio stream")
            others = [
                s for s in container.streams if s.type != "audio" and not s.disposition & Disposition.attached_pic
            ]
            if others:
                raise OutputRejectedError(detail=f"output ({name}) holds {others[0].type} besides audio")
            stream = container.streams.audio[0]
            if stream.codec_context is None:
                raise OutputRejectedError(detail=f"output ({name}) has audio FFmpeg can't decode")
            codec = stream.codec_context.name
            # Proof that it is audio needs a little of it, not all: a ten-minute song would cost a second.
            enough = (stream.codec_context.sample_rate or 48_000) * _DECODE_S
            samples = 0
            for frame in container.decode(stream):
                samples += frame.samples
                if samples >= enough:
                    break
    except av.error.FFmpegError as exc:
        raise OutputRejectedError(detail=f"output is not audio ({_describe(head)}; {exc.strerror})") from None
    if samples == 0:
        raise OutputRejectedError(detail=f"output ({name}/{codec}) decodes to no audio")
    extension, content_type = _BY_CODEC.get((name, codec), (extension, content_type))
    return VerifiedOutput(extension, content_type)


def _verify_image(path: Path) -> VerifiedOutput:
    head, _ = _head(path)
    signature = next(((fmt, rest) for fmt, (signed, *rest) in _IMAGES.items() if signed(head)), None)
    if signature is None:
        raise OutputRejectedError(
            "The model's picture isn't a PNG, JPEG or WebP image, so I didn't post it. Please try again.",
            detail=f"output is not an image ({_describe(head)})",
        )
    fmt, (extension, content_type) = signature
    try:
        with av.open(str(path), format=fmt) as container:
            if not container.streams.video:
                raise OutputRejectedError(detail=f"{fmt} output holds no picture")
            frame = next(container.decode(container.streams.video[0]), None)
    except av.error.FFmpegError as exc:
        raise OutputRejectedError(
            "The model's picture is damaged, so I didn't post it. Please try again.",
            detail=f"{fmt} output does not decode: {exc.strerror}",
        ) from None
    if frame is None or not frame.width or not frame.height:
        raise OutputRejectedError(detail=f"{fmt} output decodes to no picture")
    return VerifiedOutput(extension, content_type)


async def verify_output(path: Path, kind: OutputKind = OutputKind.AUDIO) -> VerifiedOutput:
    """What ``path`` really is (its extension and content type); :class:`OutputRejectedError` if it isn't ``kind``."""
    if kind == OutputKind.IMAGE:
        return await off_loop("verify", _verify_image, path)
    return await off_loop("verify", _verify_audio, path)
