"""Real, audible WAV audio for tests (stdlib only, no numpy).

``make_wav`` builds one second of 16-bit PCM sine frames with ``array`` and repeats the bytes, so even a
30 s stereo file takes milliseconds. ``wav_info`` parses a WAV back so tests can assert that an attachment
decodes as audio of the right length and channel count.
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass

_AMPLITUDE = 0.5 * 32767


@dataclass(frozen=True)
class WavInfo:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    sample_width: int = 2


def _one_second(sample_rate: int, channels: int, freq_hz: float) -> bytes:
    """Interleaved frames for one second; channel ``c`` plays ``freq_hz * (1 + c / 2)`` (a fifth above)."""
    samples = array("h", bytes(2 * sample_rate * channels))
    for ch in range(channels):
        step = 2 * math.pi * freq_hz * (1 + ch / 2) / sample_rate
        samples[ch::channels] = array("h", (int(_AMPLITUDE * math.sin(step * i)) for i in range(sample_rate)))
    if sys.byteorder == "big":
        samples.byteswap()  # WAV is little-endian
    return samples.tobytes()


def make_wav(duration_s: float, *, sample_rate: int = 32000, channels: int = 2, freq_hz: float = 440.0) -> bytes:
    """A non-silent 16-bit PCM WAV of ``duration_s`` seconds (rounded to whole frames)."""
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    if sample_rate <= 0 or channels <= 0:
        raise ValueError("sample_rate and channels must be positive")
    frames = round(duration_s * sample_rate)
    second = _one_second(sample_rate, channels, freq_hz)
    whole, rest = divmod(frames, sample_rate)
    pcm = second * whole + second[: rest * 2 * channels]
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def wav_info(data: bytes) -> WavInfo:
    """Parse a WAV header (and check the frames are present); ValueError if ``data`` is not a WAV."""
    try:
        with wave.open(io.BytesIO(data), "rb") as w:
            frames, rate, channels, width = w.getnframes(), w.getframerate(), w.getnchannels(), w.getsampwidth()
            got = len(w.readframes(frames)) // (channels * width)
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"not a WAV file: {exc!r}") from exc
    if got != frames:
        raise ValueError(f"truncated WAV: header says {frames} frames, found {got}")
    return WavInfo(duration_s=frames / rate, sample_rate=rate, channels=channels, frames=frames, sample_width=width)
