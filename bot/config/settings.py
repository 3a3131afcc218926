"""Every setting together: the file read and validated, environment overrides, and the effective settings shown."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, SecretStr, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.config.providers import (
    CogSettings,
    ElevenLabsSettings,
    ModelSettings,
    ReplicateSettings,
    StemsSettings,
)
from bot.config.secrets import Secrets
from bot.config.sections import (
    AudioSettings,
    DiscordSettings,
    JobSettings,
    LimitsSettings,
    LoggingSettings,
    SafetySettings,
    StorageSettings,
    WebhookSettings,
)
from bot.errors import ConfigError

DEFAULT_CONFIG_FILE = Path("config.toml")
ENV_PREFIX = "ENCORE_"


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
        lines.append(f"# {Secrets.env_name(name)}: {state}")
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
