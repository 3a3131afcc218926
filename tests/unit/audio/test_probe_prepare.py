"""Every input format decodes, bad input is refused with a clear message, and clips come out as the model needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.audio.prepare import MODEL_RATE, decode, prepare_clip, stitch
from bot.audio.probe import probe
from bot.errors import InvalidRequestError
from tests.fakes.audio import encode_pcm, make_mp3, make_wav, tone_pcm


def encoded(container: str, codec: str, *, rate: int = 48000, channels: int = 2, seconds: float = 2.0) -> bytes:
    pcm = tone_pcm(int(rate * seconds), sample_rate=rate, channels=channels)
    return encode_pcm(pcm, sample_rate=rate, channels=channels, container=container, codec=codec, bit_rate=None)


FORMATS = {
    "wav": lambda: make_wav(2),
    "mp3": lambda: make_mp3(2),
    "ogg-opus": lambda: encoded("ogg", "libopus", channels=1),
    "m4a-aac": lambda: encoded("mp4", "aac", rate=44100),
    "flac": lambda: encoded("flac", "flac", rate=44100),
    "webm-opus": lambda: encoded("webm", "libopus"),
}


@pytest.mark.parametrize("name", list(FORMATS))
async def test_every_format_is_read(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"clip.{name}"
    path.write_bytes(FORMATS[name]())
    info = await probe(path, max_s=300)
    assert info.duration_s == pytest.approx(2.0, abs=0.05)
    clip = tmp_path / "clip.wav"
    length = prepare_clip(path, clip, start_s=0.5)
    assert length == pytest.approx(1.5, abs=0.05)
    prepared = decode(clip, rate=MODEL_RATE, channels=2)
    assert (prepared.rate, prepared.channels) == (MODEL_RATE, 2)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "couldn't read that file as audio"),
        (b"not audio at all" * 100, "couldn't read that file as audio"),
        (make_wav(0), "empty"),
        (make_wav(2, freq_hz=0.0), "completely silent"),
    ],
)
async def test_bad_inputs_are_refused_clearly(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(data)
    with pytest.raises(InvalidRequestError, match=message):
        await probe(path, max_s=300)


def test_stitch_puts_the_unseen_part_back(tmp_path: Path) -> None:
    source = tmp_path / "source.wav"
    source.write_bytes(make_wav(6, freq_hz=220.0))
    tail = tmp_path / "tail.wav"  # what a continuation returns: the last 2 s, then 3 new seconds
    prepare_clip(source, tail, start_s=4.0)
    new = decode(tail, rate=MODEL_RATE, channels=2).data + tone_pcm(3 * MODEL_RATE, sample_rate=MODEL_RATE)
    from bot.audio.prepare import Pcm, write_wav

    write_wav(Pcm(new, MODEL_RATE, 2), tail)
    out = tmp_path / "full.wav"
    assert stitch(source, 4.0, tail, out) == pytest.approx(9.0)
    whole = decode(out, rate=MODEL_RATE, channels=2).data
    assert whole.startswith(decode(source, rate=MODEL_RATE, channels=2).data)
