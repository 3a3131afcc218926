"""What is in an audio file, found by decoding it with PyAV (FFmpeg). Runs off the event loop.

A file is what it decodes to, not what its container says: a 2 MiB FLAC can declare a second and decode to
hundreds of hours. So the probe counts what it decodes and stops as soon as the file is over the limit
(``max_s``), and it stops files that make decoding slow on purpose: more packets, or more sample values
(rate x channels), per second of audio than ordinary audio has. Refusing any file costs at most about as
much as reading ``max_s`` seconds of ordinary audio.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from bot.audio import AudioPool, off_loop, open_input
from bot.errors import InvalidRequestError

# Packets per second of audio. Ordinary audio comes in 10-50 packets a second (MP3, AAC, Vorbis, Opus's
# usual 20 ms); Opus's 5 ms frames are 200. A file cut finer than that is built to make decoding slow.
MAX_PACKETS_PER_S = 200
_PACKETS_SLACK = 64  # headers, priming and short bursts at the start
# Sample values (samples x channels) per second of the limit: ``max_s`` of 96 kHz stereo (or 48 kHz in four
# channels), more than a file within the size limit holds. Past it, many channels at a high rate are a bomb.
MAX_VALUES_PER_S = 96_000 * 2


@dataclass(frozen=True)
class AudioInfo:
    duration_s: float
    sample_rate: int
    channels: int
    codec: str


def too_long(max_s: float) -> InvalidRequestError:
    return InvalidRequestError.keyed("refusals.audio_too_long", seconds=f"{max_s:g}")


def _probe(path: Path, max_s: float) -> AudioInfo:
    try:
        with open_input(path) as container:
            if not container.streams.audio:
                raise InvalidRequestError.keyed("refusals.no_audio_stream")
            stream = container.streams.audio[0]
            if stream.codec_context is None:  # FFmpeg found a stream but has no decoder for it
                raise InvalidRequestError.keyed("refusals.cant_decode")
            seconds = 0.0
            values = 0
            rate = stream.codec_context.sample_rate or 0
            loud = False
            for packets, packet in enumerate(container.demux(stream), start=1):
                if packets > _PACKETS_SLACK + MAX_PACKETS_PER_S * seconds:
                    raise InvalidRequestError.keyed("refusals.too_many_packets")
                for frame in packet.decode():
                    rate = frame.sample_rate or rate
                    if rate <= 0:
                        raise InvalidRequestError.keyed("refusals.unreadable")
                    seconds += frame.samples / rate
                    values += frame.samples * max(frame.layout.nb_channels, 1)
                    if seconds > max_s:
                        raise too_long(max_s)
                    if values > MAX_VALUES_PER_S * max_s:
                        raise InvalidRequestError.keyed("refusals.too_many_channels")
                    if not loud:
                        loud = any(bytes(plane).count(0) != plane.buffer_size for plane in frame.planes)
            channels = stream.codec_context.channels
            codec = stream.codec_context.name
    except av.error.FFmpegError:
        raise InvalidRequestError.keyed("refusals.unreadable") from None
    if seconds == 0 or rate == 0:
        raise InvalidRequestError.keyed("refusals.empty_audio")
    if not loud:
        raise InvalidRequestError.keyed("refusals.silent_audio")
    return AudioInfo(duration_s=seconds, sample_rate=rate, channels=channels, codec=codec)


async def probe(path: Path, *, max_s: float, pool: AudioPool | None = None) -> AudioInfo:
    """Decode ``path`` up to ``max_s`` seconds, in ``pool`` (people's files) or the default pool.

    InvalidRequestError with a clear message for non-audio, corrupt, empty, silent, too long or
    hostile files.
    """
    if pool is not None:
        return await pool.run("probe", _probe, path, max_s)
    return await off_loop("probe", _probe, path, max_s)
