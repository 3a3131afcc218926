"""Encore's benchmark: ``scripts/bench`` (or ``python -m bench``). See BENCHMARKS.md for what it measures.

Prints each figure as it is measured and, at the end, a JSON document (``--json PATH`` writes it to a file).
``--quick`` runs every scenario with fewer jobs, to check the benchmark itself works.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench import cpu_budget, encoding, scaling, scenarios
from bench.world import World
from tests.postgres import INSTALL_HINT, PostgresServer, find_bindir

TARGETS = {
    "overhead_p99_ms_without_reencode": 50.0,
    "provider_requests_per_job_webhook": 3.0,
    "cpu_ms_per_job_without_encoding": 10.0,
    "peak_rss_mb_10k_tracked": 200.0,
    "encoding_times_real_time": 100.0,
    "provider_requests_per_min": 3000,
    "scaling_3_processes_vs_1": 2.5,
    "postgres_1_process_vs_sqlite_within": 0.2,
}
SCENARIOS = ["encoding", "overhead", "official", "throughput", "tracked", "scaling"]
# One process on SQLite, then one, two and three on PostgreSQL: (label, processes, on PostgreSQL).
DEPLOYMENTS = [("sqlite-1", 1, False), ("postgres-1", 1, True), ("postgres-2", 2, True), ("postgres-3", 3, True)]


def machine() -> dict[str, Any]:
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "system": platform.platform(),
    }


def show(title: str, figures: dict[str, Any]) -> None:
    print(f"\n== {title}", flush=True)
    for key, value in figures.items():
        print(f"  {key}: {value}", flush=True)


async def run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    quick = args.quick
    report: dict[str, Any] = {"machine": machine(), "quick": quick, "targets": TARGETS}
    wanted = set(args.only or SCENARIOS)

    if "encoding" in wanted:
        results = encoding.run(duration_s=60.0, runs=1 if quick else 5)
        report["encoding"] = [
            {"path": r.name, "cpu_ms_for_60s": round(r.cpu_s * 1000, 1), "times_real_time": round(r.times_real_time)}
            for r in results
        ]
        show("encoding (60 s of 48 kHz stereo)", {r.name: f"{r.times_real_time:.0f}x real time" for r in results})

    if "overhead" in wanted or "official" in wanted:
        jobs = 20 if quick else 200
        report["overhead"] = []
        webhook_runs, poll_runs = scenarios.WEBHOOK_RUNS, scenarios.POLL_RUNS
        cases = [
            ("wav-30s", "webhook", scenarios.WAV_30S, jobs, webhook_runs),
            ("reencode-60s", "webhook", scenarios.WAV_60S_48K, max(10, jobs // 4), webhook_runs),
            ("wav-30s", "poll", scenarios.WAV_30S, max(10, jobs // 4), poll_runs),
            ("reencode-60s", "poll", scenarios.WAV_60S_48K, max(10, jobs // 10), poll_runs),
        ]
        for label, mode, output, count, timing in cases if "overhead" in wanted else cases[2:3]:
            async with World.open(workdir / f"{label}-{mode}") as world:
                result = await scenarios.overhead(
                    world, label=label, mode=mode, output=output, jobs=count, concurrency=4, timing=timing
                )
            report["overhead"].append(result.summary())
            show(f"overhead: {label}, {mode} mode", result.summary())

    if "official" in wanted:
        poll = next((o for o in report.get("overhead", []) if (o["label"], o["mode"]) == ("wav-30s", "poll")), None)
        async with World.open(workdir / "official") as world:
            jobs = poll["jobs"] if poll else (10 if quick else 50)
            result = await scenarios.official_client(world, jobs=jobs, concurrency=4, timing=scenarios.POLL_RUNS)
        report["official_client"] = result.summary()
        show("official replicate client: predictions.create + wait()", result.summary())
        if poll is not None:
            report["side_by_side"] = scenarios.side_by_side(poll, result.summary())
            show("poll mode side by side: 30 s WAV, four jobs at once, the same runs", report["side_by_side"])

    if "throughput" in wanted:
        async with World.open(workdir / "throughput", users=50) as world:
            result = await scenarios.throughput(world, jobs=100 if quick else 1000)
        report["throughput"] = result.summary()
        show("throughput", result.summary())

    if "tracked" in wanted:
        empty = next((o["startup_s"] for o in report.get("overhead", []) if o["mode"] == "poll"), 0.0)
        async with World.open(workdir / "empty") as world:
            if not empty:
                empty = await world.start_bot(world.bot_env(webhooks=False, data_dir=workdir / "data-empty"))
                await world.stop_bot()
        async with World.open(workdir / "tracked") as world:
            result = await scenarios.tracked(
                world, jobs=1000 if quick else 10_000, window_s=20.0 if quick else 90.0, empty_startup_s=empty
            )
        report["tracked"] = result.summary()
        show("tracked jobs (poll mode, after a restart)", result.summary())

    if "scaling" in wanted:
        report["scaling"] = await run_scaling(
            workdir, jobs=100 if quick else 1000, cpu_per_process=args.cpu_per_process
        )
    return report


async def run_scaling(workdir: Path, *, jobs: int, cpu_per_process: float | None = None) -> dict[str, Any]:
    """Issue 14: deliveries per second with 1, 2 and 3 processes on PostgreSQL, and 1 on SQLite (each process
    held to ``cpu_per_process`` of a core, if given)."""
    bindir = find_bindir()
    if bindir is None:
        print(f"\n== scaling: skipped. {INSTALL_HINT}", flush=True)
        return {"skipped": INSTALL_HINT}
    if cpu_per_process is not None and (why := cpu_budget.unavailable()) is not None:
        print(f"\n== scaling: skipped. --cpu-per-process: {why}", flush=True)
        return {"skipped": why}
    # pg_stat_statements (PostgreSQL's contrib, in Debian's package) counts the SQL statements a job costs;
    # without it the figure is left out.
    counting = any((bindir.parent / "lib" / f"pg_stat_statements{ext}").exists() for ext in (".so", ".dylib"))
    server = PostgresServer(bindir, settings="-c shared_preload_libraries=pg_stat_statements" if counting else "")
    await asyncio.to_thread(server.start)
    runs: list[dict[str, Any]] = []
    try:
        for label, processes, on_postgres in DEPLOYMENTS:
            with contextlib.ExitStack() as stack:
                url = None
                if on_postgres:
                    database = stack.enter_context(server.fresh_database())
                    if counting:
                        server.execute(database, "CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
                    url = server.url(database)
                async with World.open(workdir / f"scaling-{label}", users=60, shards=scaling.SHARDS) as world:
                    result = await scaling.scaling(
                        world,
                        label=label,
                        processes=processes,
                        database_url=url,
                        jobs=jobs,
                        cpu_per_process=cpu_per_process,
                    )
            runs.append(result.summary())
            show(f"scaling: {label} ({processes} process(es), {result.database})", result.summary())
    finally:
        await asyncio.to_thread(server.stop)
    rate = {run["label"]: run["deliveries_per_s"] for run in runs}
    figures = {
        "three_processes_vs_one": round(rate["postgres-3"] / rate["postgres-1"], 2),
        "two_processes_vs_one": round(rate["postgres-2"] / rate["postgres-1"], 2),
        "postgres_1_vs_sqlite_1": round(rate["postgres-1"] / rate["sqlite-1"], 2),
    }
    show("scaling: side by side", figures)
    return {"runs": runs, **figures}


def _cores(text: str) -> float:
    """``--cpu-per-process``: a share of a core, at least 0.01 and at most the machine's cores."""
    value = float(text)
    if not 0.01 <= value <= (os.cpu_count() or 1):
        raise argparse.ArgumentTypeError(f"{text} is not between 0.01 and the machine's {os.cpu_count()} cores")
    return value


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer jobs: check that the benchmark works")
    parser.add_argument("--only", action="append", choices=SCENARIOS)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument(
        "--cpu-per-process",
        type=_cores,
        metavar="CORES",
        help="scaling: hold each Encore process to this much of a core (Linux control groups; as root), to see "
        "how the processes scale with cores on a machine with fewer cores than processes",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="encore-bench-") as tmp:
        report = asyncio.run(run(args, Path(tmp)))
    text = json.dumps(report, indent=2)
    print("\n" + text)
    if args.json:
        args.json.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
