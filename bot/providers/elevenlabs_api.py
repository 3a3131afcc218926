"""ElevenLabs Music's API as data: its settings section (``[elevenlabs]``), and how an error answer becomes a
typed error (once, here: messages for people name what to do, never carry raw provider text)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import AnyHttpUrl, Field

from bot.catalog.elevenlabs import SongOutputFormat, StemsOutputFormat
from bot.config import Section, Settings
from bot.errors import (
    PromptRefusedError,
    ProviderAuthError,
    ProviderCreditsError,
    ProviderError,
    ProviderInputError,
    ProviderRateLimitError,
    ProviderUnavailableError,
)


class ElevenLabsSettings(Section):
    """``[elevenlabs]``: ElevenLabs Music (ELEVENLABS_API_KEY in the environment): full songs with vocals,
    composition plans, song metadata and stems."""

    api_base: AnyHttpUrl = AnyHttpUrl("https://api.elevenlabs.io")
    # music_v1 takes composition plans as styles + sections; music_v2 as chunks. Plans follow this model.
    model_id: Literal["music_v1", "music_v2", "music_v2_5"] = "music_v1"
    # Songs' format when /music song is given no `format:` (see SongOutputFormat).
    output_format: SongOutputFormat = "mp3_44100_128"
    # Stem separation's format: not the songs' (stems take no "auto" and no mp3_48000_*).
    stems_output_format: StemsOutputFormat = "mp3_44100_128"
    connect_timeout_s: float = Field(default=10.0, gt=0, le=120)
    # A song can take minutes: the read timeout is per chunk of the response, the total caps the call.
    read_timeout_s: float = Field(default=300.0, gt=0, le=3600)
    total_timeout_s: float = Field(default=900.0, gt=0, le=7200)
    max_retries: int = Field(default=3, ge=0, le=10)
    retry_base_s: float = Field(default=2.0, gt=0, le=60)


def elevenlabs_settings(settings: Settings) -> ElevenLabsSettings:
    """``[elevenlabs]`` of ``settings``."""
    return settings.section("elevenlabs", ElevenLabsSettings)


def signed(input: Mapping[str, Any], output_format: str) -> bool:
    """The job's server asked for C2PA content credentials, and its output is MP3 (ElevenLabs signs only MP3)."""
    return bool(input.get("sign_with_c2pa")) and output_format.startswith("mp3_")


def error_for(status: int, body: Any, retry_after_s: float | None) -> ProviderError:
    """One ElevenLabs error response as a typed error with a message for people."""
    detail = body.get("detail") if isinstance(body, dict) else None
    text = json.dumps(body)[:300] if body is not None else ""
    if status == 422:
        fields = []
        if isinstance(detail, list):
            fields = sorted({str(item.get("loc", ["", ""])[-1]) for item in detail if isinstance(item, dict)})
        return ProviderInputError(
            "ElevenLabs refused those settings" + (f" ({', '.join(fields)})." if fields else "."), detail=text
        )
    info: dict[str, Any] = detail if isinstance(detail, dict) else {}
    code = str(info.get("code") or info.get("status") or "")
    raw_data = info.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    if code == "bad_prompt":
        suggestion = data.get("prompt_suggestion")
        message = "ElevenLabs won't make that prompt (artist names and copyrighted lyrics aren't allowed)."
        if suggestion:
            message += f" Try: “{str(suggestion)[:300]}”"
        return PromptRefusedError(message, detail=text, suggestion=suggestion)
    if code == "bad_composition_plan":
        return PromptRefusedError(
            "ElevenLabs won't compose that plan (artist names and copyrighted lyrics aren't allowed). "
            "I've kept its suggested plan for you.",
            detail=text,
            suggestion=data.get("composition_plan_suggestion"),
        )
    if code in ("quota_exceeded", "insufficient_credits") or status == 402:
        return ProviderCreditsError(detail=text)
    if status in (401, 403):
        if code == "subscription_required":
            return ProviderAuthError("The ElevenLabs plan Encore uses doesn't include music.", detail=text)
        return ProviderAuthError("ElevenLabs rejected Encore's API key. An operator needs to fix it.", detail=text)
    if status == 429:
        message = {
            "concurrent_limit_exceeded": "ElevenLabs is making as many songs as it allows. Please try again soon.",
            "system_busy": "ElevenLabs is very busy right now. Please try again in a little while.",
        }.get(code, "ElevenLabs is rate limiting Encore. Please try again in a minute.")
        return ProviderRateLimitError(message, detail=text, retry_after_s=retry_after_s)
    if status >= 500:
        return ProviderUnavailableError("ElevenLabs had a problem. Please try again later.", detail=text)
    return ProviderInputError("ElevenLabs couldn't do that.", detail=text)
