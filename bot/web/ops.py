"""Operations endpoints: ``GET /healthz`` (is the bot working?) and ``GET /metrics`` (Prometheus).

``/healthz`` answers 200 when every required part works (the database answers ``SELECT 1`` in time,
is not damaged and its last write worked; every Discord gateway shard this process holds is connected, when
the bot runs them) and 503 otherwise, always with a JSON body that says which part is failing, shard by
shard. Providers are reported
(configured, last success, last error kind) but never make the bot unhealthy: restarting Encore
does not fix an outage at Replicate.

Both read what they report through callables handed in by ``app.py``, so this module knows no SQL.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4 as CONTENT_TYPE
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.registry import Collector

from bot import __version__, metrics
from bot.errors import StorageError
from bot.provider_health import provider_health
from bot.records import TERMINAL, JobStatus

log = logging.getLogger(__name__)

_STARTED_AT = time.time()

JobCounts = Callable[[], Awaitable[Sequence[tuple[str, JobStatus, int]]]]
OldestActive = Callable[[], Awaitable[float | None]]  # created_at of the oldest unfinished job


@dataclass(frozen=True)
class ShardState:
    """One gateway shard of this process: connected or not, and its heartbeat's round trip (None: unknown)."""

    up: bool
    latency_s: float | None = None


GatewayShards = Callable[[], Mapping[int, ShardState]]  # this process's shards, by shard id

# The gauges ``/metrics`` reads at each scrape, and what each means.
_GAUGES = {
    "encore_jobs": "Jobs in the database, by model and status.",
    "encore_queue_depth": "Jobs waiting to be submitted to a provider (status queued).",
    "encore_jobs_active": "Jobs not yet delivered, failed or canceled.",
    "encore_oldest_active_job_age_seconds": "How long ago the oldest unfinished job was queued (0 when there is none).",
    "encore_database_up": "Whether the last read of the database worked.",
    "encore_database_corrupt": "Whether the database file was found damaged (a statement or SQLite's quick_check).",
    "encore_discord_gateway_up": "Whether every Discord gateway shard this process holds is connected.",
    "encore_discord_shard_up": "Whether this gateway shard is connected, by shard id.",
    "encore_discord_shard_latency_seconds": "Round trip of the shard's last gateway heartbeat, by shard id.",
    "encore_provider_configured": "Providers Encore can use (1) or not (0).",
    "encore_build_info": "Encore's version.",
}


def _gauge(name: str, value: float | None = None, *, labels: Sequence[str] | None = None) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _GAUGES[name], value=value, labels=labels)


class _ScrapedGauges(Collector):
    """The gauges read at scrape time, as a collector on the app's registry: ``/metrics`` reads them into
    :attr:`families` (reading is async: the database), then renders the registry."""

    def __init__(self) -> None:
        self.families: list[GaugeMetricFamily] = []

    def describe(self) -> list[GaugeMetricFamily]:
        """Every name this may expose, so the registry refuses any other collector that exposes one too."""
        return [GaugeMetricFamily(name, help) for name, help in _GAUGES.items()]

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


def _all_up(shards: Mapping[int, ShardState]) -> bool:
    return bool(shards) and all(state.up for state in shards.values())


def _shard_check(state: ShardState) -> dict[str, Any]:
    check: dict[str, Any] = {"ok": state.up}
    if state.latency_s is not None and math.isfinite(state.latency_s):
        check["latency_ms"] = round(state.latency_s * 1000, 1)
    return check


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds") if timestamp is not None else None


class OpsRoutes:
    def __init__(
        self,
        *,
        ping_db: Callable[[], Awaitable[None]],
        job_counts: JobCounts,
        oldest_active: OldestActive,
        providers: Mapping[str, bool],
        gateway: GatewayShards | None = None,
        db_corrupt: Callable[[], bool] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``providers``: each provider Encore knows and whether it is configured. ``gateway``: this process's
        Discord gateway shards, each connected or not (None: no gateway, e.g. the CLI; none yet: down).
        ``db_corrupt``: whether the database file was found damaged. ``/metrics`` serves :attr:`registry`,
        this app's own."""
        self._ping_db = ping_db
        self._job_counts = job_counts
        self._oldest_active = oldest_active
        self._providers = dict(providers)
        self._gateway = gateway
        self._db_corrupt = db_corrupt
        self._clock = clock
        self._scraped = _ScrapedGauges()
        self.registry = metrics.new_registry(self._scraped)

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)

    def _shards(self) -> Mapping[int, ShardState] | None:
        """This process's shards (None: it runs no gateway); a check that fails counts as no shard up."""
        if self._gateway is None:
            return None
        try:
            return dict(self._gateway())
        except Exception:
            log.exception("the gateway check failed")
            return {}

    async def _database(self) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            await self._ping_db()
        except TimeoutError:
            log.warning("health: the database did not answer in time")
            return {"ok": False, "error": "timeout"}
        except StorageError as exc:  # it answers, but refused the last write (full, locked): nothing can move
            log.warning("health: the database refuses writes: %s", exc)
            return {"ok": False, "error": exc.kind}
        except Exception as exc:
            log.warning("health: the database failed: %s: %s", type(exc).__name__, exc)
            return {"ok": False, "error": type(exc).__name__}
        return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}

    async def healthz(self, _: web.Request) -> web.Response:
        checks: dict[str, dict[str, Any]] = {"database": await self._database()}
        shards = self._shards()
        if shards is not None:
            checks["discord"] = {
                "ok": _all_up(shards),
                "shards": {str(shard_id): _shard_check(state) for shard_id, state in sorted(shards.items())},
            }
        providers: dict[str, dict[str, Any]] = {}
        for name, configured in sorted(self._providers.items()):
            entry: dict[str, Any] = {"configured": configured}
            if configured:
                health = provider_health(name)
                entry |= {
                    "last_ok_at": _iso(health.last_ok_at),
                    "last_error_at": _iso(health.last_error_at),
                    "last_error": health.last_error,
                }
            providers[name] = entry
        healthy = all(check["ok"] for check in checks.values())
        body = {
            "status": "ok" if healthy else "degraded",
            "version": __version__,
            "uptime_s": round(self._clock() - _STARTED_AT, 1),
            "checks": checks,
            "providers": providers,
        }
        return web.json_response(body, status=200 if healthy else 503, headers={"Cache-Control": "no-store"})

    async def _read_gauges(self) -> list[GaugeMetricFamily]:
        """The gauges read at scrape time: jobs from the database, the gateway, the providers."""
        families: list[GaugeMetricFamily] = []
        database_up = 1.0
        try:
            families.extend(await self._job_gauges())
        except Exception as exc:
            log.warning("metrics: could not read jobs from the database: %s: %s", type(exc).__name__, exc)
            database_up = 0.0
        families.append(_gauge("encore_database_up", database_up))
        if self._db_corrupt is not None:
            families.append(_gauge("encore_database_corrupt", float(self._db_corrupt())))
        shards = self._shards()
        if shards is not None:
            families.append(_gauge("encore_discord_gateway_up", float(_all_up(shards))))
            up = _gauge("encore_discord_shard_up", labels=("shard",))
            latency = _gauge("encore_discord_shard_latency_seconds", labels=("shard",))
            for shard_id, state in sorted(shards.items()):
                up.add_metric((str(shard_id),), float(state.up))
                if state.latency_s is not None and math.isfinite(state.latency_s):
                    latency.add_metric((str(shard_id),), state.latency_s)
            families += [up, latency]
        configured = _gauge("encore_provider_configured", labels=("provider",))
        for name, on in sorted(self._providers.items()):
            configured.add_metric((name,), float(on))
        build = _gauge("encore_build_info", labels=("version",))
        build.add_metric((__version__,), 1.0)
        return [*families, configured, build]

    async def _job_gauges(self) -> list[GaugeMetricFamily]:
        counts = await self._job_counts()
        oldest = await self._oldest_active()
        by_model: dict[str, dict[JobStatus, int]] = {}
        for model, status, count in counts:
            by_model.setdefault(model, {})[status] = count
        jobs = _gauge("encore_jobs", labels=("model", "status"))
        # Every status of every model seen, zeros included, so rates and sums never miss a series.
        for model, statuses in sorted(by_model.items()):
            for status in JobStatus:
                jobs.add_metric((model, status.value), statuses.get(status, 0))
        queued = sum(statuses.get(JobStatus.QUEUED, 0) for statuses in by_model.values())
        active = sum(c for statuses in by_model.values() for s, c in statuses.items() if s not in TERMINAL)
        age = max(0.0, self._clock() - oldest) if oldest is not None else 0.0
        return [
            jobs,
            _gauge("encore_queue_depth", queued),
            _gauge("encore_jobs_active", active),
            _gauge("encore_oldest_active_job_age_seconds", age),
        ]

    async def metrics(self, _: web.Request) -> web.Response:
        self._scraped.families = await self._read_gauges()
        # Rendered at once, with no await since the read: what is served is what was just read.
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
