"""Self-tests for the Replicate fake (tests/fakes/replicate/) and the WAV helpers (tests/fakes/audio.py).

The models themselves (tests/fakes/models.py) and the PyAV helpers are tested in test_fake_models.py.
"""

from __future__ import annotations

import asyncio
import base64
import copy
import hashlib
import json
import re
import time
from collections import deque
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Any

import aiohttp
import jsonschema
import pytest
from aiohttp import web
from standardwebhooks import Webhook, WebhookVerificationError

from tests.fakes.audio import make_wav, wav_info
from tests.fakes.replicate import (
    DEFAULT_WEBHOOK_SECRET,
    SPEC_PATH,
    FakeReplicate,
    RecordedRequest,
    RunTiming,
    sign_webhook,
    tqdm_line,
)
from tests.selftest.conftest import call, serve

V_NEW = "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
V_OLD = "b05b1dff1d8c6dc63d14b0cdb42135378dcb87f6373b0d3d341ede46e59e2b38"
SPEC = json.loads(SPEC_PATH.read_text())
CLIP_URL = "data:audio/wav;base64," + base64.b64encode(make_wav(2.0, sample_rate=8000, channels=1)).decode()


def _openapi_nullable(node: Any) -> Any:
    """OpenAPI 3.0 ``nullable: true`` -> JSON Schema ``type: [T, "null"]`` so responses can be validated.

    Also ``oneOf`` -> ``anyOf``: the spec's prediction ``version`` is ``oneOf [string, enum ["hidden"]]``,
    which "hidden" matches twice (a spec bug).
    """
    if isinstance(node, dict):
        out = {("anyOf" if k == "oneOf" else k): _openapi_nullable(v) for k, v in node.items()}
        if out.pop("nullable", False) and "type" in out:
            out["type"] = [out["type"], "null"]
        return out
    if isinstance(node, list):
        return [_openapi_nullable(v) for v in node]
    return node


_COMPONENTS = _openapi_nullable(copy.deepcopy(SPEC["components"]))


def assert_matches_spec(body: Any, schema_name: str) -> None:
    schema = {"$ref": f"#/components/schemas/{schema_name}", "components": _COMPONENTS}
    jsonschema.Draft202012Validator(schema).validate(body)


def parse_ts(value: str) -> datetime:
    assert value.endswith("Z"), value
    return datetime.fromisoformat(value)


class Receiver:
    """A webhook endpoint that verifies signatures with the standardwebhooks library."""

    def __init__(self) -> None:
        self.received: list[tuple[dict[str, str], bytes, bool]] = []
        self.statuses: deque[int] = deque()  # answers to give before falling back to 200
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body, headers = await request.read(), dict(request.headers)
        try:
            Webhook(DEFAULT_WEBHOOK_SECRET).verify(body, headers)
            valid = True
        except WebhookVerificationError:
            valid = False
        self.received.append((headers, body, valid))
        if not valid:
            return web.Response(status=401)
        return web.Response(status=self.statuses.popleft() if self.statuses else 200)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    async with serve(web.post("/hook", rec.handle)) as url:
        rec.url = f"{url}/hook"
        yield rec


async def create(http: aiohttp.ClientSession, fake: FakeReplicate, **body: Any) -> dict[str, Any]:
    body.setdefault("version", f"meta/musicgen:{V_NEW}")
    body.setdefault("input", {"prompt": "lofi beat", "duration": 2})
    status, data, _ = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    assert status == 201, data
    return data


# ---------------------------------------------------------------- audio helpers


def test_make_wav_and_wav_info() -> None:
    started = time.perf_counter()
    data = make_wav(30.0)
    assert time.perf_counter() - started < 0.5
    info = wav_info(data)
    assert (info.duration_s, info.sample_rate, info.channels, info.frames) == (30.0, 32000, 2, 960000)
    mono = wav_info(make_wav(1.25, sample_rate=8000, channels=1, freq_hz=1000))
    assert (mono.duration_s, mono.channels, mono.frames) == (1.25, 1, 10000)
    pcm = make_wav(0.1, channels=1)[44:]
    assert max(abs(int.from_bytes(pcm[i : i + 2], "little", signed=True)) for i in range(0, len(pcm), 2)) > 10000
    for bad in (b"", b"not a wav at all", data[:1000]):
        with pytest.raises(ValueError, match="WAV"):
            wav_info(bad)


# ---------------------------------------------------------------- auth, creation, validation


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Token r8_fake_token_0123456789", "r8_fake_token_0123456789"])
async def test_auth_required(fake: FakeReplicate, header: str | None) -> None:
    headers = {"Authorization": header} if header else {}
    async with aiohttp.ClientSession(headers=headers) as s:
        status, body, resp = await call(s, "GET", f"{fake.base_url}/predictions")
    assert status == 401
    assert resp.content_type == "application/problem+json"
    assert body == {
        "title": "Unauthenticated",
        "detail": "You did not pass a valid authentication token",
        "status": 401,
    }


@pytest.mark.parametrize(
    ("version", "expected"),
    [(f"meta/musicgen:{V_NEW}", V_NEW), (V_NEW, V_NEW), (f"meta/musicgen:{V_OLD}", V_OLD), ("meta/musicgen", "hidden")],
)
async def test_create_version_forms(
    fake: FakeReplicate, http: aiohttp.ClientSession, version: str, expected: str
) -> None:
    pred = await create(http, fake, version=version)
    assert_matches_spec(pred, "schemas_prediction_response")
    assert (pred["model"], pred["version"], pred["status"], pred["source"]) == (
        "meta/musicgen",
        expected,
        "starting",
        "api",
    )
    assert pred["output"] is None
    assert pred["error"] is None
    assert pred["data_removed"] is False
    assert len(pred["id"]) == 26
    assert pred["id"].isalnum()
    assert pred["id"].islower()
    assert pred["urls"]["get"] == f"{fake.base_url}/predictions/{pred['id']}"
    assert pred["urls"]["cancel"] == f"{fake.base_url}/predictions/{pred['id']}/cancel"
    assert "started_at" not in pred
    assert "metrics" not in pred
    assert await fake.wait_for_prediction() == pred["id"]


async def test_create_on_models_route(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/models/meta/musicgen/predictions"
    status, pred, _ = await call(http, "POST", url, json={"input": {"prompt": "x"}})
    assert status == 201
    assert pred["version"] == "hidden"
    assert pred["model"] == "meta/musicgen"
    status, body, resp = await call(http, "POST", f"{fake.base_url}/models/meta/nope/predictions", json={"input": {}})
    assert status == 404
    assert resp.content_type == "application/problem+json"
    assert body["status"] == 404
    # The models-route schema has no `version` key, and it forbids extra keys.
    status, body, _ = await call(http, "POST", url, json={"version": V_NEW, "input": {"prompt": "x"}})
    assert status == 422
    assert body["invalid_fields"][0]["type"] == "additional_property_not_allowed"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            {"version": V_NEW, "input": {"prompt": "x"}, "extra": 1},
            {
                "type": "additional_property_not_allowed",
                "field": "(root)",
                "description": "Additional property extra is not allowed",
            },
        ),
        ({"version": V_NEW}, {"type": "required", "field": "(root)", "description": "input is required"}),
        (
            {"version": V_NEW, "input": {"prompt": "x"}, "webhook_events_filter": ["done"]},
            {
                "type": "enum",
                "field": "webhook_events_filter.0",
                "description": "webhook_events_filter.0 must be one of the following: "
                '"start", "output", "logs", "completed"',
            },
        ),
        (
            {"version": V_NEW, "input": "prompt"},
            {"type": "invalid_type", "field": "input", "description": "Invalid type. Expected: object, given: string"},
        ),
    ],
)
async def test_spec_validation(
    fake: FakeReplicate, http: aiohttp.ClientSession, body: dict[str, Any], expected: dict[str, str]
) -> None:
    status, data, resp = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    assert status == 422
    assert resp.content_type == "application/problem+json"
    assert data["title"] == "Input validation failed"
    assert data["status"] == 422
    assert data["invalid_fields"] == [expected]
    assert fake.predictions == {}


async def test_input_validation(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    bad = {
        "prompt": "x",
        "duration": "8",
        "model_version": "small",
        "continuation_start": -1,
        "input_audio": "not a url",
        "top_p": "high",
        "seed": None,
        "unknown_key": "ignored like Replicate does",
    }
    status, data, _ = await call(http, "POST", f"{fake.base_url}/predictions", json={"version": V_NEW, "input": bad})
    assert status == 422
    assert data["title"] == "Input validation failed"
    by_field = {f["field"]: f for f in data["invalid_fields"]}
    assert set(by_field) == {
        "input.duration",
        "input.model_version",
        "input.continuation_start",
        "input.input_audio",
        "input.top_p",
        "input.seed",
    }
    assert by_field["input.duration"]["description"] == "Invalid type. Expected: integer, given: string"
    assert by_field["input.model_version"]["type"] == "enum"
    assert by_field["input.continuation_start"]["type"] == "number_gte"
    assert by_field["input.input_audio"]["type"] == "format"
    assert "- input.duration: Invalid type" in data["detail"]
    ok = {"prompt": "x", "input_audio": "data:audio/wav;base64,AAAA", "top_p": 0, "unknown_key": 1}
    await create(http, fake, input=ok)


@pytest.mark.parametrize(
    "version", [f"meta/musicgen:{'0' * 64}", "0" * 64, "meta/other", "acme/musicgen:" + V_NEW, "junk"]
)
async def test_unknown_version(fake: FakeReplicate, http: aiohttp.ClientSession, version: str) -> None:
    status, data, resp = await call(
        http, "POST", f"{fake.base_url}/predictions", json={"version": version, "input": {}}
    )
    assert status == 422
    assert resp.content_type == "application/problem+json"
    assert data["title"] == "Invalid version or not permitted"


async def test_get_unknown_prediction_404(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    for method, path in [("GET", "/predictions/nope"), ("POST", "/predictions/nope/cancel"), ("GET", "/nothing")]:
        status, data, resp = await call(http, method, fake.base_url + path)
        assert status == 404
        assert resp.content_type == "application/problem+json"
        assert data["status"] == 404


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://bot.example.com/hook", True),
        ("http://127.0.0.1:9/hook", True),
        ("http://localhost:9/hook", True),
        ("http://bot.example.com/hook", False),
        ("ftp://bot.example.com/hook", False),
        ("not a url", False),
    ],
)
async def test_webhook_url_rule(fake: FakeReplicate, http: aiohttp.ClientSession, url: str, ok: bool) -> None:
    body = {"version": V_NEW, "input": {"prompt": "x"}, "webhook": url}
    status, data, _ = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    assert status == (201 if ok else 422), data
    if not ok:
        assert data["invalid_fields"][0]["field"] == "webhook"


# ---------------------------------------------------------------- lifecycle


async def test_manual_progression(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    pred = await create(http, fake, input={"prompt": "x", "duration": 3, "seed": 42})
    pid = await fake.wait_for_prediction()
    get = pred["urls"]["get"]
    assert (await call(http, "GET", get))[1]["status"] == "starting"
    await fake.begin(pid)
    _, mid, _ = await call(http, "GET", get)
    assert mid["status"] == "processing"
    assert parse_ts(mid["started_at"]) >= parse_ts(mid["created_at"])
    assert "metrics" not in mid
    assert "completed_at" not in mid
    await fake.succeed(pid)
    _, done, _ = await call(http, "GET", get)
    assert_matches_spec(done, "schemas_prediction_response")
    assert done["status"] == "succeeded"
    assert done["error"] is None
    assert parse_ts(done["completed_at"]) >= parse_ts(done["started_at"])
    assert done["metrics"]["predict_time"] >= 0
    assert done["metrics"]["total_time"] >= done["metrics"]["predict_time"]
    assert "Using seed 42" in done["logs"]
    assert done["output"] == f"{fake.root_url}/delivery/{pid}/out.wav"
    with pytest.raises(RuntimeError, match="succeeded"):
        await fake.begin(pid)


async def test_auto_advance(http: aiohttp.ClientSession) -> None:
    async with FakeReplicate(auto_advance=True) as fake:
        pred = await create(http, fake)
        statuses = [(await call(http, "GET", pred["urls"]["get"]))[1]["status"] for _ in range(3)]
        assert statuses == ["processing", "succeeded", "succeeded"]


@pytest.mark.parametrize(
    ("model_version", "duration", "channels"), [("stereo-melody-large", 3, 2), ("melody-large", 2, 1), (None, 1, 2)]
)
async def test_output_is_wav(
    fake: FakeReplicate, http: aiohttp.ClientSession, model_version: str | None, duration: int, channels: int
) -> None:
    inp: dict[str, Any] = {"prompt": "x", "duration": duration}
    if model_version:
        inp["model_version"] = model_version
    pred = await create(http, fake, input=inp)
    await fake.succeed(pred["id"])
    _, done, _ = await call(http, "GET", pred["urls"]["get"])
    status, data, resp = await call(http, "GET", done["output"])
    assert status == 200
    assert resp.content_type == "audio/wav"
    info = wav_info(data)
    assert (info.duration_s, info.channels, info.sample_rate) == (duration, channels, 32000)


@pytest.mark.parametrize(
    ("inp", "error"),
    [
        ({"duration": 2}, "Must provide either prompt or input_audio"),
        ({"prompt": "x", "continuation": True}, "Must provide `input_audio` if continuation is `True`."),
        (
            {"prompt": "x", "model_version": "stereo-large", "input_audio": CLIP_URL},
            "`stereo-large` and `large` model does not support melody input",
        ),
        (
            {"prompt": "x", "multi_band_diffusion": True},
            "Multi-Band Diffusion is only available with non-stereo models.",
        ),
        (
            {
                "input_audio": CLIP_URL,
                "continuation": True,
                "continuation_start": 9,
                "continuation_end": 3,
            },
            "`continuation_start` must be less than or equal to `continuation_end`",
        ),
    ],
)
async def test_model_failure_rules(
    fake: FakeReplicate, http: aiohttp.ClientSession, inp: dict[str, Any], error: str
) -> None:
    pred = await create(http, fake, input=inp)  # accepted at create time, like the real model
    await fake.succeed(pred["id"])
    _, done, _ = await call(http, "GET", pred["urls"]["get"])
    assert done["status"] == "failed"
    assert done["error"].startswith(error)
    assert done["output"] is None
    assert "metrics" in done


async def test_fail_abort_cancel(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    a, b, c = [await create(http, fake) for _ in range(3)]
    await fake.fail(a["id"], "CUDA out of memory")
    await fake.abort(b["id"])
    await fake.begin(c["id"])
    status, canceled, _ = await call(http, "POST", c["urls"]["cancel"])
    assert status == 200
    assert canceled["status"] == "canceled"
    assert "completed_at" in canceled
    assert fake.prediction(a["id"]).error == "CUDA out of memory"
    assert fake.prediction(b["id"]).status == "aborted"
    for p in (a, b, c):  # canceling a terminal prediction returns it unchanged
        before = (await call(http, "GET", p["urls"]["get"]))[1]
        status, after, _ = await call(http, "POST", p["urls"]["cancel"])
        assert status == 200
        assert after == before
    with pytest.raises(RuntimeError):
        await fake.succeed(c["id"])


async def test_cancel_after_deadline(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    url = f"{fake.base_url}/predictions"
    body = {"version": V_NEW, "input": {"prompt": "x"}}
    for value, seconds in [("5m", 300), ("1h30m45s", 5445), ("30", 30), ("7.5s", 7.5)]:
        status, pred, _ = await call(http, "POST", url, json=body, headers={"Cancel-After": value})
        assert status == 201
        assert parse_ts(pred["deadline"]) - parse_ts(pred["created_at"]) == timedelta(seconds=seconds)
    await fake.hit_deadline(pred["id"])
    assert fake.prediction(pred["id"]).status == "aborted"
    for value in ("4s", "soon", "5x"):
        status, data, _ = await call(http, "POST", url, json=body, headers={"Cancel-After": value})
        assert status == 400
        assert data["status"] == 400


async def test_list_pagination(http: aiohttp.ClientSession) -> None:
    async with FakeReplicate(page_size=2) as fake:
        ids = [(await create(http, fake))["id"] for _ in range(5)]
        url: str | None = f"{fake.base_url}/predictions"
        seen: list[str] = []
        pages: list[dict[str, Any]] = []
        while url:
            status, page, _ = await call(http, "GET", url)
            assert status == 200
            assert_matches_spec(page, "schemas_paginated_prediction_response")
            pages.append(page)
            seen += [p["id"] for p in page["results"]]
            url = page["next"]
        assert seen == ids[::-1]
        assert [len(p["results"]) for p in pages] == [2, 2, 1]
        assert pages[0]["previous"] is None
        assert pages[1]["next"].startswith(f"{fake.base_url}/predictions?cursor=")
        _, back, _ = await call(http, "GET", pages[1]["previous"])
        assert back["results"] == pages[0]["results"]
        status, _, _ = await call(http, "GET", f"{fake.base_url}/predictions?cursor=garbage")
        assert status == 400


# ---------------------------------------------------------------- sync mode


async def test_prefer_wait_returns_finished(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    body = {"version": V_NEW, "input": {"prompt": "x", "duration": 1}}
    task = asyncio.create_task(
        call(http, "POST", f"{fake.base_url}/predictions", json=body, headers={"Prefer": "wait=30"})
    )
    pid = await fake.wait_for_prediction()
    assert not task.done()
    await fake.succeed(pid)
    status, pred, _ = await task
    assert status == 201
    assert pred["status"] == "succeeded"
    assert pred["output"].endswith("/out.wav")


async def test_prefer_wait_times_out_and_validates(http: aiohttp.ClientSession) -> None:
    async with FakeReplicate(prefer_wait_scale=0.01) as fake:
        url, body = f"{fake.base_url}/predictions", {"version": V_NEW, "input": {"prompt": "x"}}
        status, pred, _ = await call(http, "POST", url, json=body, headers={"Prefer": "wait=1"})
        assert status == 202
        assert pred["status"] == "starting"
        for value in ("wait=0", "wait=61", "wait=99", "respond-async"):
            status, _, _ = await call(http, "POST", url, json=body, headers={"Prefer": value})
            assert status == 400, value
    async with FakeReplicate(auto_advance=True) as fake:
        status, pred, _ = await call(
            http, "POST", f"{fake.base_url}/predictions", json=body, headers={"Prefer": "wait"}
        )
        assert status == 201
        assert pred["status"] == "succeeded"


# ---------------------------------------------------------------- webhooks


async def test_webhooks_signed_and_filtered(
    fake: FakeReplicate, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    status, secret, _ = await call(http, "GET", f"{fake.base_url}/webhooks/default/secret")
    assert status == 200
    assert secret == {"key": DEFAULT_WEBHOOK_SECRET}
    assert secret["key"].startswith("whsec_")
    pred = await create(http, fake, webhook=receiver.url, webhook_events_filter=["start", "completed"])
    await fake.begin(pred["id"])
    start = await fake.next_webhook_delivery()
    assert (start.event, start.status_code, start.attempt) == ("start", 200, 1)
    await fake.succeed(pred["id"])
    done = await fake.next_webhook_delivery()
    assert (done.event, done.status_code) == ("completed", 200)
    assert done.webhook_id != start.webhook_id
    assert [valid for _, _, valid in receiver.received] == [True, True]
    headers, body, _ = receiver.received[1]
    assert Webhook(secret["key"]).verify(body, headers)["status"] == "succeeded"
    assert headers["webhook-signature"] == sign_webhook(
        secret["key"], headers["webhook-id"], int(headers["webhook-timestamp"]), body
    )
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    assert json.loads(body)["status"] == "succeeded"
    assert json.loads(receiver.received[0][1])["status"] == "processing"


async def test_webhook_default_filter_and_duplicates(
    fake: FakeReplicate, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    pred = await create(http, fake, webhook=receiver.url)  # no filter: output + completed, so no start
    await fake.begin(pred["id"])
    await fake.succeed(pred["id"], duplicate_webhook=2)
    deliveries = [await fake.next_webhook_delivery() for _ in range(3)]
    assert {d.event for d in deliveries} == {"completed"}
    assert len({d.webhook_id for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    await fake.drain_webhooks()
    assert len(receiver.received) == 3 == len(fake.webhook_deliveries)


async def test_webhook_reorder(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeReplicate(reorder_webhooks=True) as fake:
        pred = await create(http, fake, webhook=receiver.url, webhook_events_filter=["start", "completed"])
        await fake.begin(pred["id"])
        await fake.succeed(pred["id"])
        events = [(await fake.next_webhook_delivery()).event for _ in range(2)]
        assert events == ["completed", "start"]
        assert [json.loads(b)["status"] for _, b, _ in receiver.received] == ["succeeded", "processing"]


async def test_final_webhook_retried(http: aiohttp.ClientSession, receiver: Receiver) -> None:
    async with FakeReplicate(webhook_retries=3) as fake:
        receiver.statuses.extend([500, 503, 200])
        pred = await create(http, fake, webhook=receiver.url)
        await fake.fail(pred["id"], "boom")
        tries = [await fake.next_webhook_delivery() for _ in range(3)]
        assert [(t.status_code, t.attempt) for t in tries] == [(500, 1), (503, 2), (200, 3)]
        assert len({t.webhook_id for t in tries}) == 1
        await fake.drain_webhooks()
        assert len(fake.webhook_deliveries) == 3
    async with FakeReplicate(webhook_retries=2) as fake:  # unreachable receiver: connection errors
        pred = await create(http, fake, webhook="http://127.0.0.1:1/hook")
        await fake.succeed(pred["id"])
        await fake.drain_webhooks()
        assert [(d.status_code, d.attempt) for d in fake.webhook_deliveries] == [(None, 1), (None, 2), (None, 3)]


async def test_held_webhooks_arrive_late_in_order(
    fake: FakeReplicate, http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    held = await create(http, fake, webhook=receiver.url, webhook_events_filter=["start", "completed"])
    other = await create(http, fake, webhook=receiver.url, webhook_events_filter=["completed"])
    fake.hold_webhooks(held["id"])
    await fake.begin(held["id"])
    await fake.succeed(held["id"], duplicate_webhook=1)
    await fake.succeed(other["id"])
    first = await fake.next_webhook_delivery()
    assert first.prediction_id == other["id"]  # not held: it overtakes the held ones
    assert [d.prediction_id for d in fake.webhook_deliveries] == [other["id"]]
    fake.release_webhooks(held["id"])
    late = await fake.wait_for_webhook_deliveries(held["id"], 3)
    assert [(d.prediction_id, d.event, d.status_code) for d in late] == [
        (held["id"], "start", 200),
        (held["id"], "completed", 200),
        (held["id"], "completed", 200),
    ]
    assert json.loads(late[1].body)["status"] == "succeeded"
    fake.release_webhooks(held["id"])  # releasing twice is harmless
    await fake.drain_webhooks()


async def test_send_webhook_forgeries(fake: FakeReplicate, http: aiohttp.ClientSession, receiver: Receiver) -> None:
    pred = await create(http, fake, webhook=receiver.url)
    pid = pred["id"]
    assert await fake.send_webhook(pid) == 200
    assert await fake.send_webhook(pid, signature="v1,Zm9yZ2Vk") == 401
    assert await fake.send_webhook(pid, timestamp=int(time.time()) - 3600) == 401
    assert await fake.send_webhook(pid, body=b'{"id": "tampered"}', signature=None) == 200  # re-signed: valid
    assert await fake.send_webhook(pid, omit_headers=["webhook-signature"]) == 401
    wid = "msg_replayed"
    assert await fake.send_webhook(pid, webhook_id=wid) == 200
    assert await fake.send_webhook(pid, webhook_id=wid) == 200  # our receiver is not idempotent; the bot's must be
    assert [v for _, _, v in receiver.received] == [True, False, False, True, False, True, True]
    assert fake.webhook_deliveries == []  # hand-made sends are not recorded


# ---------------------------------------------------------------- fault injection


async def test_inject_429_and_500(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    fault = fake.inject(method="POST", path=r"^/v1/predictions$", status=429, headers={"Retry-After": "2"})
    status, body, resp = await call(http, "POST", f"{fake.base_url}/predictions", json={"version": V_NEW, "input": {}})
    assert status == 429
    assert resp.headers["Retry-After"] == "2"
    assert body == {"detail": "Request was throttled. Your rate limit resets in ~30s."}
    assert fault.hits == 1
    assert fake.predictions == {}
    await create(http, fake)  # times=1: the next request goes through
    fake.inject(path="/predictions/", status=503, times=2)
    pid = next(iter(fake.predictions))
    for _ in range(2):
        status, body, resp = await call(http, "GET", f"{fake.base_url}/predictions/{pid}")
        assert status == 503
        assert resp.content_type == "application/problem+json"
        assert body["status"] == 503
    assert (await call(http, "GET", f"{fake.base_url}/predictions/{pid}"))[0] == 200


async def test_inject_when_picks_the_requests(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    def unlucky(request: RecordedRequest) -> bool:
        return isinstance(request.json, dict) and request.json["input"]["prompt"].startswith("unlucky")

    throttle = fake.inject(
        method="POST", path=r"^/v1/predictions$", status=429, headers={"Retry-After": "1"}, times=None, when=unlucky
    )
    unavailable = fake.inject(method="POST", status=503, times=None, when=lambda r: r.json is not None)
    body = {"version": f"meta/musicgen:{V_NEW}", "input": {"prompt": "unlucky one", "duration": 1}}
    for _ in range(2):
        status, _, resp = await call(http, "POST", f"{fake.base_url}/predictions", json=body)
        assert (status, resp.headers["Retry-After"]) == (429, "1")
    assert (await call(http, "POST", f"{fake.base_url}/predictions", json={**body, "input": {"prompt": "x"}}))[0] == 503
    assert (throttle.hits, unavailable.hits) == (2, 1)  # the first matching fault answers
    assert fake.predictions == {}
    fake.faults.clear()
    await create(http, fake)


async def test_inject_delay_and_drops(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    fake.inject(path="/predictions", status=None, delay_s=0.5)
    with pytest.raises(asyncio.TimeoutError):
        await call(http, "GET", f"{fake.base_url}/predictions", timeout=aiohttp.ClientTimeout(total=0.05))
    fake.inject(path="/predictions", status=None, delay_s=0.01)
    assert (await call(http, "GET", f"{fake.base_url}/predictions"))[0] == 200  # slow but fine
    body = {"version": V_NEW, "input": {"prompt": "x"}}
    fake.inject(method="POST", path="/predictions$", drop=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    assert fake.predictions == {}
    fake.inject(method="POST", path="/predictions$", drop_after_create=True)
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await call(http, "POST", f"{fake.base_url}/predictions", json=body)
    pid = await fake.wait_for_prediction()
    assert fake.prediction(pid).status == "starting"
    assert fake.count("POST", "/v1/predictions") == 2


# ---------------------------------------------------------------- files, outputs, models, request log


async def test_files_api(http: aiohttp.ClientSession) -> None:
    async with FakeReplicate(max_file_bytes=4096) as fake:
        content = make_wav(0.01, channels=1)
        form = aiohttp.FormData()
        form.add_field("content", content, filename="clip.wav", content_type="audio/wav")
        form.add_field("metadata", json.dumps({"guild": 1}), content_type="application/json")
        status, file, _ = await call(http, "POST", f"{fake.base_url}/files", data=form)
        assert status == 201
        assert_matches_spec(file, "schemas_file_response")
        assert file["urls"]["get"] == f"{fake.base_url}/files/{file['id']}"
        assert (file["size"], file["content_type"], file["metadata"]) == (len(content), "audio/wav", {"guild": 1})
        assert file["checksums"]["sha256"] == hashlib.sha256(content).hexdigest()
        assert (await call(http, "GET", file["urls"]["get"]))[1] == file
        assert (await call(http, "GET", file["urls"]["get"] + "/download"))[1] == content
        assert (await call(http, "GET", f"{fake.base_url}/files"))[1]["results"] == [file]
        assert (await call(http, "DELETE", file["urls"]["get"]))[0] == 204
        assert (await call(http, "GET", file["urls"]["get"]))[0] == 404
        big = aiohttp.FormData()
        big.add_field("content", b"x" * 5000, filename="big.bin")
        status, _body, resp = await call(http, "POST", f"{fake.base_url}/files", data=big)
        assert status == 413
        assert resp.content_type == "application/problem+json"
        empty = aiohttp.FormData()
        empty.add_field("metadata", "{}")
        assert (await call(http, "POST", f"{fake.base_url}/files", data=empty))[0] == 400


async def test_expire_outputs(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    pred = await create(http, fake)
    await fake.succeed(pred["id"])
    _, done, _ = await call(http, "GET", pred["urls"]["get"])
    assert (await call(http, "GET", done["output"]))[0] == 200
    fake.expire_outputs(pred["id"])
    _, gone, _ = await call(http, "GET", pred["urls"]["get"])
    assert gone["output"] is None
    assert gone["data_removed"] is True
    assert gone["status"] == "succeeded"
    assert (await call(http, "GET", done["output"]))[0] == 404


async def test_models_endpoint(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    status, model, _ = await call(http, "GET", f"{fake.base_url}/models/meta/musicgen")
    assert status == 200
    assert_matches_spec(model, "schemas_model_response")
    assert model["latest_version"]["id"] == V_NEW
    assert model["is_official"] is True
    props = model["latest_version"]["openapi_schema"]["components"]["schemas"]["Input"]["properties"]
    assert props["output_format"]["enum"] == ["wav", "mp3"]
    assert (await call(http, "GET", f"{fake.base_url}/models/meta/musicgen/versions/{V_OLD}"))[1]["id"] == V_OLD
    assert (await call(http, "GET", f"{fake.base_url}/models/acme/none"))[0] == 404


async def test_request_log(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    pred = await create(http, fake)
    await call(http, "GET", pred["urls"]["get"] + "?x=1")
    req = await fake.next_request("POST", "/v1/predictions")
    assert req.json == {"version": f"meta/musicgen:{V_NEW}", "input": {"prompt": "lofi beat", "duration": 2}}
    assert req.headers["authorization"] == f"Bearer {fake.token}"
    got = await fake.next_request("GET")
    assert got.path == f"/v1/predictions/{pred['id']}"
    assert got.query == {"x": "1"}
    assert got.json is None
    with pytest.raises(TimeoutError):
        await fake.next_request("GET", timeout=0.01)
    assert fake.count("GET", "/v1/predictions/") == 1
    assert fake.count() == 2


async def test_list_filters(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    pred = await create(http, fake)
    created = parse_ts(pred["created_at"])
    url = f"{fake.base_url}/predictions"
    for query, expected in [
        ({"created_after": (created - timedelta(seconds=1)).isoformat()}, [pred["id"]]),
        ({"created_before": (created - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")}, []),
        ({"source": "web"}, []),
    ]:
        status, page, _ = await call(http, "GET", url, params=query)
        assert status == 200
        assert [p["id"] for p in page["results"]] == expected
    assert (await call(http, "GET", url, params={"created_after": "yesterday"}))[0] == 400


# ---------------------------------------------------------------- runs that take time, progress in the logs

QUICK_RUNS = RunTiming(
    seed=3, queue_s=(0.02, 0.05), setup_s=(0.02, 0.05), rate_it_s=400.0, after_bar_s=0.05, update_s=0.02
)


async def test_timed_runs_print_tqdm_bars_and_end_by_themselves(http: aiohttp.ClientSession) -> None:
    async with FakeReplicate(timing=QUICK_RUNS) as fake:
        preds = [await create(http, fake, input={"prompt": f"p{i}", "duration": 2, "seed": 5}) for i in range(3)]
        assert {p["status"] for p in preds} == {"starting"}
        done = [await fake.wait_for_status(p["id"], timeout=20) for p in preds]
        assert {d.status for d in done} == {"succeeded"}
        runs = []
        for pred in done:
            _, body, _ = await call(http, "GET", f"{fake.base_url}/predictions/{pred.id}")
            logs = body["logs"]
            prelude, _, bar = logs.partition("\r")
            assert "Using seed 5" in prelude  # the model's own lines come first
            assert logs.endswith("]\n")  # a newline after the last update, as tqdm closes a bar
            updates = bar.rstrip("\n").split("\r")
            assert updates[0] == "  0%|          | 0/103 [00:00<?, ?it/s]"  # 50 steps a second of audio, + 3
            assert updates[-1].startswith("100%|██████████| 103/103 [")
            counts = [int(match[1]) for u in updates if (match := re.search(r"\| (\d+)/103 \[", u))]
            assert len(counts) == len(updates)
            assert counts == sorted(counts)
            meter = r"\s*\d+%\|.{10}\| \d+/103 \[\d\d:\d\d<(\d\d:\d\d|\?), [ \d.?]+it/s\]"
            assert all(re.fullmatch(meter, u) for u in updates)
            runs.append(body["metrics"]["predict_time"])
        assert len(set(runs)) == 3  # each prediction its own time
    # The same seed gives the same plans, in the same order of creation.
    plans = [QUICK_RUNS.plan(seq, fake.models["meta/musicgen"], {"duration": 2}) for seq in (1, 2, 1)]
    assert plans[0].rate_it_s == plans[2].rate_it_s != plans[1].rate_it_s
    assert plans[0].after_bar_s == plans[2].after_bar_s


async def test_logs_webhooks_at_most_every_500_ms_and_none_after_completed(
    http: aiohttp.ClientSession, receiver: Receiver
) -> None:
    async with FakeReplicate() as fake:
        pred = await create(http, fake, webhook=receiver.url, webhook_events_filter=["start", "logs", "completed"])
        await fake.begin(pred["id"])
        for n in range(0, 103, 5):  # a flood of progress: 21 updates at once
            await fake.progress(pred["id"], n, 103, rate=50.0)
        sent = await fake.wait_for_webhook_deliveries(pred["id"], 3)  # start, the first logs, a later one
        assert [d.event for d in sent] == ["start", "logs", "logs"]
        assert sent[2].at - sent[1].at >= 0.45  # held back to 500 ms after the first
        assert json.loads(sent[2].body)["logs"].endswith(tqdm_line(100, 103, 2.0, 50.0))  # carrying the newest
        await fake.progress(pred["id"], 103, 103, rate=50.0)  # a logs webhook is due in 500 ms...
        await fake.succeed(pred["id"])  # ...but the prediction ends first
        await fake.drain_webhooks()
        events = [d.event for d in fake.webhook_deliveries]
        assert events == ["start", "logs", "logs", "completed"]
        final = json.loads(fake.webhook_deliveries[-1].body)
        assert final["logs"].startswith("Loading model")
        assert final["logs"].endswith("| 103/103 [00:02<00:00, 50.00it/s]\n")
    async with FakeReplicate() as fake:  # without `logs` in the filter, progress sends nothing
        pred = await create(http, fake, webhook=receiver.url, webhook_events_filter=["completed"])
        await fake.begin(pred["id"])
        await fake.progress(pred["id"], 10, 103, rate=50.0)
        await fake.drain_webhooks()
        assert fake.webhook_deliveries == []
        with pytest.raises(RuntimeError, match="expected one of"):
            await fake.progress((await create(http, fake))["id"], 1, 103)  # still starting: no bar yet


# ---------------------------------------------------------------- the account's rate limits, predictions at once


async def test_the_account_s_rate_limits_are_enforced(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    assert fake.rate_limits == {"create": 600, "other": 3000}  # Replicate's documented limits, by default
    fake.rate_limits = {"create": 2, "other": 3}
    first = await create(http, fake)
    await create(http, fake)
    status, body, _ = await call(http, "POST", f"{fake.base_url}/predictions", json={"version": V_NEW, "input": {}})
    assert (status, body) == (429, {"detail": "Request was throttled. Your rate limit resets in ~30s."})
    assert len(fake.predictions) == 2  # the refused create made nothing
    for _ in range(3):  # other calls have a budget of their own
        assert (await call(http, "GET", f"{fake.base_url}/predictions/{first['id']}"))[0] == 200
    assert (await call(http, "GET", f"{fake.base_url}/predictions"))[0] == 429
    async with aiohttp.ClientSession(headers={"Authorization": "Bearer r8_someone_else"}) as stranger:
        assert (await call(stranger, "GET", f"{fake.base_url}/predictions"))[0] == 401  # auth first: not counted
    assert fake.throttled == {"create": 1, "other": 1}
    assert (fake.most_in_any_window("create"), fake.most_in_any_window("other")) == (2, 3)


async def test_predictions_unfinished_at_once_are_counted(fake: FakeReplicate, http: aiohttp.ClientSession) -> None:
    one, two = await create(http, fake), await create(http, fake)
    assert (fake.in_flight, fake.max_in_flight) == (2, 2)
    await fake.fail(one["id"])
    await call(http, "POST", f"{fake.base_url}/predictions/{two['id']}/cancel")
    await call(http, "POST", f"{fake.base_url}/predictions/{two['id']}/cancel")  # twice: counted once
    await create(http, fake)
    assert (fake.in_flight, fake.max_in_flight) == (1, 2)


async def test_an_answer_can_be_held_after_the_prediction_is_made(
    fake: FakeReplicate, http: aiohttp.ClientSession
) -> None:
    release = asyncio.Event()
    fake.inject(method="POST", path="^/v1/predictions$", status=None, answer_when=release)
    answer = asyncio.create_task(create(http, fake))
    pid = await fake.wait_for_prediction()  # made before its answer leaves
    assert not answer.done()
    release.set()
    assert (await answer)["id"] == pid
