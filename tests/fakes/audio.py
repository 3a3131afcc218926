"""Real, audible audio (and a real JPEG) for tests: stdlib WAV plus PyAV for everything else (no numpy).

``make_wav`` builds one second of 16-bit PCM sine frames with ``array`` and repeats the bytes, so even a
30 s stereo file takes milliseconds. ``wav_info`` parses a WAV back so tests can assert that an attachment
decodes as audio of the right length and channel count.

With PyAV (which bundles FFmpeg): ``make_mp3``/``mp3_from_pcm`` encode with libmp3lame (``encode_pcm`` with
any other bundled encoder); ``audio_info``
decodes any format FFmpeg reads (wav, mp3, ogg, flac...) and counts the decoded samples, so it measures
what a player would hear rather than what the container claims; ``decode_pcm`` decodes and converts to
16-bit interleaved PCM at a chosen rate and channel count; ``make_jpeg`` encodes a gradient with mjpeg and
``image_info`` decodes an image back.

PCM in this module is always signed 16-bit, interleaved, little-endian (WAV's byte order).
"""

from __future__ import annotations

import io
import math
import sys
import wave
from array import array
from dataclasses import dataclass
from fractions import Fraction

import av
import av.error
from av.audio.stream import AudioStream
from av.container import InputContainer

_AMPLITUDE = 0.5 * 32767
_ENCODE_CHUNK = 1152 * 16  # samples per frame handed to an encoder (a multiple of the MP3 frame size)


@dataclass(frozen=True)
class WavInfo:
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    sample_width: int = 2


@dataclass(frozen=True)
class AudioInfo:
    """What decoding the whole stream found; ``frames`` is samples per channel."""

    duration_s: float
    sample_rate: int
    channels: int
    codec: str  # FFmpeg decoder name, e.g. "pcm_s16le", "mp3float", "vorbis", "flac"
    frames: int = 0


@dataclass(frozen=True)
class Pcm:
    """Decoded audio: 16-bit interleaved little-endian samples."""

    data: bytes
    sample_rate: int
    channels: int

    @property
    def frames(self) -> int:
        return len(self.data) // (2 * self.channels)

    @property
    def duration_s(self) -> float:
        return self.frames / self.sample_rate

    def slice_s(self, start_s: float, end_s: float | None = None) -> bytes:
        """The bytes of ``[start_s, end_s)`` (``int(rate * t)`` frame bounds, like a tensor slice; clamped)."""
        width = 2 * self.channels
        end = self.frames if end_s is None else int(self.sample_rate * end_s)
        return self.data[int(self.sample_rate * start_s) * width : end * width]


@dataclass(frozen=True)
class ImageInfo:
    width: int
    height: int
    codec: str  # FFmpeg decoder name, e.g. "mjpeg", "png"


def _check_format(sample_rate: int, channels: int) -> None:
    if sample_rate <= 0 or channels <= 0:
        raise ValueError("sample_rate and channels must be positive")


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}.get(channels, f"{channels}c")


def _le(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def _native(pcm: bytes) -> bytes:
    """Little-endian PCM in the machine's byte order (what FFmpeg's ``s16`` means)."""
    if sys.byteorder == "little":
        return pcm
    samples = array("h", pcm)
    samples.byteswap()
    return samples.tobytes()


def _one_second(sample_rate: int, channels: int, freq_hz: float) -> bytes:
    """Interleaved frames for one second; channel ``c`` plays ``freq_hz * (1 + c / 2)`` (a fifth above)."""
    samples = array("h", bytes(2 * sample_rate * channels))
    for ch in range(channels):
        step = 2 * math.pi * freq_hz * (1 + ch / 2) / sample_rate
        samples[ch::channels] = array("h", (int(_AMPLITUDE * math.sin(step * i)) for i in range(sample_rate)))
    return _le(samples)


def tone_pcm(frames: int, *, sample_rate: int = 32000, channels: int = 2, freq_hz: float = 440.0) -> bytes:
    """``frames`` frames of a non-silent sine (see ``_one_second``) as PCM; cheap for long durations."""
    _check_format(sample_rate, channels)
    if frames < 0:
        raise ValueError(f"frames must be >= 0, got {frames}")
    second = _one_second(sample_rate, channels, freq_hz)
    whole, rest = divmod(frames, sample_rate)
    return second * whole + second[: rest * 2 * channels]


def wav_from_pcm(pcm: bytes, *, sample_rate: int, channels: int) -> bytes:
    """Wrap 16-bit interleaved PCM in a WAV container."""
    _check_format(sample_rate, channels)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    return buf.getvalue()


def make_wav(duration_s: float, *, sample_rate: int = 32000, channels: int = 2, freq_hz: float = 440.0) -> bytes:
    """A non-silent 16-bit PCM WAV of ``duration_s`` seconds (rounded to whole frames)."""
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    _check_format(sample_rate, channels)
    pcm = tone_pcm(round(duration_s * sample_rate), sample_rate=sample_rate, channels=channels, freq_hz=freq_hz)
    return wav_from_pcm(pcm, sample_rate=sample_rate, channels=channels)


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


def encode_pcm(
    pcm: bytes,
    *,
    sample_rate: int,
    channels: int,
    container: str = "mp3",
    codec: str = "libmp3lame",
    bit_rate: int | None = 128_000,
    options: dict[str, str] | None = None,
) -> bytes:
    """Encode PCM with any FFmpeg encoder PyAV bundles (e.g. ``("flac", "flac")``, ``("ogg", "libopus")``),
    with the encoder's ``options`` (e.g. libopus's ``{"frame_duration": "5"}``)."""
    _check_format(sample_rate, channels)
    width = 2 * channels
    buf = io.BytesIO()
    with av.open(buf, "w", format=container) as out:
        stream = out.add_stream(codec, rate=sample_rate, layout=_layout(channels), options=options or {})
        if not isinstance(stream, AudioStream):
            raise ValueError(f"{codec} is not an audio encoder")
        if bit_rate is not None:
            stream.bit_rate = bit_rate
        native = _native(pcm)
        for start in range(0, len(native) // width, _ENCODE_CHUNK):
            chunk = native[start * width : (start + _ENCODE_CHUNK) * width]
            frame = av.AudioFrame(format="s16", layout=_layout(channels), samples=len(chunk) // width)
            frame.planes[0].update(chunk)
            frame.sample_rate, frame.pts, frame.time_base = sample_rate, start, Fraction(1, sample_rate)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    return buf.getvalue()


def mp3_from_pcm(pcm: bytes, *, sample_rate: int, channels: int, bit_rate: int = 128_000) -> bytes:
    """Encode PCM as MP3 (libmp3lame, CBR, with a LAME tag so decoders trim the encoder delay)."""
    if channels > 2:
        raise ValueError("MP3 supports mono or stereo only")
    return encode_pcm(pcm, sample_rate=sample_rate, channels=channels, bit_rate=bit_rate)


def make_mp3(duration_s: float, *, sample_rate: int = 32000, channels: int = 2, freq_hz: float = 440.0) -> bytes:
    """A non-silent MP3 of ``duration_s`` seconds; ``audio_info`` decodes it back to exactly that length."""
    if duration_s < 0:
        raise ValueError(f"duration_s must be >= 0, got {duration_s}")
    frames = round(duration_s * sample_rate)
    pcm = tone_pcm(frames, sample_rate=sample_rate, channels=channels, freq_hz=freq_hz)
    return mp3_from_pcm(pcm, sample_rate=sample_rate, channels=channels)


def _open(data: bytes) -> InputContainer:
    try:
        return av.open(io.BytesIO(data), "r")
    except av.error.FFmpegError as exc:
        raise ValueError(f"not a media file FFmpeg can read: {exc}") from exc


def audio_info(data: bytes) -> AudioInfo:
    """Decode every frame of the first audio stream and count the samples; ValueError if undecodable."""
    frames, rate, channels = 0, 0, 0
    with _open(data) as container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in this {container.format.name} data")
        stream = container.streams.audio[0]
        try:
            for frame in container.decode(stream):
                frames += frame.samples
                rate, channels = frame.sample_rate, frame.layout.nb_channels
        except av.error.FFmpegError as exc:
            raise ValueError(f"undecodable audio: {exc}") from exc
        codec = stream.codec_context.name
    if not rate:  # nothing decoded: fall back to the stream parameters for an empty but valid file
        rate, channels = stream.codec_context.sample_rate, stream.codec_context.layout.nb_channels
    if not rate:
        raise ValueError("undecodable audio: no sample rate")
    return AudioInfo(duration_s=frames / rate, sample_rate=rate, channels=channels, codec=codec, frames=frames)


def decode_pcm(data: bytes, *, sample_rate: int | None = None, channels: int | None = None) -> Pcm:
    """Decode the first audio stream to 16-bit interleaved PCM, resampled/remixed if asked; ValueError if not audio.

    Without conversion (same rate, channels and 16-bit samples) the samples come back bit-exact.
    """
    out = bytearray()
    with _open(data) as container:
        if not container.streams.audio:
            raise ValueError(f"no audio stream in this {container.format.name} data")
        stream = container.streams.audio[0]
        ctx = stream.codec_context
        rate = sample_rate or ctx.sample_rate
        chans = channels or ctx.layout.nb_channels
        _check_format(rate, chans)
        resampler = av.AudioResampler(format="s16", layout=_layout(chans), rate=rate)
        width = 2 * chans
        try:
            for frame in container.decode(stream):
                for converted in resampler.resample(frame):
                    out += bytes(converted.planes[0])[: converted.samples * width]
            for converted in resampler.resample(None):
                out += bytes(converted.planes[0])[: converted.samples * width]
        except av.error.FFmpegError as exc:
            raise ValueError(f"undecodable audio: {exc}") from exc
    return Pcm(_native(bytes(out)), rate, chans)


def make_jpeg(width: int = 512, height: int = 512) -> bytes:
    """A real baseline JPEG (mjpeg encoder) of a diagonal grey gradient, like a spectrogram image."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    frame = av.VideoFrame(width, height, "gray")
    plane = frame.planes[0]
    span = width + height
    ramp = bytes(255 * i // span for i in range(span)) + bytes(plane.line_size)
    plane.update(b"".join(ramp[y : y + plane.line_size] for y in range(height)))
    ctx = av.CodecContext.create("mjpeg", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "yuvj420p", Fraction(1, 25)
    packets = ctx.encode(frame.reformat(format="yuvj420p")) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def make_png(width: int = 64, height: int = 64) -> bytes:
    """A real PNG (FFmpeg's png encoder) of a grey gradient."""
    if width <= 0 or height <= 0:
        raise ValueError("width and height must be positive")
    frame = av.VideoFrame(width, height, "gray")
    plane = frame.planes[0]
    plane.update(
        b"".join(bytes(255 * x // width for x in range(width)).ljust(plane.line_size, b"\0") for _ in range(height))
    )
    ctx = av.CodecContext.create("png", "w")
    ctx.width, ctx.height, ctx.pix_fmt, ctx.time_base = width, height, "gray", Fraction(1, 25)
    packets = ctx.encode(frame) + ctx.encode(None)
    return b"".join(bytes(p) for p in packets)


def image_info(data: bytes) -> ImageInfo:
    """Decode the first video frame of an image (JPEG, PNG...); ValueError if it does not decode."""
    with _open(data) as container:
        if not container.streams.video:
            raise ValueError(f"no image in this {container.format.name} data")
        stream = container.streams.video[0]
        try:
            frame = next(iter(container.decode(stream)), None)
        except av.error.FFmpegError as exc:
            raise ValueError(f"undecodable image: {exc}") from exc
        if frame is None:
            raise ValueError("undecodable image: no frame")
        return ImageInfo(frame.width, frame.height, stream.codec_context.name)
