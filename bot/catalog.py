"""The model catalog: what each model is, which parameters it takes, and how a request becomes its input.

Commands, validation and help read this; adding a model is an entry here, not new command code.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.jobs.models import JobRequest

SEED_MAX = 2**31 - 1
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass(frozen=True)
class Choice:
    value: str
    label: str


@dataclass(frozen=True)
class ModelSpec:
    key: str
    provider: str
    display_name: str
    description: str
    min_duration_s: int
    max_duration_s: int
    default_duration_s: int
    # User-facing choice parameters (name -> allowed values), with their defaults.
    choices: dict[str, tuple[Choice, ...]] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=dict)
    supports_seed: bool = True
    # Builds the provider input from a validated request.
    build: Callable[[ValidatedRequest], dict[str, Any]] = lambda _: {}
    # Where the model reference lives in settings.
    ref_setting: str = ""

    def model_ref(self, settings: Settings) -> str:
        return str(getattr(settings.models, self.ref_setting))


@dataclass(frozen=True)
class ValidatedRequest:
    spec: ModelSpec
    prompt: str
    duration_s: int
    params: dict[str, str]
    seed: int | None

    def as_record(self) -> dict[str, Any]:
        """What the job stores as the user's request (for cards, Info and Regenerate)."""
        return {
            "model": self.spec.key,
            "prompt": self.prompt,
            "duration_s": self.duration_s,
            "params": dict(self.params),
            "seed": self.seed,
        }


def _musicgen_input(request: ValidatedRequest) -> dict[str, Any]:
    data: dict[str, Any] = {
        "prompt": request.prompt,
        "duration": request.duration_s,
        "model_version": request.params["model_version"],
        "output_format": "wav",
        "normalization_strategy": "loudness",
    }
    if request.seed is not None:
        data["seed"] = request.seed
    return data


MUSICGEN = ModelSpec(
    key="musicgen",
    provider="replicate",
    display_name="MusicGen",
    description="Meta's MusicGen: instrumental music from a text description.",
    min_duration_s=1,
    max_duration_s=30,
    default_duration_s=8,
    choices={
        "model_version": (
            Choice("stereo-melody-large", "Stereo melody (large)"),
            Choice("stereo-large", "Stereo (large)"),
            Choice("melody-large", "Mono melody (large)"),
            Choice("large", "Mono (large)"),
        )
    },
    defaults={"model_version": "stereo-melody-large"},
    build=_musicgen_input,
    ref_setting="musicgen",
)

MODELS: dict[str, ModelSpec] = {spec.key: spec for spec in (MUSICGEN,)}


def get_model(key: str) -> ModelSpec:
    try:
        return MODELS[key]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise InvalidRequestError(f"I don't know the model `{key[:40]}`. Choose one of: {known}.") from None


def clean_prompt(prompt: str, *, max_chars: int) -> str:
    """Normalise a prompt, refusing empty or over-long ones with a message that says why."""
    text = unicodedata.normalize("NFC", prompt)
    text = _CONTROL.sub(" ", text)
    text = " ".join(text.split())
    if not text:
        raise InvalidRequestError("Please describe the music you want: the prompt is empty.")
    if len(text) > max_chars:
        raise InvalidRequestError(
            f"That prompt is {len(text)} characters long; the limit is {max_chars}. Please shorten it."
        )
    return text


def validate_request(request: JobRequest, settings: Settings) -> ValidatedRequest:
    """Check every value against the catalog and settings. Raises InvalidRequestError naming the problem."""
    spec = get_model(request.model)
    prompt = clean_prompt(request.prompt, max_chars=settings.jobs.max_prompt_chars)

    max_duration = min(spec.max_duration_s, settings.jobs.max_duration_s)
    min_duration = max(spec.min_duration_s, settings.jobs.min_duration_s)
    duration = request.duration_s
    if duration is None:
        duration = min(max(spec.default_duration_s, min_duration), max_duration)
    if not min_duration <= duration <= max_duration:
        raise InvalidRequestError(
            f"`duration` must be between {min_duration} and {max_duration} seconds (you asked for {duration})."
        )

    params: dict[str, str] = dict(spec.defaults)
    for name, value in request.params.items():
        allowed = spec.choices.get(name)
        if allowed is None:
            raise InvalidRequestError(f"{spec.display_name} has no parameter `{name[:40]}`.")
        values = [choice.value for choice in allowed]
        if value not in values:
            raise InvalidRequestError(f"`{name}` must be one of: {', '.join(values)}.")
        params[name] = str(value)

    seed = request.seed
    if seed is not None:
        if not spec.supports_seed:
            raise InvalidRequestError(f"{spec.display_name} doesn't take a seed.")
        if not 1 <= seed <= SEED_MAX:
            raise InvalidRequestError(f"`seed` must be between 1 and {SEED_MAX}; leave it out for a random seed.")
    return ValidatedRequest(spec=spec, prompt=prompt, duration_s=duration, params=params, seed=seed)
