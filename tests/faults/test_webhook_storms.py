"""Many jobs in webhook mode while the webhooks misbehave: duplicated, reordered, late, forged, replayed, huge.

Every completion's webhook comes several times (same ``webhook-id``), every ``processing`` webhook arrives after
``succeeded``, and some jobs' webhooks are held back until the poller has already delivered them. Interleaved
with the real traffic, hand-made webhooks hit the endpoint: forged signatures (wrong secret, tampered body,
none), replays of earlier webhooks (same id, within the 5-minute window and long after it) and oversized
bodies. Every job must be delivered exactly once, nothing forged or replayed may move a job, and every refusal
must show in ``/metrics`` (``encore_webhooks_refused_total{reason}``). Single cases: tests/integration.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from bot.jobs.phase import Phase
from bot.records import JobStatus
from tests.fakes.audio import wav_info
from tests.fakes.replicate import FakeReplicate, WebhookDelivery, sign_webhook
from tests.faults.conftest import Reliability
from tests.integration.conftest import Harness
from tests.promparse import Exposition, parse

JOBS = 40
MAX_BODY_BYTES = 64 * 1024
GRACE_S = 0.3  # webhook mode: the poller looks at a job only after this (so it races the webhooks)


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate(reorder_webhooks=True) as server:  # `processing` arrives after `succeeded`
        yield server


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        yield session


@dataclass
class Sent:
    """The hand-made webhooks sent, by what they were and what the bot answered."""

    answers: Counter[tuple[str, int]] = field(default_factory=Counter)  # (kind, status) -> count

    def count(self, kind: str) -> int:
        return sum(n for (k, _), n in self.answers.items() if k == kind)


class Attacker:
    """Sends hand-made webhooks to the bot's endpoint, as a forger or a replayer would."""

    def __init__(self, fake: FakeReplicate, http: aiohttp.ClientSession, sent: Sent) -> None:
        self.fake = fake
        self.http = http
        self.sent = sent

    async def post(
        self, kind: str, url: str, body: bytes, *, webhook_id: str, timestamp: int, signature: str | None
    ) -> tuple[int, Any]:
        headers = {"content-type": "application/json", "webhook-id": webhook_id, "webhook-timestamp": str(timestamp)}
        if signature is not None:
            headers["webhook-signature"] = signature
        async with self.http.post(url, data=body, headers=headers) as response:
            answer = await response.json(content_type=None)
            self.sent.answers[(kind, response.status)] += 1
            return response.status, answer

    def signed(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        return sign_webhook(self.fake.webhook_secret, webhook_id, timestamp, body)

    async def forge(self, pid: str) -> list[int]:
        """Three forgeries claiming the prediction failed or succeeded elsewhere: none is signed by Replicate."""
        pred = self.fake.prediction(pid)
        url = pred.webhook
        assert url is not None
        now = int(time.time())
        failed = json.dumps({**pred.to_json(self.fake.base_url), "status": "failed", "error": "forged"}).encode()
        evil = {**pred.to_json(self.fake.base_url), "status": "succeeded", "output": "https://evil.example/x.wav"}
        succeeded = json.dumps(evil).encode()
        wrong_secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        statuses = []
        wid = f"msg_forged_{secrets.token_hex(8)}"
        sig = sign_webhook(wrong_secret, wid, now, failed)
        statuses.append((await self.post("forged", url, failed, webhook_id=wid, timestamp=now, signature=sig))[0])
        wid = f"msg_tampered_{secrets.token_hex(8)}"
        sig = self.signed(wid, now, json.dumps(pred.to_json(self.fake.base_url)).encode())  # signed, then changed
        statuses.append((await self.post("forged", url, succeeded, webhook_id=wid, timestamp=now, signature=sig))[0])
        wid = f"msg_unsigned_{secrets.token_hex(8)}"
        statuses.append((await self.post("forged", url, failed, webhook_id=wid, timestamp=now, signature=None))[0])
        return statuses

    async def oversized(self, pid: str) -> int:
        """Properly signed, but far over the body limit."""
        pred = self.fake.prediction(pid)
        assert pred.webhook is not None
        body = json.dumps({"id": pid, "status": "succeeded", "logs": "x" * (2 * MAX_BODY_BYTES)}).encode()
        wid, now = f"msg_huge_{secrets.token_hex(8)}", int(time.time())
        status, _ = await self.post(
            "oversized", pred.webhook, body, webhook_id=wid, timestamp=now, signature=self.signed(wid, now, body)
        )
        return status

    async def replay(self, delivery: WebhookDelivery, url: str, *, age_s: int = 0) -> tuple[int, Any]:
        """A webhook Replicate sent, again: same id and body, re-signed as it was ``age_s`` ago."""
        when = int(time.time()) - age_s
        kind = "stale replay" if age_s else "replay"
        sig = self.signed(delivery.webhook_id, when, delivery.body)
        return await self.post(kind, url, delivery.body, webhook_id=delivery.webhook_id, timestamp=when, signature=sig)


async def scrape(http: aiohttp.ClientSession, harness: Harness) -> Exposition:
    assert harness.core is not None
    assert harness.core.web is not None
    async with http.get(f"http://127.0.0.1:{harness.core.web.port}/metrics") as response:
        assert response.status == 200
        return parse(await response.text())


@pytest.mark.timeout(90)
async def test_webhook_storm_delivers_each_job_once_and_refuses_every_forgery(
    harness: Harness, fake: FakeReplicate, http: aiohttp.ClientSession, reliability: Reliability
) -> None:
    await harness.start(
        with_webhooks=True, jobs={"webhook_grace_s": GRACE_S}, webhooks={"max_body_bytes": MAX_BODY_BYTES}
    )
    before = await scrape(http, harness)
    sent = Sent()
    attacker = Attacker(fake, http, sent)
    prompts = [f"hooked {i:02d} dusty vinyl jazz" for i in range(JOBS)]
    late = {p for i, p in enumerate(prompts) if i % 4 == 1}  # webhooks held until the poller delivered the job
    jobs = {p: await harness.submit(p, duration_s=1 + i % 2) for i, p in enumerate(prompts)}
    outcomes: Counter[str] = Counter()

    async def run(pid: str) -> None:
        pred = fake.prediction(pid)
        index = prompts.index(str(pred.input["prompt"]))
        job = jobs[prompts[index]]
        if job.prompt in late:
            fake.hold_webhooks(pid)
        await harness.listener.wait_for_phase(job.id, Phase.STARTING, timeout=30)  # the bot recorded the create
        # Forged and oversized webhooks while the job runs: refused, and the job does not move.
        if index % 2 == 0:
            assert await attacker.forge(pid) == [401, 401, 401]
        if index % 5 == 0:
            assert await attacker.oversized(pid) == 413
        current = await harness.job(job.id)
        assert (current.status, current.error, current.prediction_id) == (JobStatus.SUBMITTED, None, pid)
        await fake.begin(pid)
        await fake.succeed(pid, duplicate_webhook=1 + index % 3)
        assert await harness.listener.wait_for_phase(job.id, timeout=30) == Phase.DONE
        done = await harness.job(job.id)
        expected = 2 + 1 + index % 3  # start, completed, its duplicates (every one answered 200 at once)
        if job.prompt in late:
            assert [d for d in fake.webhook_deliveries if d.prediction_id == pid] == []  # the poller did it
            fake.release_webhooks(pid)
        hooks = await fake.wait_for_webhook_deliveries(pid, expected, timeout=30)
        assert [d.status_code for d in hooks] == [200] * expected
        assert [d.event for d in hooks][-1] == "start"  # `processing` came last
        # Replays of what Replicate sent: within the window they are dropped as duplicates; an old one is refused.
        completed = next(d for d in hooks if d.event == "completed")
        assert pred.webhook is not None
        assert await attacker.replay(completed, pred.webhook) == (200, {"ok": True, "duplicate": True})
        assert await attacker.replay(hooks[-1], pred.webhook) == (200, {"ok": True, "duplicate": True})
        if index % 3 == 0:
            assert (await attacker.replay(completed, pred.webhook, age_s=600))[0] == 401
        after = await harness.job(job.id)
        assert after == done, "a late, duplicated or replayed webhook changed a delivered job"
        outcomes["delivered once (late webhooks, after the poller)" if job.prompt in late else "delivered once"] += 1

    async with asyncio.timeout(75), asyncio.TaskGroup() as group:
        for _ in range(JOBS):
            group.create_task(run(await fake.wait_for_prediction(timeout=30)))
    await fake.drain_webhooks()

    for job in jobs.values():
        final = await harness.job(job.id)
        assert final.status == JobStatus.DELIVERED
        [delivered] = harness.listener.deliveries_of(job.id)
        assert round(wav_info(delivered.data).duration_s) == job.duration_s
    assert sum(len(ids) for ids in harness.listener.messages) == JOBS
    assert len(fake.predictions) == JOBS

    after = await scrape(http, harness)

    def delta(name: str, **labels: str) -> float:
        return after.get(name, **labels) - before.get(name, **labels)

    refused_signature = sent.count("forged") + sent.count("stale replay")
    assert sent.answers[("forged", 401)] == sent.count("forged")
    assert delta("encore_webhooks_refused_total", source="replicate", reason="signature") == refused_signature
    assert delta("encore_webhooks_refused_total", source="replicate", reason="too_large") == sent.count("oversized")
    assert delta("encore_webhooks_refused_total", source="replicate", reason="malformed") == 0
    assert delta("encore_webhooks_refused_total", source="replicate", reason="error") == 0
    assert delta("encore_webhooks_received_total", source="replicate") == len(fake.webhook_deliveries) + sum(
        sent.answers.values()
    )

    real = Counter(d.event for d in fake.webhook_deliveries)
    duplicates = len(fake.webhook_deliveries) - len({d.webhook_id for d in fake.webhook_deliveries})
    faults = (
        f"{len(fake.webhook_deliveries)} real webhooks ({real['completed']} completed, of which {duplicates} "
        f"duplicates; {real['start']} processing, each after its succeeded; {len(late)} jobs' held until the "
        f"poller had delivered); {sent.count('forged')} forged (wrong secret, tampered, unsigned), "
        f"{sent.count('replay')} replays in the window, {sent.count('stale replay')} stale replays, "
        f"{sent.count('oversized')} oversized"
    )
    print(f"\n{faults}")
    reliability.record(jobs=JOBS, faults=faults, outcomes=outcomes)
