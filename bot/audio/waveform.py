"""A waveform picture of a track (PNG), so people see its shape before they play it.

Decodes the audio to 8-bit mono at a low rate, takes the peak of each pixel column, and draws mirrored bars;
PyAV's PNG encoder writes the image. Every per-sample and per-pixel step runs in C (``bytes.translate``,
``max`` over bytes, strided slice assignment), so a card's picture costs a few milliseconds of CPU and
holds the GIL only briefly. Blocking: call :func:`render_waveform` through ``asyncio.to_thread``.
"""

from __future__ import annotations

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
    if not samples:
        return [0] * columns
    magnitudes = samples.translate(_MAGNITUDE)
    step = len(magnitudes) / columns
    return [
        max(magnitudes[int(column * step) : max(int((column + 1) * step), int(column * step) + 1)], default=0)
        for column in range(columns)
    ]


def render_waveform(path: Path, *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A PNG of ``path``'s waveform."""
    peaks = column_peaks(mono_u8(path), width)
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
