"""The bot as a real OS process (``python -m tests.faults.botproc run``) that a test can kill -9 and start again.

:class:`BotProcess` writes the config file, starts the process with its secrets in the environment, waits
until it is on the simulated gateway, and kills it with SIGKILL. Each incarnation's stderr (the bot's log) is
copied line by line to ``bot-<n>.log`` and counted, so a test can wait for "the bot said something" without
sleeping. The process is always killed and reaped by :meth:`close`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import sys
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate
from tests.faults import botproc

START_TIMEOUT_S = 60.0  # a Python start with discord.py and PyAV on a loaded 2-core machine


def listen_port() -> int:
    """A free port for the bot's web server, below the kernel's ephemeral range: while the bot is down, no
    outgoing connection (of this machine's other tests, say) can be given it, so every restart can bind it."""
    ephemeral = Path("/proc/sys/net/ipv4/ip_local_port_range")
    low = int(ephemeral.read_text().split()[0]) if ephemeral.exists() else 32768
    for _ in range(200):
        port = 20000 + secrets.randbelow(max(1, low - 20000))
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def toml_text(config: dict[str, dict[str, Any]]) -> str:
    """A config file of ``[section]`` tables with strings, numbers, booleans and lists of them."""
    lines: list[str] = []
    for section, values in config.items():
        lines.append(f"[{section}]")
        lines.extend(f"{key} = {json.dumps(value)}" for key, value in values.items())
        lines.append("")
    return "\n".join(lines)


def bot_environment(sim: DiscordSimulator, fake: FakeReplicate) -> dict[str, str]:
    """This process's environment without Encore's settings and secrets, plus what a bot process under test
    needs (``botproc.environment``)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "REPLICATE_", "DISCORD_"))}
    return {**base, **botproc.environment(sim, fake)}


async def spawn_bot(config_path: Path, work_dir: Path, env: dict[str, str]) -> asyncio.subprocess.Process:
    """``python -m bot run --config PATH`` pointed at the simulator, in ``work_dir``; its log on stderr (a pipe)."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.botproc",
        "run",
        "--config",
        str(config_path),
        cwd=work_dir,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )


class Progress:
    """Named counters that tests can await: ``await progress.reach("create", 40)``, never a sleep."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._changed = asyncio.Event()

    def bump(self, name: str, n: int = 1) -> None:
        self.counts[name] += n
        self.notify()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self) -> None:
        await self._changed.wait()

    async def reach(self, name: str, target: int) -> None:
        while self.counts[name] < target:
            await self.changed()

    async def until(self, check: Callable[[], bool]) -> None:
        while not check():
            await self.changed()


class BotProcess:
    """``python -m bot run`` in a child process, pointed at the simulator; restartable on the same data."""

    def __init__(
        self,
        sim: DiscordSimulator,
        fake: FakeReplicate,
        work_dir: Path,
        config: dict[str, dict[str, Any]],
        progress: Progress,
    ) -> None:
        self.sim = sim
        self.fake = fake
        self.work_dir = work_dir
        self.progress = progress
        self.config_path = work_dir / "config.toml"
        self.config_path.write_text(toml_text(config))
        self.database_path = Path(config["storage"]["dir"]) / "encore.sqlite3"
        # The gateway shards this process holds (None: all of them, however many; one READY is enough then).
        self.shard_ids: list[int] | None = config.get("discord", {}).get("shard_ids") or None
        self.process: asyncio.subprocess.Process | None = None
        self.incarnation = -1
        self.logs: list[Path] = []
        self.up = asyncio.Event()  # set while a started process has not been killed
        # Held by whoever must not overlap a kill (e.g. a user sending a command).
        self.issuing = asyncio.Lock()
        self.deaths: list[asyncio.Event] = []  # one per incarnation, set when it is killed
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Start a new incarnation and wait until it has identified on the gateway (so it takes commands)."""
        assert self.process is None, "the previous incarnation is still running"
        self.incarnation += 1
        log_path = self.work_dir / f"bot-{self.incarnation}.log"
        self.logs.append(log_path)
        self.deaths.append(asyncio.Event())
        mark = len(self.sim.gateway.events)
        process = await spawn_bot(self.config_path, self.work_dir, bot_environment(self.sim, self.fake))
        self.process = process
        self._reader = asyncio.create_task(self._copy_log(process, log_path))
        ready = asyncio.create_task(self._ready(since=mark))
        exited = asyncio.create_task(process.wait())
        try:
            await asyncio.wait({ready, exited}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            exited.cancel()
            if not ready.done():
                ready.cancel()
        if not ready.done() or ready.cancelled() or ready.exception() is not None:
            raise AssertionError(f"bot incarnation {self.incarnation} did not come up\n{self.tail()}")
        self.up.set()

    async def _ready(self, *, since: int) -> None:
        """Until every shard of this process has had its READY from the gateway (since ``since``)."""
        events = self.sim.gateway.events
        async with asyncio.timeout(START_TIMEOUT_S):
            for shard_id in self.shard_ids or [None]:
                await events.wait(
                    lambda e, shard_id=shard_id: (
                        e.kind == "ready" and (shard_id is None or (e.shard is not None and e.shard[0] == shard_id))
                    ),
                    since=since,
                    timeout_s=START_TIMEOUT_S,
                )

    async def _copy_log(self, process: asyncio.subprocess.Process, path: Path) -> None:
        assert process.stderr is not None
        with path.open("wb") as out:
            while line := await process.stderr.readline():
                out.write(line)
                out.flush()
                self.progress.bump("log")

    def signal_kill(self) -> None:
        """SIGKILL the running incarnation now, from any callback (no await: nothing else runs first)."""
        process = self.process
        if process is None or process.returncode is not None:
            return
        self.up.clear()
        with contextlib.suppress(ProcessLookupError):
            os.kill(process.pid, signal.SIGKILL)
        self.deaths[self.incarnation].set()
        self.progress.notify()

    async def kill(self) -> None:
        """SIGKILL the running incarnation (once no command is being sent to it) and reap it."""
        async with self.issuing:
            self.signal_kill()
        await self.reap()

    async def reap(self) -> None:
        """Wait for the killed incarnation to be gone; it must have died of the SIGKILL, not by itself."""
        code = await self._reap()
        assert code == -signal.SIGKILL, f"the bot had exited by itself ({code})\n{self.tail()}"

    async def _reap(self) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        code = await process.wait()
        if self._reader is not None:
            await self._reader
        return code

    async def stop(self, sig: signal.Signals = signal.SIGTERM, *, timeout_s: float = 10.0) -> int:
        """Send ``sig`` (``docker stop`` sends SIGTERM, then SIGKILL after 10 s) and wait up to ``timeout_s`` for
        the running incarnation to end by itself; returns its exit code."""
        process = self.process
        assert process is not None, "no running incarnation"
        assert process.returncode is None, "the incarnation has exited already"
        async with self.issuing:  # as a kill: once no command is being sent to it
            self.up.clear()
            process.send_signal(sig)
        try:
            async with asyncio.timeout(timeout_s):
                code = await process.wait()
        except TimeoutError:
            raise AssertionError(f"the bot did not stop within {timeout_s:g} s of {sig.name}\n{self.tail()}") from None
        self.deaths[self.incarnation].set()
        self.progress.notify()
        reaped = await self._reap()
        assert reaped == code
        return code

    async def close(self) -> None:
        """Kill and reap whatever still runs (teardown; safe to call twice)."""
        self.signal_kill()
        await self._reap()

    def log_lines(self, *needles: str) -> list[str]:
        """Lines of every incarnation's log containing any of ``needles``, prefixed with the incarnation."""
        found = []
        for n, path in enumerate(self.logs):
            if path.exists():
                text = path.read_text(errors="replace")
                found.extend(f"[{n}] {line}" for line in text.splitlines() if any(x in line for x in needles))
        return found

    def tail(self, lines: int = 40) -> str:
        """The end of the newest incarnation's log, for assertion messages."""
        if not self.logs or not self.logs[-1].exists():
            return "(no bot log)"
        text = self.logs[-1].read_text(errors="replace").splitlines()[-lines:]
        return f"--- {self.logs[-1].name} (last {len(text)} lines) ---\n" + "\n".join(text)


class Tripwire:
    """A SIGKILL that goes off inside a simulator listener: once ``counter`` of ``progress`` reaches the target,
    the process is killed there and then, before the simulator answers the request it is handling (so the
    process never learns that Discord took it)."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._armed: tuple[str, int, BotProcess, asyncio.Event] | None = None

    def arm(self, counter: str, target: int, bot: BotProcess) -> asyncio.Event:
        """Kill ``bot`` once ``counter`` reaches ``target``; the event is set when it has."""
        fired = asyncio.Event()
        self._armed = (counter, target, bot, fired)
        return fired

    def check(self) -> None:
        """From the listener, once it has counted what it saw."""
        armed = self._armed
        if armed is not None and self._progress.counts[armed[0]] >= armed[1]:
            self._armed = None
            armed[2].signal_kill()
            armed[3].set()


@contextlib.asynccontextmanager
async def step(what: str, *, timeout_s: float, describe: Callable[[], Awaitable[str]]) -> AsyncIterator[None]:
    """One wait of a scenario, at most ``timeout_s``; past that, an AssertionError that says what was awaited and
    what ``describe()`` reports of the state (counters, unfinished jobs, logs)."""
    try:
        async with asyncio.timeout(timeout_s):
            yield
    except TimeoutError:
        raise AssertionError(f"timed out: {what}\n{await describe()}") from None


def crashed(tasks: Iterable[asyncio.Task[Any]]) -> list[str]:
    """The scenario's background tasks that ended with an exception, and the exception."""
    return [
        f"{t.get_name()} crashed: {t.exception()!r}" for t in tasks if t.done() and not t.cancelled() and t.exception()
    ]
