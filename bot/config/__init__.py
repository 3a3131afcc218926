"""Settings: a TOML file, overridden by ``ENCORE_<SECTION>__<KEY>`` environment variables.

Secrets never live in the file: they come only from the environment (``DISCORD_TOKEN``, and the variables
each provider declares, such as ``REPLICATE_API_TOKEN``) and are held as ``SecretStr`` so that they never
show up in ``repr``, logs or ``check-config`` output.

``sections`` and ``routes`` hold Encore's own tables of the file (each provider declares its own, in its
module), ``secrets`` the environment-only secrets, and ``settings`` all of them together: :class:`Settings`,
:func:`load_settings` and :func:`describe`. The provider registry (``bot.providers.registry``) adds the
providers' sections: load the settings through it.
"""

from bot.config.database import database_url, mask_url
from bot.config.routes import ModelRoute, ModelSettings, StemsSettings
from bot.config.secrets import Secrets, require_secret
from bot.config.sections import (
    AudioSettings,
    DiscordSettings,
    JobSettings,
    LimitsSettings,
    LoggingSettings,
    SafetySettings,
    Section,
    StorageSettings,
    WebhookSettings,
)
from bot.config.settings import (
    DEFAULT_CONFIG_FILE,
    ENV_PREFIX,
    Settings,
    describe,
    load_settings,
    resolve_config_path,
)

__all__ = [
    "DEFAULT_CONFIG_FILE",
    "ENV_PREFIX",
    "AudioSettings",
    "DiscordSettings",
    "JobSettings",
    "LimitsSettings",
    "LoggingSettings",
    "ModelRoute",
    "ModelSettings",
    "SafetySettings",
    "Secrets",
    "Section",
    "Settings",
    "StemsSettings",
    "StorageSettings",
    "WebhookSettings",
    "database_url",
    "describe",
    "load_settings",
    "mask_url",
    "require_secret",
    "resolve_config_path",
]
