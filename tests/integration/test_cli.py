"""``python -m bot generate`` end to end: a real subprocess against the fake Replicate."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import av
import pytest

from tests.fakes.audio import audio_info, image_info, make_wav, wav_info
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


async def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    base = {
        k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "REPLICATE_", "DISCORD_", "ELEVENLABS_"))
    }
    base["PYTHONPATH"] = str(ROOT)
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        *args,
        cwd=tmp_path,
        env={**base, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def finish(process: asyncio.subprocess.Process) -> Result:
    async with asyncio.timeout(30):
        stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Result(process.returncode, stdout.decode(), stderr.decode())


def fake_env(fake: FakeReplicate, tmp_path: Path) -> dict[str, str]:
    return {
        "REPLICATE_API_TOKEN": fake.token,
        "ENCORE_REPLICATE__API_BASE": fake.base_url,
        "ENCORE_STORAGE__DIR": str(tmp_path / "data"),
        "ENCORE_JOBS__POLL_INITIAL_S": "0.05",
        "ENCORE_JOBS__POLL_MAX_S": "0.1",
    }


async def test_generate_polls_and_writes_the_audio(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    out = tmp_path / "song.wav"
    process = await run_cli(
        tmp_path,
        "generate",
        "calm piano",
        "--duration",
        "3",
        "--seed",
        "99",
        "--out",
        str(out),
        env=fake_env(fake, tmp_path),
    )
    result = await finish(process)
    assert result.code == 0, result.stderr
    info = wav_info(out.read_bytes())
    assert round(info.duration_s) == 3
    for phase in ("Queued", "Starting", "Generating", "Done", f"wrote {out}"):
        assert phase in result.stderr
    [prediction] = fake.predictions.values()
    assert prediction.input["seed"] == 99


async def test_generate_in_webhook_mode(fake: FakeReplicate, tmp_path: Path) -> None:
    port = free_port()
    env = fake_env(fake, tmp_path) | {
        "ENCORE_WEBHOOKS__PUBLIC_URL": f"http://127.0.0.1:{port}",
        "ENCORE_WEBHOOKS__HOST": "127.0.0.1",
        "ENCORE_WEBHOOKS__PORT": str(port),
    }
    process = await run_cli(tmp_path, "generate", "epic drums", "--duration", "2", env=env)
    pid = await fake.wait_for_prediction(timeout=20)
    await fake.succeed(pid)
    result = await finish(process)
    assert result.code == 0, result.stderr
    assert fake.count("GET", "/v1/predictions/") == 0  # the webhook finished it, not a poll
    [written] = list(tmp_path.glob("epic-drums-*.wav"))
    assert round(wav_info(written.read_bytes()).duration_s) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "   "], "the prompt is empty"),
        (["generate", "ok", "--duration", "99"], "`duration` must be between 1 and 30"),
        (["generate", "ok", "--model-version", "tiny"], "`model_version` must be one of"),
        (["generate", "ok", "--seed", "0"], "`seed` must be between 1"),
    ],
)
async def test_bad_input_is_refused_before_anything_is_submitted(
    fake: FakeReplicate, tmp_path: Path, args: list[str], message: str
) -> None:
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert fake.predictions == {}


async def test_missing_token_and_bad_config_are_clear(fake: FakeReplicate, tmp_path: Path) -> None:
    env = fake_env(fake, tmp_path)
    del env["REPLICATE_API_TOKEN"]
    result = await finish(await run_cli(tmp_path, "generate", "x", env=env))
    assert (result.code, "REPLICATE_API_TOKEN is not set" in result.stderr) == (2, True)

    (tmp_path / "config.toml").write_text("[jobs]\nmax_duration_s = 'long'\n")
    result = await finish(await run_cli(tmp_path, "generate", "x", env=fake_env(fake, tmp_path)))
    assert result.code == 2
    assert "[jobs] max_duration_s" in result.stderr


async def test_model_failure_exits_1_with_the_reason(fake: FakeReplicate, tmp_path: Path) -> None:
    process = await run_cli(tmp_path, "generate", "doomed", env=fake_env(fake, tmp_path))
    pid = await fake.wait_for_prediction(timeout=20)
    await fake.fail(pid)
    result = await finish(process)
    assert result.code == 1
    assert "Failed: The model failed" in result.stderr


async def test_check_config_masks_secrets(tmp_path: Path) -> None:
    env = {"DISCORD_TOKEN": "very-secret-discord", "REPLICATE_API_TOKEN": "r8_very_secret"}
    result = await finish(await run_cli(tmp_path, "check-config", env=env))
    assert result.code == 0
    assert "very-secret" not in result.stdout + result.stderr
    assert "DISCORD_TOKEN: set (hidden)" in result.stdout


async def test_generate_any_model_with_its_parameters(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    out = tmp_path / "rain.wav"
    process = await run_cli(
        tmp_path,
        "generate",
        "rain",
        "--model",
        "stable-audio",
        "--duration",
        "20",
        "--steps",
        "40",
        "--sampler-type",
        "k-heun",
        "--set",
        "cfg_scale=3.5",
        "--count",
        "2",
        "--seed",
        "7",
        "--out",
        str(out),
        env=fake_env(fake, tmp_path),
    )
    result = await finish(process)
    assert result.code == 0, result.stderr
    written = sorted(tmp_path.glob("rain-v*.wav"))
    assert [p.name for p in written] == ["rain-v1-seed7.wav", "rain-v2-seed8.wav"]
    assert all(round(audio_info(p.read_bytes()).duration_s) == 20 for p in written)
    inputs = [prediction.input for prediction in fake.predictions.values()]
    assert {(i["steps"], i["sampler_type"], i["cfg_scale"]) for i in inputs} == {(40, "k-heun", 3.5)}


async def test_riffusion_from_the_cli_writes_the_spectrogram(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    process = await run_cli(
        tmp_path,
        "generate",
        "bells",
        "--model",
        "riffusion",
        "--prompt-b",
        "drums",
        "--alpha",
        "0.7",
        "--out",
        str(tmp_path / "riff.wav"),
        env=fake_env(fake, tmp_path),
    )
    result = await finish(process)
    assert result.code == 0, result.stderr
    assert round(audio_info((tmp_path / "riff.wav").read_bytes()).duration_s) == 5
    assert image_info((tmp_path / "riff-spectrogram.jpg").read_bytes()).codec == "mjpeg"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "riffusion", "--seed", "3"], "doesn't take a seed"),
        (["--model", "stable-audio", "--temperature", "1"], "Stable Audio Open has no parameter `temperature`"),
        (["--steps", "0", "--model", "stable-audio"], "`steps` must be 1 to 500"),
        (["--set", "top_k"], "Write options as `name=value`"),
        (["--count", "9"], "`count` must be between 1 and 4"),
    ],
)
async def test_cli_parameter_errors(fake: FakeReplicate, tmp_path: Path, args: list[str], message: str) -> None:
    result = await finish(await run_cli(tmp_path, "generate", "x", *args, env=fake_env(fake, tmp_path)))
    assert (result.code, message in result.stderr) == (2, True), result.stderr
    assert fake.predictions == {}


async def test_models_command_lists_everything(tmp_path: Path) -> None:
    result = await finish(await run_cli(tmp_path, "models"))
    assert result.code == 0
    for text in ("MusicGen", "Stable Audio Open", "Riffusion", "`seed_image_id`", "0 to 1"):
        assert text in result.stdout


# -- issue 12: what the README promises of the CLI ------------------------------------------------------------


def tags_of(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {**container.metadata, **container.streams.audio[0].metadata}


@pytest.fixture
async def eleven() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(default_length_ms=5000) as server:
        yield server


def eleven_env(fake: FakeReplicate, eleven: FakeElevenLabs, tmp_path: Path) -> dict[str, str]:
    return fake_env(fake, tmp_path) | {
        "ELEVENLABS_API_KEY": eleven.api_key,
        "ENCORE_ELEVENLABS__API_BASE": eleven.base_url,
        "ENCORE_ELEVENLABS__RETRY_BASE_S": "0.01",
    }


async def test_variations_are_named_once_announced_once_and_tagged(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    # One prediction at a time: the second variation waits its turn, so its card is "Queued" for a while.
    env = fake_env(fake, tmp_path) | {"ENCORE_LIMITS__REPLICATE_JOBS_IN_FLIGHT": "1"}
    args = ("generate", "rain on a tin roof", "--model", "stable-audio", "--duration", "3", "--count", "2")
    result = await finish(await run_cli(tmp_path, *args, "--seed", "7", env=env))
    assert result.code == 0, result.stderr
    assert result.stderr.count("Queued") == 1, result.stderr
    written = sorted((p.name for p in tmp_path.glob("*.wav")), key=lambda name: name.rsplit("-v", 1)[-1])
    assert len(written) == 2
    for index, name in enumerate(written, start=1):  # in variation order (job ids are random)
        assert re.fullmatch(rf"rain-on-a-tin-roof-[a-z2-9]{{10}}-v{index}-seed{6 + index}\.wav", name), name
        tags = tags_of(tmp_path / name)
        job_id = name.split("-")[5]
        assert tags["title"] == "rain on a tin roof"
        assert f"job {job_id}" in tags["comment"]
        assert f"seed {6 + index}" in tags["comment"]
        assert "Stable Audio Open" in tags["comment"]
        assert round(wav_info((tmp_path / name).read_bytes()).duration_s) == 3


async def test_out_file_is_tagged_too(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    out = tmp_path / "tracks" / "calm.wav"
    args = ("generate", "calm piano", "--duration", "2", "--seed", "5", "--out", str(out))
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 0, result.stderr
    assert tags_of(out)["title"] == "calm piano"
    assert "seed 5" in tags_of(out)["comment"]
    assert round(wav_info(out.read_bytes()).duration_s) == 2


async def test_melody_from_a_clip_goes_through_the_melody_path(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    clip = tmp_path / "humming.wav"
    clip.write_bytes(make_wav(4.0, freq_hz=330.0))
    before = clip.read_bytes()
    args = ("generate", "jazz trio", "--audio", str(clip), "--duration", "6", "--top-k", "200", "--out", "jazz.wav")
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 0, result.stderr
    [prediction] = fake.predictions.values()
    assert prediction.input["model_version"] == "stereo-melody-large"
    assert prediction.input["top_k"] == 200
    assert "continuation" not in prediction.input or prediction.input["continuation"] is False
    assert prediction.input["input_audio"].startswith(fake.base_url)  # uploaded through Replicate's files API
    assert round(wav_info((tmp_path / "jazz.wav").read_bytes()).duration_s) == 6
    assert clip.read_bytes() == before  # the user's file is left alone
    assert [p.name for p in (tmp_path / "data" / "inputs").iterdir()] != [clip.name]


async def test_continue_a_clip_gives_the_whole_longer_track(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    clip = tmp_path / "song.wav"
    clip.write_bytes(make_wav(4.0))
    args = ("generate", "--audio", str(clip), "--continue", "5", "--out", "longer.wav")
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 0, result.stderr
    [prediction] = fake.predictions.values()
    assert prediction.input["continuation"] is True
    assert round(wav_info((tmp_path / "longer.wav").read_bytes()).duration_s) == 9  # 4 s given + 5 s more


async def test_stems_from_a_clip_are_written_each_tagged(
    fake: FakeReplicate, eleven: FakeElevenLabs, tmp_path: Path
) -> None:
    clip = tmp_path / "mix.wav"
    clip.write_bytes(make_wav(3.0))
    args = ("generate", "--model", "stems", "--audio", str(clip), "--stems", "two", "--out", "mix.mp3")
    result = await finish(await run_cli(tmp_path, *args, env=eleven_env(fake, eleven, tmp_path)))
    assert result.code == 0, result.stderr
    [separation] = eleven.separations
    assert separation.stem_variation_id == "two_stems_v1"
    written = sorted(p.name for p in tmp_path.glob("mix-*"))
    assert written == ["mix-accompaniment.mp3", "mix-vocals.mp3"]
    for name in written:
        assert round(audio_info((tmp_path / name).read_bytes()).duration_s) == 3
        assert tags_of(tmp_path / name)["title"] == "Stems of mix.wav"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--model", "stems"], "needs the track to split: give it with --audio PATH"),
        (["x", "--continue"], "`--continue` needs the track to continue"),
        (["x", "--model", "stable-audio", "--audio", "clip.wav"], "Stable Audio Open doesn't take a clip"),
        (["x", "--audio", "clip.wav", "--count", "2"], "doesn't take --count"),
        (["--audio", "clip.wav", "--continue", "30"], "between 1 and 20 seconds"),
        (["--audio", "clip.wav", "--continue", "5", "--temperature", "2"], "doesn't take --temperature"),
        (["x", "--audio", "missing.wav"], "can't read missing.wav"),
        (["x", "--audio", "notes.txt"], "error: That file"),  # the probe says why it is not usable audio
        (["x", "--audio", "."], "isn't a file"),
    ],
)
async def test_audio_input_mistakes_are_named(
    fake: FakeReplicate, eleven: FakeElevenLabs, tmp_path: Path, args: list[str], message: str
) -> None:
    (tmp_path / "clip.wav").write_bytes(make_wav(2.0))
    (tmp_path / "notes.txt").write_text("not audio\n" * 100)
    result = await finish(await run_cli(tmp_path, "generate", *args, env=eleven_env(fake, eleven, tmp_path)))
    assert (result.code, message in result.stderr) == (2, True), result.stderr
    assert "Traceback" not in result.stderr
    assert fake.predictions == {}
    assert eleven.separations == []


async def test_an_oversized_clip_is_refused_before_it_is_read(fake: FakeReplicate, tmp_path: Path) -> None:
    clip = tmp_path / "huge.wav"
    clip.write_bytes(make_wav(20.0))  # 2.5 MB; the limit below is 1 MiB
    env = fake_env(fake, tmp_path) | {"ENCORE_AUDIO__MAX_INPUT_BYTES": str(1024 * 1024)}
    result = await finish(await run_cli(tmp_path, "generate", "x", "--audio", str(clip), env=env))
    assert (result.code, "the limit is 1.0 MiB" in result.stderr) == (2, True), result.stderr
    assert not (tmp_path / "data" / "inputs").exists() or not any((tmp_path / "data" / "inputs").iterdir())


@pytest.mark.parametrize("audio", [False, True])
async def test_demucs_with_the_placeholder_version_is_refused(fake: FakeReplicate, tmp_path: Path, audio: bool) -> None:
    (tmp_path / "clip.wav").write_bytes(make_wav(2.0))
    args = ["generate", "x", "--model", "demucs", *(["--audio", "clip.wav"] if audio else [])]
    result = await finish(await run_cli(tmp_path, *args, env=fake_env(fake, tmp_path)))
    assert result.code == 2, result.stderr
    assert "[stems] demucs_ref: set a pinned version id" in result.stderr
    assert fake.predictions == {}


async def test_a_refused_token_is_named(fake: FakeReplicate, tmp_path: Path) -> None:
    env = fake_env(fake, tmp_path) | {"REPLICATE_API_TOKEN": "r8_not_the_right_one"}
    result = await finish(await run_cli(tmp_path, "generate", "x", env=env))
    assert result.code == 1
    assert "error: REPLICATE_API_TOKEN was refused by Replicate" in result.stderr


async def test_a_missing_elevenlabs_key_is_named(fake: FakeReplicate, tmp_path: Path) -> None:
    for args in (["a song", "--model", "song"], ["--model", "stems", "--audio", "clip.wav"]):
        result = await finish(await run_cli(tmp_path, "generate", *args, env=fake_env(fake, tmp_path)))
        assert result.code == 2
        assert "set ELEVENLABS_API_KEY" in result.stderr


async def test_verbose_shows_why_the_service_is_unavailable(fake: FakeReplicate, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there
    env = fake_env(fake, tmp_path) | {
        "ENCORE_REPLICATE__API_BASE": f"http://127.0.0.1:{closed}/v1",
        "ENCORE_REPLICATE__RETRY_BASE_S": "0.01",
    }
    quiet = await finish(await run_cli(tmp_path, "generate", "x", env=env))
    assert quiet.code == 1
    assert "The music service is unavailable" in quiet.stderr
    assert "run again with --verbose to see why" in quiet.stderr
    assert f"127.0.0.1:{closed}" not in quiet.stderr
    verbose = await finish(await run_cli(tmp_path, "generate", "x", "--verbose", env=env))
    assert verbose.code == 1
    assert f"Cannot connect to host 127.0.0.1:{closed}" in verbose.stderr
    assert fake.token not in verbose.stderr


async def test_models_says_where_each_model_runs(tmp_path: Path) -> None:
    env = {"ENCORE_MODELS__MUSICGEN__PROVIDER": "cog"}
    result = await finish(await run_cli(tmp_path, "models", env=env))
    assert result.code == 0
    blocks = {block.split(" (`")[0]: block for block in result.stdout.split("\n\n")}
    assert "on your own Cog server" in blocks["MusicGen"]
    assert "on Replicate" not in blocks["MusicGen"]
    assert "on Replicate." in blocks["Stable Audio Open"]
    assert "on ElevenLabs." in blocks["ElevenLabs Music"]
    assert "on ElevenLabs." in blocks["Stem separation (ElevenLabs)"]


async def test_quota_refusal_reads_as_plain_text(fake: FakeReplicate, tmp_path: Path) -> None:
    fake.auto_advance = True
    env = fake_env(fake, tmp_path) | {"ENCORE_LIMITS__USER_DAILY_JOBS": "1"}
    first = await finish(await run_cli(tmp_path, "generate", "one", "--duration", "1", env=env))
    assert first.code == 0, first.stderr
    second = await finish(await run_cli(tmp_path, "generate", "two", "--duration", "1", env=env))
    assert second.code == 1
    assert "You've made 1 of your 1 tracks today. More in " in second.stderr
    assert re.search(r"More in (\d+h )?\d+m \(at 00:00 UTC\)\.", second.stderr), second.stderr
    assert "<t:" not in second.stderr
    assert len(fake.predictions) == 1


async def test_scripts_run_works_where_the_user_stands(fake: FakeReplicate, tmp_path: Path) -> None:
    """``scripts/run`` from another directory: relative paths are the caller's, nothing lands in the repo."""
    fake.auto_advance = True
    (tmp_path / "bot").mkdir()  # a folder named like Encore's package must not stand in for it
    (tmp_path / "bot" / "__main__.py").write_text("raise SystemExit('the wrong bot')\n")
    (tmp_path / "my.toml").write_text('[storage]\ndir = "mydata"\n\n[jobs]\nmax_duration_s = 20\n')
    env = {k: v for k, v in fake_env(fake, tmp_path).items() if k != "ENCORE_STORAGE__DIR"}
    before = set(ROOT.iterdir())

    async def scripts_run(*args: str) -> Result:
        base = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("ENCORE_", "REPLICATE_", "DISCORD_", "ELEVENLABS_", "PYTHON"))
        }
        process = await asyncio.create_subprocess_exec(
            str(ROOT / "scripts" / "run"),
            *args,
            cwd=tmp_path,
            env={**base, **env},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return await finish(process)

    checked = await scripts_run("check-config", "--config", "my.toml")
    assert checked.code == 0, checked.stderr
    assert "max_duration_s = 20" in checked.stdout
    made = await scripts_run("generate", "drums", "--duration", "2", "--config", "my.toml", "--out", "out/drums.wav")
    assert made.code == 0, made.stderr
    assert round(wav_info((tmp_path / "out" / "drums.wav").read_bytes()).duration_s) == 2
    assert (tmp_path / "mydata" / "encore.sqlite3").is_file()
    backed_up = await scripts_run("db", "backup", "copy.sqlite3", "--config", "my.toml")
    assert backed_up.code == 0, backed_up.stderr
    assert (tmp_path / "copy.sqlite3").is_file()
    assert set(ROOT.iterdir()) == before


async def stderr_until(process: asyncio.subprocess.Process, pattern: str, *, timeout_s: float = 30) -> list[str]:
    """The CLI's stderr lines, read as they come, up to the first that matches ``pattern``."""
    assert process.stderr is not None
    lines: list[str] = []
    async with asyncio.timeout(timeout_s):
        while True:
            line = (await process.stderr.readline()).decode()
            if not line:
                raise AssertionError(f"the CLI ended before {pattern!r}: {lines}")
            lines.append(line)
            if re.search(pattern, line):
                return lines


async def test_generate_shows_the_models_progress(fake: FakeReplicate, tmp_path: Path) -> None:
    process = await run_cli(tmp_path, "generate", "slow build", "--duration", "30", env=fake_env(fake, tmp_path))
    pid = await fake.wait_for_prediction(timeout=20)
    await fake.begin(pid)
    await fake.progress(pid, 780, 1503, rate=500.0)  # " 52%|█████▏    | 780/1503 [00:01<00:01, 500.00it/s]"
    lines = await stderr_until(process, r"Generating ▓▓▓▓▓░░░░░ 52%")
    assert re.search(r"\] Generating ▓▓▓▓▓░░░░░ 52% · \d:\d\d elapsed · (about \d s left|almost done)$", lines[-1])
    await fake.progress(pid, 1503, 1503, rate=500.0)
    await fake.succeed(pid)
    result = await finish(process)
    assert result.code == 0, result.stderr
    assert "Done" in result.stderr
    assert sum("%" in line for line in lines + result.stderr.splitlines()) <= 12  # a line a tenth, not a flood


async def test_a_song_shows_what_has_arrived_and_the_time_so_far(
    fake: FakeReplicate, eleven: FakeElevenLabs, tmp_path: Path
) -> None:
    hold = eleven.hold(path="/v1/music/detailed", after_chunks=2)
    # Raw PCM costs the fake no encoding: 2 MB in 4 pieces, two of them out before the hold.
    args = ("generate", "a long ballad", "--model", "song", "--duration", "24", "--set", "output_format=pcm_44100")
    process = await run_cli(tmp_path, *args, env=eleven_env(fake, eleven, tmp_path))
    await hold.wait_held()
    lines = await stderr_until(process, r"MiB received")
    assert re.search(r"\] Generating · \d+\.\d MiB received · \d:\d\d elapsed$", lines[-1]), lines
    hold.release()
    result = await finish(process)
    assert result.code == 0, result.stderr
