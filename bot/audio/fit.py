"""Fitting a finished track into a destination's upload limit, with metadata tags. Never fails on size.

- it fits: the file as made (WAV when WAV was asked for), re-muxed with tags;
- it doesn't: Opus (in Ogg) at the highest bitrate that fits, checked after encoding;
- even 32 kb/s would not fit (a very long track): split into parts that each fit.

Everything here is blocking FFmpeg work (PyAV): call :func:`fit_audio` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import contextlib
import logging
import math
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from bot.audio import open_input

log = logging.getLogger(__name__)

OPUS_RATE = 48000  # the only rate libopus encodes at
MAX_BITRATE = 192_000
MIN_BITRATE = 32_000
SPLIT_BITRATE = 96_000
_HEADROOM = 0.94  # container overhead and encoder overshoot


@dataclass(frozen=True)
class FittedFile:
    path: Path
    part: int  # 1-based
    parts: int
    reencoded: bool


def audio_duration_s(path: Path) -> float:
    """Decoded length of the first audio stream (frames counted, not the header's claim)."""
    with open_input(path) as container:
        stream = container.streams.audio[0]
        samples = 0
        rate = stream.rate or 0
        for frame in container.decode(stream):
            samples += frame.samples
            rate = frame.sample_rate or rate
    return samples / rate if rate else 0.0


def _remux_with_tags(src: Path, dest: Path, tags: Mapping[str, str]) -> bool:
    """Copy the audio stream untouched into the same container, adding tags. False if the format can't."""
    try:
        with open_input(src) as inp, av.open(str(dest), "w", format=inp.format.name.split(",")[0]) as out:
            in_stream = inp.streams.audio[0]
            out_stream = out.add_stream_from_template(in_stream)
            out.metadata.update(tags)
            for packet in inp.demux(in_stream):
                if packet.dts is None:
                    continue
                packet.stream = out_stream
                out.mux(packet)
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        log.info("could not re-mux %s with tags (%s); sending it as is", src.name, exc)
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
        return False
    return True


def _encode_opus(
    src: Path,
    dest: Path,
    *,
    bitrate: int,
    tags: Mapping[str, str],
    start_s: float = 0.0,
    end_s: float | None = None,
) -> None:
    """Decode ``src`` (optionally only [start_s, end_s)) and encode it as Opus in Ogg."""
    with open_input(src) as inp, av.open(str(dest), "w", format="ogg") as out:
        in_stream = inp.streams.audio[0]
        channels = min(max(in_stream.codec_context.channels, 1), 2)
        layout = "stereo" if channels == 2 else "mono"
        stream = out.add_stream("libopus", rate=OPUS_RATE)
        stream.bit_rate = bitrate
        stream.options = {"vbr": "constrained"}  # stay near the bitrate: sizes must be predictable
        stream.layout = layout
        out.metadata.update(tags)
        stream.metadata.update(tags)  # Ogg keeps tags (Vorbis comments) on the stream
        resampler = av.AudioResampler(format="s16", layout=layout, rate=OPUS_RATE)
        start_sample = int(start_s * OPUS_RATE)
        end_sample = None if end_s is None else int(end_s * OPUS_RATE)
        position = 0  # in output samples
        for frame in inp.decode(in_stream):
            frame.pts = None
            for resampled in resampler.resample(frame):
                count = resampled.samples
                if end_sample is not None and position >= end_sample:
                    break
                if position + count > start_sample:
                    for packet in stream.encode(_trim(resampled, position, start_sample, end_sample)):
                        out.mux(packet)
                position += count
        for packet in stream.encode(None):
            out.mux(packet)


def _trim(frame: av.AudioFrame, position: int, start: int, end: int | None) -> av.AudioFrame:
    """The part of ``frame`` (starting at output sample ``position``) inside [start, end)."""
    first = max(0, start - position)
    last = frame.samples if end is None else min(frame.samples, end - position)
    if first == 0 and last == frame.samples:
        return frame
    channels = len(frame.layout.channels)
    data = bytes(frame.planes[0])[first * 2 * channels : last * 2 * channels]
    trimmed = av.AudioFrame(format="s16", layout=frame.layout.name, samples=last - first)
    trimmed.planes[0].update(data)
    trimmed.sample_rate = frame.sample_rate
    return trimmed


def fit_audio(
    src: Path,
    out_dir: Path,
    *,
    stem: str,
    limit_bytes: int,
    tags: Mapping[str, str],
) -> list[FittedFile]:
    """Files to post for ``src`` under ``limit_bytes`` each, in ``out_dir`` named after ``stem``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    size = src.stat().st_size
    if size <= limit_bytes:
        dest = out_dir / f"{stem}{src.suffix}"
        if not _remux_with_tags(src, dest, tags) or dest.stat().st_size > limit_bytes:
            shutil.copyfile(src, dest)
        return [FittedFile(dest, 1, 1, reencoded=False)]

    duration = audio_duration_s(src)
    budget = int(limit_bytes * 8 * _HEADROOM / max(duration, 0.1))
    if budget >= MIN_BITRATE:
        bitrate = min(budget, MAX_BITRATE)
        dest = out_dir / f"{stem}.ogg"
        for _ in range(4):
            _encode_opus(src, dest, bitrate=bitrate, tags=tags)
            if dest.stat().st_size <= limit_bytes:
                return [FittedFile(dest, 1, 1, reencoded=True)]
            bitrate = int(bitrate * 0.8)
        # fall through: split instead

    parts = max(2, math.ceil(duration * SPLIT_BITRATE / (limit_bytes * 8 * _HEADROOM)))
    for _ in range(4):
        fitted = _split(src, out_dir, stem=stem, tags=tags, parts=parts, duration=duration)
        largest = max(f.path.stat().st_size for f in fitted)
        if largest <= limit_bytes:
            return fitted
        for f in fitted:
            f.path.unlink(missing_ok=True)
        parts = math.ceil(parts * largest / limit_bytes * 1.05)
    raise ValueError(f"could not fit {src.name} into parts of {limit_bytes} bytes")


def _split(
    src: Path, out_dir: Path, *, stem: str, tags: Mapping[str, str], parts: int, duration: float
) -> list[FittedFile]:
    part_s = duration / parts
    fitted = []
    for index in range(parts):
        dest = out_dir / f"{stem}-part{index + 1}of{parts}.ogg"
        part_tags = {**tags, "title": f"{tags.get('title', stem)} (part {index + 1} of {parts})"}
        _encode_opus(
            src,
            dest,
            bitrate=SPLIT_BITRATE,
            tags=part_tags,
            start_s=index * part_s,
            end_s=None if index == parts - 1 else (index + 1) * part_s,
        )
        fitted.append(FittedFile(dest, index + 1, parts, reencoded=True))
    return fitted
