"""Where Encore's CPU goes per job, stage by stage: ``python -m bench.stages [--mode poll] [--jobs 40]``.

The benchmark's overhead scenario (real ``/music generate`` commands, the fake Replicate's 30 s WAV or, with
``--output reencode-60s``, the 60 s one that must be re-encoded to fit; predictions that run by themselves for
the same seeded times, four jobs at once),
with Encore started through ``bench/_timed_bot.py``, which times every callback of its event loop on the main
thread's CPU clock and files it under the task it belongs to. After a few jobs to warm up, the measured jobs
(until every card shows Done) print:

- the event loop's CPU per job by stage (the slash command up to its card, submitting, polls, outputs,
  delivery, card edits, discord.py reading the gateway, sockets read and written outside those tasks);
- the process's CPU per job from ``/proc`` (as ``scripts/bench`` measures it), split into the main thread and
  the others, and the audio work by kind (``encore_audio_cpu_seconds_total``);
- Discord calls, provider requests and SQL statements per job.

``--bot DIR`` runs another checkout's Encore (its sources and ``.venv``) against this benchmark, so two commits
are measured by the same fakes: alternate runs of each, on a machine that may be busy, and compare CPU, not
times (BENCHMARKS.md, "The engine rebuild").
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp

from bench import scenarios
from bench.world import BotProcess, World, percentile
from tests import promparse
from tests.fakes.discord.handles import InteractionHandle

_TIMED_BOT = Path(__file__).with_name("_timed_bot.py")

# Stage <- the coroutine its task runs (qualified name), at this commit and at 704f55a (the engine before issue 13).
STAGES = {
    "CommandTree._from_interaction.<locals>.wrapper": "slash command: defer, gate, insert, card",
    "Submitter.submit": "submit: create the prediction",
    "JobService._submit": "submit: create the prediction",
    "Poller._poll_one": "polls: request, parse, apply",
    "Poller._run": "poller loop",
    "RequestHandler._handle_request": "web server: webhooks",
    "Outputs.fetch": "outputs: download, verify, record",
    "JobService._fetch_output": "outputs: download, verify, record",
    "Dispatch._loop": "delivery: fit, upload, record",
    "JobService._delivery_loop": "delivery: fit, upload, record",
    "Cards._flush_card": "card edits",
    "DiscordDelivery._flush_card": "card edits",
    "run_bot": "gateway: discord.py reading events",
    "Shard.worker": "gateway: discord.py reading events",  # (AutoShardedBot: one worker per shard)
    "Scheduler._tick": "queue: looks and heartbeats (every queue_check_s)",
    "Scheduler._run": "queue: claims",
    "Leases._run": "leases: keeper",
    "ClientRequest.write_bytes": "sockets: request bodies written",
}
_READS = "sockets: responses read"


def stage_of(key: str) -> str:
    kind, _, name = key.partition(" ")
    if kind == "task":
        return STAGES.get(name, "other tasks")
    return _READS if name == "_SelectorSocketTransport._read_ready" else "other callbacks"


class TimedBot(BotProcess):
    """Encore through ``_timed_bot.py``, from ``checkout`` (default: this one)."""

    checkout: Path = Path(__file__).resolve().parents[1]

    async def start(self) -> None:
        self.started_at = time.perf_counter()
        python = self.checkout / ".venv" / "bin" / "python"
        env = {**self.env, "PYTHONPATH": str(self.checkout)}
        with self.log_path.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                str(python if python.exists() else sys.executable),
                str(_TIMED_BOT),
                cwd=self.checkout,
                env=env,
                stdout=log,
                stderr=log,
            )

    def thread_cpu_s(self) -> tuple[float, float]:
        """CPU seconds of the main thread and of all the others (those still running)."""
        main = others = 0.0
        for task in Path(f"/proc/{self.pid}/task").iterdir():
            try:
                fields = (task / "stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
            if task.name == str(self.pid):
                main += cpu
            else:
                others += cpu
        return main, others

    async def audio_by_work(self) -> Counter[str]:
        async with aiohttp.ClientSession() as session, session.get(self.metrics_url) as response:
            exposition = promparse.parse(await response.text())
        return Counter(
            {
                dict(labels)["work"]: value
                for (name, labels), value in exposition.samples.items()
                if name == "encore_audio_cpu_seconds_total"
            }
        )


def per_job(counts: Counter[str], jobs: int, scale: float = 1.0) -> dict[str, float]:
    return {key: round(value * scale / jobs, 2) for key, value in counts.most_common()}


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, object]:
    if args.bot is not None:
        TimedBot.checkout = args.bot.resolve()
    async with World.open(workdir) as world:
        world.use_output(scenarios.WAV_60S_48K if args.output == "reencode-60s" else scenarios.WAV_30S)
        env = world.bot_env(webhooks=args.mode == "webhook", data_dir=workdir / "data")
        env["ENCORE_BENCH_STAGES_OUT"] = str(workdir / "stages.json")
        world.bot = bot = TimedBot(env, workdir / "bot.log", f"http://127.0.0.1:{env['ENCORE_WEBHOOKS__PORT']}/metrics")
        mark = len(world.sim.gateway.events)
        await bot.start()
        await world.sim.gateway.events.wait(lambda e: e.kind == "ready", since=mark, timeout_s=120)

        timing = scenarios.WEBHOOK_RUNS if args.mode == "webhook" else scenarios.POLL_RUNS
        world.fake.timing = dataclasses.replace(timing, seed=args.seed)
        overhead_ms: list[float] = []
        handles: list[InteractionHandle] = []

        async def one(i: int) -> None:
            job = await scenarios.generate_one(world, i, f"stages {args.mode} {i}")
            handles.append(job.handle)
            overhead_ms.append((job.file_at - job.succeeded_at) * 1000)

        concurrency = 4
        await scenarios.for_each(range(args.warmup), one, workers=concurrency)
        await scenarios.cards_done(handles)
        handles.clear()
        calls_from, requests_from = len(world.sim.requests), len(world.fake.requests)
        audio_from, (main_from, others_from), cpu_from = await bot.audio_by_work(), bot.thread_cpu_s(), bot.cpu_s()
        os.kill(bot.pid, signal.SIGUSR1)
        overhead_ms.clear()
        await scenarios.for_each(range(args.warmup, args.warmup + args.jobs), one, workers=concurrency)
        await scenarios.cards_done(handles)
        os.kill(bot.pid, signal.SIGUSR2)
        cpu, (main, others), audio = bot.cpu_s() - cpu_from, bot.thread_cpu_s(), await bot.audio_by_work()
        await asyncio.sleep(1.0)  # the report is written
        timed = json.loads((workdir / "stages.json").read_text())
        loop = Counter[str]()
        for key, (cpu_s, _steps) in timed["loop"].items():
            loop[stage_of(key)] += cpu_s
        audio.subtract(audio_from)
        jobs = args.jobs
        report: dict[str, object] = {
            "checkout": str(TimedBot.checkout),
            "mode": args.mode,
            "output": args.output,
            "jobs": jobs,
            "cpu_ms_per_job": round(cpu * 1000 / jobs, 1),
            "audio_cpu_ms_per_job": per_job(audio, jobs, 1000),
            "main_thread_ms_per_job": round((main - main_from) * 1000 / jobs, 1),
            "other_threads_ms_per_job": round((others - others_from) * 1000 / jobs, 1),
            "event_loop_ms_per_job": per_job(loop, jobs, 1000),
            "discord_calls_per_job": per_job(
                Counter(f"{c.method} {c.route.split(' ', 1)[-1]}" for c in world.sim.requests[calls_from:]), jobs
            ),
            "provider_requests_per_job": per_job(
                Counter(scenarios.classify(r.path, r.method) for r in world.fake.requests[requests_from:]), jobs
            ),
            "sql_statements_per_job": per_job(Counter(timed["sql"]), jobs),
            "overhead_p50_ms": round(percentile(overhead_ms, 50)),
        }
        await world.stop_bot()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.stages", description=__doc__)
    parser.add_argument("--mode", choices=["webhook", "poll"], default="webhook")
    parser.add_argument("--output", choices=["wav-30s", "reencode-60s"], default="wav-30s")
    parser.add_argument("--jobs", type=int, default=40, help="jobs measured (after the warm-up)")
    parser.add_argument("--warmup", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1, help="seeds the predictions' run times")
    parser.add_argument("--bot", type=Path, help="the checkout whose Encore runs (default: this one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="encore-stages-") as tmp:
        report = asyncio.run(measure(args, Path(tmp)))
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
