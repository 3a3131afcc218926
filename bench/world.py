"""The benchmark's world: the Discord simulator and the fake Replicate in this process, Encore in another.

Encore runs as it does in production (``python -m bot run``, settings and secrets from the environment) in
its own process, so its CPU time and memory are its own (read from ``/proc``); only discord.py's URLs point
at the simulator (``tests/faults/botproc.py``, which the kill -9 tests use too). The fakes are the test
suite's (``tests/fakes``): real HTTP on 127.0.0.1, real signed webhooks, real audio files.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests import promparse
from tests.conftest import NO_LIMITS
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.handles import InteractionHandle
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, MessageEvent
from tests.fakes.discord.sharding import guild_id_on_shard
from tests.fakes.discord.users import SimUser
from tests.fakes.models import OutputFile
from tests.fakes.replicate import FakeReplicate
from tests.faults import botproc
from tests.integration.conftest import free_port

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

AUDIO_SUFFIXES = (".wav", ".ogg", ".mp3")
USER_ID_BASE = 4_000_000_000_000_000


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile (the value at or below which ``pct`` % of samples lie)."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))
    return ordered[int(rank) - 1]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds process ``pid`` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / _CLOCK_TICKS  # utime, stime


def parent_pid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])


def cpu_s_with_children(pid: int) -> float:
    """User + system CPU seconds so far of process ``pid`` and of its children, live or ended (e.g. a database
    server: its postmaster, and its backends, whose CPU the postmaster collects when they end)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    total = sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS  # utime, stime, cutime, cstime
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            child = (entry / "stat").read_text().rpartition(")")[2].split()
        except OSError:  # gone meanwhile
            continue
        if int(child[1]) == pid:
            total += (int(child[11]) + int(child[12])) / _CLOCK_TICKS
    return total


def machine_s() -> tuple[float, float]:
    """The machine's CPU seconds so far over all its cores: (all, idle)."""
    ticks = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return sum(ticks) / _CLOCK_TICKS, (ticks[3] + ticks[4]) / _CLOCK_TICKS  # idle, iowait


@dataclass
class BotProcess:
    """``python -m bot run`` in a child process (through ``tests.faults.botproc``)."""

    env: dict[str, str]
    log_path: Path
    metrics_url: str
    process: asyncio.subprocess.Process | None = None
    started_at: float = 0.0

    async def start(self) -> None:
        self.started_at = time.perf_counter()
        log = self.log_path.open("ab")
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "tests.faults.botproc", "run", cwd=botproc.ROOT, env=self.env, stdout=log, stderr=log
        )
        log.close()

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def cpu_s(self) -> float:
        """User + system CPU seconds the bot process has used so far."""
        return cpu_s(self.pid)

    def _status_kb(self, key: str) -> int:
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
        raise KeyError(key)

    def peak_rss_mb(self) -> float:
        return self._status_kb("VmHWM") / 1024

    def rss_mb(self) -> float:
        return self._status_kb("VmRSS") / 1024

    async def stop(self) -> None:
        """SIGTERM (a graceful stop), SIGKILL if it takes more than 20 s."""
        process, self.process = self.process, None
        if process is None or process.returncode is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(20):
                await process.wait()
        except TimeoutError:
            process.kill()
            await process.wait()

    async def audio_cpu_s(self) -> float:
        """CPU seconds the bot has spent on audio work in its threads (``encore_audio_cpu_seconds_total``)."""
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as response:
            exposition = promparse.parse(await response.text())
        return sum(v for (name, _), v in exposition.samples.items() if name == "encore_audio_cpu_seconds_total")

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class FileSeen:
    """An audio message the bot posted: when it appeared, and which interaction (if any) it answers."""

    at: float
    message_id: int
    filename: str
    size: int


@dataclass
class World:
    """The simulator, the fake Replicate and (once started) Encore, with what the benchmark observes."""

    sim: DiscordSimulator
    fake: FakeReplicate
    workdir: Path
    users: list[SimUser] = field(default_factory=list)
    bot: BotProcess | None = None
    files: list[FileSeen] = field(default_factory=list)
    _file_waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    _by_prompt: dict[str, asyncio.Future[str]] = field(default_factory=dict)
    _dispatcher: asyncio.Task[None] | None = None
    _seen_messages: set[int] = field(default_factory=set)

    # -- setup ---------------------------------------------------------------------------------

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, workdir: Path, *, users: int = 20, shards: int = 0) -> AsyncIterator[World]:
        """``shards``: a server on each of that many gateway shards, the users spread over them in turn (0: one
        server, as an unsharded bot sees it)."""
        members = [MemberConfig(f"user{i}", id=USER_ID_BASE + i) for i in range(users)]
        guilds = [
            GuildConfig(
                name=f"Encore Bench {shard}",
                id=guild_id_on_shard(shard, shards, shard) if shards else None,
                channels=[ChannelConfig("general")],
                members=members[shard :: max(1, shards)],
            )
            for shard in range(max(1, shards))
        ]
        await asyncio.to_thread(workdir.mkdir, parents=True, exist_ok=True)
        async with DiscordSimulator(guilds, max_concurrency=max(1, shards)) as sim, FakeReplicate() as fake:
            fake.webhook_retries = 0
            world = cls(sim, fake, workdir)
            world.users = [sim.user(f"user{i}", guild_id=guilds[i % len(guilds)].id) for i in range(users)]
            sim.state.listeners.append(world._on_message)
            world._dispatcher = asyncio.create_task(world._dispatch_predictions())
            try:
                yield world
            finally:
                world._dispatcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await world._dispatcher
                if world.bot is not None:
                    await world.bot.stop()

    def bot_env(self, *, webhooks: bool, data_dir: Path, **sections: Mapping[str, Any]) -> dict[str, str]:
        """The bot's environment: production defaults except the URLs, limits and whatever is given."""
        port = free_port()
        env = {
            "PATH": os.environ.get("PATH", ""),
            **botproc.environment(self.sim, self.fake),
            "REPLICATE_WEBHOOK_SECRET": self.fake.webhook_secret,
            "ENCORE_STORAGE__DIR": str(data_dir),
            "ENCORE_REPLICATE__API_BASE": self.fake.base_url,
            "ENCORE_DISCORD__DEV_GUILD_IDS": f"[{self.sim.guild.id}]",
            "ENCORE_WEBHOOKS__HOST": "127.0.0.1",
            "ENCORE_WEBHOOKS__PORT": str(port),
            "ENCORE_LOGGING__LEVEL": "INFO",
        }
        if webhooks:
            env["ENCORE_WEBHOOKS__PUBLIC_URL"] = f"http://127.0.0.1:{port}"
        limits = {**NO_LIMITS, **sections.get("limits", {})}
        for name, values in {**sections, "limits": limits}.items():
            for key, value in values.items():
                env[f"ENCORE_{name.upper()}__{key.upper()}"] = (
                    str(value).lower() if isinstance(value, bool) else str(value)
                )
        return env

    async def start_bot(self, env: dict[str, str], *, timeout_s: float = 120.0) -> float:
        """Start Encore and wait until it is ready (its commands synced first if they changed); returns the
        seconds that took."""
        assert self.bot is None
        mark = len(self.sim.gateway.events)
        port = env["ENCORE_WEBHOOKS__PORT"]
        self.bot = BotProcess(env, self.workdir / "bot.log", f"http://127.0.0.1:{port}/metrics")
        await self.bot.start()
        try:
            await self.sim.gateway.events.wait(lambda e: e.kind == "ready", since=mark, timeout_s=timeout_s)
        except Exception:
            print(self.bot.log_tail(), file=sys.stderr)
            raise
        return time.perf_counter() - self.bot.started_at

    async def stop_bot(self) -> None:
        if self.bot is not None:
            await self.bot.stop()
            self.bot = None

    def use_output(self, wav: bytes) -> None:
        """MusicGen answers every prediction with ``wav`` (made once: the fake's CPU is not what we measure)."""
        model = self.fake.models["meta/musicgen"]

        def run(inp: dict[str, Any]) -> tuple[Any, str]:
            del inp
            return OutputFile("out.wav", wav, "audio/wav"), "Using seed 7\n"

        self.fake.add_model(dataclasses.replace(model, run=run))

    # -- observing -------------------------------------------------------------------------------

    async def _dispatch_predictions(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                pid = await self.fake.wait_for_prediction(timeout=3600)
                prompt = str(self.fake.prediction(pid).input.get("prompt", ""))
                self._by_prompt.setdefault(prompt, asyncio.get_running_loop().create_future()).set_result(pid)

    async def succeeded_at(self, prediction_id: str, *, timeout_s: float = 300.0) -> float:
        """When the prediction, running by itself, succeeded (perf_counter)."""
        prediction = await self.fake.wait_for_status(prediction_id, timeout=timeout_s)
        assert prediction.status == "succeeded", (prediction.status, prediction.error)
        assert prediction.ended_perf is not None
        return prediction.ended_perf

    async def prediction_for(self, prompt: str, *, timeout_s: float = 120.0) -> str:
        future = self._by_prompt.setdefault(prompt, asyncio.get_running_loop().create_future())
        async with asyncio.timeout(timeout_s):
            return await asyncio.shield(future)

    async def _on_message(self, event: MessageEvent) -> None:
        message = event.message
        if event.kind == "delete" or message.author_id != self.sim.bot_id or not message.attachments:
            return
        if not any(a.filename.endswith(AUDIO_SUFFIXES) for a in message.attachments):
            return  # a card's waveform picture
        if message.id in self._seen_messages:
            return
        self._seen_messages.add(message.id)
        attachment = message.attachments[0]
        self.files.append(
            FileSeen(
                self.sim.state.message_events.appended_at(event.seq), message.id, attachment.filename, attachment.size
            )
        )
        for count, future in self._file_waiters:
            if len(self.files) >= count and not future.done():
                future.set_result(None)

    async def wait_for_files(self, count: int, *, timeout_s: float) -> None:
        """Until the bot has posted ``count`` audio messages in all."""
        if len(self.files) >= count:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._file_waiters.append((count, future))
        try:
            async with asyncio.timeout(timeout_s):
                await future
        finally:
            self._file_waiters.remove((count, future))

    async def file_time(self, handle: InteractionHandle, *, timeout_s: float) -> float:
        """When the audio answering ``handle`` appeared in Discord (perf_counter)."""
        attachment = await handle.wait_file(lambda a: a.filename.endswith(AUDIO_SUFFIXES), timeout_s=timeout_s)
        for seen in self.files:
            if (
                seen.filename == attachment.filename
                and self.sim.message(seen.message_id).attachments[0].id == attachment.id
            ):
                return seen.at
        raise AssertionError(f"no record of {attachment.filename}")

    def upload_started(self, handle: InteractionHandle) -> float:
        """When the request carrying the audio answering ``handle`` began to reach Discord (perf_counter)."""
        for call in handle.calls:
            if any(f.filename.endswith(AUDIO_SUFFIXES) for f in call.files):
                return call.received_s
        raise AssertionError(f"no upload for interaction {handle.id}")

    def requests_since(self, index: int) -> list[Any]:
        return self.fake.requests[index:]
