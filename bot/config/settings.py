"""Every setting together: the file read and validated, environment overrides, and the effective settings shown.

:class:`Settings` holds Encore's own sections. The providers' sections are declared by the providers
themselves, so this package never imports them: the provider registry (``bot.providers.registry``, a layer
above) asks :meth:`Settings.with_providers` for the settings with each provider's section added under its name
and ``[models.*] provider`` limited to its names, and loads the file with that (:func:`load_settings`). Errors
in a provider's section read exactly as errors anywhere else.
"""

from __future__ import annotations

import inspect
import tomllib
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import BaseModel, SecretStr, ValidationError, create_model, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.config.routes import ModelRoute, ModelSettings, StemsSettings
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

SectionT = TypeVar("SectionT", bound=BaseModel)


class Settings(BaseSettings):
    """Every setting, validated. Build with :func:`load_settings` and the registry's
    :meth:`with_providers` (``bot.providers.registry.PROVIDERS.settings_model``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    discord: DiscordSettings = DiscordSettings()
    models: ModelSettings = ModelSettings()
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

    def section(self, name: str, model: type[SectionT]) -> SectionT:
        """Provider ``name``'s own section (``[name]``), as its module's ``model`` validated it."""
        value = getattr(self, name, None)
        if not isinstance(value, model):
            raise ConfigError(f"invalid configuration: there is no [{name}] section (is provider {name!r} registered?)")
        return value

    @classmethod
    def with_providers(cls, sections: Mapping[str, type[BaseModel] | None]) -> type[Settings]:
        """These settings for the providers ``sections`` names: a ``[name]`` section for each provider that has
        one (its module's model, every key with a default), and ``[models.*] provider`` one of the names."""
        names = tuple(sections)
        clash = sorted(set(names) & set(cls.model_fields))
        if clash or not names:
            raise ValueError(f"provider names must be new sections, and at least one: {clash or names}")
        known: Any = Literal[names]  # the providers' names, as one would write them out
        route = create_model(
            "ModelRoute", __base__=ModelRoute, provider=(known, ModelRoute.model_fields["provider"].default)
        )
        routes: dict[str, Any] = {
            key: (route, route.model_construct(**getattr(ModelSettings(), key).model_dump()))
            for key in ModelSettings.model_fields
        }
        models = create_model("ModelSettings", __base__=ModelSettings, **routes)
        own: dict[str, Any] = {name: (model, model()) for name, model in sections.items() if model is not None}
        return create_model(cls.__name__, __base__=cls, models=(models, models()), **own)

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


def _secret_keys(schema: type[Settings]) -> list[tuple[str, str]]:
    """The settings that are secrets (``SecretStr``): accepted from the environment, refused in the file."""
    keys = []
    for section, info in schema.model_fields.items():
        model = info.annotation
        if inspect.isclass(model) and issubclass(model, BaseModel):
            for key, field in model.model_fields.items():
                if SecretStr in (field.annotation, *typing.get_args(field.annotation)):
                    keys.append((section, key))
    return keys


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


def load_settings(path: Path | None = None, schema: type[Settings] = Settings) -> Settings:
    """Load and validate settings as ``schema`` (the registry's, with the providers' sections); raise
    :class:`ConfigError` with one clear message."""
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
    for section, key in _secret_keys(schema):
        if isinstance(data.get(section), dict) and key in data[section]:
            env_name = f"{ENV_PREFIX}{section.upper()}__{key.upper()}"
            raise ConfigError(
                f"invalid configuration in {source}:\n  [{section}] {key}: secrets are never read from the "
                f"config file; set {env_name} in the environment instead"
            )
    try:
        return schema(**data)
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
    for name, value in secrets.by_variable().items():
        state = "set (hidden)" if value is not None else "not set"
        lines.append(f"# {name}: {state}")
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
