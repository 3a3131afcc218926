"""Request checks: which fields each endpoint takes, plans against their model, cross-field rules, the query."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .errors import Invalid, _err, _one_of, _pydantic_errors
from .plans import plan_length_ms
from .schemas import (
    MAX_LENGTH_MS,
    V1_MODELS,
    AudioReferenceChunk,
    CompositionPlan,
    GenerationBody,
    GenerationChunk,
    MusicPrompt,
)

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
