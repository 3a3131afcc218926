"""Issue 14's scaling figures: one, two and three Encore processes on PostgreSQL, beside one on SQLite.

Each run is a deployment as an operator would set it up (``tests/faults/_cluster.py``, the one the
multi-process tests use): the processes share one database and one data directory, hold the simulator's six
gateway shards between them, and take Replicate's webhooks through a round-robin load balancer. Production
defaults apply, except for the URLs, the per-user quotas and the provider cap (off, as in the throughput
scenario: 1,000 jobs are in flight at once).

``jobs`` commands come from users spread over six servers, one per shard, so every process takes its share;
once every prediction exists, all finish at once, and the time until the last audio message is in Discord gives
deliveries per second. Replicate's account limits are per account, whatever the number of processes: the
busiest minute of creates and of other API calls is compared with them. CPU is every Encore process's own
(``/proc``), per job, from the first command to the last delivery; the database server's is not in it.

The drain is also taken apart, to show what bounds it: how many cores the Encore processes, the database
server and the benchmark's own process (the Discord simulator, the fake Replicate, the load balancer) kept busy,
how busy the whole machine was, and (PostgreSQL, with ``pg_stat_statements`` loaded) how many SQL statements a
job cost.
"""

from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from bench.cpu_budget import CpuBudgets
from bench.scenarios import WAV_5S, fill_and_drain, provider_load
from bench.world import World, cpu_s, cpu_s_with_children, machine_s, parent_pid
from tests.conftest import NO_LIMITS
from tests.faults._cluster import Cluster
from tests.faults._process import Progress

SHARDS = 6
CREATES_PER_MINUTE = 600  # Replicate's documented account limits (and Encore's defaults)
REQUESTS_PER_MINUTE = 3000


@dataclass
class Scaling:
    label: str
    processes: int
    database: str
    jobs: int
    submit_s: float = 0.0
    drain_s: float = 0.0
    cpu_s: float = 0.0
    cpu_s_by_process: list[float] = field(default_factory=list)
    requests: Counter[str] = field(default_factory=Counter)
    max_creates_per_min: int = 0
    max_api_calls_per_min: int = 0
    webhooks_by_process: dict[str, int] = field(default_factory=dict)
    # The drain alone: cores kept busy (CPU seconds over the drain's seconds) by each Encore process, the
    # database server and the benchmark's process; the machine's busy share; SQL statements a job.
    drain_cores_by_process: list[float] = field(default_factory=list)
    drain_cores_database: float = 0.0
    drain_cores_bench: float = 0.0
    drain_machine_busy: float = 0.0
    drain_statements_per_job: float | None = None
    cpu_per_process: float | None = None  # the budget each process had (None: the whole machine)

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "processes": self.processes,
            "database": self.database,
            "jobs": self.jobs,
            "cpu_per_process": self.cpu_per_process,
            "submit_s": round(self.submit_s, 1),
            "drain_s": round(self.drain_s, 2),
            "deliveries_per_s": round(self.jobs / self.drain_s, 1),
            "cpu_ms_per_job": round(self.cpu_s * 1000 / self.jobs, 1),
            "cpu_ms_per_job_by_process": [round(c * 1000 / self.jobs, 1) for c in self.cpu_s_by_process],
            "provider_requests_per_job": {k: round(v / self.jobs, 2) for k, v in sorted(self.requests.items())},
            "max_creates_in_any_60s": self.max_creates_per_min,
            "creates_per_minute_limit": CREATES_PER_MINUTE,
            "max_other_api_calls_in_any_60s": self.max_api_calls_per_min,
            "requests_per_minute_limit": REQUESTS_PER_MINUTE,
            "webhooks_by_process": self.webhooks_by_process,
            "drain_cores_by_process": [round(c, 2) for c in self.drain_cores_by_process],
            "drain_cores_database": round(self.drain_cores_database, 2),
            "drain_cores_bench": round(self.drain_cores_bench, 2),
            "drain_machine_busy_pct": round(self.drain_machine_busy * 100),
            "drain_sql_statements_per_job": (
                None if self.drain_statements_per_job is None else round(self.drain_statements_per_job, 1)
            ),
        }


async def server_pid(url: str) -> int:
    """The database server's own process (its postmaster: the parent of every backend)."""
    connection = await asyncpg.connect(url)
    try:
        return parent_pid(int(await connection.fetchval("SELECT pg_backend_pid()")))
    finally:
        await connection.close()


async def statements_so_far(url: str) -> int | None:
    """SQL statements the database has run so far, by ``pg_stat_statements`` (None: not loaded there)."""
    connection = await asyncpg.connect(url)
    try:
        if not await connection.fetchval("SELECT to_regclass('pg_stat_statements') IS NOT NULL"):
            return None
        return int(
            await connection.fetchval(
                "SELECT COALESCE(SUM(calls), 0) FROM pg_stat_statements "
                "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
            )
        )
    finally:
        await connection.close()


@dataclass
class _Drain:
    """CPU counters at the drain's start, to take apart at its end."""

    pids: list[int]
    database_url: str | None
    processes: list[float] = field(default_factory=list)
    database: float = 0.0
    bench: float = 0.0
    machine: tuple[float, float] = (0.0, 0.0)
    statements: int | None = None
    server: int | None = None  # the database server's process (PostgreSQL)

    def _database_cpu(self) -> float:
        return cpu_s_with_children(self.server) if self.server is not None else 0.0

    async def start(self) -> None:
        if self.database_url:
            self.server = await server_pid(self.database_url)
            self.statements = await statements_so_far(self.database_url)
        self.processes = [cpu_s(pid) for pid in self.pids]
        self.database, self.bench, self.machine = self._database_cpu(), cpu_s(os.getpid()), machine_s()

    async def end(self, result: Scaling) -> None:
        seconds = result.drain_s
        result.drain_cores_by_process = [
            (cpu_s(pid) - before) / seconds for pid, before in zip(self.pids, self.processes, strict=True)
        ]
        result.drain_cores_database = (self._database_cpu() - self.database) / seconds
        result.drain_cores_bench = (cpu_s(os.getpid()) - self.bench) / seconds
        all_s, idle_s = machine_s()
        result.drain_machine_busy = 1 - (idle_s - self.machine[1]) / max(all_s - self.machine[0], 1e-9)
        if self.database_url and self.statements is not None:
            after = await statements_so_far(self.database_url)
            if after is not None:
                result.drain_statements_per_job = (after - self.statements) / result.jobs


async def scaling(
    world: World,
    *,
    label: str,
    processes: int,
    database_url: str | None,
    jobs: int,
    submit_concurrency: int = 16,
    cpu_per_process: float | None = None,
) -> Scaling:
    """``jobs`` commands until every prediction exists, then all finish at once: deliveries per second.
    ``cpu_per_process``: each Encore process may use at most this much of a core (``bench.cpu_budget``)."""
    result = Scaling(label, processes, "postgresql" if database_url else "sqlite", jobs)
    result.cpu_per_process = cpu_per_process
    world.use_output(WAV_5S)
    limits = {**NO_LIMITS, "replicate_jobs_in_flight": 0}
    replicate = {"creates_per_minute": CREATES_PER_MINUTE, "requests_per_minute": REQUESTS_PER_MINUTE}
    cluster = Cluster(
        world.sim,
        world.fake,
        world.workdir / label,
        database_url,
        processes=processes,
        shard_count=SHARDS,
        webhooks=True,
        progress=Progress(),
        # Production's card edits (at most one every 2 s), not the tests' (every change).
        sections={"limits": limits, "replicate": replicate, "discord": {"card_edit_interval_s": 2.0}},
    )
    budgets: CpuBudgets | None = None
    try:
        if cpu_per_process is not None:
            budgets = CpuBudgets(cpu_per_process, label)
        await cluster.start()
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        if budgets is not None:
            for pid in pids:
                budgets.limit(pid)
        req_from, files_from = len(world.fake.requests), len(world.files)
        cpu_from = [cpu_s(pid) for pid in pids]
        drain = _Drain(pids, database_url)
        result.submit_s, result.drain_s = await fill_and_drain(
            world,
            label=f"scaling {label}",
            jobs=jobs,
            files_from=files_from,
            submit_concurrency=submit_concurrency,
            at_drain=drain.start,
        )
        await drain.end(result)
        result.cpu_s_by_process = [cpu_s(pid) - before for pid, before in zip(pids, cpu_from, strict=True)]
        result.cpu_s = sum(result.cpu_s_by_process)
        result.requests, result.max_creates_per_min, result.max_api_calls_per_min = provider_load(
            world.fake.requests[req_from:]
        )
        if cluster.balancer is not None:
            result.webhooks_by_process = dict(sorted(cluster.balancer.forwarded.items()))
    finally:
        try:
            await cluster.close()
        finally:
            if budgets is not None:
                budgets.close()
    return result
