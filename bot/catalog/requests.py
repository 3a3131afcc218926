"""A request checked against the catalog and settings: prompt, length, parameters, seed and count."""

from __future__ import annotations

import re
import unicodedata

from bot.catalog.models import get_model
from bot.catalog.params import _CONTROL, _fmt
from bot.catalog.spec import ValidatedRequest, check_duration, default_duration
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.records import JobRequest
from bot.text import quoted

SEED_MAX = 2**31 - 1
MAX_BATCH = 4


def clean_prompt(prompt: str, *, max_chars: int, name: str = "prompt") -> str:
    """Normalise a prompt, refusing empty or over-long ones with a message that says why."""
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", prompt)).split())
    if not text:
        raise InvalidRequestError.keyed("refusals.empty_prompt", name=name)
    if len(text) > max_chars:
        raise InvalidRequestError.keyed("refusals.prompt_too_long", name=name, length=len(text), limit=max_chars)
    return text


def parse_options(text: str) -> dict[str, str]:
    """``"temperature=1.2 top_k=200, output_format=mp3"`` -> a dict of raw values (advanced options)."""
    options: dict[str, str] = {}
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise InvalidRequestError.keyed("refusals.options_syntax", part=quoted(part))
        if name in options:
            raise InvalidRequestError.keyed("refusals.option_twice", name=quoted(name))
        options[name] = value
    return options


def validate_request(request: JobRequest, settings: Settings, *, clip_pending: bool = False) -> ValidatedRequest:
    """Check every value against the catalog and settings. Raises InvalidRequestError naming the problem.

    ``clip_pending``: a clip comes with the request but is not read yet; what depends on its length (the
    part of it to continue) is checked once it is, with its ``audio_s``."""
    spec = get_model(request.model)
    prompt = clean_prompt(request.prompt, max_chars=spec.max_prompt_chars or settings.jobs.max_prompt_chars)

    if spec.fixed_duration_s == 0.0:  # the output is as long as the input (stems)
        duration: float = request.audio_s or 0.0
    elif spec.fixed_duration_s is not None:
        if request.duration_s is not None and request.duration_s != spec.fixed_duration_s:
            raise InvalidRequestError.keyed(
                "refusals.fixed_duration", model=spec.display_name, seconds=_fmt(spec.fixed_duration_s)
            )
        duration = spec.fixed_duration_s
    else:
        requested = request.duration_s
        if requested is None:
            requested = default_duration(spec, settings)
        check_duration(spec, settings, requested)
        duration = requested

    params = {name: spec.param(name).coerce(value) for name, value in request.params.items()}

    seed = request.seed
    if seed is not None:
        if spec.seed_key is None:
            raise InvalidRequestError.keyed("refusals.no_seed", model=spec.display_name)
        if not 1 <= seed <= SEED_MAX:
            raise InvalidRequestError.keyed("refusals.seed_range", max=SEED_MAX)
    if not 1 <= request.count <= MAX_BATCH:
        raise InvalidRequestError.keyed("refusals.count_range", max=MAX_BATCH)
    validated = ValidatedRequest(
        spec=spec,
        prompt=prompt,
        duration_s=duration,
        params=params,
        seed=seed,
        count=request.count,
        audio_s=request.audio_s,
        clip_pending=clip_pending and request.audio_s is None,
    )
    spec.check(validated)
    return validated
