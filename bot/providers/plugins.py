"""The machinery of provider plug-ins: a :class:`Registry` of declarations, and the :class:`Providers` built
from it for one run.

A registry derives everything that depends on which providers exist: the settings' schema (each provider's
own ``[name]`` section, ``[models.*] provider`` limited to its names), the secrets read from the environment,
the checks and the clients. The engine asks the :class:`Providers` it is given (which carry their registry)
and never compares provider names. The table of Encore's providers is :mod:`bot.providers.registry`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

from bot import logs
from bot.catalog import DEMUCS, Host, ModelSpec, stems_model
from bot.config import LimitsSettings, Secrets, Settings, load_settings
from bot.errors import ConfigError
from bot.providers.base import (
    BuildContext,
    CallProvider,
    Costed,
    FormatDefault,
    Planner,
    PredictionProvider,
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    SessionFactory,
    SignsWebhooks,
    TakesUploads,
    WebhookRoute,
)
from bot.providers.ratelimit import LimitFactory, local_limit
from bot.providers.uploads import UploadStore

# What [stems] demucs_ref still holds when nobody replaced the shipped placeholder.
_DEMUCS_HINT = (
    "set a pinned version id of the demucs model (replicate.com/ryan5453/demucs, Versions tab), "
    'or use [stems] provider = "elevenlabs"'
)

Client = PredictionProvider | CallProvider


class Registry(Mapping[str, ProviderSpec[Any]]):
    """Provider declarations by name, and what follows from them."""

    def __init__(self, *specs: ProviderSpec[Any]) -> None:
        self._specs: dict[str, ProviderSpec[Any]] = {}
        for provider in specs:
            if provider.name in self._specs:
                raise ValueError(f"two providers are named {provider.name!r}")
            self._specs[provider.name] = provider

    def __getitem__(self, name: str) -> ProviderSpec[Any]:
        return self._specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    def adding(self, *specs: ProviderSpec[Any]) -> Registry:
        """This registry with ``specs`` registered too."""
        return Registry(*self._specs.values(), *specs)

    def spec(self, name: str) -> ProviderSpec[Any]:
        """The declaration of provider ``name``; a ConfigError naming the known ones if there is none."""
        try:
            return self._specs[name]
        except KeyError:
            known = ", ".join(sorted(self._specs))
            raise ConfigError(f"invalid configuration: unknown provider {name!r} (known: {known})") from None

    def host(self, model: ModelSpec, settings: Settings) -> Host:
        """Where ``model`` runs with ``settings``, as its help (``/music models``, ``python -m bot models``) says it."""
        provider = self.spec(model.route(settings).provider)
        return Host(title=provider.title, billed=provider.billed)

    # -- settings and secrets ------------------------------------------------------------------------------

    @cached_property
    def settings_model(self) -> type[Settings]:
        """The settings with each provider's section, and ``[models.*] provider`` one of its names."""
        return Settings.with_providers({name: provider.settings for name, provider in self._specs.items()})

    def load_settings(self, path: Path | None = None) -> Settings:
        """The settings from ``path`` (else ``config.toml``, else the defaults) and the environment; a
        ConfigError naming each bad key."""
        return load_settings(path, self.settings_model)

    def settings(self, data: Mapping[str, Any] | None = None) -> Settings:
        """Settings made in code from ``data`` (section -> keys), the environment overriding it."""
        return self.settings_model.model_validate(dict(data or {}))

    def secret_envs(self) -> tuple[str, ...]:
        """Every environment variable a provider reads a secret from."""
        return tuple(dict.fromkeys(env for provider in self._specs.values() for env in provider.secret_envs))

    def secrets_from_env(self, environ: Mapping[str, str] | None = None) -> Secrets:
        """``DISCORD_TOKEN`` and every provider's secrets, from ``environ`` (default: the process's)."""
        return Secrets.from_env(environ, names=self.secret_envs())

    # -- what the core asks --------------------------------------------------------------------------------

    def capacity_caps(self, settings: Settings) -> dict[str, int]:
        """Jobs each provider may run at once (0: no cap), by provider name: the scheduler's caps."""
        return {name: provider.capacity(settings) for name, provider in self._specs.items()}

    def cost_usd(self, job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
        """What running ``job`` cost, by its provider's own rule and the ``[limits]`` prices; None when the
        provider gave no figure (the estimate stands)."""
        return self.spec(job.provider).cost_usd(job, predict_time_s, limits)

    def routes_in_use(self, settings: Settings) -> dict[str, list[ProviderRoute]]:
        """Where the settings send work, by provider: each ``[models.*]`` route, and the stems' model."""
        uses: dict[str, list[ProviderRoute]] = {}
        for model, route in settings.models:
            uses.setdefault(route.provider, []).append(ProviderRoute(model, route.ref, f"[models.{model}] ref"))
        stems = stems_model(settings)
        route = stems.route(settings)
        if stems is DEMUCS:
            used = ProviderRoute(stems.key, route.ref, "[stems] demucs_ref", placeholder_hint=_DEMUCS_HINT)
        else:
            used = ProviderRoute(stems.key, route.ref, "[stems] provider")
        uses.setdefault(route.provider, []).append(used)
        return uses

    def check(self, settings: Settings) -> dict[str, list[ProviderRoute]]:
        """Refuse settings a provider can't run with (ConfigError, before anything opens); the routes in use."""
        uses = self.routes_in_use(settings)
        for name in uses:
            self.spec(name)  # an unknown name is refused, whatever the config's schema let through
        for name, provider in self._specs.items():
            provider.check(settings, uses.get(name, []))
        return uses

    def build(
        self, settings: Settings, secrets: Secrets, session: SessionFactory, rate_limit: LimitFactory = local_limit
    ) -> Providers:
        """Check the settings, then build every provider they use (each from its own module's factory), with
        ``rate_limit`` making their limiters. The providers' secrets are masked in the logs from now on."""
        uses = self.check(settings)
        for name, value in secrets.env.items():
            if value is not None and name in self.secret_envs():
                logs.register_secret(name, value.get_secret_value())
        context = BuildContext(settings=settings, secrets=secrets, session=session, rate_limit=rate_limit)
        clients: dict[str, Client] = {}
        for name, provider in self._specs.items():
            client = provider.build(context, uses.get(name, []))
            if client is None:
                continue
            expected = PredictionProvider if provider.protocol is ProviderProtocol.PREDICTIONS else CallProvider
            if not isinstance(client, expected):
                raise TypeError(f"provider {name!r} declares {provider.protocol} but built a {type(client).__name__}")
            clients[name] = client
        return Providers(clients, self)


class Providers(Mapping[str, Client]):
    """The providers built for these settings, by name (only those in use and set up), with the registry
    they came from: what the engine and the web server ask."""

    def __init__(self, clients: Mapping[str, Client], registry: Registry) -> None:
        self._clients = dict(clients)
        self.registry = registry

    def __getitem__(self, name: str) -> Client:
        return self._clients[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def spec(self, name: str) -> ProviderSpec[Any]:
        """The declaration of provider ``name`` (built or not)."""
        return self.registry.spec(name)

    def predictions(self) -> dict[str, PredictionProvider]:
        """The built providers of asynchronous predictions, by name (what jobs are submitted to)."""
        return {name: client for name, client in self._clients.items() if isinstance(client, PredictionProvider)}

    def calls(self) -> dict[str, CallProvider]:
        """The built providers of long synchronous calls, by name."""
        return {name: client for name, client in self._clients.items() if isinstance(client, CallProvider)}

    def planner(self, name: str) -> Planner | None:
        """Provider ``name``, if it is built and makes composition plans."""
        client = self._clients.get(name)
        return client if isinstance(client, Planner) else None

    def output_format(self, name: str) -> str | None:
        """The format provider ``name`` makes when a request names none, if that is a setting of its own."""
        client = self._clients.get(name)
        return client.output_format if isinstance(client, FormatDefault) else None

    def configured(self) -> dict[str, bool]:
        """Every known provider, and whether it is built (``/healthz``, ``encore_provider_configured``)."""
        return {name: name in self._clients for name in self.registry}

    def with_webhook(self, route: WebhookRoute) -> list[str]:
        """The built providers that report back by ``route``."""
        return [name for name in self._clients if self.registry[name].webhook is route]

    def signing(self) -> dict[str, SignsWebhooks]:
        """The built providers whose webhooks are signed, by name (each at its ``webhook_path``)."""
        return {
            name: client
            for name in self.with_webhook(WebhookRoute.SIGNED)
            if isinstance(client := self._clients[name], SignsWebhooks)
        }

    def upload_targets(self) -> dict[str, UploadStore | None]:
        """The built providers that hand files back by uploading them to Encore, by name, and where their
        uploads are kept (None: not set up, uploads refused)."""
        return {name: client.uploads for name, client in self._clients.items() if isinstance(client, TakesUploads)}
