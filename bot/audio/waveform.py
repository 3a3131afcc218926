"""A waveform picture of a track (PNG), so people see its shape before they play it.

Takes the peak of each pixel column and draws mirrored bars; PyAV's PNG encoder writes the image. The peaks of
a plain PCM WAV (what most models make) come straight from its samples: the top byte of every sample in a
regular sample of frames, about 128 values a column, read without decoding. Any other file is decoded to 8-bit
mono at a low rate. Every per-sample and per-pixel step runs in C (``bytes.translate``, strided slices, ``max``
over bytes), so a card's picture costs a few milliseconds of CPU and holds the GIL only briefly. Blocking:
call :func:`render_waveform` through ``asyncio.to_thread``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import av

from bot.audio import open_input

WIDTH = 800
HEIGHT = 160
SAMPLE_RATE = 8000  # enough to see the shape, cheap to decode
_BACKGROUND = (0x2B, 0x2D, 0x31)
_BAR = (0x58, 0x65, 0xF2)
_MIDLINE = (0x4E, 0x50, 0x58)
# Unsigned 8-bit samples (128 is silence) to their distance from silence: |v - 128|, at most 128.
_MAGNITUDE = bytes(min(abs(v - 128), 127) for v in range(256))
_COLOURS = (_BACKGROUND, _BAR, _MIDLINE)  # palette indices 0, 1, 2
_CHANNEL = [bytes(c[i] for c in _COLOURS) + bytes(253) for i in range(3)]  # index -> red, green, blue
# The top byte of a signed little-endian PCM sample (two's complement) to its distance from silence, at most 127.
_SIGNED_MAGNITUDE = bytes(min(v if v < 128 else 256 - v, 127) for v in range(256))
_VALUES_PER_COLUMN = 128  # samples of a WAV looked at per pixel column, all channels together
_READ_BYTES = 1024 * 1024
_PCM, _EXTENSIBLE = 1, 0xFFFE  # WAVE format tags
# Each channel of a WAV costs a pass over the columns: more than surround sound has is decoded to mono instead.
_MAX_CHANNELS = 8


def mono_u8(path: Path, *, max_s: float | None = None) -> bytes:
    """Mono unsigned 8-bit samples at ``SAMPLE_RATE`` (8 bits are plenty for a picture 160 pixels high, or a
    voice message's waveform). Decoding stops once there is more than ``max_s`` seconds of it."""
    chunks: list[bytes] = []
    limit = None if max_s is None else int(max_s * SAMPLE_RATE)
    have = 0
    with open_input(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="u8", layout="mono", rate=SAMPLE_RATE)
        for frame in container.decode(stream):
            frame.pts = None
            for resampled in resampler.resample(frame):
                chunks.append(bytes(resampled.planes[0])[: resampled.samples])
                have += resampled.samples
            if limit is not None and have > limit:
                return b"".join(chunks)
        chunks.extend(bytes(r.planes[0])[: r.samples] for r in resampler.resample(None))
    return b"".join(chunks)


def column_peaks(samples: bytes, columns: int) -> list[int]:
    """The loudest sample of each of ``columns`` equal stretches, 0 (silence) to 127 (full scale)."""
    return _column_max(samples.translate(_MAGNITUDE), columns)


def _column_max(magnitudes: bytes, columns: int) -> list[int]:
    """The largest of ``magnitudes`` in each of ``columns`` equal stretches."""
    if not magnitudes:
        return [0] * columns
    step = len(magnitudes) / columns
    return [
        max(magnitudes[int(column * step) : max(int((column + 1) * step), int(column * step) + 1)], default=0)
        for column in range(columns)
    ]


@dataclass(frozen=True)
class _PcmWav:
    channels: int
    sample_bytes: int  # 2, 3 or 4
    data_start: int
    data_bytes: int  # whole frames only

    @property
    def frame_bytes(self) -> int:
        return self.channels * self.sample_bytes


def _pcm_wav(path: Path) -> _PcmWav | None:
    """Where the samples of a plain WAV of signed 16, 24 or 32-bit PCM in at most eight channels are; None for
    anything else (another container or encoding, 8-bit or floating-point samples, a header that doesn't add up,
    a file that claims hundreds of channels)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        head = handle.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:] != b"WAVE":
            return None
        fmt = None
        position = 12
        while position + 8 <= size:
            handle.seek(position)
            chunk_id, length = struct.unpack("<4sI", handle.read(8))
            if chunk_id == b"fmt ":
                fmt = handle.read(min(length, 40))
            elif chunk_id == b"data":
                break
            position += 8 + length + (length & 1)
        else:
            return None
    if fmt is None or len(fmt) < 16:
        return None
    tag, channels, _rate, _byte_rate, frame_bytes, bits = struct.unpack("<HHIIHH", fmt[:16])
    if tag == _EXTENSIBLE and len(fmt) >= 26:
        tag = struct.unpack("<H", fmt[24:26])[0]  # the sub-format GUID starts with the format tag
    if tag != _PCM or bits not in (16, 24, 32) or not 1 <= channels <= _MAX_CHANNELS:
        return None
    if frame_bytes != channels * bits // 8:
        return None
    start = position + 8
    available = min(length, size - start)  # a truncated file, or a streamed one that never filled it in
    return _PcmWav(channels, bits // 8, start, available - available % frame_bytes)


def _wav_peaks(wav: _PcmWav, path: Path, columns: int) -> list[int]:
    """Each column's peak over every channel, from the top byte of the samples of every ``stride``-th frame."""
    frames = wav.data_bytes // wav.frame_bytes
    stride = max(1, -(-frames * wav.channels // (columns * _VALUES_PER_COLUMN)))
    step = wav.frame_bytes * stride
    block = max(1, _READ_BYTES // step) * step  # whole strides, so every block starts on a picked frame
    parts: list[list[bytes]] = [[] for _ in range(wav.channels)]
    with path.open("rb") as handle:
        handle.seek(wav.data_start)
        left = wav.data_bytes
        while left > 0:
            data = handle.read(min(block, left))
            if not data:
                break
            left -= len(data)
            for channel, part in enumerate(parts):
                top = channel * wav.sample_bytes + wav.sample_bytes - 1
                part.append(data[top::step].translate(_SIGNED_MAGNITUDE))
    peaks = [_column_max(b"".join(part), columns) for part in parts]
    return [max(column) for column in zip(*peaks, strict=True)]


def _peaks(path: Path, columns: int) -> list[int]:
    wav = _pcm_wav(path)
    if wav is not None:
        return _wav_peaks(wav, path, columns)
    return column_peaks(mono_u8(path), columns)


def render_waveform(path: Path, *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A PNG of ``path``'s waveform."""
    peaks = _peaks(path, width)
    loudest = max(peaks) or 1
    middle = height // 2
    # Each column's bar covers rows [middle - reach, middle + reach); a row at distance k from the centre
    # (k = middle - y above it, y - middle + 1 below) is inside the bar where reach >= k.
    reach = bytes(min(255, max(1, round(peak / loudest * (middle - 4)))) for peak in peaks)
    rows: dict[int, bytes] = {}
    pixels = bytearray(width * height * 3)
    for y in range(height):
        k = middle - y if y < middle else y - middle + 1
        if k not in rows:
            outside = 2 if y == middle else 0  # a faint centre line where the bars are thin
            palette = reach.translate(bytes(1 if r >= k else outside for r in range(256)))
            row = bytearray(width * 3)
            for channel in range(3):
                row[channel::3] = palette.translate(_CHANNEL[channel])
            rows[k] = bytes(row)
        pixels[y * width * 3 : (y + 1) * width * 3] = rows[k]
    return _png(bytes(pixels), width, height)


def _png(rgb: bytes, width: int, height: int) -> bytes:
    frame = av.VideoFrame(width, height, "rgb24")
    plane = frame.planes[0]
    stride = plane.line_size
    if stride == width * 3:
        plane.update(rgb)
    else:  # rows are padded in the frame's buffer
        padded = bytearray(stride * height)
        for row in range(height):
            padded[row * stride : row * stride + width * 3] = rgb[row * width * 3 : (row + 1) * width * 3]
        plane.update(bytes(padded))
    codec = av.CodecContext.create("png", "w")
    codec.width, codec.height, codec.pix_fmt = width, height, "rgb24"
    packets = codec.encode(frame)
    packets += codec.encode(None)
    return b"".join(bytes(packet) for packet in packets)
