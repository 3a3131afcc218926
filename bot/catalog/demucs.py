"""Demucs on Replicate: stem separation when [stems] provider is "replicate"."""

from __future__ import annotations

from typing import Any

from bot.catalog.params import Capability, Param, ParamType
from bot.catalog.spec import ModelSpec, Outputs
from bot.config import ModelRoute


def _stems_output(output: Any) -> Outputs:
    if not isinstance(output, dict):
        raise ValueError("stem separation output is not a dict")
    files = {str(name): url for name, url in output.items() if isinstance(url, str)}
    if not files:
        raise ValueError("stem separation returned no files")
    first = next(iter(files.values()))
    return Outputs(audio=first, files=files)


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
