"""The providers Encore knows: one line each in :data:`PROVIDERS`.

Adding a provider is one module (a client implementing one of the two protocols of :mod:`bot.providers.base`,
a ``from_settings`` factory, the model of its ``[name]`` settings section and a ``PROVIDER``
:class:`~bot.providers.base.ProviderSpec`) and one line below. Everything else follows from the declarations
(:class:`~bot.providers.plugins.Registry`): the settings' schema and the secrets read, the checks, the clients
built, the scheduler's caps, the cost of a job, what a restart does to it, the web server's routes. The core
never compares provider names.
"""

from __future__ import annotations

from bot.providers import cog_server, elevenlabs, replicate
from bot.providers.plugins import Providers, Registry

PROVIDERS = Registry(
    replicate.PROVIDER,
    cog_server.PROVIDER,
    elevenlabs.PROVIDER,
)

# The table's own questions, for callers that use Encore's providers as they ship.
spec = PROVIDERS.spec
capacity_caps = PROVIDERS.capacity_caps
cost_usd = PROVIDERS.cost_usd
routes_in_use = PROVIDERS.routes_in_use
check = PROVIDERS.check
build = PROVIDERS.build
load_settings = PROVIDERS.load_settings
secrets_from_env = PROVIDERS.secrets_from_env

__all__ = [
    "PROVIDERS",
    "Providers",
    "Registry",
    "build",
    "capacity_caps",
    "check",
    "cost_usd",
    "load_settings",
    "routes_in_use",
    "secrets_from_env",
    "spec",
]
