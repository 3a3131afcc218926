"""Output formats and the audio the fake sends: tones of exact length in MP3, PCM, G.711 or Ogg Opus."""

from __future__ import annotations

import array
import struct
from dataclasses import dataclass
from functools import lru_cache

from tests.fakes.audio import encode_pcm, mp3_from_pcm, tone_pcm

_MP3_COMMON = ["mp3_22050_32", "mp3_24000_48", *(f"mp3_44100_{b}" for b in (32, 64, 96, 128, 192))]
_MP3_48K = [f"mp3_48000_{b}" for b in (128, 192, 240, 320)]
_OTHER_FORMATS = [
    *(f"pcm_{r}" for r in (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ulaw_8000",
    "alaw_8000",
    *(f"opus_48000_{b}" for b in (32, 64, 96, 128, 192)),
]
GENERATION_FORMATS: tuple[str, ...] = ("auto", *_MP3_48K, *_MP3_COMMON, *_OTHER_FORMATS)
STEM_FORMATS: tuple[str, ...] = (*_MP3_COMMON, *_OTHER_FORMATS)  # no auto, no mp3_48000_*
AUTO_FORMAT = {"music_v1": "mp3_44100_128", "music_v2": "mp3_48000_192", "music_v2_5": "mp3_48000_192"}
CONTENT_TYPES = {  # by codec; all but audio/mpeg are guesses
    "mp3": "audio/mpeg",
    "pcm": "audio/pcm",
    "ulaw": "audio/basic",
    "alaw": "audio/alaw",
    "opus": "audio/ogg",
}


@dataclass(frozen=True)
class AudioFormat:
    name: str  # e.g. "mp3_44100_128"
    codec: str  # mp3 | pcm | ulaw | alaw | opus
    sample_rate: int
    bit_rate: int | None  # bits per second (mp3, opus)

    @classmethod
    def parse(cls, name: str) -> AudioFormat:
        codec, rate, *rest = name.split("_")
        return cls(name, codec, int(rate), int(rest[0]) * 1000 if rest else None)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.codec]

    @property
    def extension(self) -> str:
        return self.codec

    def channels(self, pcm_channels: int) -> int:
        return {"mp3": 2, "opus": 2, "pcm": pcm_channels}.get(self.codec, 1)

    def frames(self, length_ms: int) -> int:
        return round(length_ms * self.sample_rate / 1000)


def encode_audio(pcm: bytes, fmt: AudioFormat, channels: int) -> bytes:
    """16-bit PCM in ``fmt``: MP3, Ogg Opus, raw G.711 or the PCM itself."""
    rate = fmt.sample_rate
    if fmt.codec == "mp3":
        return mp3_from_pcm(pcm, sample_rate=rate, channels=channels, bit_rate=fmt.bit_rate or 128_000)
    if fmt.codec == "opus":
        return encode_pcm(
            pcm, sample_rate=rate, channels=channels, container="ogg", codec="libopus", bit_rate=fmt.bit_rate
        )
    if fmt.codec in ("ulaw", "alaw"):
        container = "mulaw" if fmt.codec == "ulaw" else "alaw"
        return encode_pcm(
            pcm, sample_rate=rate, channels=channels, container=container, codec=f"pcm_{container}", bit_rate=None
        )
    return pcm


@lru_cache(maxsize=64)
def render_tone(format_name: str, frames: int, channels: int, freq_hz: float = 440.0) -> bytes:
    """``frames`` frames of a tone in a format (cached: the encoders are deterministic)."""
    fmt = AudioFormat.parse(format_name)
    pcm = tone_pcm(frames, sample_rate=fmt.sample_rate, channels=channels, freq_hz=freq_hz)
    return encode_audio(pcm, fmt, channels)


def waveform_visual(sample_rate: int, frames: int) -> list[int]:
    """The detailed answer's ``waveform_visual``: 4 values a second, -1000..1000, of the (mono) tone sent."""
    samples = array.array("h", tone_pcm(frames, sample_rate=sample_rate, channels=1))
    window = sample_rate // 4
    out = []
    for start in range(0, len(samples), window):
        part = samples[start : start + window]
        high, low = max(part), min(part)
        out.append(round((high if high >= -low else low) * 1000 / 32768))
    return out


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])


def trap_mp3(mp3: bytes, boundary: str) -> bytes:
    """``mp3`` wrapped in ID3 tags holding ``\\r\\n--`` sequences; it ends with ``\\r\\n`` and decodes the same."""
    text = b"\r\n--" + boundary[:-1].encode() + b"\r\n--\r\n\n--" + boundary[:-1].encode() + b"\n"
    body = b"\x00trap\x00" + text  # TXXX: latin-1, description "trap", value
    frame = b"TXXX" + struct.pack(">I", len(body)) + b"\x00\x00" + body
    head = b"ID3\x03\x00\x00" + _syncsafe(len(frame)) + frame
    tail = b"TAG" + b"Encore fake".ljust(30, b"\0") + bytes(60) + b"2026" + b"\r\n--".ljust(29, b" ") + b"\r\n"
    return head + mp3 + tail
