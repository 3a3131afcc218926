"""Audio with a known beat, for the loop maker's tests: clicks at an exact tempo over a quiet tone, and noise.

Each click is the same short burst of noise with a 4 ms decay (like a hi-hat or a rim shot), starting exactly on
its beat; the tone under it (220.3 Hz, so no loop length holds a whole number of its periods) makes a cut in the
wrong place audible as a jump. Floats in [-1, 1], frames x channels; :func:`wav_bytes` writes 16-bit WAV.
"""

from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt

from tests.fakes.audio import wav_from_pcm

Samples = npt.NDArray[np.float64]

FIRST_BEAT_S = 0.0137  # the first click: not on a frame boundary of any analysis
CLICK_S = 0.03
BED_HZ = 220.3


def click_track(
    bpm: float, seconds: float, *, rate: int = 44100, channels: int = 2, bed: float = 0.1, seed: int = 1
) -> Samples:
    frames = round(seconds * rate)
    t = np.arange(frames) / rate
    mono = bed * np.sin(2 * np.pi * BED_HZ * t)
    rng = np.random.default_rng(seed)
    length = round(CLICK_S * rate)
    click = rng.standard_normal(length) * np.exp(-np.arange(length) / (0.004 * rate)) * 0.5
    beat = 0
    while (start := beat_frame(beat, bpm, rate)) < frames:
        end = min(frames, start + length)
        mono[start:end] += click[: end - start]  # the same sample every beat, as a drum machine plays it
        beat += 1
    return np.repeat(np.clip(mono, -1, 1)[:, None], channels, axis=1)


def beat_frame(index: int, bpm: float, rate: int) -> int:
    """Where beat ``index`` of :func:`click_track` starts."""
    return round((FIRST_BEAT_S + index * 60 / bpm) * rate)


def noise(seconds: float, *, rate: int = 44100, channels: int = 2, level: float = 0.3, seed: int = 2) -> Samples:
    """White noise: no beat at all."""
    rng = np.random.default_rng(seed)
    return np.clip(rng.standard_normal((round(seconds * rate), channels)) * level, -1, 1)


def wav_bytes(samples: Samples, rate: int) -> bytes:
    pcm = np.round(samples * 32767).astype("<i2").tobytes()
    return wav_from_pcm(pcm, sample_rate=rate, channels=samples.shape[1])


def read_wav(data: bytes) -> tuple[Samples, int]:
    """A 16-bit PCM WAV's samples (frames x channels) and rate, read by the standard library."""
    with wave.open(io.BytesIO(data), "rb") as w:
        rate, channels = w.getframerate(), w.getnchannels()
        raw = w.readframes(w.getnframes())
    return np.frombuffer(raw, dtype="<i2").reshape(-1, channels).astype(np.float64) / 32768, rate
