"""``/healthz`` and ``/metrics`` over real HTTP, against the real core and the fake Replicate."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from bot.app import Core
from bot.errors import ConfigError
from bot.jobs.access import Person
from bot.jobs.phase import Phase
from bot.records import JobOrigin, JobStatus
from bot.web.ops import GatewayShards, ShardState
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness
from tests.promparse import Exposition, parse


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


async def start_bot_core(harness: Harness, *, gateway: GatewayShards | None = None) -> str:
    """The core as ``python -m bot run`` starts it (web server always on, polling only); returns its URL."""
    settings = harness.configure()
    core = Core(settings, harness.secrets)
    harness.core = core
    await core.open()
    await core.start_service(harness.listener, serve_web=True, gateway=gateway)
    assert core.web is not None
    return f"http://127.0.0.1:{core.web.port}"


async def get_health(http: aiohttp.ClientSession, base: str) -> tuple[int, dict[str, Any]]:
    async with http.get(f"{base}/healthz") as response:
        assert response.content_type == "application/json"
        return response.status, await response.json()


async def scrape(http: aiohttp.ClientSession, base: str) -> Exposition:
    async with http.get(f"{base}/metrics") as response:
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return parse(await response.text())


async def test_healthz_reports_every_part_when_all_is_well(
    harness: Harness, fake: FakeReplicate, http: aiohttp.ClientSession
) -> None:
    fake.auto_advance = True
    base = await start_bot_core(harness, gateway=lambda: {0: ShardState(up=True, latency_s=0.0421)})
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE

    status, body = await get_health(http, base)
    assert status == 200
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["discord"] == {"ok": True, "shards": {"0": {"ok": True, "latency_ms": 42.1}}}
    replicate = body["providers"]["replicate"]
    assert replicate["configured"] is True
    assert replicate["last_ok_at"] is not None  # the job just talked to it
    assert body["providers"]["cog"] == {"configured": False}
    assert body["providers"]["elevenlabs"] == {"configured": False}


async def test_healthz_is_503_while_a_gateway_shard_is_down(harness: Harness, http: aiohttp.ClientSession) -> None:
    shards = {0: ShardState(up=True), 2: ShardState(up=True, latency_s=0.05)}
    base = await start_bot_core(harness, gateway=lambda: shards)
    assert (await get_health(http, base))[0] == 200

    shards[2] = ShardState(up=False, latency_s=float("inf"))  # discord.py's latency before a heartbeat
    status, body = await get_health(http, base)
    assert (status, body["status"]) == (503, "degraded")
    assert body["checks"]["discord"] == {"ok": False, "shards": {"0": {"ok": True}, "2": {"ok": False}}}
    assert body["checks"]["database"]["ok"] is True
    exposition = await scrape(http, base)
    assert exposition.value("encore_discord_gateway_up") == 0
    assert exposition.value("encore_discord_shard_up", shard="0") == 1
    assert exposition.value("encore_discord_shard_up", shard="2") == 0
    assert exposition.series("encore_discord_shard_latency_seconds") == []  # none known

    shards[2] = ShardState(up=True, latency_s=0.05)
    assert (await get_health(http, base))[0] == 200
    exposition = await scrape(http, base)
    assert exposition.value("encore_discord_gateway_up") == 1
    assert exposition.value("encore_discord_shard_latency_seconds", shard="2") == 0.05

    shards.clear()  # no shard connected yet (the bot is starting)
    status, body = await get_health(http, base)
    assert (status, body["checks"]["discord"]) == (503, {"ok": False, "shards": {}})


async def test_healthz_is_503_when_the_database_is_gone(harness: Harness, http: aiohttp.ClientSession) -> None:
    base = await start_bot_core(harness)
    assert (await get_health(http, base))[0] == 200
    assert harness.core is not None
    await harness.core.db.close()

    status, body = await get_health(http, base)
    assert status == 503
    assert body["checks"]["database"] == {"ok": False, "error": "RuntimeError"}
    assert "discord" not in body["checks"]  # no gateway to check outside the bot
    exposition = await scrape(http, base)  # metrics still answer, and say so
    assert exposition.value("encore_database_up") == 0
    assert exposition.series("encore_jobs") == []


async def test_metrics_count_the_jobs_in_the_database(
    harness: Harness, fake: FakeReplicate, http: aiohttp.ClientSession
) -> None:
    base = await start_bot_core(harness)
    before = await scrape(http, base)
    creates = {"provider": "replicate", "operation": "create"}

    fake.auto_advance = True
    done = await harness.submit("done")
    assert await harness.listener.wait_for_phase(done.id) == Phase.DONE
    await fake.wait_for_prediction()  # done's
    fake.auto_advance = False
    canceled = await harness.submit("canceled", model="stable-audio")
    await fake.wait_for_prediction()  # canceled's: created, then canceled
    await harness.service.cancel(canceled.id, Person(42))
    # A queued job the service has not picked up (as if it were waiting its turn).
    assert harness.core is not None
    queued_at = time.time() - 30
    await harness.core.repo.insert(
        job_id="queued0001",
        origin=JobOrigin(user_id=7),
        provider="replicate",
        model="stable-audio",
        model_ref="x/y",
        request={},
        input={},
        now=queued_at,
    )

    after = await scrape(http, base)
    assert after.value("encore_jobs", model="musicgen", status="delivered") == 1
    assert after.value("encore_jobs", model="stable-audio", status="canceled") == 1
    assert after.value("encore_jobs", model="stable-audio", status="queued") == 1
    # Every status of every model is exposed, zeros included.
    assert {s["status"] for s in after.series("encore_jobs") if s["model"] == "musicgen"} == set(JobStatus)
    assert after.value("encore_jobs", model="musicgen", status="failed") == 0
    assert after.value("encore_queue_depth") == 1
    assert after.value("encore_jobs_active") == 1
    assert after.value("encore_oldest_active_job_age_seconds") >= 29
    assert after.value("encore_database_up") == 1
    assert after.value("encore_provider_configured", provider="replicate") == 1
    assert after.value("encore_provider_configured", provider="cog") == 0
    assert (
        after.get("encore_provider_requests_total", **creates) - before.get("encore_provider_requests_total", **creates)
        == 2
    )
    latency = after.get("encore_provider_request_duration_seconds_count", **creates)
    assert latency - before.get("encore_provider_request_duration_seconds_count", **creates) == 2
    downloads = {"provider": "replicate", "operation": "download"}
    assert after.get("encore_provider_requests_total", **downloads) > before.get(
        "encore_provider_requests_total", **downloads
    )
    assert after.series("encore_build_info")[0]["version"]
    assert after.types["encore_provider_request_duration_seconds"] == "histogram"


async def test_metrics_include_the_standard_process_metrics(harness: Harness, http: aiohttp.ClientSession) -> None:
    base = await start_bot_core(harness)
    exposition = await scrape(http, base)
    assert exposition.types["process_cpu_seconds_total"] == "counter"
    assert exposition.value("process_cpu_seconds_total") > 0
    assert exposition.value("process_resident_memory_bytes") > 0
    assert exposition.value("process_open_fds") > 0
    assert 0 < exposition.value("process_start_time_seconds") <= time.time()
    assert exposition.series("python_info")[0]["implementation"]


async def test_provider_errors_are_counted_and_reported_but_never_unhealthy(
    harness: Harness, fake: FakeReplicate, http: aiohttp.ClientSession
) -> None:
    base = await start_bot_core(harness)
    labels = {"provider": "replicate", "operation": "create", "kind": "auth"}
    before = (await scrape(http, base)).get("encore_provider_errors_total", **labels)
    fake.inject(method="POST", path=r"/predictions$", status=401, body={"title": "Unauthenticated", "status": 401})
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED

    after = (await scrape(http, base)).get("encore_provider_errors_total", **labels)
    assert after == before + 1
    status, body = await get_health(http, base)
    assert status == 200  # restarting Encore would not fix the provider
    assert body["providers"]["replicate"]["last_error"] == "auth"
    assert body["providers"]["replicate"]["last_error_at"] is not None


async def test_metrics_count_webhooks_received_and_refused(
    harness: Harness, fake: FakeReplicate, http: aiohttp.ClientSession
) -> None:
    await harness.start(with_webhooks=True)
    assert harness.core is not None
    assert harness.core.web is not None
    base = f"http://127.0.0.1:{harness.core.web.port}"
    before = await scrape(http, base)

    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    assert await fake.send_webhook(pid, omit_headers=("webhook-signature",)) == 401
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    await fake.drain_webhooks()

    after = await scrape(http, base)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    assert delta("encore_webhooks_refused_total", source="replicate", reason="signature") == 1
    # The forged one, and Replicate's own (start, completed); the fake may also retry none of them.
    assert delta("encore_webhooks_received_total", source="replicate") == 1 + len(fake.webhook_deliveries)


async def test_a_busy_port_is_a_clear_config_error(harness: Harness) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        settings = harness.configure(webhooks={"port": port})
        core = Core(settings, harness.secrets)
        harness.core = core
        await core.open()
        with pytest.raises(ConfigError, match=rf"can't listen on 127\.0\.0\.1:{port} .*ENCORE_WEBHOOKS__PORT"):
            await core.start_service(harness.listener, serve_web=True)
