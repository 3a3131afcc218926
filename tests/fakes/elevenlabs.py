"""A strict fake of the ElevenLabs Music API (``https://api.elevenlabs.io``) for tests.

A real aiohttp server on ``127.0.0.1:<random port>`` (``base_url``; paths start with ``/v1/music``), built on
the shared ``FakeServer`` (request log, ``next_request``/``count``, injected faults, awaitable hooks). Every
route requires the ``xi-api-key`` header. Bodies are validated as the contract describes and every violation
is a FastAPI-style 422 ``{"detail":[{"loc":[...],"msg":...,"type":...}]}`` (pydantic v2 messages and types).
Generated audio is real: a tone of exactly the song's length in the requested ``output_format`` (MP3 decodes
back to the exact length); stems are real audio files of the uploaded file's length.

Routes: ``POST /v1/music`` (compose), ``/v1/music/stream``, ``/v1/music/detailed`` (``multipart/mixed``),
``/v1/music/detailed/stream`` (SSE), ``/v1/music/plan`` and ``/v1/music/stem-separation``.

Tests drive failures with ``inject`` (an error by code name or HTTP status, exact bodies from the contract),
``drop`` (connection closed unanswered), ``truncate`` (body cut mid-stream, connection closed), ``delay`` and
``hold`` (keep matching requests in flight until released; a client that gives up is recorded as an abort).
They synchronise by awaiting ``next_generation``/``next_separation``/``next_abort``/``next_request`` and
``Hold.wait_held``, or the ``on_chunk`` hook, never by sleeping.

Contract: tests/specs/elevenlabs-music.md. Guesses and deliberate differences:

* Stricter than FastAPI: JSON types are checked strictly (``"30000"`` or ``30000.0`` for an int is a 422),
  and unknown body keys are 422 ``extra_forbidden`` (the real API would ignore them silently), including a
  field on an endpoint whose schema lacks it (``with_timestamps`` and ``with_waveform_visual`` on
  compose/stream, ``sign_with_c2pa`` and ``respect_sections_durations`` on the stream endpoints) and
  ``output_format`` in the body instead of the query. Stem separation likewise rejects unknown form fields and
  a ``stem_variation_id`` sent as a query.
* Cross-field rules (live status undocumented; messages start with ``fake:``): both or neither of
  ``prompt``/``composition_plan``; prompt-only fields (``music_length_ms``, ``force_instrumental``) with a
  plan; plan-only ``respect_sections_durations`` with a prompt (on v2 models it is accepted and ignored, as the
  SDK documents); ``seed`` with a prompt (the docs
  say so; ``allow_seed_with_prompt`` turns it off); ``finetune_strength`` without ``finetune_id``;
  ``sign_with_c2pa`` with a non-MP3 format; a plan whose format does not match the model. Guesses: an empty
  prompt, a plan with no sections/chunks and a plan longer than 600 000 ms in total are 422 too.
* ``music_v2_5`` takes a CompositionPlan like ``music_v2``, and ``auto`` is ``mp3_48000_192`` for it.
* Fields and enums follow the official Python SDK (``elevenlabs`` 2.78.0, its ``music`` client and types):
  ``with_waveform_visual`` on the detailed endpoints (the detailed JSON then carries ``waveform_visual``, 4
  values a second from -1000 to 1000; where the detailed stream would carry it is undocumented, so it sends
  none); ``enable_logging`` (query) must parse as a bool; a chunk's ``conditioning_ref`` is an audio reference
  to a stored song; a chunk's text may start with a ``[Section name]`` of 1-100 characters, then at most 30
  lines of at most 200 characters (the heading line not counted: guess). Other unknown query keys are ignored,
  as FastAPI does.
* A plan's ``source_from``/audio-reference ``song_id`` must name a song this fake generated with
  ``store_for_inpainting``; otherwise 404 ``song_not_found`` (guess). Finetune ids are not checked.
* When the model "picks" the length (a prompt without ``music_length_ms``) the song is ``default_length_ms``.
* Formats (guesses where undocumented): MP3 is stereo; PCM is raw s16le with ``pcm_channels`` channels
  (default 1, as in ElevenLabs TTS); u-law/A-law are raw mono 8 kHz G.711; opus is Ogg Opus, stereo. Content
  types ``audio/mpeg``, ``audio/pcm``, ``audio/basic`` (u-law), ``audio/alaw``, ``audio/ogg``; file
  extensions mp3/pcm/ulaw/alaw/opus. Tier limits on formats are not modelled.
* Detailed: the boundary rotates through three styles per response unless ``boundary`` is set: Python
  ``email``-style ``===============<19 digits>==`` (quoted in the header, it contains ``=``), dashed
  ``----EncoreFake-<hex>`` and plain hex. The body ends ``--<B>--`` plus a newline. ``multipart_newline="\\n"``
  gives the LF-only variant. ``audio_trap=True`` wraps the MP3 in an ID3v2 tag whose text holds ``\\r\\n--``,
  ``\\r\\n--<B minus its last char>`` and a bare ``\\n--`` line, and an ID3v1 tag so the audio itself ends with
  ``\\r\\n``; the result still decodes to the same samples.
* Detailed stream events (payloads guessed; the contract says they are illustrative): ``composition_plan``
  (the plan), ``song_metadata``, ``audio_chunk`` (data: a base64 string), ``word_timestamps`` (a list, only
  with ``with_timestamps``), ``completion`` (``{"song_id", "status": "completed"}``). Each is one
  ``data: {...}`` line and a blank line. ``sse_noise=True`` adds a comment line, an unknown event and a
  non-JSON ``data:`` line before the audio.
* Song metadata, plans, lyrics and word timestamps are derived deterministically from the prompt or plan
  (see ``derive_plan``/``song_metadata``). ``/plan`` with ``source_composition_plan`` returns that plan,
  durations rescaled to ``music_length_ms`` when given (422 ``fake:`` if a section would leave 3000..120000).
* Two-stem names are ``vocals`` and ``accompaniment`` (reported, undocumented). Stems are tones at
  different pitches, not a real separation. An undecodable upload is 400 ``invalid_request``/
  ``invalid_audio`` (guess).
* Error messages for injected errors are the fake's own wording; codes, types, statuses and shapes follow the
  contract. Unknown routes are 404 ``{"detail":"Not Found"}`` (FastAPI's).
* ``prefix="/elevenlabs"`` serves every route under that path (ElevenLabs behind a proxy; ``base_url`` includes
  it); ``song_id_header`` spells the ``song-id`` response header another way (header names are
  case-insensitive).
"""

from __future__ import annotations

import array
import asyncio
import base64
import io
import itertools
import json
import math
import re
import secrets
import struct
import zipfile
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from http import HTTPStatus
from typing import Annotated, Any, Literal

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from tests.fakes import _http
from tests.fakes._http import FakeServer, drop_connection
from tests.fakes._http import RecordedRequest as RecordedRequest
from tests.fakes.audio import decode_pcm, encode_pcm, mp3_from_pcm, tone_pcm

DEFAULT_API_KEY = "xi_fake_key_0123456789"
MODEL_IDS = ("music_v1", "music_v2", "music_v2_5")
V1_MODELS = frozenset({"music_v1"})  # take a MusicPrompt; the others take a CompositionPlan
MAX_LENGTH_MS = 600_000
MIN_LENGTH_MS = 3_000

_MP3_COMMON = ["mp3_22050_32", "mp3_24000_48", *(f"mp3_44100_{b}" for b in (32, 64, 96, 128, 192))]
_MP3_48K = [f"mp3_48000_{b}" for b in (128, 192, 240, 320)]
_OTHER_FORMATS = [
    *(f"pcm_{r}" for r in (8000, 16000, 22050, 24000, 32000, 44100, 48000)),
    "ulaw_8000",
    "alaw_8000",
    *(f"opus_48000_{b}" for b in (32, 64, 96, 128, 192)),
]
GENERATION_FORMATS: tuple[str, ...] = ("auto", *_MP3_48K, *_MP3_COMMON, *_OTHER_FORMATS)
STEM_FORMATS: tuple[str, ...] = (*_MP3_COMMON, *_OTHER_FORMATS)  # no auto, no mp3_48000_*
AUTO_FORMAT = {"music_v1": "mp3_44100_128", "music_v2": "mp3_48000_192", "music_v2_5": "mp3_48000_192"}
CONTENT_TYPES = {  # by codec; all but audio/mpeg are guesses
    "mp3": "audio/mpeg",
    "pcm": "audio/pcm",
    "ulaw": "audio/basic",
    "alaw": "audio/alaw",
    "opus": "audio/ogg",
}
STEMS = {
    "six_stems_v1": ("vocals", "drums", "bass", "guitar", "piano", "other"),
    "two_stems_v1": ("vocals", "accompaniment"),  # guess: reported, undocumented
}
_STEM_PITCH = {
    "vocals": 440.0,
    "drums": 110.0,
    "bass": 55.0,
    "guitar": 330.0,
    "piano": 262.0,
    "other": 660.0,
    "accompaniment": 220.0,
}

_TRUNCATE_AT = web.RequestKey("encore_fake_truncate_at", int)


# ---------------------------------------------------------------- errors


class ApiError(Exception):
    """Raised inside handlers; rendered as ``{"detail": ...}`` with ``status``."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.json_response({"detail": self.detail}, status=self.status, headers=self.headers)


def _request_id() -> str:
    return secrets.token_hex(16)


# code -> (HTTP status, type or None for the legacy {status, message} shape, message)
ERRORS: dict[str, tuple[int, str | None, str]] = {
    "bad_prompt": (400, None, "fake: the prompt references an artist or copyrighted material."),
    "bad_composition_plan": (400, None, "fake: the composition plan references copyrighted material."),
    "invalid_request": (400, "invalid_request", "fake: invalid request."),
    "validation_error": (400, "validation_error", "fake: validation failed."),
    "invalid_audio": (400, "invalid_request", "fake: the file is not audio the server can decode."),  # guess
    "quota_exceeded": (401, None, "fake: this request exceeds your quota."),
    "missing_api_key": (401, "authentication_error", "fake: missing the xi-api-key header."),
    "invalid_api_key": (401, "authentication_error", "fake: invalid API key."),
    "insufficient_credits": (402, "payment_required", "fake: not enough credits for this request."),
    "subscription_required": (403, "authorization_error", "fake: the Music API needs a paid subscription."),
    "song_not_found": (404, "not_found", "fake: song not found."),
    "rate_limit_exceeded": (429, "rate_limit_error", "fake: too many requests; back off and retry."),
    "concurrent_limit_exceeded": (429, "rate_limit_error", "fake: too many concurrent requests."),
    "too_many_concurrent_requests": (429, None, "fake: too many concurrent requests."),  # the old name
    "system_busy": (429, "rate_limit_error", "fake: the system is busy; retry later."),
    "internal_error": (500, "internal_error", "fake: internal server error."),
    "service_unavailable": (503, "service_unavailable", "fake: service unavailable."),
}
_CODE_FOR_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_credits",
    403: "subscription_required",
    404: "song_not_found",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


def error_detail(code: str, message: str | None = None, *, param: str | None = None) -> dict[str, Any]:
    """The ``detail`` object of a non-422 error: the modern shape, or ``{status, message}`` for legacy codes."""
    _, kind, default = ERRORS[code]
    if kind is None:
        return {"status": code, "message": message or default}
    return {
        "type": kind,
        "code": code,
        "message": message or default,
        "request_id": _request_id(),
        "param": param,
        "status": code,
    }


def api_error(code: str, message: str | None = None, *, param: str | None = None) -> ApiError:
    return ApiError(ERRORS[code][0], error_detail(code, message, param=param))


class Invalid(Exception):
    """A 422 with FastAPI's ``detail`` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors

    def response(self) -> web.Response:
        return web.json_response({"detail": self.errors}, status=422)


def _err(loc: list[str | int], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _pydantic_errors(model: type[BaseModel], value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    try:
        model.model_validate(value, strict=True)
    except ValidationError as exc:
        return [_err([*loc, *e["loc"]], e["msg"], e["type"]) for e in exc.errors(include_url=False)]
    return []


def _one_of(values: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return "Input should be " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])


# ---------------------------------------------------------------- schemas (strict; extra keys forbidden)


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


Styles = Annotated[list[str], Field(max_length=50)]
SectionMs = Annotated[int, Field(ge=3000, le=120_000)]
SongId = Annotated[str, Field(min_length=1, max_length=100)]


class TimeRange(_Strict):
    start_ms: Annotated[int, Field(ge=0)]
    end_ms: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end_ms <= self.start_ms:
            raise ValueError("fake: end_ms must be greater than start_ms")
        return self


class SourceFrom(_Strict):
    song_id: SongId
    range: TimeRange
    negative_ranges: Annotated[list[TimeRange], Field(max_length=10)] | None = None


class SongSection(_Strict):
    section_name: Annotated[str, Field(min_length=1, max_length=100)]
    positive_local_styles: Styles
    negative_local_styles: Styles
    duration_ms: SectionMs
    lines: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=30)]
    source_from: SourceFrom | None = None


class MusicPrompt(_Strict):
    """The v1 plan."""

    positive_global_styles: Styles
    negative_global_styles: Styles
    sections: Annotated[list[SongSection], Field(min_length=1, max_length=30)]  # min_length: guess


class AudioReferenceChunk(_Strict):
    song_id: SongId
    range: TimeRange


class GenerationChunk(_Strict):
    text: Annotated[str, Field(max_length=6000)]
    duration_ms: SectionMs
    positive_styles: Styles
    negative_styles: Styles | None = None
    context_adherence: Literal["low", "medium", "high"] | None = None
    conditioning_ref: AudioReferenceChunk | None = None
    condition_strength: Literal["low", "medium", "high", "xhigh"] | None = None


class CompositionPlan(_Strict):
    """The v2 plan; each chunk is checked separately (``_plan_errors``) so its ``loc`` has no union tag."""

    chunks: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=30)]  # min_length: guess


Bool = bool | None


class GenerationBody(_Strict):
    prompt: Annotated[str, Field(min_length=1, max_length=4100)] | None = None
    composition_plan: dict[str, Any] | None = None
    music_prompt: dict[str, Any] | None = None  # deprecated alias of composition_plan
    music_length_ms: Annotated[int, Field(ge=MIN_LENGTH_MS, le=MAX_LENGTH_MS)] | None = None
    model_id: Literal["music_v1", "music_v2", "music_v2_5"] | None = None
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    force_instrumental: Bool = None
    respect_sections_durations: Bool = None
    finetune_id: Annotated[str, Field(max_length=100)] | None = None
    finetune_strength: Annotated[float, Field(gt=0, le=2)] | None = None
    store_for_inpainting: Bool = None
    with_timestamps: Bool = None
    with_waveform_visual: Bool = None  # detailed endpoints (SDK 2.78)
    sign_with_c2pa: Bool = None
    # hidden/legacy fields the server accepts
    generation_mode: Literal["track", "loop", "ambience", "video_to_music"] | None = None
    lyrics_text: str | None = None
    use_phonetic_names: Bool = None
    model_style_prefix: str | None = None


class PlanBody(_Strict):
    prompt: Annotated[str, Field(min_length=1, max_length=4100)]
    music_length_ms: Annotated[int, Field(ge=MIN_LENGTH_MS, le=MAX_LENGTH_MS)] | None = None
    source_composition_plan: dict[str, Any] | None = None
    model_id: Literal["music_v1", "music_v2", "music_v2_5"] | None = None


_ALL_FIELDS = frozenset(GenerationBody.model_fields)
ENDPOINT_FIELDS: dict[str, frozenset[str]] = {
    "compose": _ALL_FIELDS - {"with_timestamps", "with_waveform_visual"},
    "detailed": _ALL_FIELDS,
    "stream": _ALL_FIELDS - {"with_timestamps", "with_waveform_visual", "respect_sections_durations", "sign_with_c2pa"},
    "detailed_stream": _ALL_FIELDS - {"respect_sections_durations", "sign_with_c2pa"},
}
ENDPOINTS = {
    "/v1/music": "compose",
    "/v1/music/stream": "stream",
    "/v1/music/detailed": "detailed",
    "/v1/music/detailed/stream": "detailed_stream",
}


def _plan_errors(plan: Any, model_id: str, loc: list[str | int]) -> list[dict[str, Any]]:
    """422 entries for a plan given to ``model_id`` (format match first, then the schema and its limits)."""
    v1 = model_id in V1_MODELS
    if isinstance(plan, dict):
        if v1 and "chunks" in plan and "sections" not in plan:
            msg = f"fake: {model_id} takes a MusicPrompt (sections), not a CompositionPlan (chunks)"
            return [_err(loc, msg)]
        if not v1 and "sections" in plan and "chunks" not in plan:
            msg = f"fake: {model_id} takes a CompositionPlan (chunks), not a MusicPrompt (sections)"
            return [_err(loc, msg)]
    errors = _pydantic_errors(MusicPrompt if v1 else CompositionPlan, plan, loc)
    if errors or v1:
        return errors
    for i, chunk in enumerate(plan["chunks"]):
        kind = AudioReferenceChunk if isinstance(chunk, dict) and "song_id" in chunk else GenerationChunk
        chunk_errors = _pydantic_errors(kind, chunk, [*loc, "chunks", i])
        if not chunk_errors and kind is GenerationChunk:
            chunk_errors = _chunk_text_errors(chunk["text"], [*loc, "chunks", i, "text"])
        errors += chunk_errors
    return errors


_CHUNK_HEADING = re.compile(r"\[([^\]\n]*)\]")


def _chunk_text_errors(text: str, loc: list[str | int]) -> list[dict[str, Any]]:
    """A chunk's text: an optional ``[Section name]`` of 1-100 characters first, then at most 30 lines of at
    most 200 characters (the SDK's GenerationChunkInput; the heading line is not counted: guess)."""
    lines = text.splitlines()
    heading = _CHUNK_HEADING.match(lines[0].strip()) if lines else None
    if heading is not None:
        if not 1 <= len(heading[1]) <= 100:
            return [_err(loc, "fake: a section name must be between 1 and 100 characters")]
        lines = lines[1:]
    if len(lines) > 30:
        return [_err(loc, f"fake: at most 30 lines are allowed, not {len(lines)}")]
    if any(len(line) > 200 for line in lines):
        return [_err(loc, "fake: a line is at most 200 characters")]
    return []


def _plan_total_error(plan: dict[str, Any], loc: list[str | int]) -> list[dict[str, Any]]:
    total = plan_length_ms(plan)
    if total > MAX_LENGTH_MS:  # guess: the same ceiling as music_length_ms
        return [_err(loc, f"fake: the plan lasts {total} ms; at most {MAX_LENGTH_MS} ms in total")]
    return []


def validate_generation(body: Any, endpoint: str, *, allow_seed_with_prompt: bool = False) -> GenerationBody:
    """The parsed body, or ``Invalid`` with every violation."""
    if not isinstance(body, dict):
        msg = "Input should be a valid dictionary or object to extract fields from"
        raise Invalid([_err(["body"], msg, "model_attributes_type")])
    allowed = ENDPOINT_FIELDS[endpoint]
    errors = [_err(["body", k], "Extra inputs are not permitted", "extra_forbidden") for k in body if k not in allowed]
    known = {k: v for k, v in body.items() if k in allowed}
    errors += _pydantic_errors(GenerationBody, known, ["body"])
    if errors:
        raise Invalid(errors)
    parsed = GenerationBody.model_validate(known, strict=True)
    model_id = parsed.model_id or "music_v1"
    plan_key = "music_prompt" if parsed.music_prompt is not None else "composition_plan"
    plan = parsed.music_prompt if parsed.music_prompt is not None else parsed.composition_plan
    if parsed.music_prompt is not None and parsed.composition_plan is not None:
        errors.append(_err(["body", "music_prompt"], "fake: music_prompt is an alias of composition_plan; not both"))
    if parsed.prompt is not None and plan is not None:
        errors.append(_err(["body", plan_key], "fake: give either prompt or composition_plan, not both"))
    elif parsed.prompt is None and plan is None:
        errors.append(_err(["body", "prompt"], "fake: either prompt or composition_plan is required"))
    if plan is not None:
        for name in ("music_length_ms", "force_instrumental"):
            if getattr(parsed, name) is not None:
                errors.append(_err(["body", name], f"fake: {name} only goes with a prompt, not a composition_plan"))
        plan_errors = _plan_errors(plan, model_id, ["body", plan_key])
        errors += plan_errors or _plan_total_error(plan, ["body", plan_key])
    # On v2 models respect_sections_durations is ignored (they always keep durations): the SDK says so.
    if parsed.respect_sections_durations is not None and parsed.prompt is not None:
        errors.append(_err(["body", "respect_sections_durations"], "fake: only with a composition_plan"))
    if parsed.seed is not None and parsed.prompt is not None and not allow_seed_with_prompt:
        errors.append(_err(["body", "seed"], "fake: seed cannot be used with a prompt"))
    if parsed.finetune_strength is not None and parsed.finetune_id is None:
        errors.append(_err(["body", "finetune_strength"], "fake: finetune_strength needs finetune_id"))
    if errors:
        raise Invalid(errors)
    return parsed


def validate_format(query: Mapping[str, str], allowed: tuple[str, ...], default: str) -> str:
    fmt = query.get("output_format", default)
    if fmt not in allowed:
        raise Invalid([_err(["query", "output_format"], _one_of(allowed), "enum")])
    return fmt


_QUERY_BOOL = TypeAdapter(bool)


def query_errors(query: Mapping[str, str]) -> list[dict[str, Any]]:
    """``enable_logging`` (every music endpoint) must parse as a bool; other unknown query keys are ignored."""
    if "enable_logging" not in query:
        return []
    try:
        _QUERY_BOOL.validate_python(query["enable_logging"])
    except ValidationError as exc:
        return [_err(["query", "enable_logging"], exc.errors()[0]["msg"], exc.errors()[0]["type"])]
    return []


# ---------------------------------------------------------------- plans, metadata, lyrics (deterministic)

GENRES = (
    "lo-fi",
    "lofi",
    "hip hop",
    "hip-hop",
    "jazz",
    "rock",
    "pop",
    "ambient",
    "electronic",
    "house",
    "techno",
    "classical",
    "orchestral",
    "metal",
    "folk",
    "country",
    "blues",
    "funk",
    "soul",
    "reggae",
    "punk",
    "synthwave",
    "disco",
    "indie",
)
_LOCAL_STYLES = {"Intro": ["sparse", "building"], "Chorus": ["full", "anthemic"], "Outro": ["fading out"]}


def plan_length_ms(plan: Mapping[str, Any]) -> int:
    """A plan's total duration: its sections, or its chunks (an audio reference lasts its range)."""
    if "sections" in plan:
        return sum(s["duration_ms"] for s in plan["sections"])
    return sum(
        c["duration_ms"] if "duration_ms" in c else c["range"]["end_ms"] - c["range"]["start_ms"]
        for c in plan["chunks"]
    )


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'&-]+", text)


def _phrases(prompt: str) -> list[str]:
    return [p.strip().lower()[:100] for p in re.split(r"[,;\n.]", prompt) if p.strip()][:8]


def _section_names(n: int) -> list[str]:
    if n == 1:
        return ["Main"]
    if n == 2:
        return ["Verse 1", "Chorus"]
    middle = [f"Verse {i // 2 + 1}" if i % 2 == 0 else "Chorus" for i in range(n - 2)]
    return ["Intro", *middle, "Outro"]


def _split_ms(total: int, n: int) -> list[int]:
    base, extra = divmod(total, n)
    return [base + (1 if i < extra else 0) for i in range(n)]


def _lyrics(name: str, topic: str, instrumental: bool) -> list[str]:
    if instrumental or name in ("Intro", "Outro"):
        return []
    if name == "Chorus":
        return [f"oh {topic}", "sing it all night long"]
    return [f"{topic} on my mind", "we keep moving on"]


def derive_plan(prompt: str, length_ms: int, model_id: str, *, instrumental: bool = False) -> dict[str, Any]:
    """The plan the fake "composes" for a prompt: sections of 3..120 s summing to ``length_ms`` exactly."""
    n = max(math.ceil(length_ms / 120_000), min(length_ms // 15_000, 8), 1)
    instrumental = instrumental or "instrumental" in prompt.lower()
    topic = " ".join(_words(prompt)[:3]).lower()[:150] or "music"
    styles = _phrases(prompt)
    negative = ["vocals"] if instrumental else []
    sections = [
        {
            "section_name": name,
            "positive_local_styles": _LOCAL_STYLES.get(name, ["steady groove"]),
            "negative_local_styles": [],
            "duration_ms": ms,
            "lines": _lyrics(name, topic, instrumental),
        }
        for name, ms in zip(_section_names(n), _split_ms(length_ms, n), strict=True)
    ]
    if model_id in V1_MODELS:
        return {"positive_global_styles": styles, "negative_global_styles": negative, "sections": sections}
    chunks = [
        {
            "text": "\n".join([f"[{s['section_name']}]", *(s["lines"] or ["{instrumental}"])]),
            "duration_ms": s["duration_ms"],
            "positive_styles": [*styles, *s["positive_local_styles"]][:50],
            "negative_styles": negative,
        }
        for s in sections
    ]
    return {"chunks": chunks}


def _plan_lines(plan: Mapping[str, Any]) -> list[tuple[int, int, list[str]]]:
    """(start_ms, duration_ms, lyric lines) per section or chunk."""
    out: list[tuple[int, int, list[str]]] = []
    start = 0
    for part in plan.get("sections") or plan.get("chunks") or []:
        if "duration_ms" not in part:  # audio reference chunk
            ms = part["range"]["end_ms"] - part["range"]["start_ms"]
            out.append((start, ms, []))
        elif "lines" in part:
            ms = part["duration_ms"]
            out.append((start, ms, list(part["lines"])))
        else:
            ms = part["duration_ms"]
            text = [re.sub(r"\{[^}]*\}", "", line).strip() for line in part["text"].splitlines()]
            out.append((start, ms, [t for t in text if t and not (t.startswith("[") and t.endswith("]"))]))
        start += ms
    return out


def plan_lyrics(plan: Mapping[str, Any]) -> list[str]:
    """Every lyric line of a plan (a v1 section's ``lines``; a v2 chunk's text without heading and directions)."""
    return [line for _, _, lines in _plan_lines(plan) for line in lines]


def plan_negative_styles(plan: Mapping[str, Any]) -> set[str]:
    """Every negative style of a plan: global and per section (v1), per chunk (v2)."""
    styles = set(plan.get("negative_global_styles") or [])
    for part in plan.get("sections") or plan.get("chunks") or []:
        styles |= set(part.get("negative_local_styles") or part.get("negative_styles") or [])
    return styles


def word_timestamps(plan: Mapping[str, Any]) -> list[dict[str, Any]]:
    """``{word, start_ms, end_ms}`` for every lyric word, spread evenly over its section."""
    out: list[dict[str, Any]] = []
    for start, ms, lines in _plan_lines(plan):
        words = [w for line in lines for w in line.split()]
        slot = ms / len(words) if words else 0
        for i, word in enumerate(words):
            begin = start + round(i * slot)
            out.append({"word": word, "start_ms": begin, "end_ms": begin + max(1, round(slot * 0.8))})
    return out


def waveform_visual(sample_rate: int, frames: int) -> list[int]:
    """The detailed answer's ``waveform_visual``: 4 values a second, -1000..1000, of the (mono) tone sent."""
    samples = array.array("h", tone_pcm(frames, sample_rate=sample_rate, channels=1))
    window = sample_rate // 4
    out = []
    for start in range(0, len(samples), window):
        part = samples[start : start + window]
        high, low = max(part), min(part)
        out.append(round((high if high >= -low else low) * 1000 / 32768))
    return out


def _title(words: list[str]) -> str:
    return " ".join(w[:1].upper() + w[1:] for w in words[:4])[:100] or "Untitled"


def song_metadata(prompt: str | None, plan: Mapping[str, Any]) -> dict[str, Any]:
    """SongMetadata derived from the prompt (or the plan's styles when there is no prompt)."""
    if "sections" in plan:
        styles = list(plan["positive_global_styles"])
    else:
        styles = next((list(c["positive_styles"]) for c in plan["chunks"] if "positive_styles" in c), [])
    source = prompt if prompt is not None else " ".join(styles[:2])
    text = (prompt or " ".join(styles)).lower()
    genres = sorted({g.replace("lofi", "lo-fi").replace("hip-hop", "hip hop") for g in GENRES if g in text})[:3]
    genres = genres or styles[:1]
    vocal = any(lines for _, _, lines in _plan_lines(plan))
    title = _title(_words(source))
    seconds = round(plan_length_ms(plan) / 1000)
    kind = ", ".join(genres) or "original"
    return {
        "title": title,
        "description": f"{title}: a {seconds}-second {kind} track {'with vocals' if vocal else '(instrumental)'}.",
        "genres": genres,
        "languages": ["en"] if vocal else [],
        "is_explicit": False,
    }


def fit_plan(plan: dict[str, Any], length_ms: int, loc: list[str | int]) -> dict[str, Any]:
    """A copy of ``plan`` whose durations are rescaled to total ``length_ms`` (audio references kept)."""
    key = "sections" if "sections" in plan else "chunks"
    parts = [dict(p) for p in plan[key]]
    scalable = [p for p in parts if "duration_ms" in p]
    fixed = plan_length_ms({key: [p for p in parts if "duration_ms" not in p]}) if key == "chunks" else 0
    target, current = length_ms - fixed, sum(p["duration_ms"] for p in scalable)
    if not scalable or target <= 0:
        raise Invalid([_err(loc, f"fake: cannot fit this plan into {length_ms} ms")])
    exact = [p["duration_ms"] * target / current for p in scalable]
    new = [math.floor(x) for x in exact]
    order = sorted(range(len(new)), key=lambda i: new[i] - exact[i])
    for i in order[: target - sum(new)]:
        new[i] += 1
    for p, ms in zip(scalable, new, strict=True):
        if not 3000 <= ms <= 120_000:
            raise Invalid([_err(loc, f"fake: fitting the plan into {length_ms} ms gives a {ms} ms section")])
        p["duration_ms"] = ms
    return {**plan, key: parts}


# ---------------------------------------------------------------- audio


@dataclass(frozen=True)
class AudioFormat:
    name: str  # e.g. "mp3_44100_128"
    codec: str  # mp3 | pcm | ulaw | alaw | opus
    sample_rate: int
    bit_rate: int | None  # bits per second (mp3, opus)

    @classmethod
    def parse(cls, name: str) -> AudioFormat:
        codec, rate, *rest = name.split("_")
        return cls(name, codec, int(rate), int(rest[0]) * 1000 if rest else None)

    @property
    def content_type(self) -> str:
        return CONTENT_TYPES[self.codec]

    @property
    def extension(self) -> str:
        return self.codec

    def channels(self, pcm_channels: int) -> int:
        return {"mp3": 2, "opus": 2, "pcm": pcm_channels}.get(self.codec, 1)

    def frames(self, length_ms: int) -> int:
        return round(length_ms * self.sample_rate / 1000)


def encode_audio(pcm: bytes, fmt: AudioFormat, channels: int) -> bytes:
    """16-bit PCM in ``fmt``: MP3, Ogg Opus, raw G.711 or the PCM itself."""
    rate = fmt.sample_rate
    if fmt.codec == "mp3":
        return mp3_from_pcm(pcm, sample_rate=rate, channels=channels, bit_rate=fmt.bit_rate or 128_000)
    if fmt.codec == "opus":
        return encode_pcm(
            pcm, sample_rate=rate, channels=channels, container="ogg", codec="libopus", bit_rate=fmt.bit_rate
        )
    if fmt.codec in ("ulaw", "alaw"):
        container = "mulaw" if fmt.codec == "ulaw" else "alaw"
        return encode_pcm(
            pcm, sample_rate=rate, channels=channels, container=container, codec=f"pcm_{container}", bit_rate=None
        )
    return pcm


@lru_cache(maxsize=64)
def render_tone(format_name: str, frames: int, channels: int, freq_hz: float = 440.0) -> bytes:
    """``frames`` frames of a tone in a format (cached: the encoders are deterministic)."""
    fmt = AudioFormat.parse(format_name)
    pcm = tone_pcm(frames, sample_rate=fmt.sample_rate, channels=channels, freq_hz=freq_hz)
    return encode_audio(pcm, fmt, channels)


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])


def trap_mp3(mp3: bytes, boundary: str) -> bytes:
    """``mp3`` wrapped in ID3 tags holding ``\\r\\n--`` sequences; it ends with ``\\r\\n`` and decodes the same."""
    text = b"\r\n--" + boundary[:-1].encode() + b"\r\n--\r\n\n--" + boundary[:-1].encode() + b"\n"
    body = b"\x00trap\x00" + text  # TXXX: latin-1, description "trap", value
    frame = b"TXXX" + struct.pack(">I", len(body)) + b"\x00\x00" + body
    head = b"ID3\x03\x00\x00" + _syncsafe(len(frame)) + frame
    tail = b"TAG" + b"Encore fake".ljust(30, b"\0") + bytes(60) + b"2026" + b"\r\n--".ljust(29, b" ") + b"\r\n"
    return head + mp3 + tail


def _boundary(n: int) -> str:
    style = n % 3
    if style == 0:
        return "=" * 15 + str(secrets.randbelow(10**19)).zfill(19) + "=="
    if style == 1:
        return "----EncoreFake-" + secrets.token_hex(8)
    return secrets.token_hex(16)


def _quote_boundary(boundary: str) -> str:
    return f'"{boundary}"' if re.search(r"""[()<>@,;:\\"/\[\]?= ]""", boundary) else boundary


def _filename(title: str, ext: str) -> str:
    return (re.sub(r'[\\"\r\n/]', "", title).strip() or "song") + f".{ext}"


# ---------------------------------------------------------------- records


@dataclass(eq=False, kw_only=True)
class Transfer:
    """Progress of a response body: bytes written, and how it ended."""

    bytes_sent: int = 0
    completed: bool = False  # the whole body was written
    truncated: bool = False  # an injected truncation cut it
    aborted: bool = False  # the client went away first


@dataclass(eq=False, kw_only=True)
class Generation(Transfer):
    """One accepted generation request (compose, stream, detailed or detailed stream)."""

    song_id: str
    endpoint: str  # compose | stream | detailed | detailed_stream
    body: dict[str, Any]  # the JSON body as sent
    model_id: str
    prompt: str | None
    composition_plan: dict[str, Any] | None  # as sent (composition_plan or music_prompt)
    plan: dict[str, Any]  # the plan used: the one sent, or derived from the prompt
    seed: int | None
    music_length_ms: int | None  # as sent
    length_ms: int  # the song's length
    output_format: str  # resolved (never "auto")
    requested_format: str  # the query value, "auto" by default
    force_instrumental: bool
    with_timestamps: bool
    store_for_inpainting: bool
    finetune_id: str | None
    metadata: dict[str, Any]
    words_timestamps: list[dict[str, Any]] | None
    waveform_visual: list[int] | None = None  # detailed, with with_waveform_visual
    audio: bytes = b""  # the audio bytes sent (for detailed: the audio part)
    boundary: str | None = None  # detailed only


@dataclass(eq=False, kw_only=True)
class Separation(Transfer):
    """One accepted stem-separation request."""

    stem_variation_id: str
    output_format: str
    file: bytes
    filename: str | None
    frames: int  # the input's length in frames at the format's sample rate
    sign_with_c2pa: bool
    stems: dict[str, bytes] = field(default_factory=dict)  # entry name (e.g. "vocals.mp3") -> bytes
    archive: bytes = b""


@dataclass(frozen=True)
class PlanRecord:
    prompt: str
    model_id: str
    music_length_ms: int | None
    source: dict[str, Any] | None
    plan: dict[str, Any]


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeElevenLabs.inject``. ``hits`` counts the requests it answered."""

    code: str | None  # an ERRORS key, or None for a raw status/body
    content_type: str
    truncate_at: int | None
    suggestion: Any

    def response(self, status: int) -> web.Response:
        return self.render(status, None)

    def render(self, status: int, request_body: Any) -> web.Response:
        if self.body is not None:
            if isinstance(self.body, bytes | str):
                raw = self.body.encode() if isinstance(self.body, str) else self.body
                return web.Response(status=status, body=raw, headers=self.headers, content_type=self.content_type)
            return web.json_response(self.body, status=status, headers=self.headers)
        code = self.code or _CODE_FOR_STATUS.get(status)
        if code is None:  # e.g. 502 from a proxy in front of the API
            phrase = HTTPStatus(status).phrase
            html = f"<html><body><h1>{status} {phrase}</h1></body></html>"
            return web.Response(status=status, text=html, headers=self.headers, content_type="text/html")
        detail = error_detail(code)
        if code == "bad_prompt":
            prompt = request_body.get("prompt") if isinstance(request_body, dict) else None
            suggestion = self.suggestion or f"an original song inspired by: {prompt or 'your idea'}"[:4100]
            detail["data"] = {"prompt_suggestion": suggestion}
        elif code == "bad_composition_plan":
            detail["data"] = {"composition_plan_suggestion": self.suggestion or _suggested_plan(request_body)}
        return web.json_response({"detail": detail}, status=status, headers=self.headers)


def _suggested_plan(body: Any) -> dict[str, Any]:
    """A full valid plan for the request's model: its own plan if valid, else one derived from its prompt."""
    body = body if isinstance(body, dict) else {}
    model_id = body.get("model_id") if body.get("model_id") in MODEL_IDS else "music_v1"
    plan = body.get("composition_plan") or body.get("source_composition_plan")
    if plan is not None and not _plan_errors(plan, model_id, []):
        return plan
    prompt = body.get("prompt") if isinstance(body.get("prompt"), str) else "an original song"
    length = body.get("music_length_ms")
    length = length if isinstance(length, int) and MIN_LENGTH_MS <= length <= MAX_LENGTH_MS else 30_000
    return derive_plan(prompt, length, model_id)


@dataclass(eq=False)
class Hold:
    """Keeps matching requests in flight until ``release()``; see ``FakeElevenLabs.hold``."""

    path: str | None
    times: int | None
    after_chunks: int
    hits: int = 0
    held: list[Transfer] = field(default_factory=list)
    _released: asyncio.Event = field(default_factory=asyncio.Event, repr=False)
    _queue: asyncio.Queue[Transfer] = field(default_factory=asyncio.Queue, repr=False)

    def matches(self, request: web.Request) -> bool:
        return (self.times is None or self.hits < self.times) and (
            self.path is None or re.search(self.path, request.path) is not None
        )

    def release(self) -> None:
        """Let every held request (and later matching ones) go on."""
        self._released.set()

    @property
    def released(self) -> bool:
        return self._released.is_set()

    async def wait_held(self, timeout: float = 5.0) -> Transfer:
        """The next request this hold stopped (a Generation or a Separation), waiting for one."""
        try:
            async with asyncio.timeout(timeout):
                return await self._queue.get()
        except TimeoutError:
            raise TimeoutError(f"FakeElevenLabs: no request held within {timeout} s") from None

    async def _hold(self, transfer: Transfer) -> None:
        self.held.append(transfer)
        self._queue.put_nowait(transfer)
        await self._released.wait()


ChunkHook = Callable[[Transfer, int, bytes], Awaitable[None]]


# ---------------------------------------------------------------- the server


class FakeElevenLabs(FakeServer[Fault]):
    """The fake API. Use ``async with FakeElevenLabs() as fake:`` and point the client at ``base_url``."""

    _label = "FakeElevenLabs"
    _record_multipart_bodies = False  # the stem-separation handler reads the multipart body itself

    def __init__(
        self,
        api_key: str = DEFAULT_API_KEY,
        *,
        default_length_ms: int = 30_000,
        stream_chunks: int = 4,
        boundary: str | None = None,
        multipart_newline: str = "\r\n",
        audio_trap: bool = False,
        sse_noise: bool = False,
        pcm_channels: int = 1,
        allow_seed_with_prompt: bool = False,
        prefix: str = "",
        song_id_header: str = "song-id",
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.default_length_ms = default_length_ms  # a prompt without music_length_ms
        self.stream_chunks = stream_chunks  # audio pieces for /stream and audio_chunk events
        self.boundary = boundary  # detailed: fixed boundary; None rotates styles (see the module doc)
        self.multipart_newline = multipart_newline  # "\n": the LF-only variant
        self.audio_trap = audio_trap  # detailed: audio part holds "\r\n--" and ends with "\r\n"
        self.sse_noise = sse_noise  # detailed stream: a comment, an unknown event, a non-JSON line
        self.pcm_channels = pcm_channels
        self.allow_seed_with_prompt = allow_seed_with_prompt
        self.prefix = prefix.rstrip("/")  # served under this path, as behind a proxy (e.g. "/elevenlabs")
        self.song_id_header = song_id_header  # the song-id header's spelling (names are case-insensitive)
        self.on_chunk: ChunkHook | None = None  # awaited before each body piece is written
        self.generations: list[Generation] = []
        self.separations: list[Separation] = []
        self.plans: list[PlanRecord] = []
        self.aborts: list[Transfer] = []
        self.holds: list[Hold] = []
        self.songs: dict[str, Generation] = {}  # song-id -> generation
        self._new_generations: deque[Generation] = deque()
        self._new_separations: deque[Separation] = deque()
        self._new_aborts: deque[Transfer] = deque()
        self._boundaries = itertools.count()
        self._closing = False

    # ------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}{self.prefix}"

    async def start(self) -> None:
        routes = [
            *(("POST", self.prefix + path, self._h_generate) for path in ENDPOINTS),
            ("POST", f"{self.prefix}/v1/music/plan", self._h_plan),
            ("POST", f"{self.prefix}/v1/music/stem-separation", self._h_stems),
        ]
        # handler_cancellation: a client that disconnects cancels its handler, which records the abort.
        await self._serve(routes, client_max_size=256 * 1024 * 1024, handler_cancellation=True)

    async def close(self) -> None:
        self._closing = True
        for hold in self.holds:
            hold.release()
        if self._client is not None:
            await self._client.close()
        if self._runner is not None:
            await self._runner.cleanup()
        self._client = self._runner = self._site = None

    # ------------------------------------------------------------ dispatch, faults

    async def _dispatch(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            key = request.headers.get("xi-api-key")
            if key is None:
                raise api_error("missing_api_key")
            if key != self.api_key:
                raise api_error("invalid_api_key")
            return await handler(request)
        except (ApiError, Invalid) as exc:
            return exc.response()
        except web.HTTPNotFound:
            return web.json_response({"detail": "Not Found"}, status=404)
        except web.HTTPMethodNotAllowed:
            return web.json_response({"detail": "Method Not Allowed"}, status=405)

    async def _answer_fault(self, fault: Fault, request: web.Request, handler: Handler) -> web.StreamResponse:
        if fault.drop:
            return drop_connection(request)
        if fault.truncate_at is not None:
            request[_TRUNCATE_AT] = fault.truncate_at
        if fault.status is None:
            return await self._dispatch(request, handler)
        body: Any = None
        if request.content_type == "application/json":
            try:
                body = json.loads(await request.read())
            except ValueError:
                body = None
        return fault.render(fault.status, body)

    def _fault(self, **kw: Any) -> Fault:
        defaults: dict[str, Any] = {
            "method": "POST",
            "path": None,
            "status": None,
            "body": None,
            "headers": {},
            "times": 1,
            "delay_s": 0.0,
            "drop": False,
            "code": None,
            "content_type": "text/html",
            "truncate_at": None,
            "suggestion": None,
        }
        fault = Fault(**(defaults | kw))
        self.faults.append(fault)
        return fault

    def inject(
        self,
        error: str | int = 500,
        *,
        path: str | None = None,
        method: str | None = "POST",
        retry_after: float | str | None = None,
        suggestion: Any = None,
        body: Any = None,
        content_type: str = "text/html",
        headers: Mapping[str, str] | None = None,
        times: int | None = 1,
        delay_s: float = 0.0,
    ) -> Fault:
        """Answer the next ``times`` matching requests (None: forever) with an error.

        ``error`` is a code from ``ERRORS`` (``"bad_prompt"``, ``"quota_exceeded"``, ``"system_busy"``...) or
        an HTTP status (its usual code; statuses without one, e.g. 502, get an HTML page). ``path`` is a regex
        searched in the request path. ``retry_after`` adds a ``Retry-After`` header. ``suggestion`` replaces
        the derived ``prompt_suggestion``/``composition_plan_suggestion``. ``body`` (JSON-able, or bytes/str
        sent as ``content_type``) replaces the whole body.
        """
        if isinstance(error, str):
            if error not in ERRORS:
                raise ValueError(f"unknown error code {error!r}; one of {sorted(ERRORS)}")
            status, code = ERRORS[error][0], error
        else:
            status, code = error, None
        all_headers = dict(headers or {})
        if retry_after is not None:
            all_headers["Retry-After"] = str(retry_after)
        return self._fault(
            method=method,
            path=path,
            status=status,
            body=body,
            headers=all_headers,
            times=times,
            delay_s=delay_s,
            code=code,
            content_type=content_type,
            suggestion=suggestion,
        )

    def drop(self, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Close the connection of the next matching requests without answering."""
        return self._fault(path=path, times=times, drop=True)

    def truncate(self, at_bytes: int, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Answer normally, but close the connection after ``at_bytes`` bytes of the body (mid-stream)."""
        return self._fault(path=path, times=times, truncate_at=at_bytes)

    def delay(self, seconds: float, *, path: str | None = None, times: int | None = 1) -> Fault:
        """Answer the next matching requests normally after ``seconds``."""
        return self._fault(path=path, times=times, delay_s=seconds)

    def hold(self, *, path: str | None = None, times: int | None = 1, after_chunks: int = 0) -> Hold:
        """Keep the next matching generation/stem requests in flight until ``Hold.release()``.

        With ``after_chunks=0`` the response has not started (no headers); with ``k > 0`` the headers and
        ``k`` body pieces (see ``stream_chunks``; every body is written in pieces) are out; a body with no
        more than ``k`` pieces is not held. A client that disconnects meanwhile is recorded in ``aborts`` (and
        its record's ``aborted``). Validation and auth errors are answered without holding.
        """
        hold = Hold(path, times, after_chunks)
        self.holds.append(hold)
        return hold

    # ------------------------------------------------------------ awaitable hooks

    async def next_generation(self, timeout: float = 5.0) -> Generation:
        """The oldest accepted generation not yet returned by this method."""
        return await self._next(self._new_generations, timeout, "generation")

    async def next_separation(self, timeout: float = 5.0) -> Separation:
        return await self._next(self._new_separations, timeout, "stem separation")

    async def next_abort(self, timeout: float = 5.0) -> Transfer:
        """The oldest response the client abandoned (disconnected before the end), not yet returned."""
        return await self._next(self._new_aborts, timeout, "aborted request")

    # ------------------------------------------------------------ generation routes

    async def _json(self, request: web.Request) -> Any:
        if request.content_type != "application/json":
            raise Invalid([_err(["body"], "fake: send a JSON body (Content-Type: application/json)", "json_invalid")])
        try:
            return json.loads(await request.read())
        except ValueError:
            raise Invalid([_err(["body"], "JSON decode error", "json_invalid")]) from None

    def _check_song(self, song_id: str) -> None:
        song = self.songs.get(song_id)
        if song is None or not song.store_for_inpainting:
            raise api_error("song_not_found", f"fake: no stored song {song_id!r}", param="song_id")

    async def _h_generate(self, request: web.Request) -> web.StreamResponse:
        endpoint = ENDPOINTS[request.path.removeprefix(self.prefix)]
        body = await self._json(request)
        requested = request.query.get("output_format", "auto")
        errors: list[dict[str, Any]] = query_errors(request.query)
        try:
            validate_format(request.query, GENERATION_FORMATS, "auto")
        except Invalid as exc:
            errors += exc.errors
        try:
            parsed = validate_generation(body, endpoint, allow_seed_with_prompt=self.allow_seed_with_prompt)
        except Invalid as exc:
            raise Invalid(errors + exc.errors) from None
        if errors:
            raise Invalid(errors)
        model_id = parsed.model_id or "music_v1"
        fmt = AudioFormat.parse(AUTO_FORMAT[model_id] if requested == "auto" else requested)
        if parsed.sign_with_c2pa and fmt.codec != "mp3":
            errors.append(_err(["body", "sign_with_c2pa"], "fake: C2PA signing needs an mp3 output_format"))
        if errors:
            raise Invalid(errors)
        sent_plan = parsed.music_prompt if parsed.music_prompt is not None else parsed.composition_plan
        if sent_plan is not None:
            for part in sent_plan.get("sections") or sent_plan.get("chunks") or []:
                for source in (part.get("source_from") or part, part.get("conditioning_ref") or {}):
                    if (ref := source.get("song_id")) is not None:
                        self._check_song(ref)
            plan = sent_plan
        else:
            assert parsed.prompt is not None
            length = parsed.music_length_ms or self.default_length_ms
            plan = derive_plan(parsed.prompt, length, model_id, instrumental=bool(parsed.force_instrumental))
        gen = Generation(
            song_id=secrets.token_hex(10),
            endpoint=endpoint,
            body=body,
            model_id=model_id,
            prompt=parsed.prompt,
            composition_plan=sent_plan,
            plan=plan,
            seed=parsed.seed,
            music_length_ms=parsed.music_length_ms,
            length_ms=plan_length_ms(plan),
            output_format=fmt.name,
            requested_format=requested,
            force_instrumental=bool(parsed.force_instrumental),
            with_timestamps=bool(parsed.with_timestamps),
            store_for_inpainting=bool(parsed.store_for_inpainting),
            finetune_id=parsed.finetune_id,
            metadata=song_metadata(parsed.prompt, plan),
            words_timestamps=word_timestamps(plan) if parsed.with_timestamps else None,
        )
        self.songs[gen.song_id] = gen
        self._log(self.generations, self._new_generations, gen)
        headers = {self.song_id_header: gen.song_id}
        try:
            channels = fmt.channels(self.pcm_channels)
            audio = await asyncio.to_thread(render_tone, fmt.name, fmt.frames(gen.length_ms), channels)
        except asyncio.CancelledError:
            self._aborted(gen)
            raise
        if endpoint == "compose":
            gen.audio = audio
            return await self._send(request, gen, [audio], {**headers, "Content-Type": fmt.content_type})
        if endpoint == "stream":
            gen.audio = audio
            headers["Content-Type"] = fmt.content_type
            return await self._send(request, gen, self._pieces(audio), headers, chunked=True)
        if endpoint == "detailed":
            return await self._send_detailed(request, gen, audio, fmt, headers)
        gen.audio = audio
        headers["Content-Type"] = "text/event-stream"
        return await self._send(request, gen, self._events(gen, audio), headers, chunked=True)

    def _pieces(self, data: bytes) -> list[bytes]:
        n = max(1, self.stream_chunks)
        size = max(1, math.ceil(len(data) / n))
        return [data[i : i + size] for i in range(0, len(data), size)] or [b""]

    def _events(self, gen: Generation, audio: bytes) -> list[bytes]:
        def event(kind: str, data: Any) -> bytes:
            return b"data: " + json.dumps({"event": kind, "data": data}).encode() + b"\n\n"

        events = [event("composition_plan", gen.plan), event("song_metadata", gen.metadata)]
        if self.sse_noise:
            events += [b": keep-alive\n\n", event("progress", {"percent": 50}), b"data: [not json]\n\n"]
        events += [event("audio_chunk", base64.b64encode(piece).decode()) for piece in self._pieces(audio)]
        if gen.with_timestamps:
            events.append(event("word_timestamps", gen.words_timestamps))
        events.append(event("completion", {"song_id": gen.song_id, "status": "completed"}))
        return events

    async def _send_detailed(
        self, request: web.Request, gen: Generation, audio: bytes, fmt: AudioFormat, headers: dict[str, str]
    ) -> web.StreamResponse:
        boundary = self.boundary or _boundary(next(self._boundaries))
        if self.audio_trap and fmt.codec == "mp3":
            audio = trap_mp3(audio, boundary)
        gen.audio, gen.boundary = audio, boundary
        nl, delim = self.multipart_newline.encode(), b"--" + boundary.encode()
        meta: dict[str, Any] = {
            "composition_plan": gen.plan,
            "song_metadata": gen.metadata,
            "words_timestamps": gen.words_timestamps,
        }
        if gen.body.get("with_waveform_visual"):
            gen.waveform_visual = await asyncio.to_thread(waveform_visual, fmt.sample_rate, fmt.frames(gen.length_ms))
            meta["waveform_visual"] = gen.waveform_visual
        filename = _filename(gen.metadata["title"], fmt.extension)
        body = b"".join(
            [
                delim + nl + b"Content-Type: application/json" + nl + nl + json.dumps(meta).encode() + nl,
                delim + nl + f"Content-Type: {fmt.content_type}".encode() + nl,
                f'Content-Disposition: attachment; filename="{filename}"'.encode() + nl + nl,
                audio + nl + delim + b"--" + nl,
            ]
        )
        headers["Content-Type"] = f"multipart/mixed; boundary={_quote_boundary(boundary)}"
        return await self._send(request, gen, self._pieces(body), headers)

    async def _send(
        self,
        request: web.Request,
        transfer: Transfer,
        pieces: list[bytes],
        headers: Mapping[str, str],
        *,
        chunked: bool = False,
    ) -> web.StreamResponse:
        """Write ``pieces`` as the 200 body, honouring holds, ``on_chunk`` and an injected truncation."""
        truncate_at = request.get(_TRUNCATE_AT)
        hold = next((h for h in self.holds if h.matches(request)), None)
        if hold is not None:
            hold.hits += 1
        resp = web.StreamResponse(status=200, headers=headers)
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = sum(map(len, pieces))
        try:
            if hold is not None and hold.after_chunks <= 0:
                await hold._hold(transfer)
            await resp.prepare(request)
            for i, piece in enumerate(pieces):
                if hold is not None and i == hold.after_chunks and i > 0:
                    await hold._hold(transfer)
                if self.on_chunk is not None:
                    await self.on_chunk(transfer, i, piece)
                if truncate_at is not None and transfer.bytes_sent + len(piece) > truncate_at:
                    await resp.write(piece[: max(0, truncate_at - transfer.bytes_sent)])
                    transfer.bytes_sent = truncate_at
                    transfer.truncated = True
                    if request.transport is not None:
                        request.transport.close()  # flushes what was written, then closes
                    self._notify()
                    return resp
                await resp.write(piece)
                transfer.bytes_sent += len(piece)
            await resp.write_eof()
        except asyncio.CancelledError:
            self._aborted(transfer)
            raise
        except ConnectionError:
            self._aborted(transfer)
            return resp
        transfer.completed = True
        self._notify()
        return resp

    def _aborted(self, transfer: Transfer) -> None:
        if self._closing or transfer.aborted:
            return
        transfer.aborted = True
        self._log(self.aborts, self._new_aborts, transfer)

    # ------------------------------------------------------------ plan

    async def _h_plan(self, request: web.Request) -> web.Response:
        body = await self._json(request)
        if not isinstance(body, dict):
            msg = "Input should be a valid dictionary or object to extract fields from"
            raise Invalid([_err(["body"], msg, "model_attributes_type")])
        errors = query_errors(request.query) + _pydantic_errors(PlanBody, body, ["body"])
        if errors:
            raise Invalid(errors)
        parsed = PlanBody.model_validate(body, strict=True)
        model_id = parsed.model_id or "music_v1"
        source = parsed.source_composition_plan
        loc: list[str | int] = ["body", "source_composition_plan"]
        if source is not None:
            if errors := _plan_errors(source, model_id, loc) or _plan_total_error(source, loc):
                raise Invalid(errors)
            plan = source if parsed.music_length_ms is None else fit_plan(source, parsed.music_length_ms, loc)
        else:
            plan = derive_plan(parsed.prompt, parsed.music_length_ms or self.default_length_ms, model_id)
        self.plans.append(PlanRecord(parsed.prompt, model_id, parsed.music_length_ms, source, plan))
        self._notify()
        return web.json_response(plan)

    # ------------------------------------------------------------ stem separation

    async def _h_stems(self, request: web.Request) -> web.StreamResponse:
        errors: list[dict[str, Any]] = query_errors(request.query)
        try:
            fmt = AudioFormat.parse(validate_format(request.query, STEM_FORMATS, "mp3_44100_128"))
        except Invalid as exc:
            errors += exc.errors
            fmt = AudioFormat.parse("mp3_44100_128")
        if "stem_variation_id" in request.query:
            msg = "fake: stem_variation_id is a form field, not a query parameter"
            errors.append(_err(["query", "stem_variation_id"], msg, "extra_forbidden"))
        fields: dict[str, tuple[bytes, str | None]] = {}
        if request.content_type == "multipart/form-data":
            reader = await request.multipart()
            async for part in reader:
                if not isinstance(part, BodyPartReader):
                    raise Invalid([_err(["body"], "fake: nested multipart is not supported")])
                fields[part.name or ""] = (bytes(await part.read()), part.filename)
        for name in fields:
            if name not in ("file", "stem_variation_id", "sign_with_c2pa"):
                errors.append(_err(["body", name], "Extra inputs are not permitted", "extra_forbidden"))
        file = fields.get("file")
        if file is None:
            errors.append(_err(["body", "file"], "Field required", "missing"))
        elif file[1] is None:
            errors.append(_err(["body", "file"], "Expected UploadFile, received: <class 'str'>"))
        variation = fields.get("stem_variation_id", (b"six_stems_v1", None))[0].decode(errors="replace")
        if variation not in STEMS:
            errors.append(_err(["body", "stem_variation_id"], _one_of(tuple(STEMS)), "enum"))
        c2pa = fields.get("sign_with_c2pa", (b"false", None))[0].decode(errors="replace").lower()
        if c2pa not in ("true", "false", "1", "0"):
            errors.append(_err(["body", "sign_with_c2pa"], "Input should be a valid boolean", "bool_parsing"))
        if errors:
            raise Invalid(errors)
        assert file is not None
        channels = fmt.channels(self.pcm_channels)
        try:
            pcm = await asyncio.to_thread(decode_pcm, file[0], sample_rate=fmt.sample_rate, channels=channels)
        except ValueError:
            raise api_error("invalid_audio", param="file") from None
        sep = Separation(
            stem_variation_id=variation,
            output_format=fmt.name,
            file=file[0],
            filename=file[1],
            frames=pcm.frames,
            sign_with_c2pa=c2pa in ("true", "1"),
        )
        self._log(self.separations, self._new_separations, sep)
        try:
            for stem in STEMS[variation]:
                data = await asyncio.to_thread(render_tone, fmt.name, pcm.frames, channels, _STEM_PITCH[stem])
                sep.stems[f"{stem}.{fmt.extension}"] = data
        except asyncio.CancelledError:
            self._aborted(sep)
            raise
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as archive:
            for name, data in sep.stems.items():
                archive.writestr(zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0)), data)
        sep.archive = buf.getvalue()
        headers = {"Content-Type": "application/zip", "Content-Disposition": "attachment; filename=stems.zip"}
        return await self._send(request, sep, self._pieces(sep.archive), headers)
