"""Fitting audio under an upload limit: decoded lengths, real sizes and tags are checked, not assumed."""

from __future__ import annotations

from pathlib import Path

import av
import pytest

from bot.audio.fit import fit_audio
from tests.fakes.audio import audio_info, make_mp3, make_wav

TAGS = {"title": "Warm lofi", "artist": "Encore", "comment": "model MusicGen; job abc; seed 5"}


def tags_of(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {**container.metadata, **container.streams.audio[0].metadata}


def test_a_file_that_fits_keeps_its_format_and_gains_tags(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(make_wav(3))
    [fitted] = fit_audio(src, tmp_path / "out", stem="warm-lofi", limit_bytes=10 * 1024 * 1024, tags=TAGS)
    assert fitted.path.name == "warm-lofi.wav"
    assert not fitted.reencoded
    assert audio_info(fitted.path.read_bytes()).duration_s == pytest.approx(3.0)
    assert tags_of(fitted.path)["title"] == "Warm lofi"
    assert tags_of(fitted.path)["comment"] == TAGS["comment"]


def test_mp3_that_fits_is_tagged_too(tmp_path: Path) -> None:
    src = tmp_path / "in.mp3"
    src.write_bytes(make_mp3(2))
    [fitted] = fit_audio(src, tmp_path / "out", stem="x", limit_bytes=10 * 1024 * 1024, tags=TAGS)
    assert fitted.path.suffix == ".mp3"
    assert tags_of(fitted.path)["title"] == "Warm lofi"


def test_too_big_becomes_opus_that_fits(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(make_wav(60, sample_rate=48000, channels=2))  # 11.5 MB
    limit = 10 * 1024 * 1024
    [fitted] = fit_audio(src, tmp_path / "out", stem="big", limit_bytes=limit, tags=TAGS)
    assert fitted.reencoded
    assert fitted.path.stat().st_size <= limit
    info = audio_info(fitted.path.read_bytes())
    assert (info.codec, info.channels, round(info.duration_s, 2)) == ("opus", 2, 60.0)
    assert tags_of(fitted.path)["title"] == "Warm lofi"


def test_far_too_big_is_split_into_parts_that_each_fit(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(make_wav(30, sample_rate=32000, channels=2))
    limit = 60 * 1024  # even 32 kb/s would not fit 30 s in one file
    parts = fit_audio(src, tmp_path / "out", stem="long", limit_bytes=limit, tags=TAGS)
    assert len(parts) >= 2
    assert [p.part for p in parts] == list(range(1, len(parts) + 1))
    assert all(p.path.stat().st_size <= limit for p in parts)
    total = sum(audio_info(p.path.read_bytes()).duration_s for p in parts)
    assert total == pytest.approx(30.0, abs=0.05)  # nothing lost, nothing repeated
    assert tags_of(parts[1].path)["title"] == f"Warm lofi (part 2 of {len(parts)})"


def test_wav_tags_are_written_without_touching_the_samples(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    original = make_wav(2, sample_rate=32000, channels=2)
    src.write_bytes(original)
    [fitted] = fit_audio(
        src, tmp_path / "out", stem="t", limit_bytes=10 * 1024 * 1024, tags={**TAGS, "title": "Ünïcode ☂"}
    )
    data = fitted.path.read_bytes()
    assert data[:4] == b"RIFF"
    assert int.from_bytes(data[4:8], "little") == len(data) - 8
    samples = original[original.index(b"data") + 8 :]
    assert data.endswith(samples)  # the samples, byte for byte, at the end
    assert tags_of(fitted.path)["title"] == "Ünïcode ☂"
    assert audio_info(data).duration_s == pytest.approx(2.0)
    # Tagging the tagged file again replaces the tags instead of adding a second set.
    [again] = fit_audio(fitted.path, tmp_path / "again", stem="t", limit_bytes=10 * 1024 * 1024, tags=TAGS)
    assert again.path.read_bytes().count(b"INFO") == 1
    assert tags_of(again.path)["title"] == "Warm lofi"


def test_a_truncated_wav_is_still_delivered(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(make_wav(2)[:-1000])  # the header claims more samples than there are
    [fitted] = fit_audio(src, tmp_path / "out", stem="t", limit_bytes=10 * 1024 * 1024, tags=TAGS)
    assert audio_info(fitted.path.read_bytes()).duration_s > 1.9
