"""MusicGen: text to music, following a melody or continuing a clip."""

from __future__ import annotations

from bot.catalog.params import Capability, Param, ParamType, _fmt
from bot.catalog.spec import ModelSpec, ValidatedRequest
from bot.errors import InvalidRequestError

MUSICGEN_VERSIONS = ("stereo-melody-large", "stereo-large", "melody-large", "large")
MUSICGEN_MAX_PROMPT_S = 30  # the longest clip segment MusicGen continues from
MELODY_VERSIONS = ("stereo-melody-large", "melody-large")


def _musicgen_check(request: ValidatedRequest) -> None:
    version = request.spec.effective(request, "model_version")
    if request.params.get("multi_band_diffusion") and "stereo" in version:
        raise InvalidRequestError.keyed("refusals.mbd_mono")
    start, end = request.params.get("continuation_start"), request.params.get("continuation_end")
    if start is not None and end is not None and start > end:
        raise InvalidRequestError.keyed("refusals.continuation_order")
    if request.audio_s is None and not request.clip_pending:
        if request.params.get("continuation"):
            raise InvalidRequestError.keyed("refusals.continuation_needs_clip")
        return
    if version in ("stereo-large", "large") and not request.params.get("continuation"):
        raise InvalidRequestError.keyed("refusals.melody_model")
    if request.params.get("continuation") and request.audio_s is not None:
        # The output includes the clip segment: its length counts towards the total duration.
        segment = min(end if end is not None else request.audio_s, request.audio_s) - (start or 0)
        if segment <= 0:
            raise InvalidRequestError.keyed("refusals.continuation_past_end")
        if segment > MUSICGEN_MAX_PROMPT_S or segment >= request.duration_s:
            raise InvalidRequestError.keyed(
                "refusals.continuation_too_long",
                segment=f"{segment:.0f}",
                limit=MUSICGEN_MAX_PROMPT_S,
                duration=_fmt(request.duration_s),
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
