"""The request bodies, as strict pydantic models (extra keys forbidden), and the models' limits."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MODEL_IDS = ("music_v1", "music_v2", "music_v2_5")
V1_MODELS = frozenset({"music_v1"})  # take a MusicPrompt; the others take a CompositionPlan
MAX_LENGTH_MS = 600_000
MIN_LENGTH_MS = 3_000


class _Strict(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")


Styles = Annotated[list[str], Field(max_length=50)]
SectionMs = Annotated[int, Field(ge=3000, le=120_000)]
SongId = Annotated[str, Field(min_length=1, max_length=100)]


class TimeRange(_Strict):
    start_ms: Annotated[int, Field(ge=0)]
    end_ms: Annotated[int, Field(ge=0)]

    @model_validator(mode="after")
    def _ordered(self) -> TimeRange:
        if self.end_ms <= self.start_ms:
            raise ValueError("fake: end_ms must be greater than start_ms")
        return self


class SourceFrom(_Strict):
    song_id: SongId
    range: TimeRange
    negative_ranges: Annotated[list[TimeRange], Field(max_length=10)] | None = None


class SongSection(_Strict):
    section_name: Annotated[str, Field(min_length=1, max_length=100)]
    positive_local_styles: Styles
    negative_local_styles: Styles
    duration_ms: SectionMs
    lines: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=30)]
    source_from: SourceFrom | None = None


class MusicPrompt(_Strict):
    """The v1 plan."""

    positive_global_styles: Styles
    negative_global_styles: Styles
    sections: Annotated[list[SongSection], Field(min_length=1, max_length=30)]  # min_length: guess


class AudioReferenceChunk(_Strict):
    song_id: SongId
    range: TimeRange


class GenerationChunk(_Strict):
    text: Annotated[str, Field(max_length=6000)]
    duration_ms: SectionMs
    positive_styles: Styles
    negative_styles: Styles | None = None
    context_adherence: Literal["low", "medium", "high"] | None = None
    conditioning_ref: AudioReferenceChunk | None = None
    condition_strength: Literal["low", "medium", "high", "xhigh"] | None = None


class CompositionPlan(_Strict):
    """The v2 plan; each chunk is checked separately (``_plan_errors``) so its ``loc`` has no union tag."""

    chunks: Annotated[list[dict[str, Any]], Field(min_length=1, max_length=30)]  # min_length: guess


Bool = bool | None


class GenerationBody(_Strict):
    prompt: Annotated[str, Field(min_length=1, max_length=4100)] | None = None
    composition_plan: dict[str, Any] | None = None
    music_prompt: dict[str, Any] | None = None  # deprecated alias of composition_plan
    music_length_ms: Annotated[int, Field(ge=MIN_LENGTH_MS, le=MAX_LENGTH_MS)] | None = None
    model_id: Literal["music_v1", "music_v2", "music_v2_5"] | None = None
    seed: Annotated[int, Field(ge=0, le=2_147_483_647)] | None = None
    force_instrumental: Bool = None
    respect_sections_durations: Bool = None
    finetune_id: Annotated[str, Field(max_length=100)] | None = None
    finetune_strength: Annotated[float, Field(gt=0, le=2)] | None = None
    store_for_inpainting: Bool = None
    with_timestamps: Bool = None
    with_waveform_visual: Bool = None  # detailed endpoints (SDK 2.78)
    sign_with_c2pa: Bool = None
    # hidden/legacy fields the server accepts
    generation_mode: Literal["track", "loop", "ambience", "video_to_music"] | None = None
    lyrics_text: str | None = None
    use_phonetic_names: Bool = None
    model_style_prefix: str | None = None


class PlanBody(_Strict):
    prompt: Annotated[str, Field(min_length=1, max_length=4100)]
    music_length_ms: Annotated[int, Field(ge=MIN_LENGTH_MS, le=MAX_LENGTH_MS)] | None = None
    source_composition_plan: dict[str, Any] | None = None
    model_id: Literal["music_v1", "music_v2", "music_v2_5"] | None = None
