"""Preparing clips for a model and stitching continuations back together. Blocking: use ``asyncio.to_thread``.

Continuing a track: the model only sees a window of it (MusicGen continues from at most 30 s, and its
output starts with the segment it was given). So the clip handed to the model is the track's last part,
and the result is stitched back onto everything before that part: the user always gets the whole track.
"""

from __future__ import annotations

import wave
from dataclasses import dataclass
from pathlib import Path

import av

from bot.audio import no_room, open_input

MODEL_RATE = 32000  # MusicGen's sample rate


@dataclass(frozen=True)
class Pcm:
    data: bytes  # interleaved signed 16-bit little-endian
    rate: int
    channels: int

    @property
    def frames(self) -> int:
        return len(self.data) // (2 * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.rate

    def slice_s(self, start_s: float, end_s: float | None = None) -> Pcm:
        width = 2 * self.channels
        first = round(start_s * self.rate) * width
        last = len(self.data) if end_s is None else round(end_s * self.rate) * width
        return Pcm(self.data[first:last], self.rate, self.channels)


def decode(path: Path, *, rate: int, channels: int, until_s: float | None = None) -> Pcm:
    """``path``'s first audio stream as 16-bit PCM at ``rate`` with ``channels``: all of it, or (``until_s``)
    decoding stops once that much is out, so a long file costs no more than the part wanted."""
    layout = "stereo" if channels == 2 else "mono"
    resampler = av.AudioResampler(format="s16", layout=layout, rate=rate)
    chunks: list[bytes] = []
    wanted = None if until_s is None else round(until_s * rate)
    frames = 0
    with open_input(path) as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            frame.pts = None
            for out in resampler.resample(frame):
                chunks.append(bytes(out.planes[0])[: out.samples * 2 * channels])
                frames += out.samples
            if wanted is not None and frames >= wanted:
                break
        for out in resampler.resample(None):
            chunks.append(bytes(out.planes[0])[: out.samples * 2 * channels])
    return Pcm(b"".join(chunks), rate, channels)


def write_wav(pcm: Pcm, dest: Path) -> None:
    """Write ``pcm`` to ``dest`` whole or not at all (no room for it: StorageFullError)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with wave.open(str(part), "wb") as out:
            out.setnchannels(pcm.channels)
            out.setsampwidth(2)
            out.setframerate(pcm.rate)
            out.writeframes(pcm.data)
        part.replace(dest)
    except OSError as exc:
        part.unlink(missing_ok=True)
        full = no_room(exc, dest)
        if full is None:
            raise
        raise full from None


def prepare_clip(src: Path, dest: Path, *, start_s: float = 0.0, end_s: float | None = None) -> float:
    """Write ``src`` [start_s, end_s) as a WAV the model takes (32 kHz stereo). Returns its length in seconds.

    Nothing past ``end_s`` is decoded."""
    clip = decode(src, rate=MODEL_RATE, channels=2, until_s=end_s).slice_s(start_s, end_s)
    write_wav(clip, dest)
    return clip.duration_s


def stitch(source: Path, prefix_s: float, continuation: Path, dest: Path) -> float:
    """``source``'s first ``prefix_s`` seconds followed by ``continuation`` (which begins with the rest).

    Written as WAV in the continuation's own rate and channel count. Returns the total length in seconds.
    """
    with open_input(continuation) as container:
        stream = container.streams.audio[0]
        rate = stream.rate or MODEL_RATE
        channels = min(max(stream.codec_context.channels, 1), 2)
    tail = decode(continuation, rate=rate, channels=channels)
    head = decode(source, rate=rate, channels=channels).slice_s(0.0, prefix_s)
    whole = Pcm(head.data + tail.data, rate, channels)
    write_wav(whole, dest)
    return whole.duration_s
