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
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import av
import av.error

from bot.audio import open_input
from bot.audio.id3 import c2pa_signed, id3_tag, tag_mp3

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


# The RIFF INFO fields that FFmpeg (and most players) read back as these tags. INFO has no field of its own
# for anything else (AI_GENERATED…): an ``id3 `` chunk beside it carries every tag (FFmpeg and many players
# read it).
_INFO_FIELDS = {
    "title": b"INAM",
    "artist": b"IART",
    "comment": b"ICMT",
    "genre": b"IGNR",
    "album": b"IPRD",
    "encoder": b"ISFT",
    "encoded_by": b"ITCH",
}
_COPY_BLOCK = 1024 * 1024


def _info_chunk(tags: Mapping[str, str]) -> bytes:
    """A ``LIST``/``INFO`` chunk holding ``tags`` (NUL-terminated UTF-8 strings, each padded to even length)."""
    body = b"INFO"
    for name, field_id in _INFO_FIELDS.items():
        if value := tags.get(name):
            text = value.encode() + b"\0"
            body += struct.pack("<4sI", field_id, len(text)) + text + b"\0" * (len(text) & 1)
    return struct.pack("<4sI", b"LIST", len(body)) + body


def _id3_chunk(tags: Mapping[str, str]) -> bytes:
    """An ``id3 `` chunk holding every tag as ID3v2.4 (padded to even length)."""
    tag = id3_tag(tags)
    return struct.pack("<4sI", b"id3 ", len(tag)) + tag + b"\0" * (len(tag) & 1)


def _tag_wav(src: Path, dest: Path, tags: Mapping[str, str]) -> bool:
    """Copy a RIFF/WAVE file with ``tags`` in a LIST/INFO chunk before its samples, which are copied byte for
    byte (no demuxing: a 30 s track takes a millisecond). False if ``src`` is not a plain, complete WAV."""
    size = src.stat().st_size
    with src.open("rb") as inp:
        head = inp.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return False
        chunks: list[tuple[bytes, int, int]] = []  # (id, where its payload starts, its length)
        position = 12
        while position + 8 <= size:
            inp.seek(position)
            chunk_id, length = struct.unpack("<4sI", inp.read(8))
            if position + 8 + length > size:
                return False  # truncated, or a streamed WAV whose lengths were never filled in
            if chunk_id == b"LIST":
                inp.seek(position + 8)
                old_tags = inp.read(4) == b"INFO"
            else:
                old_tags = chunk_id in (b"id3 ", b"ID3 ")
            if old_tags:  # ours replace them
                position += 8 + length + (length & 1)
                continue
            chunks.append((chunk_id, position + 8, length))
            position += 8 + length + (length & 1)
        if [c for c, _, _ in chunks].count(b"data") != 1 or chunks[0][0] != b"fmt ":
            return False
        info = _info_chunk(tags) + _id3_chunk(tags)
        riff_size = 4 + len(info) + sum(8 + length + (length & 1) for _, _, length in chunks)
        if riff_size >= 2**32:
            return False
        with dest.open("wb") as out:
            out.write(b"RIFF" + struct.pack("<I", riff_size) + b"WAVE")
            for chunk_id, start, length in chunks:
                if chunk_id == b"data":
                    out.write(info)
                out.write(struct.pack("<4sI", chunk_id, length))
                inp.seek(start)
                remaining = length
                while remaining:
                    block = inp.read(min(_COPY_BLOCK, remaining))
                    if not block:
                        raise ValueError(f"{src.name} ended early")
                    out.write(block)
                    remaining -= len(block)
                if length & 1:
                    out.write(b"\0")
    return True


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


def tag_copy(src: Path, dest: Path, tags: Mapping[str, str]) -> bool:
    """Copy ``src`` to ``dest`` with ``tags``, the audio untouched (a WAV's samples and an MP3's frames byte for
    byte, other formats re-muxed). If the format can't take tags, ``dest`` is a plain copy and the answer is
    False; so it is for an MP3 signed with C2PA content credentials, whose signature covers every byte (they
    say what made it, AI included: tagging would break them)."""
    if _tag_wav(src, dest, tags):
        return True
    if c2pa_signed(src):
        shutil.copyfile(src, dest)
        return False
    if tag_mp3(src, dest, tags) or _remux_with_tags(src, dest, tags):
        return True
    shutil.copyfile(src, dest)
    return False


def _encode_opus(
    src: Path,
    dest: Path,
    *,
    bitrate: int,
    tags: Mapping[str, str],
    start_s: float = 0.0,
    end_s: float | None = None,
    channels: int | None = None,
) -> None:
    """Decode ``src`` (optionally only [start_s, end_s)) and encode it as Opus in Ogg, in ``channels`` (1 or 2;
    None: as many as the source has, at most two)."""
    with open_input(src) as inp, av.open(str(dest), "w", format="ogg") as out:
        in_stream = inp.streams.audio[0]
        channels = channels or min(max(in_stream.codec_context.channels, 1), 2)
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
        if tag_copy(src, dest, tags) and dest.stat().st_size > limit_bytes:
            shutil.copyfile(src, dest)  # the tags tipped it over: without them it fits
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
