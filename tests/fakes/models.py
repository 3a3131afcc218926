"""Fake models shared by the fake Replicate API (tests/fakes/replicate/) and the fake Cog server.

A ``FakeModel`` has an input JSON schema (validated by the server before a prediction exists) and a sync
``run(input) -> (output, logs)``. Raise ``ModelError`` to fail the prediction. Output values that are
``OutputFile`` (at any depth) are served by the server and replaced by URLs.

File inputs (properties with ``format: uri``) are fetched by the server before ``run``, as Cog downloads
them before calling ``predict()``: ``run`` sees an ``InputFile`` (URL, bytes, content type) instead of the
URL string. ``resolve_inputs`` does that with a server-supplied ``fetch``; ``fetch_url`` handles ``data:``
and http(s) URLs and is what a server falls back to for URLs it does not serve itself.

Contract: tests/specs/replicate.md. Guesses are marked "guess" below; errors that the real
models would word differently (or where the wording is unknown) start with "fake:".
"""

from __future__ import annotations

import base64
import binascii
import json
import random
import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, cast
from urllib.parse import unquote_to_bytes, urlsplit

import aiohttp
import jsonschema

from tests.fakes.audio import (
    Pcm,
    decode_pcm,
    encode_pcm,
    make_jpeg,
    mp3_from_pcm,
    tone_pcm,
    wav_from_pcm,
)

# ---------------------------------------------------------------- validation


URI_FORMATS = jsonschema.FormatChecker(formats=())


@URI_FORMATS.checks("uri")
def _is_uri(value: object) -> bool:
    if not isinstance(value, str):
        return True
    parts = urlsplit(value)
    return (parts.scheme in ("http", "https") and bool(parts.netloc)) or (parts.scheme == "data" and "," in value)


_KINDS = {
    "type": "invalid_type",
    "required": "required",
    "minimum": "number_gte",
    "maximum": "number_lte",
    "additionalProperties": "additional_property_not_allowed",
}
_JSON_TYPES = {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def invalid_fields(errors: Iterable[jsonschema.ValidationError], prefix: str) -> list[dict[str, str]]:
    """jsonschema errors as Replicate's (gojsonschema-style) ``invalid_fields`` entries."""
    out: list[dict[str, str]] = []
    for err in errors:
        name = ".".join([*([prefix] if prefix else []), *map(str, err.absolute_path)]) or "(root)"
        kind, value = str(err.validator), cast(Any, err.validator_value)
        if kind == "additionalProperties" and isinstance(err.instance, dict):
            known = err.schema.get("properties", {}) if isinstance(err.schema, dict) else {}
            descs = [f"Additional property {k} is not allowed" for k in err.instance if k not in known]
        elif kind == "required":
            found = re.match(r"'(.+)' is a required property", err.message)
            descs = [f"{found.group(1) if found else err.message} is required"]
        elif kind == "type":
            given = _JSON_TYPES.get(type(err.instance), "null")
            descs = [f"Invalid type. Expected: {value}, given: {given}"]
        elif kind == "enum":
            descs = [f"{name} must be one of the following: " + ", ".join(json.dumps(v) for v in value)]
        elif kind == "minimum":
            descs = [f"Must be greater than or equal to {value}"]
        elif kind == "maximum":
            descs = [f"Must be less than or equal to {value}"]
        elif kind == "format":
            descs = [f"Does not match format '{value}'"]
        else:
            descs = [err.message]
        out += [{"type": _KINDS.get(kind, kind), "field": name, "description": d} for d in descs]
    return out


# ---------------------------------------------------------------- model records


class ModelError(Exception):
    """Raised by a fake model's ``run``: the prediction fails with ``str(exc)`` as its ``error``.

    ``logs`` is what the model printed before failing; ``exc_type`` names the Python exception the real
    model raises (the server appends ``"<exc_type>: <message>"`` to the logs).
    """

    def __init__(self, message: str, *, logs: str = "", exc_type: str = "ValueError") -> None:
        super().__init__(message)
        self.logs = logs
        self.exc_type = exc_type


class FetchError(Exception):
    """A file input could not be fetched; the server fails the prediction with this message."""


@dataclass(frozen=True)
class OutputFile:
    """A file in a model's output; the fake serves it and replaces it with its download URL."""

    name: str
    data: bytes
    content_type: str


@dataclass(frozen=True)
class InputFile:
    """A file input after the server fetched it: what ``run`` gets in place of the URL string."""

    url: str  # as the client sent it
    data: bytes
    content_type: str

    @property
    def name(self) -> str:
        """A file name for messages (the URL's last path segment; ``file`` for data URLs)."""
        if self.url.startswith("data:"):
            return "file"
        return urlsplit(self.url).path.rsplit("/", 1)[-1] or "file"


RunFn = Callable[[dict[str, Any]], tuple[Any, str]]


@dataclass(frozen=True)
class FakeModel:
    """A registry entry. ``run(input) -> (output, logs)``; raise ModelError to fail the prediction.

    ``input`` holds the client's values (no defaults filled in) with file inputs already fetched
    (``InputFile``).
    """

    owner: str
    name: str
    versions: tuple[str, ...]  # newest first
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    run: RunFn
    official: bool = False
    description: str = ""

    @property
    def ref(self) -> str:
        return f"{self.owner}/{self.name}"

    @property
    def file_inputs(self) -> tuple[str, ...]:
        """Input names the server must fetch before ``run`` (properties with ``format: uri``)."""
        props: dict[str, dict[str, Any]] = self.input_schema.get("properties", {})
        return tuple(name for name, prop in props.items() if prop.get("format") == "uri")

    def validator(self) -> jsonschema.Draft202012Validator:
        """A validator for the input schema that also checks ``format: uri`` (http(s) or data URLs)."""
        return jsonschema.Draft202012Validator(self.input_schema, format_checker=URI_FORMATS)

    def input_errors(self, value: dict[str, Any]) -> list[dict[str, str]]:
        """Replicate-style ``invalid_fields`` for an input object (empty if valid)."""
        return invalid_fields(self.validator().iter_errors(value), "input")

    def version_json(self, version_id: str) -> dict[str, Any]:
        schemas = {"Input": self.input_schema, "Output": self.output_schema}
        return {
            "id": version_id,
            "created_at": "2024-06-01T00:00:00.000000Z",
            "cog_version": "0.9.6",
            "openapi_schema": {"openapi": "3.0.2", "components": {"schemas": schemas}},
        }


# ---------------------------------------------------------------- fetching file inputs

Fetch = Callable[[str], Awaitable[InputFile]]


def decode_data_url(url: str) -> InputFile:
    """``data:[<mime>][;base64],<payload>`` -> InputFile; FetchError if malformed."""
    header, sep, payload = url.partition(",")
    if not header.startswith("data:") or not sep:
        raise FetchError("fake: malformed data URL")
    params = header.removeprefix("data:").split(";")
    mime = params[0] or "text/plain"
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in params[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError) as exc:
        raise FetchError(f"fake: data URL payload is not valid base64: {exc}") from exc
    return InputFile(url, data, mime)


async def fetch_url(session: aiohttp.ClientSession, url: str, *, timeout_s: float = 10.0) -> InputFile:
    """Fetch a ``data:`` or http(s) URL as a model input; FetchError on any failure or non-200 answer."""
    if url.startswith("data:"):
        return decode_data_url(url)
    if urlsplit(url).scheme not in ("http", "https"):
        raise FetchError(f"fake: cannot fetch {url!r}: only http(s) and data URLs are supported")
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as resp:
            if resp.status != 200:
                raise FetchError(f"fake: fetching {url} failed: HTTP {resp.status}")
            return InputFile(url, await resp.read(), resp.content_type)
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise FetchError(f"fake: fetching {url} failed: {exc!r}") from exc


async def resolve_inputs(model: FakeModel, inp: dict[str, Any], fetch: Fetch) -> dict[str, Any]:
    """A copy of ``inp`` with each file input's URL replaced by the fetched ``InputFile``."""
    out = dict(inp)
    for name in model.file_inputs:
        if isinstance(url := out.get(name), str):
            out[name] = await fetch(url)
    return out


def _decode_input(audio: InputFile, *, sample_rate: int, channels: int) -> Pcm:
    try:
        return decode_pcm(audio.data, sample_rate=sample_rate, channels=channels)
    except ValueError as exc:
        # torchaudio.load's wording (guess for the exact text Replicate shows).
        msg = f'Failed to open the input "/tmp/{audio.name}" (Invalid data found when processing input).'
        raise ModelError(msg, exc_type="RuntimeError") from exc


def _enum(values: list[str], default: str) -> dict[str, Any]:
    return {"type": "string", "enum": values, "default": default}


def _random_seed() -> int:
    return random.randrange(2**32 - 1)


# ---------------------------------------------------------------- meta/musicgen

MUSICGEN_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "properties": {
        "model_version": _enum(["stereo-melody-large", "stereo-large", "melody-large", "large"], "stereo-melody-large"),
        "prompt": {"type": "string"},
        "input_audio": {"type": "string", "format": "uri"},
        "duration": {"type": "integer", "default": 8},
        "continuation": {"type": "boolean", "default": False},
        "continuation_start": {"type": "integer", "minimum": 0, "default": 0},
        "continuation_end": {"type": "integer", "minimum": 0},
        "multi_band_diffusion": {"type": "boolean", "default": False},
        "normalization_strategy": _enum(["loudness", "clip", "peak", "rms"], "loudness"),
        "top_k": {"type": "integer", "default": 250},
        "top_p": {"type": "number", "default": 0.0},
        "temperature": {"type": "number", "default": 1.0},
        "classifier_free_guidance": {"type": "integer", "default": 3},
        "output_format": _enum(["wav", "mp3"], "wav"),
        "seed": {"type": "integer"},
    },
}
MUSICGEN_MAX_DURATION_S = 300  # fake limit; the real model declares no bound
MUSICGEN_RATE = 32000
MUSICGEN_MAX_PROMPT_S = 30  # audiocraft's max_duration: the longest continuation prompt


def run_musicgen(inp: dict[str, Any]) -> tuple[Any, str]:
    """meta/musicgen, after replicate/cog-musicgen predict.py and audiocraft.

    Output is the generated tone (stereo for ``stereo-*`` versions), 32 kHz, ``duration`` seconds, as WAV or
    MP3. Continuation output starts with the trimmed input segment, bit-exact when the input is 16-bit
    32 kHz with the model's channel count, then the tone. In melody mode the input is decoded (so bad audio
    fails) but not copied.
    """
    version = inp.get("model_version", "stereo-melody-large")
    prompt, audio, continuation = inp.get("prompt"), inp.get("input_audio"), inp.get("continuation", False)
    if prompt is None and audio is None:
        raise ModelError("Must provide either prompt or input_audio")
    if continuation and not audio:
        raise ModelError("Must provide `input_audio` if continuation is `True`.")
    if version in ("stereo-large", "large") and audio and not continuation:
        raise ModelError(
            "`stereo-large` and `large` model does not support melody input. Set "
            "`model_version='stereo-melody-large'` or `model_version='melody-large'` to condition on audio input."
        )
    if "stereo" in version and inp.get("multi_band_diffusion"):
        raise ModelError("Multi-Band Diffusion is only available with non-stereo models.")
    seed = inp.get("seed")
    if not seed or seed == -1:
        seed = _random_seed()
    logs = f"Loading model {version}...\nModel {version} loaded successfully.\nUsing seed {seed}\n"
    duration = inp.get("duration", 8)
    if not 1 <= duration <= MUSICGEN_MAX_DURATION_S:
        raise ModelError(f"fake: duration must be 1..{MUSICGEN_MAX_DURATION_S} s, got {duration}", logs=logs)
    channels = 2 if "stereo" in version else 1
    total = duration * MUSICGEN_RATE
    prefix = b""
    if isinstance(audio, InputFile):
        clip = _decode_input(audio, sample_rate=MUSICGEN_RATE, channels=channels)
        start = inp.get("continuation_start") or 0
        end = inp.get("continuation_end")
        if end is None or end == -1:
            end = clip.duration_s
        if start > end:
            raise ModelError("`continuation_start` must be less than or equal to `continuation_end`", logs=logs)
        segment = clip.slice_s(start, end)
        seg_s = len(segment) / (2 * channels) / MUSICGEN_RATE
        if not segment:
            raise ModelError(f"fake: the input_audio segment [{start:g}, {end:g}] s is empty", logs=logs)
        if continuation:
            if seg_s > min(duration, MUSICGEN_MAX_PROMPT_S):
                raise ModelError("Prompt is longer than audio to generate", logs=logs, exc_type="AssertionError")
            if seg_s >= duration:  # audiocraft's bare `assert start_offset < max_gen_len`
                msg = f"fake: the continuation segment ({seg_s:g} s) must be shorter than duration ({duration} s)"
                raise ModelError(msg, logs=logs, exc_type="AssertionError")
            prefix = segment
    pcm = prefix + tone_pcm(total - len(prefix) // (2 * channels), sample_rate=MUSICGEN_RATE, channels=channels)
    if inp.get("output_format", "wav") == "mp3":
        mp3 = mp3_from_pcm(pcm, sample_rate=MUSICGEN_RATE, channels=channels)
        return OutputFile("out.mp3", mp3, "audio/mpeg"), logs
    return OutputFile("out.wav", wav_from_pcm(pcm, sample_rate=MUSICGEN_RATE, channels=channels), "audio/wav"), logs


MUSICGEN = FakeModel(
    owner="meta",
    name="musicgen",
    versions=(
        "671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb",
        "b05b1dff1d8c6dc63d14b0cdb42135378dcb87f6373b0d3d341ede46e59e2b38",
    ),
    input_schema=MUSICGEN_INPUT,
    output_schema={"type": "string", "format": "uri", "title": "Output"},
    run=run_musicgen,
    official=True,  # unverified for the real service; lets tests use the models route
    description="Generate music from a prompt or melody",
)


# ---------------------------------------------------------------- stackadoc/stable-audio-open-1.0

STABLE_AUDIO_SAMPLERS = [  # guess: the k-diffusion samplers stable-audio-tools accepts
    "dpmpp-2m-sde",
    "dpmpp-3m-sde",
    "k-heun",
    "k-lms",
    "k-dpmpp-2s-ancestral",
    "k-dpm-2",
    "k-dpm-fast",
]
STABLE_AUDIO_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string"},
        "negative_prompt": {"type": "string", "default": ""},
        "seconds_start": {"type": "integer", "minimum": 0, "default": 0},
        "seconds_total": {"type": "integer", "minimum": 1, "maximum": 47, "default": 8},
        "steps": {"type": "integer", "minimum": 1, "maximum": 500, "default": 100},  # bounds: guess
        "cfg_scale": {"type": "number", "minimum": 0, "maximum": 25, "default": 6.0},  # bounds: guess
        "seed": {"type": "integer", "minimum": -1, "default": -1},
        "sampler_type": _enum(STABLE_AUDIO_SAMPLERS, "dpmpp-3m-sde"),
        "sigma_min": {"type": "number", "minimum": 0, "default": 0.03},  # minimum: guess
        # integer, as the third-party client generated from the schema types it; minimum: guess
        "sigma_max": {"type": "integer", "minimum": 0, "default": 500},
        "batch_size": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1},  # bounds: guess
        "init_noise_level": {"type": "number", "minimum": 0, "default": 1.0},  # minimum: guess
    },
}
STABLE_AUDIO_RATE = 44100


def run_stable_audio(inp: dict[str, Any]) -> tuple[Any, str]:
    """stackadoc/stable-audio-open-1.0: a 44.1 kHz stereo WAV of ``seconds_total`` seconds per batch item.

    stable-audio-tools prints the seed as a bare line (``print(seed)``); the batch is concatenated into one
    file as its example code does (``b d n -> d (b n)``; guess for this port).
    """
    seed = inp.get("seed", -1)
    if seed == -1:
        seed = _random_seed()
    logs = f"{seed}\n"
    frames = inp.get("seconds_total", 8) * STABLE_AUDIO_RATE * inp.get("batch_size", 1)
    pcm = tone_pcm(frames, sample_rate=STABLE_AUDIO_RATE, channels=2, freq_hz=330.0)
    return OutputFile("output.wav", wav_from_pcm(pcm, sample_rate=STABLE_AUDIO_RATE, channels=2), "audio/wav"), logs


STABLE_AUDIO = FakeModel(
    owner="stackadoc",
    name="stable-audio-open-1.0",
    versions=("9aff84a639f96d0f7e6081cdea002d15133d0043727f849c40abdd166b7c75a8",),
    input_schema=STABLE_AUDIO_INPUT,
    output_schema={"type": "string", "format": "uri", "title": "Output"},
    run=run_stable_audio,
    description="Community port of Stability AI's Stable Audio Open 1.0",
)


# ---------------------------------------------------------------- riffusion/riffusion

RIFFUSION_SEED_IMAGES = [
    "agile",
    "marim",
    "mask_beat_lines_80",
    "mask_gradient_dark",
    "mask_gradient_top_70",
    "mask_gradient_top_fifth_75",
    "mask_top_third_75",
    "mask_top_third_95",
    "motorway",
    "og_beat",
    "vibes",
]
RIFFUSION_INPUT: dict[str, Any] = {
    "type": "object",
    "title": "Input",
    "properties": {
        "prompt_a": {"type": "string", "default": "funky synth solo"},
        "denoising": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.75},
        "prompt_b": {"type": "string"},  # cog's `default=None`: optional, but null is a type error
        "alpha": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.5},
        "num_inference_steps": {"type": "integer", "minimum": 1, "default": 50},
        "seed_image_id": _enum(RIFFUSION_SEED_IMAGES, "vibes"),
    },
}
RIFFUSION_OUTPUT: dict[str, Any] = {
    "type": "object",
    "title": "Output",
    "required": ["audio", "spectrogram"],
    "properties": {
        "audio": {"type": "string", "format": "uri", "title": "Audio"},
        "spectrogram": {"type": "string", "format": "uri", "title": "Spectrogram"},
    },
}
RIFFUSION_RATE = 44100
RIFFUSION_CLIP_S = 5.0  # "about 5 s"; the real clip is 512 px x 10 ms hop, about 5.1 s (guess)


def run_riffusion(inp: dict[str, Any]) -> tuple[Any, str]:
    """riffusion/riffusion, after riffusion-hobby's cog_riffusion.py: ``{"audio": wav, "spectrogram": jpg}``.

    Without ``prompt_b`` (absent or empty) alpha is forced to 0. There is no seed input: two random seeds
    per run. The first log line (``fake:``) shows the effective parameters, alpha included.
    """
    prompt_a = inp.get("prompt_a", "funky synth solo")
    prompt_b, alpha = inp.get("prompt_b"), inp.get("alpha", 0.5)
    if not prompt_b:
        prompt_b, alpha = prompt_a, 0
    seed_a, seed_b = random.randrange(2147483647), random.randrange(2147483647)
    steps = inp.get("num_inference_steps", 50)
    logs = (
        f"fake: riffuse prompt_a={prompt_a!r} prompt_b={prompt_b!r} alpha={float(alpha):g} "
        f"denoising={float(inp.get('denoising', 0.75)):g} num_inference_steps={steps} "
        f"seed_image_id={inp.get('seed_image_id', 'vibes')} seed_a={seed_a} seed_b={seed_b}\n"
        f"100%|██████████| {steps}/{steps}\n"
    )
    pcm = tone_pcm(round(RIFFUSION_CLIP_S * RIFFUSION_RATE), sample_rate=RIFFUSION_RATE, channels=1, freq_hz=220.0)
    output = {
        "audio": OutputFile("gen_sound.wav", wav_from_pcm(pcm, sample_rate=RIFFUSION_RATE, channels=1), "audio/wav"),
        "spectrogram": OutputFile("spectrogram.jpg", _spectrogram_jpeg(), "image/jpeg"),
    }
    return output, logs


@cache
def _spectrogram_jpeg() -> bytes:
    return make_jpeg(512, 512)  # riffusion's spectrograms are 512 x 512


RIFFUSION = FakeModel(
    owner="riffusion",
    name="riffusion",
    versions=("8cf61ea6c56afd61d8f5b9ffd14d7c216c0a93844ce2d82ac1c9ecc9c7f24e05",),
    input_schema=RIFFUSION_INPUT,
    output_schema=RIFFUSION_OUTPUT,
    run=run_riffusion,
    description="Stable diffusion for real-time music generation",
)


# ---------------------------------------------------------------- ryan5453/demucs

DEMUCS_MODELS = ["auto", "hdemucs_mmi", "htdemucs", "htdemucs_ft", "htdemucs_6s"]
DEMUCS_STEMS = ("drums", "bass", "other", "vocals")
DEMUCS_6_STEMS = (*DEMUCS_STEMS, "guitar", "piano")
DEMUCS_INPUT: dict[str, Any] = {  # the Dec 2025 version
    "type": "object",
    "title": "Input",
    "required": ["audio"],
    "properties": {
        "audio": {"type": "string", "format": "uri"},
        "model": _enum(DEMUCS_MODELS, "auto"),
        "format": {"type": "string", "default": "wav"},  # "any FFmpeg format"; the fake writes DEMUCS_FORMATS
        "isolate_stem": _enum(["none", *DEMUCS_6_STEMS], "none"),
        "shifts": {"type": "integer", "minimum": 1, "maximum": 20, "default": 1},
        "split": {"type": "boolean", "default": True},
        # cog's Optional[int] (default None): the type list stands for OpenAPI's `nullable: true`
        "split_size": {"type": ["integer", "null"], "minimum": 1},
        "split_overlap": {"type": "number", "minimum": 0, "maximum": 1, "default": 0.25},
        "clip_mode": _enum(["rescale", "none", "clamp", "tanh"], "rescale"),
    },
}
DEMUCS_OUTPUT: dict[str, Any] = {  # guess: a dict of stem name -> file URL
    "type": "object",
    "title": "Output",
    "additionalProperties": {"type": "string", "format": "uri"},
}
DEMUCS_RATE = 44100  # the demucs models' sample rate; stems are stereo
DEMUCS_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg", "flac": "audio/flac"}
DEMUCS_PITCH = {"drums": 110.0, "bass": 55.0, "other": 660.0, "vocals": 440.0, "guitar": 330.0, "piano": 262.0}


def _demucs_file(stem: str, pcm: bytes, fmt: str) -> OutputFile:
    if fmt == "mp3":
        data = mp3_from_pcm(pcm, sample_rate=DEMUCS_RATE, channels=2, bit_rate=320_000)
    elif fmt == "flac":
        data = encode_pcm(pcm, sample_rate=DEMUCS_RATE, channels=2, container="flac", codec="flac", bit_rate=None)
    else:
        data = wav_from_pcm(pcm, sample_rate=DEMUCS_RATE, channels=2)
    return OutputFile(f"{stem}.{fmt}", data, DEMUCS_FORMATS[fmt])


def run_demucs(inp: dict[str, Any]) -> tuple[Any, str]:
    """ryan5453/demucs: ``{stem: file}`` with each stem as long as the input (44.1 kHz stereo, ``format``).

    Stems are drums, bass, other, vocals (plus guitar, piano for ``htdemucs_6s``); ``isolate_stem=X`` gives
    ``{X, no_X}``. Each is a tone at its own pitch, not a real separation. Guesses: ``auto`` picks
    ``htdemucs_6s`` to isolate guitar or piano and ``htdemucs`` otherwise; isolating a stem the chosen model
    lacks, a format other than wav/mp3/flac and an empty input fail with "fake: ..." errors.
    """
    model, isolate = inp.get("model", "auto"), inp.get("isolate_stem", "none")
    fmt = inp.get("format", "wav")
    if model == "auto":
        model = "htdemucs_6s" if isolate in ("guitar", "piano") else "htdemucs"
    stems = DEMUCS_6_STEMS if model == "htdemucs_6s" else DEMUCS_STEMS
    logs = f"fake: model={model} shifts={inp.get('shifts', 1)} split={inp.get('split', True)}\n"
    if fmt not in DEMUCS_FORMATS:
        raise ModelError(f"fake: unsupported format {fmt!r} (the fake writes {', '.join(DEMUCS_FORMATS)})", logs=logs)
    if isolate != "none" and isolate not in stems:
        raise ModelError(f"fake: model {model} has no {isolate} stem (its stems: {', '.join(stems)})", logs=logs)
    audio = inp["audio"]
    if not isinstance(audio, InputFile):
        raise ModelError("fake: audio was not fetched", logs=logs)
    clip = _decode_input(audio, sample_rate=DEMUCS_RATE, channels=2)
    if clip.frames == 0:
        raise ModelError("fake: the input audio is empty", logs=logs)
    names = list(stems) if isolate == "none" else [isolate, f"no_{isolate}"]
    logs += f"Separating {audio.name} ({clip.duration_s:g} s) into {', '.join(names)}\n100%|██████████|\n"
    output: dict[str, OutputFile] = {}
    for i, name in enumerate(names):
        pitch = DEMUCS_PITCH.get(name, 220.0 + 20 * i)
        output[name] = _demucs_file(
            name, tone_pcm(clip.frames, sample_rate=DEMUCS_RATE, channels=2, freq_hz=pitch), fmt
        )
    return output, logs


DEMUCS = FakeModel(
    owner="ryan5453",
    name="demucs",
    # Placeholder: the reference gives no pinned version id for ryan5453/demucs (sha256 of a fixed string).
    versions=("77955a1b12941aea9d8d47b9cba4936ff7dc6841a7e8b6cbe6e61a806eb6c939",),
    input_schema=DEMUCS_INPUT,
    output_schema=DEMUCS_OUTPUT,
    run=run_demucs,
    description="Demucs music source separation (stems)",
)


# ---------------------------------------------------------------- registry

MODELS: dict[str, FakeModel] = {m.ref: m for m in (MUSICGEN, STABLE_AUDIO, RIFFUSION, DEMUCS)}

# Names that look plausible but do not exist on Replicate (GET /v1/models/... is 404, creates are 422):
# the Hugging Face weights repo name is not a Replicate model.
NONEXISTENT_MODELS: frozenset[str] = frozenset({"stability-ai/stable-audio-open-1.0"})
