"""The providers Encore knows: a table of name -> declaration, and what the core asks of it.

Adding a provider is one module (a client implementing one of the two protocols of :mod:`bot.providers.base`,
a ``from_settings`` factory and a ``PROVIDER`` :class:`~bot.providers.base.ProviderSpec`) and one line in
:data:`PROVIDERS`. The core reads the declarations through the functions here and never compares provider
names: the scheduler's caps (:func:`capacity_caps`), a finished job's cost (:func:`cost_usd`), what a restart
does to a job (``spec(job.provider).on_restart``), which protocol runs it (``spec(...).protocol``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from bot.config import LimitsSettings, Secrets, Settings
from bot.errors import ConfigError
from bot.providers import cog_server, elevenlabs, replicate
from bot.providers.base import (
    BuildContext,
    CallProvider,
    Costed,
    PredictionProvider,
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    SessionFactory,
    SignsWebhooks,
    WebhookRoute,
)
from bot.providers.cog_server import UploadStore

PROVIDERS: Mapping[str, ProviderSpec[Any]] = {
    spec.name: spec
    for spec in (
        replicate.PROVIDER,
        cog_server.PROVIDER,
        elevenlabs.PROVIDER,
    )
}

# What [stems] demucs_ref still holds when nobody replaced the shipped placeholder.
_DEMUCS_HINT = (
    "set a pinned version id of the demucs model (replicate.com/ryan5453/demucs, Versions tab), "
    'or use [stems] provider = "elevenlabs"'
)


def spec(name: str) -> ProviderSpec[Any]:
    """The declaration of provider ``name``; a ConfigError naming the known ones if there is none."""
    try:
        return PROVIDERS[name]
    except KeyError:
        known = ", ".join(sorted(PROVIDERS))
        raise ConfigError(f"invalid configuration: unknown provider {name!r} (known: {known})") from None


def capacity_caps(settings: Settings) -> dict[str, int]:
    """Jobs each provider may run at once (0: no cap), by provider name: the scheduler's caps."""
    return {name: provider.capacity(settings) for name, provider in PROVIDERS.items()}


def cost_usd(job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
    """What running ``job`` cost, by its provider's own rule and the ``[limits]`` prices; None when the provider
    gave no figure (the estimate stands)."""
    return spec(job.provider).cost_usd(job, predict_time_s, limits)


def routes_in_use(settings: Settings) -> dict[str, list[ProviderRoute]]:
    """Where the settings send work, by provider: each ``[models.*]`` route, and the stems' provider."""
    uses: dict[str, list[ProviderRoute]] = {}
    for model, route in settings.models:
        uses.setdefault(route.provider, []).append(ProviderRoute(model, route.ref, f"[models.{model}] ref"))
    stems = settings.stems
    if stems.provider == "replicate":
        demucs = ProviderRoute("demucs", stems.demucs_ref, "[stems] demucs_ref", placeholder_hint=_DEMUCS_HINT)
        uses.setdefault(stems.provider, []).append(demucs)
    else:
        uses.setdefault(stems.provider, []).append(ProviderRoute("stems", "stem-separation", "[stems] provider"))
    return uses


def check(settings: Settings) -> dict[str, list[ProviderRoute]]:
    """Refuse settings a provider can't run with (ConfigError, before anything opens); the routes in use."""
    uses = routes_in_use(settings)
    for name in uses:
        spec(name)  # an unknown name is refused, whatever the config's schema let through
    for name, provider in PROVIDERS.items():
        provider.check(settings, uses.get(name, []))
    return uses


Client = PredictionProvider | CallProvider


class Providers(Mapping[str, Client]):
    """The providers built for these settings, by name (only those in use and set up)."""

    def __init__(self, clients: Mapping[str, Client]) -> None:
        self._clients = dict(clients)

    def __getitem__(self, name: str) -> Client:
        return self._clients[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._clients)

    def __len__(self) -> int:
        return len(self._clients)

    def predictions(self) -> dict[str, PredictionProvider]:
        """The built providers of asynchronous predictions, by name (what the job service submits to)."""
        return {name: client for name, client in self._clients.items() if isinstance(client, PredictionProvider)}

    def call_provider(self) -> CallProvider | None:
        """The built provider of long synchronous calls (songs, plans, its stems), if any."""
        return next((client for client in self._clients.values() if isinstance(client, CallProvider)), None)

    def configured(self) -> dict[str, bool]:
        """Every known provider, and whether it is built (``/healthz``, ``encore_provider_configured``)."""
        return {name: name in self._clients for name in PROVIDERS}

    def with_webhook(self, route: WebhookRoute) -> list[str]:
        """The built providers that report back by ``route``."""
        return [name for name in self._clients if PROVIDERS[name].webhook is route]

    def signing(self) -> SignsWebhooks | None:
        """The built provider whose webhooks are signed (they come to ``[webhooks] path``), if any."""
        for name in self.with_webhook(WebhookRoute.SIGNED):
            client = self._clients[name]
            if isinstance(client, SignsWebhooks):
                return client
        return None

    def uploads(self) -> UploadStore | None:
        """Where a provider with per-job webhooks that hands its files back by uploading them to Encore (Cog's
        ``--upload-url``) keeps them, if any."""
        for name in self.with_webhook(WebhookRoute.PER_JOB):
            store = getattr(self._clients[name], "uploads", None)
            if isinstance(store, UploadStore):
                return store
        return None


def build(settings: Settings, secrets: Secrets, session: SessionFactory) -> Providers:
    """Check the settings, then build every provider they use (each from its own module's factory)."""
    uses = check(settings)
    context = BuildContext(settings=settings, secrets=secrets, session=session)
    clients: dict[str, Client] = {}
    for name, provider in PROVIDERS.items():
        client = provider.build(context, uses.get(name, []))
        if client is None:
            continue
        expected = PredictionProvider if provider.protocol is ProviderProtocol.PREDICTIONS else CallProvider
        if not isinstance(client, expected):
            raise TypeError(f"provider {name!r} declares {provider.protocol} but built a {type(client).__name__}")
        clients[name] = client
    return Providers(clients)
