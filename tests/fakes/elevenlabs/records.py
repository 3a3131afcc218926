"""What the fake ElevenLabs keeps: each response body's transfer, generations, separations and plans."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(eq=False, kw_only=True)
class Transfer:
    """Progress of a response body: bytes written, and how it ended."""

    bytes_sent: int = 0
    completed: bool = False  # the whole body was written
    truncated: bool = False  # an injected truncation cut it
    aborted: bool = False  # the client went away first


@dataclass(eq=False, kw_only=True)
class Generation(Transfer):
    """One accepted generation request (compose, stream, detailed or detailed stream)."""

    song_id: str
    endpoint: str  # compose | stream | detailed | detailed_stream
    body: dict[str, Any]  # the JSON body as sent
    model_id: str
    prompt: str | None
    composition_plan: dict[str, Any] | None  # as sent (composition_plan or music_prompt)
    plan: dict[str, Any]  # the plan used: the one sent, or derived from the prompt
    seed: int | None
    music_length_ms: int | None  # as sent
    length_ms: int  # the song's length
    output_format: str  # resolved (never "auto")
    requested_format: str  # the query value, "auto" by default
    force_instrumental: bool
    with_timestamps: bool
    store_for_inpainting: bool
    finetune_id: str | None
    sign_with_c2pa: bool  # the audio carries the fake's C2PA manifest (see c2pa.py)
    metadata: dict[str, Any]
    words_timestamps: list[dict[str, Any]] | None
    waveform_visual: list[int] | None = None  # detailed, with with_waveform_visual
    audio: bytes = b""  # the audio bytes sent (for detailed: the audio part)
    boundary: str | None = None  # detailed only


@dataclass(eq=False, kw_only=True)
class Separation(Transfer):
    """One accepted stem-separation request."""

    stem_variation_id: str
    output_format: str
    file: bytes
    filename: str | None
    frames: int  # the input's length in frames at the format's sample rate
    sign_with_c2pa: bool
    stems: dict[str, bytes] = field(default_factory=dict)  # entry name (e.g. "vocals.mp3") -> bytes
    archive: bytes = b""


@dataclass(frozen=True)
class PlanRecord:
    prompt: str
    model_id: str
    music_length_ms: int | None
    source: dict[str, Any] | None
    plan: dict[str, Any]


ChunkHook = Callable[[Transfer, int, bytes], Awaitable[None]]
