"""A track made into a voice message's file (bot.audio.voice): Opus in Ogg, mono at 48 kHz, its decoded length,
and a waveform drawn from the decoded audio; a track too long is refused before anything is encoded."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bot.audio.voice import WAVEFORM_POINTS, voice_clip
from bot.errors import InvalidRequestError
from tests.fakes.audio import audio_info, tone_pcm, wav_from_pcm
from tests.fakes.bombs import flac_bomb

TAGS = {"title": "half and half", "artist": "Encore"}
MIB = 1024 * 1024


def loud_then_quiet(path: Path, seconds: float, *, rate: int = 32000) -> Path:
    """A stereo WAV: a full-scale tone for the first half, silence for the second."""
    half = int(seconds * rate / 2)
    pcm = tone_pcm(half, sample_rate=rate, channels=2) + bytes(half * 4)
    path.write_bytes(wav_from_pcm(pcm, sample_rate=rate, channels=2))
    return path


def test_a_track_becomes_mono_opus_in_ogg_with_its_length_and_shape(tmp_path: Path) -> None:
    source = loud_then_quiet(tmp_path / "track.wav", 4.0)
    clip = voice_clip(source, tmp_path / "out" / "voice.ogg", max_s=600, max_bytes=10 * MIB, tags=TAGS)
    info = audio_info(clip.path.read_bytes())
    assert (info.codec, info.sample_rate, info.channels) == ("opus", 48000, 1)
    assert info.duration_s == pytest.approx(4.0, abs=0.03)
    assert clip.duration_s == pytest.approx(4.0, abs=0.01)
    assert len(clip.waveform) == 40  # a point per 100 ms
    assert min(clip.waveform[:18]) > 200  # the loud half...
    assert max(clip.waveform[22:]) == 0  # ...and the silent one
    assert max(clip.waveform) == 255


def test_a_long_track_has_256_points(tmp_path: Path) -> None:
    source = tmp_path / "long.wav"
    source.write_bytes(wav_from_pcm(tone_pcm(8000 * 60, sample_rate=8000, channels=1), sample_rate=8000, channels=1))
    clip = voice_clip(source, tmp_path / "voice.ogg", max_s=600, max_bytes=10 * MIB, tags=TAGS)
    assert len(clip.waveform) == WAVEFORM_POINTS


def test_a_track_over_the_limit_is_refused_before_anything_is_encoded(tmp_path: Path) -> None:
    source = loud_then_quiet(tmp_path / "track.wav", 4.0)
    dest = tmp_path / "voice.ogg"
    with pytest.raises(InvalidRequestError, match=r"too long for a voice message.*up to 0:03"):
        voice_clip(source, dest, max_s=3, max_bytes=10 * MIB, tags=TAGS)
    assert not dest.exists()


def test_refusing_a_bomb_costs_little(tmp_path: Path) -> None:
    """A file that decodes to hundreds of hours is decoded only past the limit, then refused."""
    source = tmp_path / "bomb.flac"
    source.write_bytes(flac_bomb(150_000))  # 341 hours
    start = time.process_time()
    with pytest.raises(InvalidRequestError, match="too long"):
        voice_clip(source, tmp_path / "voice.ogg", max_s=600, max_bytes=10 * MIB, tags=TAGS)
    assert time.process_time() - start < 1.0


def test_the_bitrate_comes_down_to_fit_the_upload_limit(tmp_path: Path) -> None:
    source = tmp_path / "tone.wav"
    source.write_bytes(wav_from_pcm(tone_pcm(32000 * 20, sample_rate=32000, channels=2), sample_rate=32000, channels=2))
    roomy = voice_clip(source, tmp_path / "a.ogg", max_s=600, max_bytes=10 * MIB, tags=TAGS)
    tight = voice_clip(source, tmp_path / "b.ogg", max_s=600, max_bytes=100_000, tags=TAGS)
    assert tight.path.stat().st_size <= 100_000 < roomy.path.stat().st_size
    with pytest.raises(InvalidRequestError, match=r"\(0:20\) is too long"):
        voice_clip(source, tmp_path / "c.ogg", max_s=600, max_bytes=40_000, tags=TAGS)  # under 24 kb/s
