"""A finished track made into a voice message's file: Opus in Ogg, one channel at 48 kHz, with its length and
waveform.

Discord's phone apps play voice messages inline, while they only offer other audio as a file to download.
Discord's own clients record "a 1 channel, 48000 Hz, 32kbps Opus stream in an OGG container"; music gets
64 kb/s here (less if the server's upload limit needs it). A voice message carries its length
(``duration_secs``) and a waveform, one byte a point from 0 (silence) to 255 (the track's loudest moment): as
Discord's clients sample it, a point per 100 ms of audio and at most 256 points. Both are measured on the
decoded audio, at 8 kHz in 8 bits (cheap), and decoding stops as soon as the track is over ``max_s``, before
anything is encoded, so a track too long costs little to refuse.

Everything here blocks (FFmpeg through PyAV): call :func:`voice_clip` through ``bot.audio.off_loop``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bot.audio.fit import _encode_opus
from bot.audio.waveform import SAMPLE_RATE, column_peaks, mono_u8
from bot.errors import InvalidRequestError
from bot.text import clock

VOICE_BITRATE = 64_000
MIN_VOICE_BITRATE = 24_000  # below this, music is not worth hearing: the track is too long for the limit
WAVEFORM_POINTS = 256
POINT_S = 0.1
_HEADROOM = 0.94  # Ogg overhead and the encoder's overshoot


@dataclass(frozen=True)
class VoiceClip:
    path: Path
    duration_s: float
    waveform: bytes  # 1 to 256 points, 0-255


def too_long(max_s: float, duration_s: float | None = None) -> InvalidRequestError:
    if duration_s is None:
        return InvalidRequestError.keyed("refusals.voice_too_long", limit=clock(max_s))
    return InvalidRequestError.keyed("refusals.voice_too_long_of", length=clock(duration_s), limit=clock(max_s))


def waveform_of(samples: bytes, duration_s: float) -> bytes:
    """A point per ``POINT_S`` of ``samples`` (at most ``WAVEFORM_POINTS``): its peak, scaled so the loudest
    point is 255."""
    points = max(1, min(WAVEFORM_POINTS, round(duration_s / POINT_S)))
    peaks = column_peaks(samples, points)
    loudest = max(peaks) or 1
    return bytes(round(peak * 255 / loudest) for peak in peaks)


def voice_clip(src: Path, dest: Path, *, max_s: float, max_bytes: int, tags: Mapping[str, str]) -> VoiceClip:
    """``src`` as a voice message's file at ``dest``, no larger than ``max_bytes``.

    InvalidRequestError (with a message for the person who asked) for a track longer than ``max_s``, one that
    wouldn't fit ``max_bytes`` at a listenable bitrate, or one with no audio.
    """
    samples = mono_u8(src, max_s=max_s)
    duration_s = len(samples) / SAMPLE_RATE
    if duration_s > max_s:
        raise too_long(max_s)
    if not samples:
        raise InvalidRequestError.keyed("refusals.voice_no_audio")
    bitrate = min(VOICE_BITRATE, int(max_bytes * 8 * _HEADROOM / duration_s))
    if bitrate < MIN_VOICE_BITRATE:
        raise too_long(max_bytes * 8 * _HEADROOM / MIN_VOICE_BITRATE, duration_s)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _encode_opus(src, dest, bitrate=bitrate, tags=tags, channels=1)
    size = dest.stat().st_size
    if size > max_bytes:  # the encoder overshot by more than the headroom: what would have fit is shorter
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        raise too_long(duration_s * max_bytes / size, duration_s)
    return VoiceClip(dest, duration_s, waveform_of(samples, duration_s))
