"""A waveform picture of a track (PNG), so people see its shape before they play it.

Decodes the audio to mono at a low rate, takes the peak of each pixel column, and draws mirrored bars;
PyAV's PNG encoder writes the image. Blocking: call :func:`render_waveform` through ``asyncio.to_thread``.
"""

from __future__ import annotations

from array import array
from pathlib import Path

import av

from bot.audio import open_input

WIDTH = 800
HEIGHT = 160
_RATE = 8000  # enough to see the shape, cheap to decode
_BACKGROUND = (0x2B, 0x2D, 0x31)
_BAR = (0x58, 0x65, 0xF2)
_MIDLINE = (0x4E, 0x50, 0x58)


def _samples(path: Path) -> array:
    """Mono 16-bit samples at ``_RATE``."""
    samples = array("h")
    with open_input(path) as container:
        stream = container.streams.audio[0]
        resampler = av.AudioResampler(format="s16", layout="mono", rate=_RATE)
        for frame in container.decode(stream):
            frame.pts = None
            for resampled in resampler.resample(frame):
                samples.frombytes(bytes(resampled.planes[0])[: resampled.samples * 2])
        for resampled in resampler.resample(None):
            samples.frombytes(bytes(resampled.planes[0])[: resampled.samples * 2])
    return samples


def _peaks(samples: array, columns: int) -> list[float]:
    """The loudest sample in each column, as a fraction of full scale."""
    if not samples:
        return [0.0] * columns
    step = len(samples) / columns
    peaks = []
    for column in range(columns):
        chunk = samples[int(column * step) : max(int((column + 1) * step), int(column * step) + 1)]
        peaks.append(max(max(chunk), -min(chunk)) / 32768 if chunk else 0.0)
    return peaks


def render_waveform(path: Path, *, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """A PNG of ``path``'s waveform."""
    peaks = _peaks(_samples(path), width)
    loudest = max(peaks) or 1.0
    middle = height // 2
    pixels = bytearray(bytes(_BACKGROUND) * width * height)
    for x, peak in enumerate(peaks):
        reach = max(1, round(peak / loudest * (middle - 4)))
        for y in range(middle - reach, middle + reach):
            offset = (y * width + x) * 3
            pixels[offset : offset + 3] = bytes(_BAR)
    for x in range(width):  # a faint centre line where the bars are thin
        offset = (middle * width + x) * 3
        if pixels[offset : offset + 3] == bytes(_BACKGROUND):
            pixels[offset : offset + 3] = bytes(_MIDLINE)
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
