"""What is in an audio file, found by decoding it with PyAV (FFmpeg). Runs off the event loop."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from bot.audio import off_loop, open_input
from bot.errors import InvalidRequestError


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str


def _probe(path: Path) -> AudioInfo:
    try:
        with open_input(path) as container:
            if not container.streams.audio:
                raise InvalidRequestError("That file has no audio in it.")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # FFmpeg found a stream but has no decoder for it
                raise InvalidRequestError("I can't decode the audio in that file. WAV, MP3, OGG or FLAC work.")
            samples = 0
            rate = stream.codec_context.sample_rate or 0
            loud = False
            for frame in container.decode(stream):
                samples += frame.samples
                rate = frame.sample_rate or rate
                if not loud:
                    loud = any(bytes(plane).count(0) != plane.buffer_size for plane in frame.planes)
            channels = stream.codec_context.channels
            codec = stream.codec_context.name
    except av.error.FFmpegError:
        raise InvalidRequestError("I couldn't read that file as audio. Is it damaged, or not audio?") from None
    if samples == 0 or rate == 0:
        raise InvalidRequestError("That audio file is empty.")
    if not loud:
        raise InvalidRequestError("That audio is completely silent.")
    return AudioInfo(duration_s=samples / rate, sample_rate=rate, channels=channels, codec=codec)


async def probe(path: Path) -> AudioInfo:
    """Decode ``path`` fully; InvalidRequestError with a clear message for non-audio, corrupt, empty or silent files."""
    return await off_loop("probe", _probe, path)
