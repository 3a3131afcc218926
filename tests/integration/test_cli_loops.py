"""``python -m bot generate --loop BARS``: the loop written next to the track, as Discord gets it."""

from __future__ import annotations

import re
from pathlib import Path

from tests.fakes.audio import audio_info, make_wav
from tests.fakes.replicate import FakeReplicate
from tests.integration.test_cli import fake_env, finish, run_cli, tags_of


async def test_the_loop_is_written_next_to_the_track(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    out = tmp_path / "tracks" / "calm.wav"
    args = ("generate", "calm piano", "--duration", "10", "--loop", "2", "--out", str(out))
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 0, result.stderr
    loop = tmp_path / "tracks" / "calm_loop_4s.wav"  # the fake's steady tone has no beat: 2 bars at 120 BPM
    assert sorted(p.name for p in out.parent.iterdir()) == ["calm.wav", "calm_loop_4s.wav"]
    assert abs(audio_info(loop.read_bytes()).duration_s - 4.0) < 0.01
    assert tags_of(loop)["title"] == "calm piano (loop)"
    assert "loop: 4.0 s (no steady beat found" in result.stderr
    assert re.search(rf"wrote {re.escape(str(loop))} \(\d+ bytes\)", result.stderr)


async def test_a_track_too_short_to_loop_is_still_written(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    args = ("generate", "blip", "--duration", "1", "--loop", "4", "--out", "blip.wav")
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 0, result.stderr
    assert "no loop: That track is only 1.0 s long: a loop needs at least 2 s of audio." in result.stderr
    assert sorted(p.name for p in tmp_path.glob("*.wav")) == ["blip.wav"]


async def test_loop_is_refused_where_it_cannot_apply(fake: FakeReplicate, tmp_path: Path) -> None:
    clip = tmp_path / "song.wav"
    clip.write_bytes(make_wav(3))
    args = ("generate", "--audio", str(clip), "--continue", "5", "--loop", "4")
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 2, result.stderr
    assert "`--continue` doesn't take --loop." in result.stderr
    bad = await finish(await run_cli(tmp_path, "generate", "x", "--loop", "3", env=fake_env(fake, tmp_path)))
    assert bad.code == 2
    assert "invalid choice: 3" in bad.stderr
    assert fake.predictions == {}
