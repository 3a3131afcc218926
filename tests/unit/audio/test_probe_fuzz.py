"""Property-based fuzzing of what users attach: random bytes with audio names, and real audio corrupted.

The probe is the edge every attachment passes: it either describes real audio or raises
InvalidRequestError with a message for the user. Nothing else may escape (a crash would lose the reply).
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path

import pytest
from hypothesis import event, example, given, settings
from hypothesis import strategies as st

from bot.audio.prepare import prepare_clip
from bot.audio.probe import AudioInfo, probe
from bot.errors import InvalidRequestError
from tests.fakes.audio import make_mp3, make_wav

FUZZ = settings(max_examples=120)  # the rest comes from the 'encore' profile in tests/conftest.py
SUFFIXES = st.sampled_from([".wav", ".mp3", ".ogg", ".flac", ".m4a", ".opus", ""])
SAMPLES = {"wav": make_wav(1.0, sample_rate=16000, channels=1), "mp3": make_mp3(1.0, sample_rate=16000, channels=1)}


def outcome(path: Path) -> AudioInfo | InvalidRequestError:
    try:
        return asyncio.run(probe(path, max_s=300))
    except InvalidRequestError as exc:
        return exc


def assert_clear(result: AudioInfo | InvalidRequestError) -> None:
    event(type(result).__name__)  # shown by --hypothesis-show-statistics: both outcomes occur
    if isinstance(result, InvalidRequestError):
        assert str(result), "the user must be told what is wrong"
    else:
        assert result.sample_rate > 0
        assert result.channels > 0
        assert math.isfinite(result.duration_s)
        assert result.duration_s > 0


@FUZZ
@given(data=st.binary(max_size=4096), suffix=SUFFIXES)
def test_random_bytes_with_an_audio_name(tmp_path: Path, data: bytes, suffix: str) -> None:
    path = tmp_path / f"upload{suffix}"
    path.write_bytes(data)
    assert_clear(outcome(path))


@FUZZ
@given(
    kind=st.sampled_from(sorted(SAMPLES)),
    cut=st.integers(min_value=0, max_value=100),
    flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(min_value=0, max_value=255)), max_size=16),
)
@example(kind="mp3", cut=7, flips=[(21, 128)])  # found: ID3 text not UTF-8 crashed PyAV's open
@example(kind="wav", cut=1, flips=[(20, 0)])  # found: a WAV codec tag with no decoder crashed the probe
def test_real_audio_truncated_or_corrupted(tmp_path: Path, kind: str, cut: int, flips: list[tuple[int, int]]) -> None:
    data = bytearray(SAMPLES[kind][: max(1, len(SAMPLES[kind]) * cut // 100)])
    for position, value in flips:
        data[position % len(data)] = value
    path = tmp_path / f"clip.{kind}"
    path.write_bytes(bytes(data))
    result = outcome(path)
    assert_clear(result)
    if isinstance(result, AudioInfo):
        # What passed the probe must also survive the next step (the clip handed to a model).
        length = prepare_clip(path, tmp_path / "prepared.wav")
        assert length == pytest.approx(result.duration_s, abs=0.1)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_the_untouched_samples_are_audio(tmp_path: Path, kind: str) -> None:
    """The corpus the fuzzer mutates is itself valid, so the properties above are not vacuous."""
    path = tmp_path / f"clip.{kind}"
    path.write_bytes(SAMPLES[kind])
    result = outcome(path)
    assert isinstance(result, AudioInfo)
    assert result.duration_s == pytest.approx(1.0, abs=0.1)
