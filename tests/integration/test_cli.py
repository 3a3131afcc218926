"""``python -m bot generate`` end to end: a real subprocess against the fake Replicate."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fakes.audio import audio_info, image_info, wav_info
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


async def run_cli(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> asyncio.subprocess.Process:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "REPLICATE_", "DISCORD_"))}
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
