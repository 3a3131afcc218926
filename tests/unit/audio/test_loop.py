"""The loop maker on real audio: a click track at a known tempo, noise with no beat, a track too short.

A seam without a click means the loop, played over and over, goes from its last sample to its first as smoothly
as the track went from one sample to the next: no jump larger than the audio's own steps, the same level on both
sides. On the click track the seam falls just before a click, so it is compared with the same place before a
beat inside the loop.
"""

from __future__ import annotations

import struct
from pathlib import Path

import av
import numpy as np
import pytest

from bot.audio.loop import BEAT_FADE_S, LoopTooShortError, find_tempo, loop_name, make_loop
from tests.fakes.beats import Samples, beat_frame, click_track, noise, read_wav, wav_bytes

TAGS = {"title": "warm lofi (loop)", "artist": "Encore", "comment": "job abc"}
RATE = 44100
MS10 = RATE // 100


def rms_db(part: Samples) -> float:
    return 20 * float(np.log10(np.sqrt(np.mean(part**2)) + 1e-12))


def wrap_step(loop: Samples) -> float:
    """The jump from the loop's last frame to its first (the seam, played as a loop)."""
    return float(np.max(np.abs(loop[0] - loop[-1])))


def largest_step(part: Samples) -> float:
    return float(np.max(np.abs(np.diff(part, axis=0))))


def chunks(data: bytes) -> dict[bytes, bytes]:
    """A RIFF/WAVE file's chunks by id."""
    assert data[:4] == b"RIFF"
    assert data[8:12] == b"WAVE"
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    found, position = {}, 12
    while position + 8 <= len(data):
        chunk_id, length = struct.unpack("<4sI", data[position : position + 8])
        found[chunk_id] = data[position + 8 : position + 8 + length]
        position += 8 + length + (length & 1)
    assert position == len(data)
    return found


def write(tmp_path: Path, samples: Samples, rate: int = RATE) -> Path:
    src = tmp_path / "track.wav"
    src.write_bytes(wav_bytes(samples, rate))
    return src


@pytest.mark.parametrize("bpm", [90.0, 120.0, 128.0, 140.0])
def test_a_click_track_loops_on_the_beat_without_a_click(tmp_path: Path, bpm: float) -> None:
    source = click_track(bpm, 24, rate=RATE)
    made = make_loop(write(tmp_path, source), tmp_path / "loop.wav", bars=4, max_s=600, tags=TAGS)

    assert made.bpm is not None
    assert made.bpm == pytest.approx(bpm, abs=2)
    assert made.bars == 4
    assert loop_name(made.bars, made.bpm, made.seconds) == f"loop_{round(bpm)}bpm_4bars"
    loop, rate = read_wav(made.path.read_bytes())
    assert rate == RATE
    assert len(loop) == made.frames
    # Four bars of this track, from one beat to the beat sixteen beats later
    start = round(made.start_s * RATE)
    first_beat = min(range(100), key=lambda i: abs(beat_frame(i, bpm, RATE) - start))
    assert abs(beat_frame(first_beat, bpm, RATE) - start) <= RATE // 1000 + 1
    # (its end moved up to 5 ms earlier, to meet the start in phase; never later, into the next click).
    whole_bars = beat_frame(first_beat + 16, bpm, RATE) - beat_frame(first_beat, bpm, RATE)
    assert -RATE // 200 - RATE // 2000 <= made.frames - whole_bars <= RATE // 2000
    # ...so it begins with the click, whole: its attack is in the first 2 ms.
    attack = int(np.argmax(np.abs(loop[:MS10, 0]) > 0.2))
    assert 0 < attack <= RATE // 500

    # The seam: the wrap's jump is no larger than the quiet bed's own steps just before it (a cut out of phase
    # would jump by up to twice the bed's level), and no larger than the largest step inside the loop.
    assert wrap_step(loop) <= largest_step(loop[-MS10:]) + 2 / 32768
    assert wrap_step(loop) <= largest_step(loop)
    # In level it is like any beat inside the loop: the 10 ms before and after the seam match the 10 ms before
    # and after the loop's ninth beat within 1 dB.
    inner = beat_frame(first_beat + 8, bpm, RATE) - start
    assert rms_db(loop[-MS10:]) == pytest.approx(rms_db(loop[inner - MS10 : inner]), abs=1)
    assert rms_db(loop[:MS10]) == pytest.approx(rms_db(loop[inner : inner + MS10]), abs=1)
    # Cut from beat to beat without the fade and the phase match, the same bars would jump at the wrap.
    raw = source[start : start + whole_bars]
    assert wrap_step(raw) > 4 * largest_step(raw[-MS10:])


def test_the_file_tells_samplers_and_daws_how_to_loop_it(tmp_path: Path) -> None:
    made = make_loop(write(tmp_path, click_track(120, 12)), tmp_path / "loop.wav", bars=2, max_s=600, tags=TAGS)
    data = made.path.read_bytes()
    found = chunks(data)
    # smpl: one forward loop from the first frame to the last (inclusive), played forever.
    smpl = found[b"smpl"]
    assert struct.unpack("<I", smpl[28:32])[0] == 1  # loops
    cue, kind, start, end, _fraction, plays = struct.unpack("<6I", smpl[36:60])
    assert (kind, start, end, plays) == (0, 0, made.frames - 1, 0)
    assert cue == 0
    # acid: a loop to stretch, 8 beats of 4/4 at the tempo found.
    flags, _root, _, _, beats, denominator, numerator, tempo = struct.unpack("<IHHfIHHf", found[b"acid"])
    assert flags & 0x01 == 0  # not a one-shot
    assert (beats, numerator, denominator) == (8, 4, 4)
    assert tempo == pytest.approx(made.bpm, abs=0.01)
    assert b"INAM" in found[b"LIST"]  # the title, as on every delivered file
    # Any player reads it as the audio it is.
    with av.open(str(made.path)) as container:
        decoded = sum(frame.samples for frame in container.decode(audio=0))
        assert container.metadata["title"] == "warm lofi (loop)"
    assert decoded == made.frames


def test_noise_has_no_tempo_and_falls_back_to_the_chosen_length(tmp_path: Path) -> None:
    source = noise(20, rate=RATE)
    assert find_tempo(source.mean(axis=1), RATE) is None
    made = make_loop(write(tmp_path, source), tmp_path / "loop.wav", bars=4, max_s=600, tags=TAGS)

    assert made.bpm is None
    assert made.frames == pytest.approx(8 * RATE, abs=RATE // 200)  # four bars of a 120 BPM grid
    assert loop_name(made.bars, made.bpm, made.seconds) == "loop_8s"
    found = chunks(made.path.read_bytes())
    assert b"acid" not in found  # no tempo is claimed
    assert struct.unpack("<I", found[b"smpl"][48:52])[0] == made.frames - 1
    loop, _ = read_wav(made.path.read_bytes())
    assert wrap_step(loop) <= largest_step(loop)
    assert rms_db(loop[-MS10:]) == pytest.approx(rms_db(loop[:MS10]), abs=1)
    # The crossfade keeps the level through the seam: no dip where two unrelated stretches of noise meet.
    fade = round(0.25 * RATE)
    assert rms_db(loop[-fade:]) == pytest.approx(rms_db(loop[:fade]), abs=1)


def test_a_steady_tone_has_no_tempo_and_still_loops_smoothly(tmp_path: Path) -> None:
    t = np.arange(10 * RATE) / RATE
    tone = np.repeat((0.5 * np.sin(2 * np.pi * 441.7 * t))[:, None], 2, axis=1)
    made = make_loop(write(tmp_path, tone), tmp_path / "loop.wav", bars=2, max_s=600, tags=TAGS)
    assert made.bpm is None
    loop, _ = read_wav(made.path.read_bytes())
    assert wrap_step(loop) <= largest_step(loop[-MS10:]) + 2 / 32768


def test_a_too_short_track_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(LoopTooShortError) as refused:
        make_loop(write(tmp_path, click_track(120, 1.5)), tmp_path / "loop.wav", bars=4, max_s=600, tags=TAGS)
    assert refused.value.user_message == "That track is only 1.5 s long: a loop needs at least 2 s of audio."
    assert not (tmp_path / "loop.wav").exists()


def test_bars_that_do_not_fit_become_fewer(tmp_path: Path) -> None:
    made = make_loop(write(tmp_path, click_track(120, 10)), tmp_path / "loop.wav", bars=16, max_s=600, tags=TAGS)
    assert made.bars == 4  # 16 and 8 bars at 120 BPM don't fit in 10 s
    assert made.seconds == pytest.approx(8.0, abs=0.01)


def test_only_the_first_part_of_a_long_track_is_read(tmp_path: Path) -> None:
    made = make_loop(write(tmp_path, click_track(120, 20)), tmp_path / "loop.wav", bars=2, max_s=6, tags=TAGS)
    assert made.start_s + made.seconds <= 6
    assert made.start_s >= BEAT_FADE_S
