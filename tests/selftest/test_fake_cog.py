"""Self-tests for the Cog model server fake (tests/fakes/cog/), driven with a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tests.fakes.audio import make_wav, wav_info
from tests.fakes.cog import NOID_PREFIX, UPLOAD_ERROR, FakeCog
from tests.fakes.models import MUSICGEN, FakeModel, OutputFile
from tests.selftest.conftest import serve

ASYNC = {"Prefer": "respond-async"}
ONLY_START_COMPLETED = ["start", "completed"]


@dataclass
class Received:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Webhook endpoint (POST /hook) and upload target (PUT /upload/<name>, PUT /prefix/<name>) in one app."""

    url: str = ""
    received: list[Received] = field(default_factory=list)
    hook_statuses: deque[int] = field(default_factory=deque)  # answers before falling back to 200
    upload_statuses: deque[int] = field(default_factory=deque)
    location: str | None = None  # Location header for successful uploads
    queue: asyncio.Queue[Received] = field(default_factory=asyncio.Queue)

    async def handle(self, request: web.Request) -> web.Response:
        rec = Received(request.method, request.path, request.query_string, dict(request.headers), await request.read())
        self.received.append(rec)
        self.queue.put_nowait(rec)
        if request.method == "POST":
            return web.Response(status=self.hook_statuses.popleft() if self.hook_statuses else 200)
        status = self.upload_statuses.popleft() if self.upload_statuses else 200
        headers = {"Location": self.location} if self.location and status < 300 else {}
        return web.Response(status=status, headers=headers)

    async def next(self, method: str | None = None, timeout: float = 5.0) -> Received:
        async with asyncio.timeout(timeout):
            while True:
                rec = await self.queue.get()
                if method is None or rec.method == method:
                    return rec

    def hooks(self) -> list[dict[str, Any]]:
        return [r.json() for r in self.received if r.method == "POST"]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rcv = Receiver()
    routes = [
        web.post("/hook", rcv.handle),
        web.put("/upload/{name}", rcv.handle),
        web.put("/prefix/{name}", rcv.handle),
    ]
    async with serve(*routes) as url:
        rcv.url = url
        yield rcv


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:  # overrides conftest's, which is for FakeReplicate
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
async def cog() -> AsyncIterator[FakeCog]:
    async with FakeCog() as fake:
        yield fake


async def call(
    http: aiohttp.ClientSession, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> tuple[int, Any]:
    async with http.request(method, url, json=body, headers=headers) as resp:
        text = await resp.text()
        return resp.status, json.loads(text) if text and resp.content_type == "application/json" else text


def decode_data_url(url: str) -> tuple[str, bytes]:
    head, _, payload = url.partition(",")
    assert re.fullmatch(r"data:[^;,]+;base64", head), head
    return head[5:-7], base64.b64decode(payload)


# ---------------------------------------------------------------- discovery, health, openapi


async def test_discovery_openapi_and_no_v1(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    status, doc = await call(http, "GET", cog.base_url + "/")
    assert status == 200
    assert doc == {
        "cog_version": "0.13.7",
        "docs_url": "/docs",
        "openapi_url": "/openapi.json",
        "shutdown_url": "/shutdown",
        "healthcheck_url": "/health-check",
        "predictions_url": "/predictions",
        "predictions_idempotent_url": "/predictions/{prediction_id}",
        "predictions_cancel_url": "/predictions/{prediction_id}/cancel",
    }
    status, spec = await call(http, "GET", cog.base_url + "/openapi.json")
    assert status == 200
    assert spec["openapi"] == "3.0.2"
    schemas = spec["components"]["schemas"]
    assert schemas["Input"]["properties"] == MUSICGEN.input_schema["properties"]
    assert schemas["Output"]["format"] == "uri"
    for name in ("PredictionRequest", "PredictionResponse", "Status", "WebhookEvent", "HTTPValidationError"):
        assert name in schemas
    assert "aborted" not in schemas["Status"]["enum"]
    assert await call(http, "POST", cog.base_url + "/v1/predictions", {"input": {}}) == (404, {"detail": "Not Found"})


async def test_health_states(http: aiohttp.ClientSession) -> None:
    async with FakeCog(setup_done=False) as cog:
        assert await call(http, "GET", cog.base_url + "/health-check") == (200, {"status": "STARTING", "setup": {}})
        status, body = await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}})
        assert (status, body) == (409, {"detail": "Already running a prediction"})
        cog.finish_setup(logs="loaded\n")
        status, health = await call(http, "GET", cog.base_url + "/health-check")
        assert health["status"] == "READY"
        assert health["setup"]["status"] == "succeeded"
        assert health["setup"]["logs"] == "loaded\n"
        status, _ = await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC)
        assert status == 202
        key = await cog.wait_for_prediction()
        assert (await call(http, "GET", cog.base_url + "/health-check"))[1]["status"] == "BUSY"
        await cog.complete(key)
        assert (await call(http, "GET", cog.base_url + "/health-check"))[1]["status"] == "READY"
        cog.set_defunct()
        assert (await call(http, "GET", cog.base_url + "/health-check"))[1]["status"] == "DEFUNCT"
    async with FakeCog(setup_done=False) as cog:
        cog.fail_setup()
        status, health = await call(http, "GET", cog.base_url + "/health-check")
        assert status == 200
        assert health["status"] == "SETUP_FAILED"
        assert health["setup"]["status"] == "failed"
        assert "Traceback" in health["setup"]["logs"]


# ---------------------------------------------------------------- sync predictions


async def test_sync_predict_returns_wav_data_url(http: aiohttp.ClientSession) -> None:
    async with FakeCog(auto_complete=True) as cog:
        body = {"version": "abc123", "input": {"prompt": "lofi", "duration": 3, "bogus": 1}, "extra": True}
        status, pred = await call(http, "POST", cog.base_url + "/predictions", body)
    assert status == 200
    assert pred["status"] == "succeeded"
    assert pred["id"] is None
    assert pred["version"] is None
    assert pred["created_at"] is None
    assert pred["error"] is None
    assert set(pred) == {
        "input",
        "output",
        "id",
        "version",
        "created_at",
        "started_at",
        "completed_at",
        "logs",
        "error",
        "status",
        "metrics",
    }
    assert set(pred["metrics"]) == {"predict_time"}
    assert "bogus" not in pred["input"]  # unknown input keys dropped; defaults filled in
    assert pred["input"]["duration"] == 3
    assert pred["input"]["output_format"] == "wav"
    assert pred["input"]["seed"] is None
    assert "Using seed" in pred["logs"]
    mime, data = decode_data_url(pred["output"])
    assert mime == "audio/x-wav"
    info = wav_info(data)
    assert info.duration_s == pytest.approx(3.0)
    assert info.channels == 2
    assert info.sample_rate == 32000


async def test_sync_predict_is_driven_by_the_test(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    created = "2024-05-01T12:00:00Z"
    task = asyncio.create_task(
        call(
            http,
            "POST",
            cog.base_url + "/predictions",
            {"input": {"prompt": "x", "duration": 1}, "created_at": created},
        )
    )
    key = await cog.wait_for_prediction()
    assert key.startswith(NOID_PREFIX)
    assert not task.done()
    await cog.complete(key)
    status, pred = await asyncio.wait_for(task, 5)
    assert status == 200
    assert pred["status"] == "succeeded"
    assert pred["id"] is None
    assert pred["created_at"] == "2024-05-01T12:00:00+00:00"
    assert await call(http, "POST", cog.base_url + f"/predictions/{key}/cancel") == (404, {})


async def test_prefer_with_wait_is_sync_and_model_errors_are_200(http: aiohttp.ClientSession) -> None:
    async with FakeCog(auto_complete=True) as cog:
        headers = {"Prefer": "respond-async, wait=5"}
        status, pred = await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, headers)
        assert status == 200
        assert pred["status"] == "succeeded"
        assert pred["output"].startswith("data:audio/x-wav;")
        status, pred = await call(http, "POST", cog.base_url + "/predictions", {"input": {"duration": 2}})
    assert status == 200
    assert pred["status"] == "failed"
    assert pred["error"] == "Must provide either prompt or input_audio"
    assert pred["metrics"] is None
    assert pred["output"] is None
    assert "Traceback (most recent call last)" in pred["logs"]


async def test_missing_body_means_empty_input(http: aiohttp.ClientSession) -> None:
    async with FakeCog(auto_complete=True) as cog, http.post(cog.base_url + "/predictions") as resp:
        assert resp.status == 200
        pred = await resp.json()
    assert pred["input"] == {}
    assert pred["status"] == "failed"


async def test_sync_output_file_prefix_puts_multipart(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog(auto_complete=True, upload_url=receiver.url + "/upload") as cog:
        body = {"input": {"prompt": "x", "duration": 1}, "output_file_prefix": receiver.url + "/prefix/"}
        status, pred = await call(http, "POST", cog.base_url + "/predictions", body)
    assert status == 200
    assert pred["output"] == receiver.url + "/prefix/out.wav"
    put = await receiver.next("PUT")
    assert put.path == "/prefix/out.wav"
    assert put.headers["Content-Type"].startswith("multipart/form-data")
    assert b'name="file"' in put.body
    assert b'filename="out.wav"' in put.body


async def test_sync_ignores_upload_url(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog(auto_complete=True, upload_url=receiver.url + "/upload") as cog:
        status, pred = await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}})
    assert status == 200
    assert pred["output"].startswith("data:audio/x-wav;base64,")
    assert receiver.received == []
    assert cog.uploads == []


# ---------------------------------------------------------------- async predictions and webhooks


async def test_async_202_then_start_and_completed_webhooks(
    cog: FakeCog, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    body = {"id": "p1", "input": {"prompt": "x", "duration": 2}, "webhook": receiver.url + "/hook"}
    status, pred = await call(http, "POST", cog.base_url + "/predictions", body, ASYNC)
    assert status == 202
    assert pred["status"] == "processing"
    assert pred["id"] == "p1"
    assert pred["output"] is None
    assert await cog.wait_for_prediction() == "p1"
    start = await cog.next_webhook_delivery()
    assert (start.event, start.status_code, start.body["status"]) == ("start", 200, "processing")
    await cog.complete("p1")
    await cog.drain_webhooks()
    events = [(d.event, d.body["status"]) for d in cog.webhook_deliveries]
    assert events == [("start", "processing"), ("logs", "processing"), ("completed", "succeeded")]
    done = receiver.hooks()[-1]
    assert "version" not in done
    assert "error" not in done
    assert set(done["metrics"]) == {"predict_time"}
    assert done["id"] == "p1"
    assert done["created_at"] is None
    path = done["output"]  # no --upload-url: a server-local path, useless to the client
    assert re.fullmatch(r"/tmp/tmp\w{8}/out\.wav", path)  # noqa: S108 - matching, not creating
    assert path.endswith("/out.wav")
    assert not os.path.exists(path)
    hook = receiver.received[0].headers
    assert hook["User-Agent"] == "cog-worker/0.13.7 python-requests/2.31.0"
    assert hook["Content-Type"] == "application/json"
    for name in ("Authorization", "webhook-id", "webhook-timestamp", "webhook-signature"):
        assert name not in hook


async def test_webhook_bearer_token_and_log_events(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog(webhook_auth_token="s3cret") as cog:
        body = {"input": {"prompt": "x"}, "webhook": receiver.url + "/hook", "webhook_events_filter": ["logs"]}
        assert (await call(http, "POST", cog.base_url + "/predictions", body, ASYNC))[0] == 202
        key = await cog.wait_for_prediction()
        await cog.log(key, "step 1\n")
        delivery = await cog.next_webhook_delivery()
        assert delivery.event == "logs"
        assert delivery.body["logs"] == "step 1\n"
        assert (await receiver.next("POST")).headers["Authorization"] == "Bearer s3cret"
        await cog.fail(key, "boom")
        await cog.drain_webhooks()
    assert [d.event for d in cog.webhook_deliveries] == ["logs"]  # filtered: no start, no completed
    assert cog.prediction(key).status == "failed"
    assert cog.prediction(key).error == "boom"


async def test_reordered_webhooks_send_completed_first(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog(reorder_webhooks=True, auto_complete=True) as cog:
        body = {"id": "r1", "input": {"prompt": "x"}, "webhook": receiver.url + "/hook"}
        body["webhook_events_filter"] = ONLY_START_COMPLETED
        assert (await call(http, "POST", cog.base_url + "/predictions", body, ASYNC))[0] == 202
        await cog.wait_for_status("r1")
        await cog.drain_webhooks()
    assert [h["status"] for h in receiver.hooks()] == ["succeeded", "processing"]


async def test_terminal_webhook_retried_non_terminal_not(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.hook_statuses.extend([500, 500, 503])
    async with FakeCog() as cog:
        body = {"id": "w1", "input": {"prompt": "x"}, "webhook": receiver.url + "/hook"}
        body["webhook_events_filter"] = ONLY_START_COMPLETED
        assert (await call(http, "POST", cog.base_url + "/predictions", body, ASYNC))[0] == 202
        start = await cog.next_webhook_delivery()
        assert (start.event, start.status_code, start.attempt) == ("start", 500, 1)
        await cog.complete("w1")
        await cog.drain_webhooks()
    done = [(d.status_code, d.attempt) for d in cog.webhook_deliveries if d.event == "completed"]
    assert done == [(500, 1), (503, 2), (200, 3)]
    assert [d.event for d in cog.webhook_deliveries].count("start") == 1


async def test_terminal_webhook_gives_up_after_12_retries(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.hook_statuses.extend([502] * 20)
    async with FakeCog(auto_complete=True, webhook_backoff_max_s=0.001) as cog:
        body = {"input": {"prompt": "x"}, "webhook": receiver.url + "/hook", "webhook_events_filter": ["completed"]}
        assert (await call(http, "POST", cog.base_url + "/predictions", body))[0] == 200
        await cog.drain_webhooks()
    assert [d.attempt for d in cog.webhook_deliveries] == list(range(1, 14))


async def test_sync_webhook_carries_local_path(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog(auto_complete=True) as cog:
        body = {"input": {"prompt": "x"}, "webhook": receiver.url + "/hook", "webhook_events_filter": ["completed"]}
        status, pred = await call(http, "POST", cog.base_url + "/predictions", body)
        await cog.drain_webhooks()
    assert status == 200
    assert pred["output"].startswith("data:")
    assert re.fullmatch(r"/tmp/tmp\w{8}/out\.wav", receiver.hooks()[0]["output"])  # noqa: S108


# ---------------------------------------------------------------- idempotent PUT, busy, cancel


async def test_put_is_idempotent_while_running(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    url = cog.base_url + "/predictions/abc"
    status, first = await call(http, "PUT", url, {"input": {"prompt": "x"}}, ASYNC)
    assert status == 202
    assert first["id"] == "abc"
    assert await cog.wait_for_prediction() == "abc"
    status, again = await call(http, "PUT", url, {"input": {"prompt": "y"}})  # no Prefer: still 202
    assert status == 202
    assert again["started_at"] == first["started_at"]
    assert again["input"]["prompt"] == "x"
    assert len(cog.history) == 1
    assert await call(http, "PUT", cog.base_url + "/predictions/other", {"input": {"prompt": "x"}}, ASYNC) == (
        409,
        {"detail": "Already running a prediction"},
    )
    await cog.complete("abc")
    status, third = await call(http, "PUT", url, {"input": {"prompt": "z"}}, ASYNC)  # forgotten: new run
    assert status == 202
    assert third["input"]["prompt"] == "z"
    assert await cog.wait_for_prediction() == "abc"
    assert len(cog.history) == 2


async def test_put_body_errors(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    status, body = await call(http, "PUT", cog.base_url + "/predictions/a", {"id": "b", "input": {}})
    assert status == 422
    assert body == {
        "detail": [
            {"loc": ["body", "id"], "msg": "prediction ID must match the ID supplied in the URL", "type": "value_error"}
        ]
    }
    async with http.put(cog.base_url + "/predictions/a") as resp:
        assert resp.status == 422
        assert (await resp.json())["detail"][0]["loc"] == ["body"]


async def test_busy_409_and_concurrency_slots(http: aiohttp.ClientSession) -> None:
    async with FakeCog() as cog:
        assert (await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC))[0] == 202
        assert await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC) == (
            409,
            {"detail": "Already running a prediction"},
        )
    async with FakeCog(max_concurrency=2) as cog:
        for _ in range(2):
            assert (await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC))[
                0
            ] == 202
        assert (await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC))[0] == 409


async def test_validation_422_fastapi_shape(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    bad = {"input": {"prompt": "x", "duration": "eight", "model_version": "huge"}}
    async with http.post(cog.base_url + "/predictions", json=bad) as resp:
        assert resp.status == 422
        assert resp.content_type == "application/json"
        detail = (await resp.json())["detail"]
    by_field = {tuple(d["loc"]): d for d in detail}
    assert by_field[("body", "input", "duration")]["type"] == "int_parsing"
    assert by_field[("body", "input", "duration")]["input"] == "eight"
    enum_err = by_field[("body", "input", "model_version")]
    assert enum_err["type"] == "enum"
    assert "stereo-melody-large" in enum_err["ctx"]["expected"]
    status, body = await call(http, "POST", cog.base_url + "/predictions", {"input": {"continuation_start": -1}})
    assert status == 422
    assert body["detail"][0]["ctx"] == {"ge": 0}
    status, body = await call(http, "POST", cog.base_url + "/predictions", {"webhook": "ftp://x"})
    assert status == 422
    assert body["detail"][0]["loc"] == ["body", "webhook"]
    assert cog.history == []


async def test_lax_coercion_like_fastapi(http: aiohttp.ClientSession) -> None:
    async with FakeCog(auto_complete=True) as cog:
        status, pred = await call(
            http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x", "duration": "2"}}
        )
    assert status == 200
    assert pred["input"]["duration"] == 2
    assert wav_info(decode_data_url(pred["output"])[1]).duration_s == pytest.approx(2.0)


async def test_get_prediction_is_405(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    assert (await call(http, "GET", cog.base_url + "/predictions/abc"))[0] == 405
    assert (await call(http, "GET", cog.base_url + "/predictions"))[0] == 405


async def test_cancel(cog: FakeCog, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    assert await call(http, "POST", cog.base_url + "/predictions/nope/cancel") == (404, {})
    body = {"input": {"prompt": "x"}, "webhook": receiver.url + "/hook", "webhook_events_filter": ONLY_START_COMPLETED}
    assert (await call(http, "PUT", cog.base_url + "/predictions/c1", body, ASYNC))[0] == 202
    await cog.wait_for_prediction()
    assert await call(http, "POST", cog.base_url + "/predictions/other/cancel") == (404, {})
    assert await call(http, "POST", cog.base_url + "/predictions/c1/cancel") == (200, {})
    pred = await cog.wait_for_status("c1", "canceled")
    assert pred.metrics is None
    await cog.drain_webhooks()
    assert [h["status"] for h in receiver.hooks()] == ["processing", "canceled"]
    assert await call(http, "POST", cog.base_url + "/predictions/c1/cancel") == (404, {})
    with pytest.raises(RuntimeError):
        await cog.complete("c1")


async def test_cancel_sync_request(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    task = asyncio.create_task(call(http, "PUT", cog.base_url + "/predictions/s1", {"input": {"prompt": "x"}}))
    await cog.wait_for_prediction()
    assert await call(http, "POST", cog.base_url + "/predictions/s1/cancel") == (200, {})
    status, pred = await asyncio.wait_for(task, 5)
    assert status == 200
    assert pred["status"] == "canceled"
    assert pred["output"] is None


# ---------------------------------------------------------------- uploads (--upload-url)


async def test_upload_url_puts_raw_bytes(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.location = "https://cdn.example/files/out.wav?X-Amz-Signature=abc"
    async with FakeCog(upload_url=receiver.url + "/upload", auto_complete=True) as cog:
        body = {"id": "u1", "input": {"prompt": "x", "duration": 1}}
        body |= {"webhook": receiver.url + "/hook", "webhook_events_filter": ["completed"]}
        assert (await call(http, "PUT", cog.base_url + "/predictions/u1", body, ASYNC))[0] == 202
        pred = await cog.wait_for_status("u1")
        await cog.drain_webhooks()
    assert pred.status == "succeeded"
    assert pred.output == "https://cdn.example/files/out.wav"
    put = await receiver.next("PUT")
    assert put.path == "/upload/out.wav"
    assert put.headers["Content-Type"] == "audio/x-wav"
    assert put.headers["X-Prediction-ID"] == "u1"
    assert put.headers["User-Agent"].startswith("cog-worker/0.13.7")
    assert wav_info(put.body).duration_s == pytest.approx(1.0)
    assert receiver.hooks()[-1]["output"] == "https://cdn.example/files/out.wav"


async def test_upload_without_location_uses_url_without_query(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeCog() as cog:
        cog.upload_url = receiver.url + "/upload/"  # may be set after start (e.g. once the target's port is known)
        assert (await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}}, ASYNC))[0] == 202
        key = await cog.wait_for_prediction()
        pred = await cog.complete(key)
    assert pred.output == receiver.url + "/upload/out.wav"
    assert "X-Prediction-ID" not in (await receiver.next("PUT")).headers  # no id, no header


async def test_upload_retried_on_503(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.upload_statuses.extend([503, 503])
    async with FakeCog(upload_url=receiver.url + "/upload", auto_complete=True) as cog:
        assert (await call(http, "PUT", cog.base_url + "/predictions/r", {"input": {"prompt": "x"}}, ASYNC))[0] == 202
        pred = await cog.wait_for_status("r")
    assert pred.status == "succeeded"
    assert [(u.status_code, u.attempt) for u in cog.uploads] == [(503, 1), (503, 2), (200, 3)]


async def test_upload_failure_fails_prediction(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    receiver.upload_statuses.extend([503] * 4)
    async with FakeCog(upload_url=receiver.url + "/upload") as cog:
        assert (await call(http, "PUT", cog.base_url + "/predictions/f", {"input": {"prompt": "x"}}, ASYNC))[0] == 202
        pred = await cog.complete("f")
        assert pred.status == "failed"
        assert pred.error == UPLOAD_ERROR
        assert pred.output is None
        assert len(cog.uploads) == 4  # 1 + 3 retries
        receiver.upload_statuses.append(403)  # not retryable
        assert (await call(http, "PUT", cog.base_url + "/predictions/g", {"input": {"prompt": "x"}}, ASYNC))[0] == 202
        assert (await cog.complete("g")).status == "failed"
        assert len(cog.uploads) == 5


# ---------------------------------------------------------------- file inputs


async def test_file_inputs_are_fetched_before_run(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    clip = "data:audio/wav;base64," + base64.b64encode(make_wav(1.0)).decode()
    async with FakeCog(auto_complete=True) as cog:
        body = {"input": {"input_audio": clip, "continuation": True, "duration": 3}}
        status, pred = await call(http, "POST", cog.base_url + "/predictions", body)
        assert status == 200
        assert pred["status"] == "succeeded"
        assert pred["input"]["input_audio"] == clip  # echoed as sent
        assert wav_info(decode_data_url(pred["output"])[1]).duration_s == pytest.approx(3.0)
        missing = receiver.url + "/missing.wav"  # the receiver has no GET route: 404
        status, pred = await call(http, "POST", cog.base_url + "/predictions", {"input": {"input_audio": missing}})
    assert status == 200
    assert pred["status"] == "failed"
    assert "404" in pred["error"]
    assert cog.input_fetches == [clip, missing]


# ---------------------------------------------------------------- misc: custom models, faults, shutdown


async def test_custom_model_outputs_and_complete_override(http: aiohttp.ClientSession) -> None:
    def run(inp: dict[str, Any]) -> tuple[Any, str]:
        return [OutputFile("a.jpg", b"\xff\xd8jpg", "image/jpeg"), OutputFile("b.mp3", b"ID3", "audio/mpeg")], ""

    model = FakeModel(
        owner="me",
        name="m",
        versions=("v",),
        input_schema={"type": "object", "properties": {}},
        output_schema={"type": "array"},
        run=run,
    )
    async with FakeCog(model=model) as cog:
        task = asyncio.create_task(call(http, "POST", cog.base_url + "/predictions", {}))
        await cog.complete(await cog.wait_for_prediction())
        status, pred = await asyncio.wait_for(task, 5)
        assert status == 200
        assert [decode_data_url(u)[0] for u in pred["output"]] == ["image/jpeg", "audio/mpeg"]
        task = asyncio.create_task(call(http, "POST", cog.base_url + "/predictions", {}))
        await cog.complete(await cog.wait_for_prediction(), output={"text": "hi"}, logs="custom\n")
        status, pred = await asyncio.wait_for(task, 5)
    assert pred["output"] == {"text": "hi"}
    assert pred["logs"] == "custom\n"


async def test_fault_injection_and_request_log(cog: FakeCog, http: aiohttp.ClientSession) -> None:
    cog.inject(method="GET", path=r"^/health-check$", status=503, times=1)
    assert (await call(http, "GET", cog.base_url + "/health-check"))[0] == 503
    assert (await call(http, "GET", cog.base_url + "/health-check"))[0] == 200
    cog.inject(path="/predictions", drop=True)
    with pytest.raises(aiohttp.ClientError):
        await call(http, "POST", cog.base_url + "/predictions", {"input": {"prompt": "x"}})
    assert cog.history == []
    req = await cog.next_request("POST", "/predictions")
    assert req.json == {"input": {"prompt": "x"}}
    assert cog.count("GET", "/health-check") == 2


async def test_shutdown_stops_listening(http: aiohttp.ClientSession) -> None:
    async with FakeCog() as cog:
        assert await call(http, "POST", cog.base_url + "/shutdown") == (200, {})
        assert cog.shutdown_requested
        await cog.wait_for_shutdown()
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
            with pytest.raises(aiohttp.ClientConnectionError):
                await fresh.get(cog.base_url + "/health-check")
