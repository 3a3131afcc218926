"""Settings: a TOML file, overridden by ``ENCORE_<SECTION>__<KEY>`` environment variables.

Secrets never live in the file: they come only from the environment (``DISCORD_TOKEN``,
``REPLICATE_API_TOKEN``, ``REPLICATE_WEBHOOK_SECRET``) and are held as ``SecretStr`` so that
they never show up in ``repr``, logs or ``check-config`` output.

``sections`` and ``providers`` hold the tables of the file, ``secrets`` the environment-only secrets, and
``settings`` all of them together: :class:`Settings`, :func:`load_settings` and :func:`describe`.
"""

from bot.config.database import database_url, mask_url
from bot.config.providers import (
    CogSettings,
    ElevenLabsSettings,
    ModelRoute,
    ModelSettings,
    ProviderName,
    ReplicateSettings,
    SongOutputFormat,
    StemsOutputFormat,
    StemsSettings,
)
from bot.config.secrets import Secrets, require_secret
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
    "CogSettings",
    "DiscordSettings",
    "ElevenLabsSettings",
    "JobSettings",
    "LimitsSettings",
    "LoggingSettings",
    "ModelRoute",
    "ModelSettings",
    "ProviderName",
    "ReplicateSettings",
    "SafetySettings",
    "Secrets",
    "Settings",
    "SongOutputFormat",
    "StemsOutputFormat",
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
