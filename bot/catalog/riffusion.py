"""Riffusion: short riffs from a spectrogram diffusion model, blending between two prompts."""

from __future__ import annotations

from typing import Any

from bot.catalog.params import Capability, Param, ParamType
from bot.catalog.spec import ModelSpec, Outputs

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
