"""Where each catalog model runs (``[models.*]``) and who splits stems (``[stems]``).

A route names its provider; which names exist is the provider registry's to say (``bot.providers.registry``),
so the settings are checked against it when they are loaded (:meth:`~bot.config.Settings.with_providers`).
The providers' own sections (``[replicate]``, ``[cog]``, ``[elevenlabs]``...) are declared in their modules.
"""

from __future__ import annotations

from typing import Literal

from bot.config.sections import Section


class ModelRoute(Section):
    """Where one catalog model runs: a provider, and what that provider is asked to run."""

    # One of the registry's providers; checked when the settings are loaded.
    provider: str = "replicate"
    # Replicate: "owner/name:<64-hex version id>" (pinned) or "owner/name" (official-model route).
    # Ignored by the cog provider, which serves one model per server.
    ref: str


class ModelSettings(Section):
    musicgen: ModelRoute = ModelRoute(
        ref="meta/musicgen:671ac645ce5e552cc63a54a2bbff63fcf798043055d2dac5fc9e36a837eedcfb"
    )
    stable_audio: ModelRoute = ModelRoute(
        ref="stackadoc/stable-audio-open-1.0:9aff84a639f96d0f7e6081cdea002d15133d0043727f849c40abdd166b7c75a8"
    )
    riffusion: ModelRoute = ModelRoute(
        ref="riffusion/riffusion:8cf61ea6c56afd61d8f5b9ffd14d7c216c0a93844ce2d82ac1c9ecc9c7f24e05"
    )
    # ElevenLabs Music; its model id is [elevenlabs] model_id.
    song: ModelRoute = ModelRoute(provider="elevenlabs", ref="music")


class StemsSettings(Section):
    # Who splits stems: "elevenlabs" (stem-separation) or "replicate" (the demucs model below).
    provider: Literal["elevenlabs", "replicate"] = "elevenlabs"
    demucs_ref: str = "ryan5453/demucs:0000000000000000000000000000000000000000000000000000000000000000"
