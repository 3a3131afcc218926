"""The model catalog: each model, what it can do, and every parameter it takes.

Commands, validation, the CLI, help text and autocomplete all read this module; adding a model is a
catalog entry, not new command code. A :class:`Param` knows its type, default, range and how to
parse a value typed as text; a :class:`ModelSpec` knows how a validated request becomes the provider's
input and how to read the provider's output.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from bot.config import ModelRoute, Settings, SongOutputFormat
from bot.errors import InvalidRequestError
from bot.jobs.models import JobRequest
from bot.text import quoted

SEED_MAX = 2**31 - 1
MAX_BATCH = 4
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Capability(StrEnum):
    TEXT = "text to music"
    VOCALS = "songs with vocals and lyrics"
    MELODY = "follows the melody of a clip"
    CONTINUATION = "continues a clip"
    INTERPOLATION = "blends two prompts"
    SPECTROGRAM = "spectrogram image"
    STEMS = "stem separation"


class ParamType(StrEnum):
    STRING = "text"
    INTEGER = "whole number"
    NUMBER = "number"
    BOOLEAN = "true/false"
    CHOICE = "choice"


@dataclass(frozen=True)
class Param:
    """One user-facing parameter. ``name`` is what people type; ``input_key`` what the model receives."""

    name: str
    type: ParamType
    description: str
    default: Any = None  # None: leave it out and let the model decide
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    input_key: str | None = None
    # Shown in the common case (a slash option of its own); the rest are "advanced" (options:).
    common: bool = False
    max_length: int | None = None

    @property
    def key(self) -> str:
        return self.input_key or self.name

    def range_text(self) -> str:
        if self.type == ParamType.CHOICE:
            return "one of " + ", ".join(self.choices)
        if self.type == ParamType.BOOLEAN:
            return "true or false"
        if self.minimum is not None and self.maximum is not None:
            return f"{_fmt(self.minimum)} to {_fmt(self.maximum)}"
        if self.minimum is not None:
            return f"at least {_fmt(self.minimum)}"
        if self.type == ParamType.STRING and self.max_length:
            return f"up to {self.max_length} characters"
        return self.type.value

    def help_line(self) -> str:
        default = "" if self.default is None else f"; default {_fmt(self.default)}"
        return f"`{self.name}`: {self.description} ({self.range_text()}{default})"

    def coerce(self, value: Any) -> Any:
        """Parse (from text if needed) and check one value; InvalidRequestError names the parameter."""
        bad = InvalidRequestError(f"`{self.name}` must be {self.range_text()} (you gave {quoted(str(value))}).")
        if self.type == ParamType.BOOLEAN:
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise bad
        if self.type == ParamType.CHOICE:
            text = str(value).strip()
            if text not in self.choices:
                raise bad
            return text
        if self.type == ParamType.STRING:
            text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", str(value))).split())
            if self.max_length is not None and len(text) > self.max_length:
                raise InvalidRequestError(
                    f"`{self.name}` is {len(text)} characters long; the limit is {self.max_length}."
                )
            return text
        number: float
        if isinstance(value, bool):
            raise bad
        try:
            number = float(value) if not isinstance(value, int | float) else value
        except (TypeError, ValueError):
            raise bad from None
        if not math.isfinite(number):
            raise bad
        if self.type == ParamType.INTEGER:
            if number != int(number):
                raise bad
            number = int(number)
        if (self.minimum is not None and number < self.minimum) or (self.maximum is not None and number > self.maximum):
            raise bad
        return number


def _fmt(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


@dataclass(frozen=True)
class Outputs:
    """What a model's output holds: the audio file's URL, an image's URL if it makes one, and named
    extra audio files (stems)."""

    audio: str
    image: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ValidatedRequest:
    spec: ModelSpec
    prompt: str
    duration_s: float
    params: dict[str, Any]
    seed: int | None
    count: int = 1
    audio_s: float | None = None  # length of the clip handed in, if any
    clip_pending: bool = False  # a clip is handed in but not read yet: its length is checked later

    def as_record(self) -> dict[str, Any]:
        """What a job stores as the user's request (cards, Info, Regenerate)."""
        return {
            "model": self.spec.key,
            "prompt": self.prompt,
            "duration_s": self.duration_s,
            "params": dict(self.params),
            "seed": self.seed,
            "count": self.count,
        }

    def with_seed(self, seed: int | None) -> ValidatedRequest:
        return replace(self, seed=seed)


def _single_url(output: Any) -> Outputs:
    if isinstance(output, str):
        return Outputs(audio=output)
    if isinstance(output, list) and output and isinstance(output[0], str):
        return Outputs(audio=output[0])
    raise ValueError("no audio in the model's output")


@dataclass(frozen=True)
class ModelSpec:
    key: str
    display_name: str
    description: str
    settings_field: str  # the [models.<field>] table that routes it
    capabilities: frozenset[Capability]
    params: tuple[Param, ...]
    # Output length: settable between min and max (fixed_duration_s when the model decides).
    min_duration_s: int = 1
    max_duration_s: int = 30
    default_duration_s: int = 8
    fixed_duration_s: float | None = None
    duration_key: str | None = "duration"
    duration_unit: int = 1  # the model's length input per second (ElevenLabs takes milliseconds)
    prompt_key: str | None = "prompt"
    seed_key: str | None = "seed"
    seed_random: Any = None  # the model's "random seed" value, sent when none is chosen (None: omit)
    max_prompt_chars: int | None = None  # the model's own limit; None: [jobs] max_prompt_chars
    auto_seed: bool = True  # pick a seed when none is given, so every take can be labelled and redone
    output_formats: tuple[str, ...] = ("wav",)
    fixed_input: Mapping[str, Any] = field(default_factory=dict)
    # Rough cost in US dollars: per run plus per second of output, for estimates before submitting.
    cost_per_run_usd: float = 0.0
    cost_per_output_s_usd: float = 0.0
    check: Callable[[ValidatedRequest], None] = lambda _: None
    read_output: Callable[[Any], Outputs] = _single_url
    # Where it runs when not a [models.<field>] table (stems follow [stems]).
    route_from: Callable[[Settings], ModelRoute] | None = None

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        known = ", ".join(p.name for p in self.params)
        raise InvalidRequestError(f"{self.display_name} has no parameter {quoted(name)}. It takes: {known}.")

    @property
    def advanced_params(self) -> tuple[Param, ...]:
        return tuple(p for p in self.params if not p.common)

    def route(self, settings: Settings) -> ModelRoute:
        if self.route_from is not None:
            return self.route_from(settings)
        return getattr(settings.models, self.settings_field)

    def estimate_cost_usd(self, request: ValidatedRequest) -> float:
        return request.count * (self.cost_per_run_usd + self.cost_per_output_s_usd * request.duration_s)

    def effective(self, request: ValidatedRequest, name: str) -> Any:
        """The value a parameter takes: given, else what Encore sends by default, else the model's default."""
        param = self.param(name)
        if name in request.params:
            return request.params[name]
        return self.fixed_input.get(param.key, param.default)

    def build_input(self, request: ValidatedRequest) -> dict[str, Any]:
        """The provider input: Encore's fixed choices, the parameters given, prompt, length and seed.

        Parameters left out are left to the model's own defaults (the catalog's are documentation).
        """
        data: dict[str, Any] = dict(self.fixed_input)
        for name, value in request.params.items():
            data[self.param(name).key] = value
        if self.prompt_key is not None:
            data[self.prompt_key] = request.prompt
        if self.duration_key is not None:
            data[self.duration_key] = int(request.duration_s * self.duration_unit)
        if self.seed_key is not None:
            seed = request.seed if request.seed is not None else self.seed_random
            if seed is not None:
                data[self.seed_key] = seed
        return data

    def help_text(self, settings: Settings | None = None) -> str:
        """What the model does and takes; with ``settings``, the lengths this bot allows (see ``duration_range``),
        where it runs and roughly what a run costs there."""
        if self.fixed_duration_s == 0.0:
            length = "as long as the track"
        elif self.fixed_duration_s:
            length = f"about {_fmt(self.fixed_duration_s)} s"
        else:
            if settings is None:
                low, high, default = self.min_duration_s, self.max_duration_s, self.default_duration_s
            else:
                (low, high), default = duration_range(self, settings), default_duration(self, settings)
            length = f"{low}-{high} s (default {default})"
        seconds = self.fixed_duration_s or self.default_duration_s
        cost = self.cost_per_run_usd + self.cost_per_output_s_usd * seconds
        provider = self.route(settings).provider if settings is not None else None
        if provider == "cog":
            where = "Runs on your own Cog server: no per-run cost."
        else:
            name = {"replicate": "Replicate", "elevenlabs": "ElevenLabs"}.get(provider or "", provider)
            where = f"Roughly ${cost:.3f} for {_fmt(seconds)} s" + (f" on {name}." if name else ".")
        lines = [
            f"**{self.display_name}** (`{self.key}`): {self.description}",
            f"Can: {', '.join(sorted(c.value for c in self.capabilities))}. Length: {length}. "
            f"Formats: {', '.join(self.output_formats)}. {where}",
        ]
        lines += [f"• {p.help_line()}" for p in self.params]
        return "\n".join(lines)


# -- MusicGen --------------------------------------------------------------------------------------

MUSICGEN_VERSIONS = ("stereo-melody-large", "stereo-large", "melody-large", "large")
MUSICGEN_MAX_PROMPT_S = 30  # the longest clip segment MusicGen continues from
MELODY_VERSIONS = ("stereo-melody-large", "melody-large")


def _musicgen_check(request: ValidatedRequest) -> None:
    version = request.spec.effective(request, "model_version")
    if request.params.get("multi_band_diffusion") and "stereo" in version:
        raise InvalidRequestError("`multi_band_diffusion` only works with the mono models (`melody-large` or `large`).")
    start, end = request.params.get("continuation_start"), request.params.get("continuation_end")
    if start is not None and end is not None and start > end:
        raise InvalidRequestError("`continuation_start` must not be after `continuation_end`.")
    if request.audio_s is None and not request.clip_pending:
        if request.params.get("continuation"):
            raise InvalidRequestError("`continuation` needs an audio clip to continue: use `/music melody` with one.")
        return
    if version in ("stereo-large", "large") and not request.params.get("continuation"):
        raise InvalidRequestError("Following a melody needs a melody model: `stereo-melody-large` or `melody-large`.")
    if request.params.get("continuation") and request.audio_s is not None:
        # The output includes the clip segment: its length counts towards the total duration.
        segment = min(end if end is not None else request.audio_s, request.audio_s) - (start or 0)
        if segment <= 0:
            raise InvalidRequestError("`continuation_start` is past the end of the clip.")
        if segment > MUSICGEN_MAX_PROMPT_S or segment >= request.duration_s:
            raise InvalidRequestError(
                f"The part of the clip to continue is {segment:.0f} s long: it must be under {MUSICGEN_MAX_PROMPT_S} s "
                f"and shorter than `duration` ({_fmt(request.duration_s)} s, which includes it)."
            )


MUSICGEN = ModelSpec(
    key="musicgen",
    display_name="MusicGen",
    description="Meta's MusicGen: instrumental music from a description, optionally following a melody.",
    settings_field="musicgen",
    capabilities=frozenset({Capability.TEXT, Capability.MELODY, Capability.CONTINUATION}),
    min_duration_s=1,
    max_duration_s=30,
    default_duration_s=8,
    output_formats=("wav", "mp3"),
    fixed_input={"model_version": "stereo-melody-large", "output_format": "wav", "normalization_strategy": "loudness"},
    cost_per_output_s_usd=0.0023,  # ~1.6 s of A100 time per output second at $0.0014/s
    check=_musicgen_check,
    params=(
        Param(
            "model_version",
            ParamType.CHOICE,
            "which MusicGen model",
            "stereo-melody-large",
            choices=MUSICGEN_VERSIONS,
            common=True,
        ),
        Param("output_format", ParamType.CHOICE, "audio file format", "wav", choices=("wav", "mp3")),
        Param(
            "normalization_strategy",
            ParamType.CHOICE,
            "how loudness is normalised",
            "loudness",
            choices=("loudness", "clip", "peak", "rms"),
        ),
        Param("top_k", ParamType.INTEGER, "sample from the k most likely tokens", 250, minimum=0, maximum=2048),
        Param("top_p", ParamType.NUMBER, "nucleus sampling; 0 uses top_k instead", 0.0, minimum=0.0, maximum=1.0),
        Param("temperature", ParamType.NUMBER, "higher is more adventurous", 1.0, minimum=0.0, maximum=5.0),
        Param(
            "classifier_free_guidance", ParamType.INTEGER, "how closely to follow the prompt", 3, minimum=0, maximum=20
        ),
        Param("multi_band_diffusion", ParamType.BOOLEAN, "cleaner decoding (mono models only)", False),
        Param("continuation", ParamType.BOOLEAN, "continue the clip instead of following its melody", False),
        Param(
            "continuation_start",
            ParamType.INTEGER,
            "continue from this second of the clip",
            None,
            minimum=0,
            maximum=600,
        ),
        Param(
            "continuation_end",
            ParamType.INTEGER,
            "continue up to this second of the clip",
            None,
            minimum=0,
            maximum=600,
        ),
    ),
)

# -- Stable Audio Open -----------------------------------------------------------------------------

STABLE_AUDIO = ModelSpec(
    key="stable-audio",
    display_name="Stable Audio Open",
    description="Stability AI's Stable Audio Open 1.0: sound design, loops and textures up to 47 s.",
    settings_field="stable_audio",
    capabilities=frozenset({Capability.TEXT}),
    min_duration_s=1,
    max_duration_s=47,
    default_duration_s=8,
    duration_key="seconds_total",
    seed_random=-1,
    fixed_input={"seconds_start": 0, "batch_size": 1},
    cost_per_run_usd=0.004,
    cost_per_output_s_usd=0.0004,
    params=(
        Param("negative_prompt", ParamType.STRING, "what to avoid", None, max_length=500),
        Param("steps", ParamType.INTEGER, "diffusion steps; more is slower and finer", 100, minimum=1, maximum=500),
        Param("cfg_scale", ParamType.NUMBER, "how closely to follow the prompt", 6.0, minimum=0.0, maximum=25.0),
        Param(
            "sampler_type",
            ParamType.CHOICE,
            "diffusion sampler",
            "dpmpp-3m-sde",
            choices=(
                "dpmpp-3m-sde",
                "dpmpp-2m-sde",
                "k-heun",
                "k-lms",
                "k-dpmpp-2s-ancestral",
                "k-dpm-2",
                "k-dpm-fast",
            ),
        ),
        Param("sigma_min", ParamType.NUMBER, "lowest noise level", 0.03, minimum=0.0, maximum=1000.0),
        Param("sigma_max", ParamType.NUMBER, "highest noise level", 500.0, minimum=0.0, maximum=1000.0),
        Param("init_noise_level", ParamType.NUMBER, "starting noise level", 1.0, minimum=0.0, maximum=100.0),
    ),
)

# -- Riffusion -------------------------------------------------------------------------------------

RIFFUSION_SEED_IMAGES = (
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
)


def _riffusion_output(output: Any) -> Outputs:
    if not isinstance(output, dict) or not isinstance(output.get("audio"), str):
        raise ValueError("riffusion output has no audio")
    image = output.get("spectrogram")
    return Outputs(audio=output["audio"], image=image if isinstance(image, str) else None)


RIFFUSION = ModelSpec(
    key="riffusion",
    display_name="Riffusion",
    description="Riffusion: short riffs from a spectrogram diffusion model; blends between two prompts.",
    settings_field="riffusion",
    capabilities=frozenset({Capability.TEXT, Capability.INTERPOLATION, Capability.SPECTROGRAM}),
    fixed_duration_s=5.0,
    min_duration_s=5,
    max_duration_s=5,
    default_duration_s=5,
    duration_key=None,
    prompt_key="prompt_a",
    seed_key=None,
    cost_per_run_usd=0.002,
    read_output=_riffusion_output,
    params=(
        Param("prompt_b", ParamType.STRING, "the second prompt to blend towards", None, max_length=500, common=True),
        Param(
            "alpha",
            ParamType.NUMBER,
            "0 is all the first prompt, 1 all the second",
            0.5,
            minimum=0.0,
            maximum=1.0,
            common=True,
        ),
        Param("denoising", ParamType.NUMBER, "how far to move from the seed image", 0.75, minimum=0.0, maximum=1.0),
        Param("num_inference_steps", ParamType.INTEGER, "diffusion steps", 50, minimum=1, maximum=100),
        Param(
            "seed_image_id", ParamType.CHOICE, "the spectrogram to start from", "vibes", choices=RIFFUSION_SEED_IMAGES
        ),
    ),
)

# -- ElevenLabs Music ------------------------------------------------------------------------------

# The `format:` choices of /music song; raw PCM arrives without a header and is delivered as WAV.
SONG_FORMATS: tuple[SongOutputFormat, ...] = (
    "mp3_44100_128",
    "mp3_44100_192",
    "mp3_48000_192",
    "mp3_44100_64",
    "opus_48000_128",
    "opus_48000_192",
    "pcm_44100",
    "pcm_48000",
)


SONG = ModelSpec(
    key="song",
    display_name="ElevenLabs Music",
    description="ElevenLabs Music: full songs with vocals and lyrics (or instrumentals), up to 10 minutes.",
    settings_field="song",
    capabilities=frozenset({Capability.TEXT, Capability.VOCALS}),
    min_duration_s=3,
    max_duration_s=600,
    default_duration_s=30,
    duration_key="music_length_ms",
    duration_unit=1000,
    max_prompt_chars=4100,  # ElevenLabs' limit: room for lyrics
    auto_seed=False,  # a seed only works with a composition plan: send one only when asked
    seed_key="seed",
    output_formats=("mp3", "opus", "wav"),
    cost_per_output_s_usd=0.0075,  # rough: about $0.45 a minute on a paid plan
    params=(
        Param("instrumental", ParamType.BOOLEAN, "no vocals", False, input_key="force_instrumental", common=True),
        Param("output_format", ParamType.CHOICE, "audio format and quality", "mp3_44100_128", choices=SONG_FORMATS),
    ),
)

# -- stems -----------------------------------------------------------------------------------------


def _stems_output(output: Any) -> Outputs:
    if not isinstance(output, dict):
        raise ValueError("stem separation output is not a dict")
    files = {str(name): url for name, url in output.items() if isinstance(url, str)}
    if not files:
        raise ValueError("stem separation returned no files")
    first = next(iter(files.values()))
    return Outputs(audio=first, files=files)


STEM_VARIATIONS = {"two": "two_stems_v1", "six": "six_stems_v1"}

# Splitting a track: ElevenLabs' stem separation, or the demucs model on Replicate ([stems] provider).
ELEVENLABS_STEMS = ModelSpec(
    key="stems",
    display_name="Stem separation (ElevenLabs)",
    description="Splits a track into stems: vocals and accompaniment, or vocals, drums, bass, guitar, piano, other.",
    settings_field="stems",
    capabilities=frozenset({Capability.STEMS}),
    fixed_duration_s=0.0,
    duration_key=None,
    prompt_key=None,
    seed_key=None,
    cost_per_run_usd=0.05,
    route_from=lambda settings: ModelRoute(provider="elevenlabs", ref="stem-separation"),
    params=(Param("stems", ParamType.CHOICE, "how many stems", "six", choices=tuple(STEM_VARIATIONS), common=True),),
)

DEMUCS = ModelSpec(
    key="demucs",
    display_name="Stem separation (Demucs)",
    description="Meta's Demucs on Replicate: drums, bass, other and vocals (plus guitar and piano with six).",
    settings_field="stems",
    capabilities=frozenset({Capability.STEMS}),
    fixed_duration_s=0.0,
    duration_key=None,
    prompt_key=None,
    seed_key=None,
    fixed_input={"format": "wav"},
    route_from=lambda settings: ModelRoute(provider="replicate", ref=settings.stems.demucs_ref),
    cost_per_run_usd=0.03,
    read_output=_stems_output,
    params=(
        Param(
            "model",
            ParamType.CHOICE,
            "which Demucs model",
            "htdemucs",
            choices=("htdemucs", "htdemucs_6s", "htdemucs_ft", "hdemucs_mmi"),
        ),
        Param("format", ParamType.CHOICE, "stem file format", "wav", choices=("wav", "mp3", "flac")),
    ),
)

MODELS: dict[str, ModelSpec] = {
    spec.key: spec for spec in (MUSICGEN, STABLE_AUDIO, RIFFUSION, SONG, ELEVENLABS_STEMS, DEMUCS)
}


def all_params() -> dict[str, Param]:
    """Every parameter name in the catalog (the CLI offers each as a flag)."""
    params: dict[str, Param] = {}
    for spec in MODELS.values():
        for param in spec.params:
            params.setdefault(param.name, param)
    return params


TEXT_MODELS = tuple(spec for spec in MODELS.values() if Capability.TEXT in spec.capabilities and spec.key != "song")


def get_model(key: str) -> ModelSpec:
    try:
        return MODELS[key]
    except KeyError:
        known = ", ".join(sorted(MODELS))
        raise InvalidRequestError(f"I don't know the model {quoted(key)}. Choose one of: {known}.") from None


def clean_prompt(prompt: str, *, max_chars: int, name: str = "prompt") -> str:
    """Normalise a prompt, refusing empty or over-long ones with a message that says why."""
    text = " ".join(_CONTROL.sub(" ", unicodedata.normalize("NFC", prompt)).split())
    if not text:
        raise InvalidRequestError(f"Please describe the music you want: the {name} is empty.")
    if len(text) > max_chars:
        raise InvalidRequestError(
            f"That {name} is {len(text)} characters long; the limit is {max_chars}. Please shorten it."
        )
    return text


def parse_options(text: str) -> dict[str, str]:
    """``"temperature=1.2 top_k=200, output_format=mp3"`` -> a dict of raw values (advanced options)."""
    options: dict[str, str] = {}
    for part in re.split(r"[,\s]+", text.strip()):
        if not part:
            continue
        name, sep, value = part.partition("=")
        if not sep or not name or not value:
            raise InvalidRequestError(f"Write options as `name=value`, e.g. `temperature=1.2` (not {quoted(part)}).")
        if name in options:
            raise InvalidRequestError(f"{quoted(name)} is given twice.")
        options[name] = value
    return options


def duration_range(spec: ModelSpec, settings: Settings) -> tuple[int, int]:
    """The lengths ``spec`` may make here: its own range, narrowed by ``[jobs] min/max_duration_s`` if they do."""
    return (
        max(spec.min_duration_s, settings.jobs.min_duration_s),
        min(spec.max_duration_s, settings.jobs.max_duration_s),
    )


def default_duration(spec: ModelSpec, settings: Settings) -> int:
    """The length made when none is asked for: ``[jobs] default_duration_s`` if set (not 0), else the model's
    own default, within :func:`duration_range`."""
    low, high = duration_range(spec, settings)
    return min(max(settings.jobs.default_duration_s or spec.default_duration_s, low), high)


def check_duration(spec: ModelSpec, settings: Settings, seconds: float, *, name: str = "duration") -> None:
    """Refuse a length outside :func:`duration_range`, saying when it is this bot's limit, not the model's."""
    low, high = duration_range(spec, settings)
    if low <= seconds <= high:
        return
    narrowed = (low, high) != (spec.min_duration_s, spec.max_duration_s)
    why = f"; this bot's limit, the model makes {spec.min_duration_s}-{spec.max_duration_s} s" if narrowed else ""
    raise InvalidRequestError(
        f"`{name}` must be between {low} and {high} seconds for {spec.display_name} "
        f"(you asked for {_fmt(seconds)}{why})."
    )


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
            raise InvalidRequestError(f"{spec.display_name} always makes about {_fmt(spec.fixed_duration_s)} s.")
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
            raise InvalidRequestError(f"{spec.display_name} doesn't take a seed: every run is a surprise.")
        if not 1 <= seed <= SEED_MAX:
            raise InvalidRequestError(f"`seed` must be between 1 and {SEED_MAX}; leave it out for a random seed.")
    if not 1 <= request.count <= MAX_BATCH:
        raise InvalidRequestError(f"`count` must be between 1 and {MAX_BATCH}.")
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
