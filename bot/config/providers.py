"""The sections about where models run: Replicate, ElevenLabs, a Cog server, each model's route and stems."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from bot.config.sections import _Section

# ElevenLabs output formats (codec_samplerate_bitrate). Stem separation takes MP3 and Opus ones below (and PCM
# and telephony formats, which its stems can't be delivered in); not "auto" or mp3_48000_* (a 422).
StemsOutputFormat = Literal[
    "mp3_22050_32",
    "mp3_24000_48",
    "mp3_44100_32",
    "mp3_44100_64",
    "mp3_44100_96",
    "mp3_44100_128",
    "mp3_44100_192",
    "opus_48000_32",
    "opus_48000_64",
    "opus_48000_96",
    "opus_48000_128",
    "opus_48000_192",
]
# Songs take those, "auto" (mp3_44100_128 on music_v1, mp3_48000_192 on later models), mp3_48000_*, and raw PCM,
# which Encore delivers as WAV. (u-law and A-law, for telephony, are left out.)
SongOutputFormat = Literal[
    StemsOutputFormat,
    "auto",
    "mp3_48000_128",
    "mp3_48000_192",
    "mp3_48000_240",
    "mp3_48000_320",
    "pcm_8000",
    "pcm_16000",
    "pcm_22050",
    "pcm_24000",
    "pcm_32000",
    "pcm_44100",
    "pcm_48000",
]


class ReplicateSettings(_Section):
    api_base: AnyHttpUrl = AnyHttpUrl("https://api.replicate.com/v1")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    max_retries: int = Field(default=4, ge=0, le=10)
    retry_base_s: float = Field(default=0.5, gt=0, le=60)
    # Cancel a prediction on Replicate's side if it has not finished by then (Cancel-After).
    prediction_deadline_s: int = Field(default=1200, ge=5, le=7200)
    # Hosts allowed for output downloads besides api_base's own host.
    delivery_hosts: list[str] = Field(default_factory=lambda: ["replicate.delivery", "*.replicate.delivery"])
    # Replicate's documented rate limits per account; Encore spreads its calls to stay under them.
    creates_per_minute: int = Field(default=600, ge=10, le=100_000)
    requests_per_minute: int = Field(default=3000, ge=10, le=100_000)


ProviderName = Literal["replicate", "cog", "elevenlabs"]


class ModelRoute(_Section):
    """Where one catalog model runs: a provider, and for Replicate the model reference."""

    provider: ProviderName = "replicate"
    # Replicate: "owner/name:<64-hex version id>" (pinned) or "owner/name" (official-model route).
    # Ignored by the cog provider, which serves one model per server.
    ref: str


class ModelSettings(_Section):
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


class ElevenLabsSettings(_Section):
    """ElevenLabs Music: full songs with vocals, composition plans, song metadata and stems."""

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


class StemsSettings(_Section):
    # Who splits stems: "elevenlabs" (stem-separation) or "replicate" (the demucs model below).
    provider: Literal["elevenlabs", "replicate"] = "elevenlabs"
    demucs_ref: str = "ryan5453/demucs:0000000000000000000000000000000000000000000000000000000000000000"


class CogSettings(_Section):
    """A self-hosted Cog model server (the container Replicate models run in)."""

    # e.g. "http://gpu-box:5000"; empty: no cog provider.
    base_url: AnyHttpUrl | None = None
    connect_timeout_s: float = Field(default=5.0, gt=0, le=120)
    read_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Predictions the server runs at once (cog.yaml concurrency.max); more wait in Encore's queue.
    max_concurrency: int = Field(default=1, ge=1, le=64)
    # How often to ask a busy or starting server again.
    retry_s: float = Field(default=5.0, gt=0, le=600)
    # With no webhook, a job is considered lost this long after the server went idle without reporting it.
    lost_after_s: float = Field(default=360.0, gt=0, le=86_400)
    # Secret path segment of the upload target Cog PUTs output files to. Environment only
    # (ENCORE_COG__UPLOAD_SECRET), never in the file; at least 16 characters.
    upload_secret: SecretStr | None = Field(default=None, min_length=16)
    # Output files one prediction may upload; more are refused (a model's outputs: audio, maybe an image).
    max_uploads_per_prediction: int = Field(default=8, ge=1, le=256)

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value
