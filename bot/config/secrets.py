"""Secrets: from the environment only, held as ``SecretStr``."""

from __future__ import annotations

import os
from typing import ClassVar

from pydantic import BaseModel, ConfigDict, SecretStr

from bot.config.database import URL_ENV
from bot.errors import ConfigError


class Secrets(BaseModel):
    """Secrets from the environment only."""

    model_config = ConfigDict(frozen=True)

    discord_token: SecretStr | None = None
    replicate_api_token: SecretStr | None = None
    replicate_webhook_secret: SecretStr | None = None
    elevenlabs_api_key: SecretStr | None = None
    # The PostgreSQL URL with its password (bot/config/database.py); wins over [storage] url.
    database_url: SecretStr | None = None

    # The environment variable of each field, where it is not the field's name in capitals.
    ENV_NAMES: ClassVar[dict[str, str]] = {"database_url": URL_ENV}

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
            database_url=get(URL_ENV),
        )

    @classmethod
    def env_name(cls, field: str) -> str:
        return cls.ENV_NAMES.get(field, field.upper())


def require_secret(secret: SecretStr | None, name: str) -> str:
    """A secret that must be set, or the ConfigError that says where to put it."""
    if secret is None:
        raise ConfigError(f"{name} is not set. Put it in the environment (it is never read from the config file).")
    return secret.get_secret_value()
