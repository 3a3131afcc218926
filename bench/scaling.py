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
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from bench.scenarios import WAV_5S, fill_and_drain, provider_load
from bench.world import World, cpu_s
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

    def summary(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "processes": self.processes,
            "database": self.database,
            "jobs": self.jobs,
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
        }


async def scaling(
    world: World, *, label: str, processes: int, database_url: str | None, jobs: int, submit_concurrency: int = 16
) -> Scaling:
    """``jobs`` commands until every prediction exists, then all finish at once: deliveries per second."""
    result = Scaling(label, processes, "postgresql" if database_url else "sqlite", jobs)
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
    try:
        await cluster.start()
        pids = [node.process.pid for node in cluster.nodes if node.process is not None]
        req_from, files_from = len(world.fake.requests), len(world.files)
        cpu_from = [cpu_s(pid) for pid in pids]
        result.submit_s, result.drain_s = await fill_and_drain(
            world, label=f"scaling {label}", jobs=jobs, files_from=files_from, submit_concurrency=submit_concurrency
        )
        result.cpu_s_by_process = [cpu_s(pid) - before for pid, before in zip(pids, cpu_from, strict=True)]
        result.cpu_s = sum(result.cpu_s_by_process)
        result.requests, result.max_creates_per_min, result.max_api_calls_per_min = provider_load(
            world.fake.requests[req_from:]
        )
        if cluster.balancer is not None:
            result.webhooks_by_process = dict(sorted(cluster.balancer.forwarded.items()))
    finally:
        await cluster.close()
    return result
