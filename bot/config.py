"""Settings: a TOML file, overridden by ``ENCORE_<SECTION>__<KEY>`` environment variables.

Secrets never live in the file: they come only from the environment (``DISCORD_TOKEN``,
``REPLICATE_API_TOKEN``, ``REPLICATE_WEBHOOK_SECRET``) and are held as ``SecretStr`` so that
they never show up in ``repr``, logs or ``check-config`` output.
"""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("config.toml")
ENV_PREFIX = "ENCORE_"

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


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscordSettings(_Section):
    # Guild ids to sync commands to instantly on startup (empty: global sync only).
    dev_guild_ids: list[int] = Field(default_factory=list)
    # Sync at startup when the commands changed since the last sync (their hash is kept in the database).
    sync_commands: bool = True
    # The job card is edited at most this often per job.
    card_edit_interval_s: float = Field(default=2.0, ge=0.0, le=60.0)


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


class WebhookSettings(_Section):
    # Public HTTPS base URL that reaches the webhook server; empty disables webhooks (poll only).
    public_url: AnyHttpUrl | None = None
    host: str = "0.0.0.0"  # noqa: S104 - the server is meant to be reachable behind a proxy
    port: int = Field(default=8080, ge=0, le=65535)
    path: str = "/webhooks/replicate"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A client must send a request's headers within header_timeout_s (also how long an idle keep-alive
    # connection stays open) and its body within body_timeout_s (a Cog upload too), else it is cut off.
    header_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    @field_validator("public_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class JobSettings(_Section):
    # Poll backoff: first poll after poll_initial_s, growing by poll_factor up to poll_max_s.
    poll_initial_s: float = Field(default=1.0, gt=0, le=60)
    poll_max_s: float = Field(default=15.0, gt=0, le=300)
    poll_factor: float = Field(default=1.5, ge=1.0, le=4.0)
    # With webhooks on, a job is polled only after this grace period.
    webhook_grace_s: float = Field(default=30.0, ge=0, le=600)
    # A job that has not finished after this long is failed as timed out (and canceled upstream).
    timeout_s: float = Field(default=1800.0, gt=0, le=86_400)
    # Delivery to Discord is retried this many times before the job is failed.
    delivery_attempts: int = Field(default=5, ge=1, le=50)
    retry_s: float = Field(default=5.0, gt=0, le=600)
    max_prompt_chars: int = Field(default=500, ge=1, le=4000)
    # Bounds on every model's own length range (the catalog's); the defaults leave each model its full range.
    min_duration_s: int = Field(default=1, ge=1)
    max_duration_s: int = Field(default=600, ge=1, le=600)
    # The length made when a command gives none, on every model (within its range); 0: each model's own
    # default (MusicGen and Stable Audio 8 s, songs 30 s; `python -m bot models` lists them).
    default_duration_s: int = Field(default=0, ge=0, le=600)


class AudioSettings(_Section):
    """Limits on audio people hand in (a melody to follow, a clip to continue)."""

    max_input_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Hosts attachments may be downloaded from (Discord's CDN), only over https on port 443, no redirects.
    input_hosts: list[str] = Field(default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"])
    # For tests against a Discord simulator only: one more origin (scheme://host:port, exactly) attachments
    # may be downloaded from, e.g. "http://127.0.0.1:8123". Leave it empty.
    test_cdn_origin: AnyHttpUrl | None = None
    max_input_s: float = Field(default=300.0, gt=0, le=3600)
    download_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # Threads that decode people's files, apart from the rest of Encore's work: a hostile file keeps at
    # most these busy.
    decode_threads: int = Field(default=2, ge=1, le=16)

    @field_validator("test_cdn_origin", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("test_cdn_origin")
    @classmethod
    def _only_an_origin(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and (value.path not in (None, "", "/") or value.query or value.username):
            raise ValueError("must be an origin only: scheme://host:port")
        return value


class LimitsSettings(_Section):
    """Fairness and cost. 0 turns a limit off. Days are UTC days. Failed and canceled jobs don't count."""

    user_jobs_in_flight: int = Field(default=3, ge=0, le=1000)
    user_cooldown_s: float = Field(default=0.0, ge=0, le=86_400)
    user_daily_jobs: int = Field(default=50, ge=0)
    user_daily_audio_s: int = Field(default=1800, ge=0)
    guild_daily_jobs: int = Field(default=500, ge=0)
    guild_daily_audio_s: int = Field(default=18_000, ge=0)
    guild_daily_budget_usd: float = Field(default=5.0, ge=0)
    daily_budget_usd: float = Field(default=50.0, ge=0)
    # Jobs at each provider at once; more wait their turn, taken round-robin between people. 0: no cap.
    replicate_jobs_in_flight: int = Field(default=20, ge=0, le=1000)
    elevenlabs_jobs_in_flight: int = Field(default=2, ge=0, le=100)
    # What providers charge, for the actual cost of each job: Replicate GPU seconds, ElevenLabs audio seconds.
    replicate_usd_per_s: float = Field(default=0.0014, ge=0)
    elevenlabs_usd_per_s: float = Field(default=0.0075, ge=0)


class SafetySettings(_Section):
    """Prompt rules for every guild (admins can add their own words)."""

    blocked_words: list[str] = Field(default_factory=list)
    # Regular expressions, matched case-insensitively anywhere in the prompt.
    blocked_patterns: list[str] = Field(default_factory=list)
    # Refuse prompts naming these artists (models shouldn't imitate real artists).
    refuse_artist_names: bool = False
    artist_names: list[str] = Field(default_factory=list)
    allow_dms: bool = True

    @field_validator("blocked_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value


class StorageSettings(_Section):
    dir: Path = Path("data")
    # Output downloads are capped in size and time.
    max_output_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # Retention: audio files (finished tracks, clips people handed in, stems) are deleted this many days
    # after their job was made; Extend, Full track, Stems and Retry need them until then. 0 keeps them forever.
    keep_files_days: float = Field(default=30.0, ge=0, le=36_500)
    # Ids of handled webhooks are kept this long to drop redeliveries (Replicate signs a 5-minute window).
    keep_webhook_ids_hours: float = Field(default=24.0, ge=1, le=24 * 365)
    # How often the clean-up runs.
    cleanup_interval_s: float = Field(default=3600.0, ge=1, le=7 * 86_400)
    # SQLite's quick integrity check of the database file: at startup, then at most this often (0: never).
    integrity_check_s: float = Field(default=3600.0, ge=0, le=86_400 * 7)

    @property
    def database_path(self) -> Path:
        return self.dir / "encore.sqlite3"

    @property
    def outputs_dir(self) -> Path:
        return self.dir / "outputs"

    @property
    def inputs_dir(self) -> Path:
        return self.dir / "inputs"


class LoggingSettings(_Section):
    level: str = "INFO"
    # "text" for people, "json" (one object per line) for log collectors. Either way lines carry job=<id>.
    format: Literal["text", "json"] = "text"

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper


class Secrets(BaseModel):
    """Secrets from the environment only."""

    model_config = ConfigDict(frozen=True)

    discord_token: SecretStr | None = None
    replicate_api_token: SecretStr | None = None
    replicate_webhook_secret: SecretStr | None = None
    elevenlabs_api_key: SecretStr | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Secrets:
        env = os.environ if environ is None else environ

        def get(name: str) -> SecretStr | None:
            value = env.get(name, "").strip()
            return SecretStr(value) if value else None

        return cls(
            discord_token=get("DISCORD_TOKEN"),
            replicate_api_token=get("REPLICATE_API_TOKEN"),
            replicate_webhook_secret=get("REPLICATE_WEBHOOK_SECRET"),
            elevenlabs_api_key=get("ELEVENLABS_API_KEY"),
        )


class Settings(BaseSettings):
    """Every setting, validated. Build with :func:`load_settings`."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    discord: DiscordSettings = DiscordSettings()
    replicate: ReplicateSettings = ReplicateSettings()
    models: ModelSettings = ModelSettings()
    cog: CogSettings = CogSettings()
    elevenlabs: ElevenLabsSettings = ElevenLabsSettings()
    stems: StemsSettings = StemsSettings()
    limits: LimitsSettings = LimitsSettings()
    safety: SafetySettings = SafetySettings()
    audio: AudioSettings = AudioSettings()
    webhooks: WebhookSettings = WebhookSettings()
    jobs: JobSettings = JobSettings()
    storage: StorageSettings = StorageSettings()
    logging: LoggingSettings = LoggingSettings()

    _toml_data: ClassVar[dict[str, Any]] = {}

    @model_validator(mode="before")
    @classmethod
    def _merge_model_routes(cls, data: Any) -> Any:
        """Model routes are tables with defaults of their own: setting one key (from the file, or e.g.
        ENCORE_MODELS__MUSICGEN__PROVIDER=cog) keeps the rest of the built-in route."""
        if isinstance(data, dict) and isinstance(data.get("models"), dict):
            data = {**data, "models": _deep_merge(ModelSettings().model_dump(), data["models"])}
        return data

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment wins over the file, which is passed as init kwargs.
        return (env_settings, init_settings)


def require_secret(secret: SecretStr | None, name: str) -> str:
    """A secret that must be set, or the ConfigError that says where to put it."""
    if secret is None:
        raise ConfigError(f"{name} is not set. Put it in the environment (it is never read from the config file).")
    return secret.get_secret_value()


def _format_validation_error(exc: ValidationError, source: str) -> str:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        message = "unknown setting" if error["type"] == "extra_forbidden" else error["msg"]
        key = f"[{loc[0]}] {'.'.join(loc[1:])}" if len(loc) > 1 else loc[0]
        env_name = ENV_PREFIX + "__".join(part.upper() for part in loc)
        lines.append(f"  {key}: {message} (env {env_name})")
    return f"invalid configuration in {source}:\n" + "\n".join(lines)


# Settings that are secrets: accepted from the environment, refused in the file.
_SECRET_KEYS = {("cog", "upload_secret")}


def _deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def resolve_config_path(path: Path | None) -> Path | None:
    """``--config`` if given (it must exist), else ``config.toml`` when present, else none."""
    if path is not None:
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        return path
    return DEFAULT_CONFIG_FILE if DEFAULT_CONFIG_FILE.is_file() else None


def load_settings(path: Path | None = None) -> Settings:
    """Load and validate settings; raise :class:`ConfigError` with one clear message."""
    config_path = resolve_config_path(path)
    data: dict[str, Any] = {}
    if config_path is not None:
        try:
            data = tomllib.loads(config_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{config_path} is not valid TOML: {exc}") from None
        except OSError as exc:
            raise ConfigError(f"cannot read {config_path}: {exc.strerror}") from None
    source = str(config_path) if config_path else "environment/defaults"
    for section, key in _SECRET_KEYS:
        if isinstance(data.get(section), dict) and key in data[section]:
            env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"invalid configuration in {source}:\n  [{section}] {key}: secrets are never read from the "
                f"config file; set {env_name} in the environment instead"
            )
    try:
        return Settings(**data)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def describe(settings: Settings, secrets: Secrets) -> str:
    """The effective settings as TOML-like text, with secrets masked."""
    lines: list[str] = []
    for section_name, section in settings:
        lines.append(f"[{section_name}]")
        assert isinstance(section, BaseModel)
        for key, value in section.model_dump(mode="json").items():
            if isinstance(getattr(section, key), SecretStr):
                value = "set (hidden)" if getattr(section, key) is not None else None
            if isinstance(value, dict):
                continue  # nested tables follow below
            lines.append(f"{key} = {_toml_value(value)}")
        for key, value in section.model_dump(mode="json").items():
            if isinstance(value, dict):
                lines.append(f"[{section_name}.{key}]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in value.items())
        lines.append("")
    lines.append("# secrets (environment only)")
    for name, value in secrets.model_dump().items():
        state = "set (hidden)" if value is not None else "not set"
        lines.append(f"# {name.upper()}: {state}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'
