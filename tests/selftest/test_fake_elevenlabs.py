"""Self-tests for the fake ElevenLabs Music API (tests/fakes/elevenlabs/), through a plain aiohttp client."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re
import zipfile
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.fakes.audio import audio_info, make_mp3, make_wav
from tests.fakes.elevenlabs import (
    ERRORS,
    FakeElevenLabs,
    Generation,
    Separation,
    Transfer,
    plan_length_ms,
    plan_lyrics,
    read_manifest,
    validate_generation,
)
from tests.selftest.conftest import call

V1_PLAN: dict[str, Any] = {
    "positive_global_styles": ["lo-fi", "warm"],
    "negative_global_styles": ["metal"],
    "sections": [
        {
            "section_name": "Intro",
            "positive_local_styles": ["soft piano"],
            "negative_local_styles": [],
            "duration_ms": 3000,
            "lines": [],
        },
        {
            "section_name": "Verse",
            "positive_local_styles": [],
            "negative_local_styles": [],
            "duration_ms": 4000,
            "lines": ["rain on the window", "coffee gone cold"],
        },
    ],
}
V2_PLAN: dict[str, Any] = {
    "chunks": [
        {"text": "[Intro]\n{soft piano}", "duration_ms": 3000, "positive_styles": ["lo-fi"]},
        {
            "text": "[Verse]\nrain on the window",
            "duration_ms": 3000,
            "positive_styles": ["lo-fi"],
            "negative_styles": [],
        },
    ]
}


@pytest.fixture
async def el() -> AsyncIterator[FakeElevenLabs]:
    async with FakeElevenLabs(default_length_ms=4000) as fake:
        yield fake


@pytest.fixture
async def http(el: FakeElevenLabs) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(headers={"xi-api-key": el.api_key}) as session:
        yield session


async def post(
    http: aiohttp.ClientSession, el: FakeElevenLabs, path: str, body: Any = None, **params: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    return await call(http, "POST", f"{el.base_url}{path}", json=body, params=params)


def with_plan(plan: dict[str, Any], path: list[Any], value: Any) -> dict[str, Any]:
    """A deep copy of ``plan`` with the item at ``path`` set to ``value``."""
    out = json.loads(json.dumps(plan))
    target = out
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return out


# ---------------------------------------------------------------- strict parsers written for these tests


def boundary_of(content_type: str) -> bytes:
    m = re.fullmatch(r'multipart/mixed; boundary=(?:"((?:[^"\\]|\\.)*)"|([^";\s]+))', content_type)
    assert m is not None, content_type
    return (m[1] if m[1] is not None else m[2]).encode()


def parse_multipart(body: bytes, content_type: str, newline: bytes = b"\r\n") -> list[tuple[dict[str, str], bytes]]:
    """RFC 2046 5.1.1: a part's body runs to the newline before the next ``--B``; ``--B--`` closes."""
    dash = b"--" + boundary_of(content_type)
    delimiter = newline + dash
    if not body.startswith(dash):
        raise ValueError("no opening delimiter")
    pos, parts = len(dash), []
    while True:
        if body.startswith(b"--", pos):
            epilogue = body[pos + 2 :]
            if epilogue and not epilogue.startswith(newline):
                raise ValueError("junk after the close delimiter")
            return parts
        while body[pos : pos + 1] in (b" ", b"\t"):  # transport padding
            pos += 1
        if not body.startswith(newline, pos):
            raise ValueError("delimiter line does not end with a newline")
        pos += len(newline)
        end = body.find(delimiter, pos)
        if end < 0:
            raise ValueError("part not terminated")
        head, sep, content = body[pos:end].partition(newline + newline)
        if not sep:
            raise ValueError("part headers not terminated")
        headers = {}
        for line in head.split(newline):
            name, colon, value = line.decode().partition(":")
            if not colon:
                raise ValueError(f"bad header line {line!r}")
            headers[name.strip().lower()] = value.strip()
        parts.append((headers, content))
        pos = end + len(delimiter)


def parse_sse(body: bytes) -> list[dict[str, Any]]:
    """``data:`` JSON objects with an ``event`` key, in order; comments, unknown fields, non-JSON skipped."""
    out = []
    for block in body.decode().split("\n\n"):
        for line in block.splitlines():
            if not line.startswith("data:"):
                continue
            try:
                value = json.loads(line.removeprefix("data:").strip())
            except ValueError:
                continue
            if isinstance(value, dict) and "event" in value:
                out.append(value)
    return out


# ---------------------------------------------------------------- auth and routing

ROUTES = [
    "/v1/music",
    "/v1/music/stream",
    "/v1/music/detailed",
    "/v1/music/detailed/stream",
    "/v1/music/plan",
    "/v1/music/stem-separation",
]


@pytest.mark.parametrize("path", ROUTES)
async def test_auth(el: FakeElevenLabs, path: str) -> None:
    body = {"prompt": "lofi", "music_length_ms": 3000}
    async with aiohttp.ClientSession() as anon:
        for headers, code in [({}, "missing_api_key"), ({"xi-api-key": "xi_wrong"}, "invalid_api_key")]:
            status, data, _ = await call(anon, "POST", f"{el.base_url}{path}", json=body, headers=headers)
            assert status == 401
            detail = data["detail"]
            assert set(detail) == {"type", "code", "message", "request_id", "param", "status"}
            assert (detail["type"], detail["code"], detail["status"], detail["param"]) == (
                "authentication_error",
                code,
                code,
                None,
            )
            assert detail["message"]
            assert detail["request_id"]
    assert el.generations == []
    assert el.count("POST", path) == 2


async def test_unknown_route(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    status, data, _ = await post(http, el, "/v1/music/nope", {})
    assert (status, data) == (404, {"detail": "Not Found"})


# ---------------------------------------------------------------- 422 rules

LONG = "x" * 4101


@pytest.mark.parametrize(
    ("path", "body", "query", "loc", "kind"),
    [
        ("/v1/music", {"prompt": "a"}, {"output_format": "mp3_44100_999"}, ["query", "output_format"], "enum"),
        ("/v1/music", {"prompt": "a", "model_id": "music_v9"}, {}, ["body", "model_id"], "literal_error"),
        ("/v1/music", {"prompt": "a", "music_length_ms": 2999}, {}, ["body", "music_length_ms"], "greater_than_equal"),
        ("/v1/music", {"prompt": "a", "music_length_ms": 600001}, {}, ["body", "music_length_ms"], "less_than_equal"),
        ("/v1/music", {"prompt": "a", "music_length_ms": "30000"}, {}, ["body", "music_length_ms"], "int_type"),
        ("/v1/music", {"prompt": LONG}, {}, ["body", "prompt"], "string_too_long"),
        ("/v1/music", {"prompt": ""}, {}, ["body", "prompt"], "string_too_short"),
        ("/v1/music", {"prompt": "a", "composition_plan": V1_PLAN}, {}, ["body", "composition_plan"], "value_error"),
        ("/v1/music", {"model_id": "music_v1"}, {}, ["body", "prompt"], "value_error"),
        (
            "/v1/music",
            {"composition_plan": V1_PLAN, "music_prompt": V1_PLAN},
            {},
            ["body", "music_prompt"],
            "value_error",
        ),
        (
            "/v1/music",
            {"composition_plan": V1_PLAN, "music_length_ms": 7000},
            {},
            ["body", "music_length_ms"],
            "value_error",
        ),
        (
            "/v1/music/stream",
            {"composition_plan": V1_PLAN, "force_instrumental": True},
            {},
            ["body", "force_instrumental"],
            "value_error",
        ),
        ("/v1/music", {"composition_plan": V2_PLAN}, {}, ["body", "composition_plan"], "value_error"),
        (
            "/v1/music",
            {"composition_plan": V1_PLAN, "model_id": "music_v2"},
            {},
            ["body", "composition_plan"],
            "value_error",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections"], V1_PLAN["sections"][:1] * 31)},
            {},
            ["body", "composition_plan", "sections"],
            "too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections"], [])},
            {},
            ["body", "composition_plan", "sections"],
            "too_short",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 1, "duration_ms"], 2999)},
            {},
            ["body", "composition_plan", "sections", 1, "duration_ms"],
            "greater_than_equal",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 0, "duration_ms"], 120001)},
            {},
            ["body", "composition_plan", "sections", 0, "duration_ms"],
            "less_than_equal",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["positive_global_styles"], ["s"] * 51)},
            {},
            ["body", "composition_plan", "positive_global_styles"],
            "too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 0, "negative_local_styles"], ["s"] * 51)},
            {},
            ["body", "composition_plan", "sections", 0, "negative_local_styles"],
            "too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 1, "lines"], ["la"] * 31)},
            {},
            ["body", "composition_plan", "sections", 1, "lines"],
            "too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 1, "lines", 1], "l" * 201)},
            {},
            ["body", "composition_plan", "sections", 1, "lines", 1],
            "string_too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 0, "section_name"], "")},
            {},
            ["body", "composition_plan", "sections", 0, "section_name"],
            "string_too_short",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 0, "section_name"], "n" * 101)},
            {},
            ["body", "composition_plan", "sections", 0, "section_name"],
            "string_too_long",
        ),
        (
            "/v1/music",
            {"composition_plan": with_plan(V1_PLAN, ["sections", 0, "durationMs"], 3000)},
            {},
            ["body", "composition_plan", "sections", 0, "durationMs"],
            "extra_forbidden",
        ),
        (
            "/v1/music",
            {"composition_plan": {"positive_global_styles": [], "sections": V1_PLAN["sections"]}},
            {},
            ["body", "composition_plan", "negative_global_styles"],
            "missing",
        ),
        (
            "/v1/music",
            {
                "composition_plan": with_plan(
                    V1_PLAN, ["sections", 0, "source_from"], {"song_id": "s", "range": {"start_ms": 5, "end_ms": 5}}
                )
            },
            {},
            ["body", "composition_plan", "sections", 0, "source_from", "range"],
            "value_error",
        ),
        (
            "/v1/music",
            {
                "composition_plan": with_plan(
                    V1_PLAN, ["sections"], [{**V1_PLAN["sections"][0], "duration_ms": 120000}] * 6
                )
            },
            {},
            ["body", "composition_plan"],
            "value_error",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 1, "duration_ms"], 2999)},
            {},
            ["body", "composition_plan", "chunks", 1, "duration_ms"],
            "greater_than_equal",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "text"], "t" * 6001)},
            {},
            ["body", "composition_plan", "chunks", 0, "text"],
            "string_too_long",
        ),
        (
            "/v1/music",
            {
                "model_id": "music_v2_5",
                "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "positive_styles"], ["s"] * 51),
            },
            {},
            ["body", "composition_plan", "chunks", 0, "positive_styles"],
            "too_long",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks"], V2_PLAN["chunks"][:1] * 31)},
            {},
            ["body", "composition_plan", "chunks"],
            "too_long",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "context_adherence"], "max")},
            {},
            ["body", "composition_plan", "chunks", 0, "context_adherence"],
            "literal_error",
        ),
        ("/v1/music", {"prompt": "a", "seed": 7}, {}, ["body", "seed"], "value_error"),
        ("/v1/music", {"composition_plan": V1_PLAN, "seed": -1}, {}, ["body", "seed"], "greater_than_equal"),
        ("/v1/music", {"composition_plan": V1_PLAN, "seed": 2**31}, {}, ["body", "seed"], "less_than_equal"),
        ("/v1/music", {"prompt": "a", "finetune_strength": 1.0}, {}, ["body", "finetune_strength"], "value_error"),
        (
            "/v1/music",
            {"prompt": "a", "finetune_id": "f", "finetune_strength": 0},
            {},
            ["body", "finetune_strength"],
            "greater_than",
        ),
        ("/v1/music", {"prompt": "a", "finetune_id": "f" * 101}, {}, ["body", "finetune_id"], "string_too_long"),
        (
            "/v1/music",
            {"prompt": "a", "respect_sections_durations": True},
            {},
            ["body", "respect_sections_durations"],
            "value_error",
        ),
        ("/v1/music", {"prompt": "a", "with_timestamps": True}, {}, ["body", "with_timestamps"], "extra_forbidden"),
        (
            "/v1/music/stream",
            {"prompt": "a", "sign_with_c2pa": True},
            {},
            ["body", "sign_with_c2pa"],
            "extra_forbidden",
        ),
        (
            "/v1/music/detailed/stream",
            {"composition_plan": V1_PLAN, "respect_sections_durations": True},
            {},
            ["body", "respect_sections_durations"],
            "extra_forbidden",
        ),
        ("/v1/music", {"prompt": "a", "output_format": "pcm_44100"}, {}, ["body", "output_format"], "extra_forbidden"),
        ("/v1/music", {"prompt": "a", "force_instrumental": "yes"}, {}, ["body", "force_instrumental"], "bool_type"),
        (
            "/v1/music/detailed",
            {"prompt": "a", "sign_with_c2pa": True},
            {"output_format": "pcm_44100"},
            ["body", "sign_with_c2pa"],
            "value_error",
        ),
        ("/v1/music", ["prompt"], {}, ["body"], "model_attributes_type"),
        ("/v1/music/plan", {"music_length_ms": 3000}, {}, ["body", "prompt"], "missing"),
        ("/v1/music/plan", {"prompt": LONG}, {}, ["body", "prompt"], "string_too_long"),
        (
            "/v1/music/plan",
            {"prompt": "a", "music_length_ms": 1000},
            {},
            ["body", "music_length_ms"],
            "greater_than_equal",
        ),
        (
            "/v1/music/plan",
            {"prompt": "a", "source_composition_plan": V2_PLAN},
            {},
            ["body", "source_composition_plan"],
            "value_error",
        ),
        (
            "/v1/music/plan",
            {"prompt": "a", "source_composition_plan": V1_PLAN, "music_length_ms": 3000},
            {},
            ["body", "source_composition_plan"],
            "value_error",
        ),
        (
            "/v1/music/plan",
            {"prompt": "a", "with_timestamps": True},
            {},
            ["body", "with_timestamps"],
            "extra_forbidden",
        ),
        # with_waveform_visual: detailed and detailed stream only (SDK 2.78), and a real bool
        (
            "/v1/music",
            {"prompt": "a", "with_waveform_visual": True},
            {},
            ["body", "with_waveform_visual"],
            "extra_forbidden",
        ),
        (
            "/v1/music/stream",
            {"prompt": "a", "with_waveform_visual": True},
            {},
            ["body", "with_waveform_visual"],
            "extra_forbidden",
        ),
        (
            "/v1/music/detailed",
            {"prompt": "a", "with_waveform_visual": "yes"},
            {},
            ["body", "with_waveform_visual"],
            "bool_type",
        ),
        ("/v1/music/plan", {"prompt": "a"}, {"enable_logging": "maybe"}, ["query", "enable_logging"], "bool_parsing"),
        ("/v1/music/detailed", {"prompt": "a"}, {"enable_logging": "2"}, ["query", "enable_logging"], "bool_parsing"),
        # a chunk's text: section name 1-100 characters, at most 30 lines of at most 200 (SDK GenerationChunkInput)
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "text"], "[]\nla")},
            {},
            ["body", "composition_plan", "chunks", 0, "text"],
            "value_error",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "text"], f"[{'n' * 101}]")},
            {},
            ["body", "composition_plan", "chunks", 0, "text"],
            "value_error",
        ),
        (
            "/v1/music",
            {
                "model_id": "music_v2",
                "composition_plan": with_plan(V2_PLAN, ["chunks", 1, "text"], "[V]\n" + "la\n" * 31),
            },
            {},
            ["body", "composition_plan", "chunks", 1, "text"],
            "value_error",
        ),
        (
            "/v1/music",
            {"model_id": "music_v2", "composition_plan": with_plan(V2_PLAN, ["chunks", 1, "text"], "l" * 201)},
            {},
            ["body", "composition_plan", "chunks", 1, "text"],
            "value_error",
        ),
        (
            "/v1/music",
            {
                "model_id": "music_v2",
                "composition_plan": with_plan(V2_PLAN, ["chunks", 0, "conditioning_ref"], {"song_id": "s"}),
            },
            {},
            ["body", "composition_plan", "chunks", 0, "conditioning_ref", "range"],
            "missing",
        ),
    ],
)
async def test_validation(
    el: FakeElevenLabs,
    http: aiohttp.ClientSession,
    path: str,
    body: Any,
    query: dict[str, str],
    loc: list[Any],
    kind: str,
) -> None:
    status, data, _ = await post(http, el, path, body, **query)
    assert status == 422, data
    assert [(e["loc"], e["type"]) for e in data["detail"]] == [(loc, kind)]
    assert all(set(e) == {"loc", "msg", "type"} and e["msg"] for e in data["detail"])
    assert el.generations == []
    assert el.plans == []


async def test_validation_reports_every_violation(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": LONG, "music_length_ms": 1, "model_id": "x", "extra": 1}
    status, data, _ = await post(http, el, "/v1/music", body, output_format="wav")
    assert status == 422
    assert [e["loc"] for e in data["detail"]] == [
        ["query", "output_format"],
        ["body", "extra"],
        ["body", "prompt"],
        ["body", "music_length_ms"],
        ["body", "model_id"],
    ]
    status, data, _ = await call(
        http, "POST", f"{el.base_url}/v1/music", data=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert (status, data["detail"][0]["type"]) == (422, "json_invalid")


# What the official SDK (elevenlabs 2.78.0, music client) can send on each endpoint; the fake takes all of it.
SDK_PROMPT_FIELDS: dict[str, dict[str, Any]] = {
    "/v1/music": {"sign_with_c2pa": True},
    "/v1/music/detailed": {"sign_with_c2pa": True, "with_timestamps": True, "with_waveform_visual": True},
    "/v1/music/stream": {},
    "/v1/music/detailed/stream": {"with_timestamps": True, "with_waveform_visual": True},
}
SDK_PLAN_FIELDS: dict[str, dict[str, Any]] = {
    "/v1/music": {"respect_sections_durations": False},
    "/v1/music/detailed": {"respect_sections_durations": False},
    "/v1/music/stream": {},
    "/v1/music/detailed/stream": {},
}


@pytest.mark.parametrize("path", list(SDK_PROMPT_FIELDS))
async def test_every_field_the_sdk_sends_is_accepted(
    el: FakeElevenLabs, http: aiohttp.ClientSession, path: str
) -> None:
    common = {"model_id": "music_v1", "finetune_id": "ft_1", "store_for_inpainting": True}
    prompt = {"prompt": "a", "music_length_ms": 3000, "force_instrumental": True, **common, **SDK_PROMPT_FIELDS[path]}
    status, data, _ = await post(http, el, path, prompt, output_format="mp3_44100_128", enable_logging="true")
    assert status == 200, data
    plan = {"composition_plan": V1_PLAN, "seed": 7, **common, **SDK_PLAN_FIELDS[path]}
    status, data, _ = await post(http, el, path, plan, output_format="auto", enable_logging="false")
    assert status == 200, data
    chunks = with_plan(V2_PLAN, ["chunks", 0, "condition_strength"], "xhigh")
    body = {"composition_plan": chunks, "model_id": "music_v2_5", "seed": 0, **SDK_PLAN_FIELDS[path]}  # ignored on v2
    status, data, _ = await post(http, el, path, body, output_format="opus_48000_32")
    assert status == 200, data
    assert len(el.generations) == 3


async def test_detailed_waveform_visual(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": "jazz trio", "music_length_ms": 3500, "with_waveform_visual": True}
    raw, content_type, gen = await detailed(el, http, body)
    meta = json.loads(parse_multipart(raw, content_type)[0][1])
    assert list(meta) == ["composition_plan", "song_metadata", "words_timestamps", "waveform_visual"]
    waveform = meta["waveform_visual"]
    assert waveform == gen.waveform_visual
    assert len(waveform) == 14  # 4 values a second
    assert all(isinstance(v, int) and -1000 <= v <= 1000 for v in waveform)
    assert max(map(abs, waveform)) > 100  # a tone, not silence


async def test_seed_with_prompt_knob(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.allow_seed_with_prompt = True
    status, _, _ = await post(http, el, "/v1/music", {"prompt": "a", "seed": 7, "music_length_ms": 3000})
    assert status == 200
    assert (await el.next_generation()).seed == 7


# ---------------------------------------------------------------- compose and stream


async def test_compose_prompt(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": "Lofi hip hop, warm piano, rainy night", "music_length_ms": 3000}
    status, audio, resp = await post(http, el, "/v1/music", body)
    assert (status, resp.content_type) == (200, "audio/mpeg")
    gen = await el.next_generation()
    assert resp.headers["song-id"] == gen.song_id
    assert audio == gen.audio
    info = audio_info(audio)
    assert (info.duration_s, info.sample_rate, info.channels, info.codec) == (3.0, 44100, 2, "mp3float")
    assert (gen.endpoint, gen.model_id, gen.prompt, gen.length_ms, gen.music_length_ms) == (
        "compose",
        "music_v1",
        body["prompt"],
        3000,
        3000,
    )
    assert (gen.output_format, gen.requested_format, gen.completed, gen.aborted) == (
        "mp3_44100_128",
        "auto",
        True,
        False,
    )
    assert gen.metadata["title"] == "Lofi Hip Hop Warm"
    assert gen.metadata["genres"] == ["hip hop", "lo-fi"]
    assert plan_length_ms(gen.plan) == 3000
    assert gen.plan["positive_global_styles"] == ["lofi hip hop", "warm piano", "rainy night"]


async def test_compose_model_picks_length_and_plans(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    status, audio, _ = await post(http, el, "/v1/music", {"prompt": "ambient drone"})
    assert status == 200
    assert audio_info(audio).duration_s == 4.0  # default_length_ms
    status, audio, _ = await post(http, el, "/v1/music", {"composition_plan": V1_PLAN, "seed": 42})
    assert status == 200
    assert audio_info(audio).duration_s == 7.0
    gen = el.generations[-1]
    assert (gen.composition_plan, gen.plan, gen.seed, gen.prompt) == (V1_PLAN, V1_PLAN, 42, None)
    assert gen.metadata["title"] == "Lo-fi Warm"
    body = {"composition_plan": V2_PLAN, "model_id": "music_v2"}
    status, audio, resp = await post(http, el, "/v1/music", body)
    assert status == 200
    info = audio_info(audio)
    assert (info.duration_s, info.sample_rate) == (6.0, 48000)  # auto is mp3_48000_192 on v2
    assert el.generations[-1].output_format == "mp3_48000_192"
    assert resp.headers["song-id"] == el.generations[-1].song_id


@pytest.mark.parametrize(
    ("fmt", "content_type", "size"),
    [
        ("pcm_16000", "audio/pcm", 3 * 16000 * 2),
        ("ulaw_8000", "audio/basic", 3 * 8000),
        ("alaw_8000", "audio/alaw", 3 * 8000),
    ],
)
async def test_compose_raw_formats(
    el: FakeElevenLabs, http: aiohttp.ClientSession, fmt: str, content_type: str, size: int
) -> None:
    status, audio, resp = await post(http, el, "/v1/music", {"prompt": "a", "music_length_ms": 3000}, output_format=fmt)
    assert (status, resp.content_type, len(audio)) == (200, content_type, size)


@pytest.mark.parametrize(
    ("fmt", "rate", "codec"), [("opus_48000_64", 48000, "opus"), ("mp3_22050_32", 22050, "mp3float")]
)
async def test_compose_encoded_formats(
    el: FakeElevenLabs, http: aiohttp.ClientSession, fmt: str, rate: int, codec: str
) -> None:
    status, audio, _ = await post(http, el, "/v1/music", {"prompt": "a", "music_length_ms": 3000}, output_format=fmt)
    assert status == 200
    info = audio_info(audio)
    assert (info.duration_s, info.sample_rate, info.channels, info.codec) == (3.0, rate, 2, codec)


async def test_stream_sends_the_same_bytes_in_chunks(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": "synthwave drive", "music_length_ms": 3000}
    _, composed, _ = await post(http, el, "/v1/music", body)
    pieces: list[bytes] = []

    async def on_chunk(transfer: Transfer, index: int, piece: bytes) -> None:
        pieces.append(piece)

    el.on_chunk = on_chunk
    status, streamed, resp = await post(http, el, "/v1/music/stream", body)
    assert (status, resp.content_type, resp.headers["Transfer-Encoding"]) == (200, "audio/mpeg", "chunked")
    assert streamed == composed
    assert len(pieces) == 4
    assert b"".join(pieces) == streamed
    gen = el.generations[-1]
    assert (gen.endpoint, gen.bytes_sent, gen.completed) == ("stream", len(streamed), True)
    assert resp.headers["song-id"] == gen.song_id


async def test_stream_progress_is_observable(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    reached, gate = asyncio.Event(), asyncio.Event()
    sizes: list[int] = []

    async def on_chunk(transfer: Transfer, index: int, piece: bytes) -> None:
        if index == 2:
            reached.set()
            await gate.wait()
        sizes.append(len(piece))

    el.on_chunk = on_chunk
    url = f"{el.base_url}/v1/music/stream"
    async with http.post(url, json={"prompt": "a", "music_length_ms": 3000}) as resp:
        assert resp.status == 200
        async with asyncio.timeout(5):
            await reached.wait()
        first = await resp.content.readexactly(sum(sizes))  # two pieces arrive before the gate opens
        assert len(sizes) == 2
        assert not el.generations[0].completed
        gate.set()
        rest = await resp.read()
    assert first + rest == el.generations[0].audio
    assert el.generations[0].completed


# ---------------------------------------------------------------- detailed (multipart/mixed)


async def detailed(
    el: FakeElevenLabs, http: aiohttp.ClientSession, body: dict[str, Any] | None = None
) -> tuple[bytes, str, Generation]:
    status, raw, resp = await post(
        http, el, "/v1/music/detailed", body or {"prompt": "jazz trio", "music_length_ms": 3000}
    )
    assert status == 200, raw
    gen = el.generations[-1]
    assert resp.headers["song-id"] == gen.song_id
    return raw, resp.headers["Content-Type"], gen


def check_detailed(raw: bytes, content_type: str, gen: Generation, newline: bytes = b"\r\n") -> dict[str, Any]:
    parts = parse_multipart(raw, content_type, newline)
    assert len(parts) == 2
    (json_headers, json_part), (audio_headers, audio) = parts
    assert json_headers == {"content-type": "application/json"}
    assert b"\n" not in json_part
    meta = json.loads(json_part)
    assert list(meta) == ["composition_plan", "song_metadata", "words_timestamps"]
    assert set(meta["song_metadata"]) == {"title", "description", "genres", "languages", "is_explicit"}
    assert audio_headers == {
        "content-type": "audio/mpeg",
        "content-disposition": f'attachment; filename="{gen.metadata["title"]}.mp3"',
    }
    assert audio == gen.audio
    assert audio_info(audio).duration_s == gen.length_ms / 1000
    assert raw.endswith(b"--" + boundary_of(content_type) + b"--" + newline)
    return meta


async def test_detailed_rotating_boundaries(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    boundaries = []
    for _ in range(3):
        raw, content_type, gen = await detailed(el, http)
        meta = check_detailed(raw, content_type, gen)
        assert meta["composition_plan"] == gen.plan
        assert meta["song_metadata"] == gen.metadata
        assert meta["words_timestamps"] is None
        assert gen.boundary is not None
        boundaries.append((gen.boundary, content_type))
    (email, ct_email), (dashed, ct_dashed), (plain, ct_plain) = boundaries
    assert re.fullmatch(r"={15}\d{19}==", email)
    assert ct_email == f'multipart/mixed; boundary="{email}"'  # '=' is a tspecial: quoted
    assert dashed.startswith("----")
    assert ct_dashed == f"multipart/mixed; boundary={dashed}"
    assert re.fullmatch(r"[0-9a-f]{32}", plain)
    assert ct_plain.endswith(plain)


async def test_detailed_with_timestamps(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    raw, content_type, gen = await detailed(el, http, {"composition_plan": V1_PLAN, "with_timestamps": True})
    meta = check_detailed(raw, content_type, gen)
    words = meta["words_timestamps"]
    assert [w["word"] for w in words] == ["rain", "on", "the", "window", "coffee", "gone", "cold"]
    assert all(3000 <= w["start_ms"] < w["end_ms"] <= 7000 for w in words)
    assert meta["song_metadata"]["languages"] == ["en"]


async def test_word_timestamps_of_a_long_song_lie_within_it(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": "a long folk ballad", "music_length_ms": 200_000, "with_timestamps": True}
    raw, content_type, gen = await detailed(el, http, body)
    words = check_detailed(raw, content_type, gen)["words_timestamps"]
    assert [w["word"] for w in words] == [w for line in plan_lyrics(gen.plan) for w in line.split()]
    assert all(set(w) == {"word", "start_ms", "end_ms"} for w in words)  # the SDK's WordTimestamp
    starts = [w["start_ms"] for w in words]
    assert starts == sorted(starts)
    assert all(0 <= w["start_ms"] < w["end_ms"] <= gen.length_ms for w in words)
    assert audio_info(gen.audio).duration_s == 200.0  # the audio is as long as the timestamps say


async def test_word_timestamps_can_be_tampered_with(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.tamper_words = lambda words: [{**w, "start_ms": 10**9} for w in words]
    raw, content_type, gen = await detailed(el, http, {"composition_plan": V1_PLAN, "with_timestamps": True})
    assert {w["start_ms"] for w in check_detailed(raw, content_type, gen)["words_timestamps"]} == {10**9}


@pytest.mark.parametrize(
    ("body", "explicit"),
    [
        ({"prompt": "a gentle lullaby", "music_length_ms": 3000}, False),
        ({"prompt": "an EXPLICIT rap", "music_length_ms": 3000}, True),
        ({"prompt": "inexplicitly calm", "music_length_ms": 3000}, False),  # a whole word only
        ({"composition_plan": V1_PLAN}, False),
        ({"composition_plan": with_plan(V1_PLAN, ["sections", 1, "lines", 0], "an explicit line")}, True),
        ({"composition_plan": with_plan(V2_PLAN, ["chunks", 1, "text"], "[Verse]\nexplicit words")}, True),
    ],
)
async def test_songs_are_explicit_by_the_marker(
    el: FakeElevenLabs, http: aiohttp.ClientSession, body: dict[str, Any], explicit: bool
) -> None:
    if "chunks" in body.get("composition_plan", {}):
        body = {**body, "model_id": "music_v2"}
    raw, content_type, gen = await detailed(el, http, body)
    assert check_detailed(raw, content_type, gen)["song_metadata"]["is_explicit"] is explicit


async def test_detailed_audio_trap(http: aiohttp.ClientSession) -> None:
    async with FakeElevenLabs(boundary="a-b=c", audio_trap=True) as el:
        raw, content_type, gen = await detailed(el, http)
        assert content_type == 'multipart/mixed; boundary="a-b=c"'
        assert b"\r\n--" in gen.audio
        assert b"\r\n--a-b=\r\n" in gen.audio  # the boundary minus its last character
        assert gen.audio.endswith(b"\r\n")
        check_detailed(raw, content_type, gen)  # decodes to the same length despite the traps
        assert len(raw.split(b"\r\n--")) > 3  # a parser splitting on "\r\n--" would cut the audio


async def test_detailed_lf_only(http: aiohttp.ClientSession) -> None:
    async with FakeElevenLabs(multipart_newline="\n") as el:
        raw, content_type, gen = await detailed(el, http)
        assert b"\r\n" not in raw.replace(gen.audio, b"")
        with pytest.raises(ValueError, match="newline"):
            parse_multipart(raw, content_type)  # strict CRLF parsing refuses it
        check_detailed(raw, content_type, gen, b"\n")


# ---------------------------------------------------------------- detailed stream (SSE)


async def test_detailed_stream_events(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    body = {"prompt": "folk ballad", "music_length_ms": 3000, "with_timestamps": True}
    status, raw, resp = await post(http, el, "/v1/music/detailed/stream", body)
    assert (status, resp.content_type) == (200, "text/event-stream")
    gen = el.generations[-1]
    assert resp.headers["song-id"] == gen.song_id
    events = parse_sse(raw)
    kinds = [e["event"] for e in events]
    assert kinds == ["composition_plan", "song_metadata", *["audio_chunk"] * 4, "word_timestamps", "completion"]
    assert events[0]["data"] == gen.plan
    assert events[1]["data"] == gen.metadata
    audio = b"".join(base64.b64decode(e["data"]) for e in events if e["event"] == "audio_chunk")
    assert audio == gen.audio
    assert audio_info(audio).duration_s == 3.0
    assert events[-2]["data"] == gen.words_timestamps
    assert events[-1]["data"]["song_id"] == gen.song_id


async def test_detailed_stream_noise_and_no_timestamps(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.sse_noise = True
    status, raw, _ = await post(http, el, "/v1/music/detailed/stream", {"prompt": "a", "music_length_ms": 3000})
    assert status == 200
    assert b": keep-alive" in raw
    assert b"data: [not json]" in raw
    kinds = [e["event"] for e in parse_sse(raw)]
    assert kinds == ["composition_plan", "song_metadata", "progress", *["audio_chunk"] * 4, "completion"]


# ---------------------------------------------------------------- plan


@pytest.mark.parametrize("model_id", ["music_v1", "music_v2"])
@pytest.mark.parametrize("length", [3000, 10001, 45000, 240000, 600000])
async def test_plan_durations_add_up(
    el: FakeElevenLabs, http: aiohttp.ClientSession, model_id: str, length: int
) -> None:
    body = {"prompt": "indie rock anthem", "music_length_ms": length, "model_id": model_id}
    status, plan, _ = await post(http, el, "/v1/music/plan", body)
    assert status == 200
    assert plan_length_ms(plan) == length
    key = "sections" if model_id == "music_v1" else "chunks"
    assert set(plan) == {key} | ({"positive_global_styles", "negative_global_styles"} if key == "sections" else set())
    assert all(3000 <= p["duration_ms"] <= 120000 for p in plan[key])
    # The plan is valid input for a generation with the same model (checked without generating the audio).
    validate_generation({"composition_plan": plan, "model_id": model_id}, "compose")
    assert el.plans[-1].plan == plan


async def test_plan_default_length_and_source(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    status, plan, _ = await post(http, el, "/v1/music/plan", {"prompt": "a"})
    assert (status, plan_length_ms(plan)) == (200, 4000)
    body = {"prompt": "b", "source_composition_plan": V1_PLAN}
    status, plan, _ = await post(http, el, "/v1/music/plan", body)
    assert (status, plan) == (200, V1_PLAN)
    status, plan, _ = await post(http, el, "/v1/music/plan", {**body, "music_length_ms": 14000})
    assert status == 200
    assert [s["duration_ms"] for s in plan["sections"]] == [6000, 8000]
    assert [s["lines"] for s in plan["sections"]] == [s["lines"] for s in V1_PLAN["sections"]]
    assert el.plans[-1].source == V1_PLAN


# ---------------------------------------------------------------- stems


async def separate(
    el: FakeElevenLabs, http: aiohttp.ClientSession, file: bytes | None, fields: dict[str, str], **query: str
) -> tuple[int, Any, aiohttp.ClientResponse]:
    form = aiohttp.FormData()
    if file is not None:
        form.add_field("file", file, filename="song.mp3", content_type="audio/mpeg")
    for name, value in fields.items():
        form.add_field(name, value)
    return await call(http, "POST", f"{el.base_url}/v1/music/stem-separation", data=form, params=query)


@pytest.mark.parametrize(
    ("fields", "stems"),
    [
        ({}, ["vocals", "drums", "bass", "guitar", "piano", "other"]),
        ({"stem_variation_id": "two_stems_v1"}, ["vocals", "accompaniment"]),
    ],
)
async def test_stems(el: FakeElevenLabs, http: aiohttp.ClientSession, fields: dict[str, str], stems: list[str]) -> None:
    song = make_mp3(3.0, sample_rate=44100)
    status, data, resp = await separate(el, http, song, fields)
    assert (status, resp.content_type) == (200, "application/zip")
    assert resp.headers["Content-Disposition"] == "attachment; filename=stems.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == [f"{s}.mp3" for s in stems]
        for name in archive.namelist():
            info = audio_info(archive.read(name))
            assert (info.duration_s, info.sample_rate, info.channels) == (3.0, 44100, 2)
    sep = await el.next_separation()
    assert isinstance(sep, Separation)
    assert (sep.file, sep.output_format, sep.archive, sep.completed) == (song, "mp3_44100_128", data, True)


async def test_stems_formats_and_errors(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    wav = make_wav(2.0, sample_rate=8000, channels=1)
    status, data, _ = await separate(el, http, wav, {"stem_variation_id": "two_stems_v1"}, output_format="pcm_16000")
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["vocals.pcm", "accompaniment.pcm"]
        assert len(archive.read("vocals.pcm")) == 2 * 16000 * 2  # 2 s, mono s16le
    cases: list[tuple[bytes | None, dict[str, str], dict[str, str], list[Any]]] = [
        (wav, {}, {"output_format": "auto"}, ["query", "output_format"]),
        (wav, {}, {"output_format": "mp3_48000_192"}, ["query", "output_format"]),
        (wav, {"stem_variation_id": "four_stems_v1"}, {}, ["body", "stem_variation_id"]),
        (None, {}, {}, ["body", "file"]),
        (wav, {"output_format": "mp3_44100_128"}, {}, ["body", "output_format"]),
        (wav, {}, {"stem_variation_id": "two_stems_v1"}, ["query", "stem_variation_id"]),
        (wav, {}, {"enable_logging": "sometimes"}, ["query", "enable_logging"]),
    ]
    for file, fields, query, loc in cases:
        status, data, _ = await separate(el, http, file, fields, **query)
        assert status == 422, (loc, data)
        assert [e["loc"] for e in data["detail"]] == [loc]
    status, data, _ = await separate(el, http, b"not audio" * 20, {})
    assert (status, data["detail"]["code"], data["detail"]["type"]) == (400, "invalid_audio", "invalid_request")
    assert len(el.separations) == 1


async def test_c2pa_marks_mp3_songs_and_stems_and_is_refused_for_other_formats(
    el: FakeElevenLabs, http: aiohttp.ClientSession
) -> None:
    status, audio, _ = await post(http, el, "/v1/music", {"prompt": "a", "sign_with_c2pa": True})
    assert status == 200
    gen = await el.next_generation()
    assert gen.sign_with_c2pa
    manifest = read_manifest(audio)
    assert manifest is not None
    assert manifest["assertions"][0]["data"]["actions"][0]["digitalSourceType"].endswith("trainedAlgorithmicMedia")
    assert audio_info(audio).duration_s == 4.0  # still plays
    assert read_manifest(audio[:-1] + b"\x00") is None  # any change to the audio breaks the binding
    status, plain, _ = await post(http, el, "/v1/music", {"prompt": "a"})
    assert status == 200
    assert read_manifest(plain) is None
    assert not (await el.next_generation()).sign_with_c2pa

    song = make_mp3(2.0, sample_rate=44100)
    status, data, _ = await separate(el, http, song, {"stem_variation_id": "two_stems_v1", "sign_with_c2pa": "true"})
    assert status == 200
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert all(read_manifest(archive.read(name)) is not None for name in archive.namelist())
    assert (await el.next_separation()).sign_with_c2pa
    status, data, _ = await separate(el, http, song, {"sign_with_c2pa": "true"}, output_format="opus_48000_128")
    assert status == 422
    assert [e["loc"] for e in data["detail"]] == [["body", "sign_with_c2pa"]]
    assert len(el.separations) == 1


# ---------------------------------------------------------------- injected errors


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("insufficient_credits", 402, "payment_required"),
        ("subscription_required", 403, "authorization_error"),
        ("rate_limit_exceeded", 429, "rate_limit_error"),
        ("concurrent_limit_exceeded", 429, "rate_limit_error"),
        ("system_busy", 429, "rate_limit_error"),
        ("internal_error", 500, "internal_error"),
        ("service_unavailable", 503, "service_unavailable"),
    ],
)
async def test_injected_errors(
    el: FakeElevenLabs, http: aiohttp.ClientSession, code: str, status: int, kind: str
) -> None:
    body = {"prompt": "a", "music_length_ms": 3000}
    fault = el.inject(code, path="/v1/music$")
    got, data, resp = await post(http, el, "/v1/music", body)
    assert got == status
    assert "Retry-After" not in resp.headers
    detail = data["detail"]
    assert set(detail) == {"type", "code", "message", "request_id", "param", "status"}
    assert (detail["type"], detail["code"], detail["status"]) == (kind, code, code)
    assert fault.hits == 1
    assert el.generations == []
    got, _, _ = await post(http, el, "/v1/music", body)  # once only
    assert got == 200


@pytest.mark.parametrize("code", ["rate_limit_exceeded", "concurrent_limit_exceeded", "system_busy"])
async def test_retry_after(el: FakeElevenLabs, http: aiohttp.ClientSession, code: str) -> None:
    el.inject(code, retry_after=3, times=2)
    for path in ("/v1/music/stream", "/v1/music/detailed"):
        status, data, resp = await post(http, el, path, {"prompt": "a"})
        assert (status, resp.headers["Retry-After"], data["detail"]["code"]) == (429, "3", code)


async def test_status_codes_and_legacy_shapes(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.inject("quota_exceeded")
    status, data, _ = await post(http, el, "/v1/music", {"prompt": "a"})
    assert status == 401
    assert set(data["detail"]) == {"status", "message"}
    assert data["detail"]["status"] == "quota_exceeded"
    el.inject("too_many_concurrent_requests")
    status, data, _ = await post(http, el, "/v1/music", {"prompt": "a"})
    assert (status, set(data["detail"])) == (429, {"status", "message"})
    for code, expected in [(500, "internal_error"), (503, "service_unavailable"), (402, "insufficient_credits")]:
        el.inject(code)
        status, data, _ = await post(http, el, "/v1/music", {"prompt": "a"})
        assert (status, data["detail"]["code"]) == (code, expected)
    el.inject(502)
    status, data, resp = await post(http, el, "/v1/music", {"prompt": "a"})
    assert (status, resp.content_type) == (502, "text/html")
    assert b"502 Bad Gateway" in data
    el.inject(500, body={"detail": "custom"})
    status, data, _ = await post(http, el, "/v1/music", {"prompt": "a"})
    assert (status, data) == (500, {"detail": "custom"})
    el.inject(504, body="upstream timed out", content_type="text/plain")
    status, data, resp = await post(http, el, "/v1/music", {"prompt": "a"})
    assert (status, data, resp.content_type) == (504, b"upstream timed out", "text/plain")
    assert set(ERRORS) >= {"bad_prompt", "bad_composition_plan", "quota_exceeded", "insufficient_credits"}
    with pytest.raises(ValueError, match="unknown error code"):
        el.inject("nope")


async def test_bad_prompt(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.inject("bad_prompt", path="/plan")
    status, data, _ = await post(http, el, "/v1/music/plan", {"prompt": "sound like Famous Band"})
    assert status == 400
    detail = data["detail"]
    assert set(detail) == {"status", "message", "data"}
    assert detail["status"] == "bad_prompt"
    suggestion = detail["data"]["prompt_suggestion"]
    assert isinstance(suggestion, str)
    assert suggestion
    el.inject("bad_prompt", suggestion="an upbeat indie song")
    _, data, _ = await post(http, el, "/v1/music", {"prompt": "x"})
    assert data["detail"]["data"] == {"prompt_suggestion": "an upbeat indie song"}


@pytest.mark.parametrize(
    "body",
    [
        {"prompt": "in the style of Famous Band", "music_length_ms": 20000},
        {"composition_plan": V2_PLAN, "model_id": "music_v2"},
    ],
)
async def test_bad_composition_plan(el: FakeElevenLabs, http: aiohttp.ClientSession, body: dict[str, Any]) -> None:
    el.inject("bad_composition_plan")
    status, data, _ = await post(http, el, "/v1/music", body)
    assert status == 400
    assert data["detail"]["status"] == "bad_composition_plan"
    plan = data["detail"]["data"]["composition_plan_suggestion"]
    # A full valid plan for the request's model: it is accepted as is.
    retry = {"composition_plan": plan, **({"model_id": body["model_id"]} if "model_id" in body else {})}
    status, audio, _ = await post(http, el, "/v1/music", retry)
    assert status == 200
    assert audio_info(audio).duration_s == plan_length_ms(plan) / 1000


# ---------------------------------------------------------------- truncation, drops, delays, holds


@pytest.mark.parametrize("path", ["/v1/music", "/v1/music/stream", "/v1/music/detailed", "/v1/music/detailed/stream"])
async def test_truncated_body(el: FakeElevenLabs, http: aiohttp.ClientSession, path: str) -> None:
    el.truncate(5000, path=path + "$")
    async with http.post(f"{el.base_url}{path}", json={"prompt": "a", "music_length_ms": 3000}) as resp:
        assert resp.status == 200
        with pytest.raises(aiohttp.ClientPayloadError):
            await resp.read()
    gen = el.generations[0]
    assert (gen.truncated, gen.completed, gen.bytes_sent) == (True, False, 5000)
    status, _, _ = await post(http, el, path, {"prompt": "a", "music_length_ms": 3000})
    assert status == 200


async def test_drop_and_delay(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    el.drop(path="/v1/music$")
    with pytest.raises(aiohttp.ClientConnectionError):
        await post(http, el, "/v1/music", {"prompt": "a"})
    el.delay(0.3)
    url, timeout = f"{el.base_url}/v1/music", aiohttp.ClientTimeout(total=0.05)
    with pytest.raises(TimeoutError):
        await call(http, "POST", url, json={"prompt": "a"}, timeout=timeout)
    assert el.generations == []
    assert el.count("POST", "/v1/music") == 2


async def test_hold_and_abort(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    hold = el.hold(path="/v1/music$")
    task = asyncio.create_task(post(http, el, "/v1/music", {"prompt": "a", "music_length_ms": 3000}))
    held = await hold.wait_held()
    assert isinstance(held, Generation)
    assert held.bytes_sent == 0
    task.cancel()  # the client gives up: its connection closes
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await el.next_abort() is held
    assert (held.aborted, held.completed) == (True, False)
    hold.release()


async def test_hold_mid_stream_then_release(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    hold = el.hold(after_chunks=2, times=None)
    url = f"{el.base_url}/v1/music/stream"
    async with http.post(url, json={"prompt": "a", "music_length_ms": 3000}) as resp:
        held = await hold.wait_held()
        assert resp.status == 200
        assert 0 < held.bytes_sent < len(held.audio if isinstance(held, Generation) else b"")
        resp.close()  # abandon mid-stream
    assert await el.next_abort() is held
    task = asyncio.create_task(post(http, el, "/v1/music/stream", {"prompt": "a", "music_length_ms": 3000}))
    second = await hold.wait_held()
    hold.release()
    status, audio, _ = await task
    assert status == 200
    assert second.completed
    assert not second.aborted
    assert isinstance(second, Generation)
    assert audio == second.audio
    assert el.aborts == [held]


async def test_hold_stems_and_release(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    hold = el.hold(path="stem")
    task = asyncio.create_task(separate(el, http, make_wav(1.0), {"stem_variation_id": "two_stems_v1"}))
    held = await hold.wait_held()
    assert isinstance(held, Separation)
    assert held.stems
    hold.release()
    status, _, _ = await task
    assert status == 200
    assert held.completed


# ---------------------------------------------------------------- inpainting references


async def test_song_references(el: FakeElevenLabs, http: aiohttp.ClientSession) -> None:
    status, _, resp = await post(
        http, el, "/v1/music", {"prompt": "a", "music_length_ms": 5000, "store_for_inpainting": True}
    )
    assert status == 200
    song_id = resp.headers["song-id"]
    ref = {"song_id": song_id, "range": {"start_ms": 1000, "end_ms": 4000}}
    plan = {"chunks": [ref, V2_PLAN["chunks"][1]]}
    status, audio, _ = await post(http, el, "/v1/music", {"composition_plan": plan, "model_id": "music_v2"})
    assert status == 200
    assert audio_info(audio).duration_s == 6.0
    plan = {"chunks": [{**ref, "song_id": "unknown"}]}
    status, data, _ = await post(http, el, "/v1/music", {"composition_plan": plan, "model_id": "music_v2"})
    assert (status, data["detail"]["code"], data["detail"]["type"]) == (404, "song_not_found", "not_found")
