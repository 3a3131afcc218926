"""Secrets: from the environment only, held as ``SecretStr``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from bot.config.database import URL_ENV
from bot.errors import ConfigError


class Secrets(BaseModel):
    """Secrets from the environment only: Encore's own (Discord's token, the database URL) and the providers'
    by variable name."""

    model_config = ConfigDict(frozen=True)

    discord_token: SecretStr | None = None
    # The PostgreSQL URL with its password (bot/config/database.py); wins over [storage] url.
    database_url: SecretStr | None = None
    # The providers' secrets by environment variable (REPLICATE_API_TOKEN, ...): each one the registry declares,
    # None when it is not set.
    env: dict[str, SecretStr | None] = Field(default_factory=dict)

    def get(self, name: str) -> SecretStr | None:
        """The provider secret in environment variable ``name``, if it is set."""
        return self.env.get(name)

    def by_variable(self) -> dict[str, SecretStr | None]:
        """Every secret by the environment variable it comes from (what ``check-config`` lists)."""
        return {"DISCORD_TOKEN": self.discord_token, URL_ENV: self.database_url, **self.env}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, names: Iterable[str] = ()) -> Secrets:
        """Encore's own secrets and the variables ``names`` (the registry's: ``PROVIDERS.secrets_from_env``)."""
        env = os.environ if environ is None else environ

        def get(name: str) -> SecretStr | None:
            value = env.get(name, "").strip()
            return SecretStr(value) if value else None

        return cls(
            discord_token=get("DISCORD_TOKEN"), database_url=get(URL_ENV), env={name: get(name) for name in names}
        )


def require_secret(secret: SecretStr | None, name: str) -> str:
    """A secret that must be set, or the ConfigError that says where to put it."""
    if secret is None:
        raise ConfigError(f"{name} is not set. Put it in the environment (it is never read from the config file).")
    return secret.get_secret_value()
