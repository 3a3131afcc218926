"""``python -m bot run`` as a real process against the Discord simulator (issue 12).

Startup problems (a refused token, no network, a damaged or locked database) end the process with one line
saying what to do, never a traceback. SIGTERM (``docker stop``) and SIGINT (Ctrl-C) stop it cleanly, exit 0,
and the job it had in flight resumes at the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from bot.storage.db import Database
from tests.e2e.conftest import default_guild
from tests.fakes.audio import audio_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.sharding import guild_id_on_shard
from tests.fakes.replicate import FakeReplicate
from tests.faults import botproc
from tests.faults._process import BotProcess, Progress, bot_environment, listen_port, spawn_bot, toml_text
from tests.integration.conftest import free_port

EXIT_TIMEOUT_S = 90.0  # a Python start with discord.py and PyAV on a loaded 2-core machine
STOP_S = 10.0  # docker stop's grace period before it kills


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    async with DiscordSimulator([default_guild()]) as simulator:
        yield simulator
        simulator.assert_no_validation_failures()


@dataclass
class Exited:
    code: int
    stderr: str


def bot_config(sim: DiscordSimulator, fake: FakeReplicate, data_dir: Path) -> dict[str, dict[str, Any]]:
    return {
        "discord": {"dev_guild_ids": [g.id for g in sim.guilds], "card_edit_interval_s": 0.0},
        "replicate": {"api_base": fake.base_url, "retry_base_s": 0.01},
        "webhooks": {"host": "127.0.0.1", "port": listen_port()},
        "jobs": {"poll_initial_s": 0.05, "poll_max_s": 0.2},
        "storage": {"dir": str(data_dir), "busy_timeout_ms": 200},
        "logging": {"level": "INFO"},
    }


async def run_until_exit(
    tmp_path: Path,
    sim: DiscordSimulator,
    fake: FakeReplicate,
    discord: dict[str, Any] | None = None,
    /,
    **env_overrides: str,
) -> Exited:
    """Start ``python -m bot run`` (pointed at the simulator) and wait for it to end by itself; ``discord``:
    more ``[discord]`` settings."""
    settings = bot_config(sim, fake, tmp_path / "data")
    settings["discord"] |= discord or {}
    config = tmp_path / "config.toml"
    config.write_text(toml_text(settings))
    process = await spawn_bot(config, tmp_path, bot_environment(sim, fake) | env_overrides)
    try:
        async with asyncio.timeout(EXIT_TIMEOUT_S):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Exited(process.returncode, stderr.decode(errors="replace"))


def one_clear_line(result: Exited, *needles: str) -> str:
    """The process failed with exactly one ``error:`` line containing ``needles``, and no traceback."""
    assert result.code not in (0, -signal.SIGKILL), result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


async def test_a_refused_discord_token_is_one_line(sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path) -> None:
    wrong = "MTIzNDU2Nzg5MDEyMzQ1Njc4OQ.Gwrong.not-the-bot-token-at-all-0123456789"
    result = await run_until_exit(tmp_path, sim, fake, DISCORD_TOKEN=wrong)
    one_clear_line(result, "Discord refused DISCORD_TOKEN (401 Unauthorized)", "Reset Token")
    assert result.code == 2
    assert wrong not in result.stderr
    assert any(call.status == 401 for call in sim.requests_to("GET /users/@me"))  # Discord's answer, as Discord


async def test_no_network_is_one_line(sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path) -> None:
    closed = free_port()  # nothing listens there: connections are refused, as without a network
    result = await run_until_exit(
        tmp_path,
        sim,
        fake,
        **{
            botproc.API_URL: f"http://127.0.0.1:{closed}/api/v10",
            botproc.GATEWAY_URL: f"ws://127.0.0.1:{closed}/gateway",
        },
    )
    one_clear_line(result, "can't reach Discord", f"127.0.0.1:{closed}", "check this machine's network")
    assert result.code == 1


async def test_too_few_shards_for_discord_is_one_line_saying_what_to_set(fake: FakeReplicate, tmp_path: Path) -> None:
    guilds = [default_guild(name=f"Server {i}", id=guild_id_on_shard(0, 1, i)) for i in range(3)]
    async with DiscordSimulator(guilds, max_guilds_per_shard=2) as sim:  # Discord: 2,500
        result = await run_until_exit(tmp_path, sim, fake, {"shard_count": 1})
        line = one_clear_line(
            result,
            "Discord refused shard 0 (4011 sharding required)",
            "[discord] shard_count = 1 is too few; set shard_count to at least 2 (Discord recommends 2)",
        )
        assert result.code == 1
        assert sim.gateway.events.find(lambda e: e.kind == "refused" and e.code == 4011) is not None
        assert "shard_count = 0" in line
        sim.assert_no_validation_failures()


async def test_a_damaged_database_is_one_line(sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path) -> None:
    path = tmp_path / "data" / "encore.sqlite3"
    path.parent.mkdir()
    garbage = bytes(range(256)) * 64
    path.write_bytes(garbage)
    result = await run_until_exit(tmp_path, sim, fake)
    one_clear_line(result, f"the database {path} is damaged or not a database", "restore a backup")
    assert result.code == 1
    assert path.read_bytes() == garbage  # left as it was, for the operator to look at or restore over
    assert sim.requests_to("GET /users/@me") == []  # stopped before logging in


async def test_a_locked_database_is_one_line(sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path) -> None:
    path = tmp_path / "data" / "encore.sqlite3"
    database = Database(path)
    await database.open()  # a real Encore database, migrated
    await database.close()
    # Another program holds it exclusively (readers shut out too) for as long as the bot tries to start.
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        result = await run_until_exit(tmp_path, sim, fake)
        other.execute("ROLLBACK")
    one_clear_line(result, f"the database {path} is locked by another program")
    assert result.code == 1


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_a_stop_signal_stops_cleanly_and_the_job_in_flight_resumes(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, sig: signal.Signals
) -> None:
    bot = BotProcess(sim, fake, tmp_path, bot_config(sim, fake, tmp_path / "data"), Progress())
    try:
        await bot.start()
        alice = sim.user("alice")
        await (await alice.slash("music generate", prompt="slow ambient pads", duration=3)).wait_response()
        prediction_id = await fake.wait_for_prediction(timeout=60)
        await fake.begin(prediction_id)  # running at the provider when the signal comes

        assert await bot.stop(sig, timeout_s=STOP_S) == 0
        assert bot.log_lines(f"{sig.name} received: stopping"), bot.tail()
        assert bot.log_lines(f"Encore stopped cleanly ({sig.name})"), bot.tail()
        assert not bot.log_lines("Traceback", "ERROR"), bot.tail()

        await bot.start()
        await fake.succeed(prediction_id)
        audio = await sim.wait_for_file(predicate=lambda a: a.filename.endswith(".wav"), timeout_s=60)
        assert round(audio_info(sim.read_attachment(audio)).duration_s) == 3
        assert list(fake.predictions) == [prediction_id]  # resumed, not made again
    finally:
        await bot.close()


async def test_a_stop_during_a_download_still_ends_within_dockers_grace(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path
) -> None:
    """The output download hangs when SIGTERM comes: the stop gives it a grace period but still ends before
    ``docker stop`` would kill, and the next start fetches the output again and posts it once."""
    bot = BotProcess(sim, fake, tmp_path, bot_config(sim, fake, tmp_path / "data"), Progress())
    downloading = asyncio.Event()

    def hang(_request: object) -> bool:
        downloading.set()
        return True

    fake.inject(method="GET", path=r"^/delivery/", status=None, delay_s=300.0, when=hang)
    try:
        await bot.start()
        alice = sim.user("alice")
        await (await alice.slash("music generate", prompt="rain on glass", duration=2)).wait_response()
        prediction_id = await fake.wait_for_prediction(timeout=60)
        await fake.succeed(prediction_id)
        async with asyncio.timeout(60):
            await downloading.wait()

        assert await bot.stop(signal.SIGTERM, timeout_s=STOP_S) == 0
        assert bot.log_lines("Encore stopped cleanly (SIGTERM)"), bot.tail()

        await bot.start()
        audio = await sim.wait_for_file(predicate=lambda a: a.filename.endswith(".wav"), timeout_s=60)
        assert round(audio_info(sim.read_attachment(audio)).duration_s) == 2
        posted = [m for m in sim.messages if any(a.filename.endswith(".wav") for a in m.attachments)]
        assert len(posted) == 1
    finally:
        await bot.close()


async def test_a_stop_lets_a_command_being_handled_finish(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path
) -> None:
    """SIGTERM while a /music generate is half handled (its card waits out a rate limit): the command
    finishes storing its job and card before the database closes, and the job is delivered after a restart."""
    bot = BotProcess(sim, fake, tmp_path, bot_config(sim, fake, tmp_path / "data"), Progress())
    callback = "POST /interactions/{interaction_id}/{interaction_token}/callback"
    try:
        await bot.start()
        sim.inject_rate_limit(callback, retry_after_s=1.0)
        mark = sim.mark()
        handle = await sim.user("alice").slash("music generate", prompt="night drive synths", duration=2)
        await sim.wait_for_request(callback, status=429, since=mark, timeout_s=60)

        assert await bot.stop(signal.SIGTERM, timeout_s=STOP_S) == 0
        assert not bot.log_lines("Traceback", "ERROR"), bot.tail()
        card = await handle.wait_original(timeout_s=5)
        assert card.embeds, card.content

        await bot.start()
        prediction_id = await fake.wait_for_prediction(timeout=60)
        await fake.succeed(prediction_id)
        audio = await sim.wait_for_file(predicate=lambda a: a.filename.endswith(".wav"), timeout_s=60)
        assert round(audio_info(sim.read_attachment(audio)).duration_s) == 2
    finally:
        await bot.close()
