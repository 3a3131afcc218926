"""Stable Audio Open: sound design, loops and textures."""

from __future__ import annotations

from bot.catalog.params import Capability, Param, ParamType
from bot.catalog.spec import ModelSpec

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
