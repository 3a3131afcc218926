"""Operations endpoints: ``GET /healthz`` (is the bot working?) and ``GET /metrics`` (Prometheus).

``/healthz`` answers 200 when every required part works (the database answers ``SELECT 1`` in time,
is not damaged and its last write worked; the Discord gateway is connected, when the bot runs one) and 503
otherwise, always with a JSON body that says which part is failing. Providers are reported
(configured, last success, last error kind) but never make the bot unhealthy: restarting Encore
does not fix an outage at Replicate.

Both read what they report through callables handed in by ``app.py``, so this module knows no SQL.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from bot import __version__
from bot.errors import StorageError
from bot.jobs.models import TERMINAL, JobStatus
from bot.metrics import CONTENT_TYPE, REGISTRY, Family, Registry, gauge, provider_health

log = logging.getLogger(__name__)

_STARTED_AT = time.time()

JobCounts = Callable[[], Awaitable[Sequence[tuple[str, JobStatus, int]]]]
OldestActive = Callable[[], Awaitable[float | None]]  # created_at of the oldest unfinished job


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
        gateway_ok: Callable[[], bool] | None = None,
        db_corrupt: Callable[[], bool] | None = None,
        registry: Registry = REGISTRY,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``providers``: each provider Encore knows and whether it is configured. ``gateway_ok``: whether
        the Discord gateway is connected (None: no gateway, e.g. the CLI). ``db_corrupt``: whether the database
        file was found damaged."""
        self._ping_db = ping_db
        self._job_counts = job_counts
        self._oldest_active = oldest_active
        self._providers = dict(providers)
        self._gateway_ok = gateway_ok
        self._db_corrupt = db_corrupt
        self._registry = registry
        self._clock = clock

    def add_to(self, app: web.Application) -> None:
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.metrics)

    def _gateway(self) -> bool | None:
        if self._gateway_ok is None:
            return None
        try:
            return bool(self._gateway_ok())
        except Exception:
            log.exception("the gateway check failed")
            return False

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
        gateway = self._gateway()
        if gateway is not None:
            checks["discord"] = {"ok": gateway}
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

    async def _job_families(self) -> list[Family]:
        counts = await self._job_counts()
        oldest = await self._oldest_active()
        by_model: dict[str, dict[JobStatus, int]] = {}
        for model, status, count in counts:
            by_model.setdefault(model, {})[status] = count
        # Every status of every model seen, zeros included, so rates and sums never miss a series.
        jobs = [
            ({"model": model, "status": status.value}, statuses.get(status, 0))
            for model, statuses in sorted(by_model.items())
            for status in JobStatus
        ]
        queued = sum(statuses.get(JobStatus.QUEUED, 0) for statuses in by_model.values())
        active = sum(c for statuses in by_model.values() for s, c in statuses.items() if s not in TERMINAL)
        age = max(0.0, self._clock() - oldest) if oldest is not None else 0.0
        return [
            gauge("encore_jobs", "Jobs in the database, by model and status.", jobs),
            gauge("encore_queue_depth", "Jobs waiting to be submitted to a provider (status queued).", [({}, queued)]),
            gauge("encore_jobs_active", "Jobs not yet delivered, failed or canceled.", [({}, active)]),
            gauge(
                "encore_oldest_active_job_age_seconds",
                "How long ago the oldest unfinished job was queued (0 when there is none).",
                [({}, age)],
            ),
        ]

    async def metrics(self, _: web.Request) -> web.Response:
        families: list[Family] = []
        database_up = 1.0
        try:
            families.extend(await self._job_families())
        except Exception as exc:
            log.warning("metrics: could not read jobs from the database: %s: %s", type(exc).__name__, exc)
            database_up = 0.0
        families.append(
            gauge("encore_database_up", "Whether the last read of the database worked.", [({}, database_up)])
        )
        if self._db_corrupt is not None:
            corrupt = float(self._db_corrupt())
            families.append(
                gauge(
                    "encore_database_corrupt",
                    "Whether the database file was found damaged (a statement or SQLite's quick_check).",
                    [({}, corrupt)],
                )
            )
        gateway = self._gateway()
        if gateway is not None:
            families.append(
                gauge("encore_discord_gateway_up", "Whether the Discord gateway is connected.", [({}, float(gateway))])
            )
        families.append(
            gauge(
                "encore_provider_configured",
                "Providers Encore can use (1) or not (0).",
                [({"provider": name}, float(on)) for name, on in sorted(self._providers.items())],
            )
        )
        families.append(gauge("encore_build_info", "Encore's version.", [({"version": __version__}, 1.0)]))
        families.append(
            gauge("process_start_time_seconds", "When the process started (Unix time).", [({}, _STARTED_AT)])
        )
        text = self._registry.render(families)
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE, "Cache-Control": "no-store"})
