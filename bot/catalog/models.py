"""The table of models, looked up by key."""

from __future__ import annotations

from bot.catalog.demucs import DEMUCS
from bot.catalog.elevenlabs import ELEVENLABS_STEMS, SONG
from bot.catalog.musicgen import MUSICGEN
from bot.catalog.params import Capability, Param
from bot.catalog.riffusion import RIFFUSION
from bot.catalog.spec import ModelSpec
from bot.catalog.stable_audio import STABLE_AUDIO
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.text import quoted

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
        raise InvalidRequestError.keyed("refusals.unknown_model", name=quoted(key), known=known) from None


def stems_model(settings: Settings) -> ModelSpec:
    """The model that splits stems here: the one ``[stems] provider`` runs (ElevenLabs' or Demucs)."""
    return next(
        spec
        for spec in MODELS.values()
        if Capability.STEMS in spec.capabilities and spec.route(settings).provider == settings.stems.provider
    )
