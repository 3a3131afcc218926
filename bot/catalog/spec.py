"""A model's specification: what it can do, how a validated request becomes its input, how its output is read,
and the lengths it may make here."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from bot.catalog.params import Capability, Param, Translate, _fmt, in_english
from bot.config import ModelRoute, Settings
from bot.errors import InvalidRequestError
from bot.text import quoted


@dataclass(frozen=True)
class Outputs:
    """What a model's output holds: the audio file's URL, an image's URL if it makes one, and named
    extra audio files (stems)."""

    audio: str
    image: str | None = None
    files: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Host:
    """Where a model runs, as its help says it: the provider's ``title`` and whether a run there is billed
    (not on your own server). The caller finds it in the provider registry."""

    title: str
    billed: bool = True


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
    # Its provider can sign MP3 output with C2PA content credentials (a server's `sign_with_c2pa` asks for it).
    signs_c2pa: bool = False

    def param(self, name: str) -> Param:
        for param in self.params:
            if param.name == name:
                return param
        known = ", ".join(p.name for p in self.params)
        raise InvalidRequestError.keyed("refusals.no_param", model=self.display_name, name=quoted(name), known=known)

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

    def help_text(
        self, settings: Settings | None = None, *, host: Host | None = None, translate: Translate | None = None
    ) -> str:
        """What the model does and takes; with ``settings``, the lengths this bot allows (see ``duration_range``);
        with ``host``, where it runs and roughly what a run costs there. ``translate`` says the words (catalogue
        keys under ``models.``) in the reader's language; by default in English."""
        say = translate or in_english
        if self.fixed_duration_s == 0.0:
            length = say("models.frame.track_length", {})
        elif self.fixed_duration_s:
            length = say("models.frame.about", {"seconds": _fmt(self.fixed_duration_s)})
        else:
            if settings is None:
                low, high, default = self.min_duration_s, self.max_duration_s, self.default_duration_s
            else:
                (low, high), default = duration_range(self, settings), default_duration(self, settings)
            length = say("models.frame.range", {"low": low, "high": high, "default": default})
        seconds = self.fixed_duration_s or self.default_duration_s
        cost = self.cost_per_run_usd + self.cost_per_output_s_usd * seconds
        if host is not None and not host.billed:
            where = say("models.frame.own_server", {})
        else:
            costs = {"cost": f"${cost:.3f}", "seconds": _fmt(seconds)}
            if host is None:
                where = say("models.frame.cost", costs)
            else:
                where = say("models.frame.cost_on", {**costs, "provider": host.title})
        can = ", ".join(say(f"models.can.{c.name.lower()}", {}) for c in sorted(self.capabilities, key=str))
        description = _own(say, f"models.{self.key}.about", self.description)
        lines = [
            f"**{self.display_name}** (`{self.key}`): {description}",
            say("models.frame.summary", {"can": can, "length": length, "formats": ", ".join(self.output_formats)})
            + f" {where}",
        ]
        lines += [
            f"• {p.help_line(translate, description=_own(say, f'models.{self.key}.params.{p.name}', p.description))}"
            for p in self.params
        ]
        return "\n".join(lines)


def _own(say: Translate, key: str, english: str) -> str:
    """A model's own words (its description, a parameter's help) as ``key`` says them; its English when the
    catalogues lack the key (a model added without them)."""
    try:
        return say(key, {})
    except KeyError:
        return english


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
    asked = {"name": name, "low": low, "high": high, "model": spec.display_name, "seconds": _fmt(seconds)}
    if (low, high) == (spec.min_duration_s, spec.max_duration_s):
        raise InvalidRequestError.keyed("refusals.duration_range", **asked)
    raise InvalidRequestError.keyed(
        "refusals.duration_range_bot", model_low=spec.min_duration_s, model_high=spec.max_duration_s, **asked
    )
