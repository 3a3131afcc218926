"""The webhook endpoint over real HTTP: forged, replayed, stale, malformed and oversized bodies change nothing."""

from __future__ import annotations

import json
import time

import pytest

from bot.jobs.phase import Phase
from bot.records import JobStatus
from tests.fakes.replicate import FakeReplicate, sign_webhook
from tests.integration.conftest import Harness


async def running_job(harness: Harness, fake: FakeReplicate, **sections: dict[str, object]) -> tuple[str, str]:
    await harness.start(with_webhooks=True, **sections)
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    return job.id, pid


async def test_forged_signature_is_refused_and_changes_nothing(harness: Harness, fake: FakeReplicate) -> None:
    job_id, pid = await running_job(harness, fake)
    fake.prediction(pid).status = "succeeded"  # what a forger would claim
    forged = sign_webhook("whsec_" + "A" * 32, "msg_forged", int(time.time()), b"{}")
    assert await fake.send_webhook(pid, signature=forged) == 401
    assert await fake.send_webhook(pid, omit_headers=("webhook-signature",)) == 401
    assert await fake.send_webhook(pid, omit_headers=("webhook-id", "webhook-timestamp", "webhook-signature")) == 401
    assert (await harness.job(job_id)).status == JobStatus.SUBMITTED
    assert harness.listener.delivered == []


async def test_stale_or_future_timestamps_are_refused(harness: Harness, fake: FakeReplicate) -> None:
    _job_id, pid = await running_job(harness, fake)
    await fake.begin(pid)
    await fake.drain_webhooks()
    for skew in (-301, 301):
        assert await fake.send_webhook(pid, event="start", timestamp=int(time.time()) + skew) == 401


async def test_replayed_webhook_is_dropped(harness: Harness, fake: FakeReplicate) -> None:
    job_id, pid = await running_job(harness, fake)
    await fake.succeed(pid)
    delivery = await fake.next_webhook_delivery()
    while delivery.event != "completed":
        delivery = await fake.next_webhook_delivery()
    assert await harness.listener.wait_for_phase(job_id) == Phase.DONE
    # The same signed message again (a replay within the window): accepted as a duplicate, no effect.
    status = await fake.send_webhook(pid, webhook_id=delivery.webhook_id, body=delivery.body)
    assert status == 200
    assert len(harness.listener.deliveries_of(job_id)) == 1


async def test_signed_but_malformed_body_is_a_400(harness: Harness, fake: FakeReplicate) -> None:
    job_id, pid = await running_job(harness, fake)
    for body in (b"not json", json.dumps({"id": pid, "status": "exploded"}).encode(), b"[]"):
        assert await fake.send_webhook(pid, body=body) == 400
    assert (await harness.job(job_id)).status == JobStatus.SUBMITTED


async def test_oversized_body_is_refused(harness: Harness, fake: FakeReplicate) -> None:
    job_id, pid = await running_job(harness, fake, webhooks={"max_body_bytes": 64 * 1024})
    body = json.dumps({"id": pid, "status": "succeeded", "logs": "x" * 100_000}).encode()
    assert await fake.send_webhook(pid, body=body) == 413
    assert (await harness.job(job_id)).status == JobStatus.SUBMITTED


@pytest.mark.parametrize("status", ["starting", "processing"])
async def test_unknown_prediction_is_acknowledged_and_ignored(
    harness: Harness, fake: FakeReplicate, status: str
) -> None:
    await running_job(harness, fake)
    body = json.dumps({"id": "someoneelses", "status": status}).encode()
    assert await fake.send_webhook(next(iter(fake.predictions)), body=body) == 200


async def test_webhook_secret_is_fetched_from_replicate_once(harness: Harness, fake: FakeReplicate) -> None:
    await running_job(harness, fake)
    assert fake.count("GET", "/v1/webhooks/default/secret") == 1


async def test_secret_from_the_environment_wins(harness: Harness, fake: FakeReplicate) -> None:
    from pydantic import SecretStr

    from bot.app import Core
    from bot.config import Secrets

    settings = harness.configure(with_webhooks=True)
    core = Core(
        settings,
        Secrets(
            env={
                "REPLICATE_API_TOKEN": SecretStr(fake.token),
                "REPLICATE_WEBHOOK_SECRET": SecretStr(fake.webhook_secret),
            }
        ),
    )
    await core.open()
    try:
        await core.start_service(harness.listener)
        assert fake.count("GET", "/v1/webhooks/default/secret") == 0
    finally:
        await core.close()


async def test_unobtainable_secret_falls_back_to_polling(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="GET", path="/webhooks/default/secret", status=500, times=None)
    fake.auto_advance = True
    await harness.start(with_webhooks=True, replicate={"max_retries": 0})
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    created = [r for r in fake.requests if r.method == "POST"]
    assert created[0].json is not None
    assert "webhook" not in created[0].json
