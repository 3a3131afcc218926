"""The providers' routes on Encore's web server, mounted from their declarations (``ProviderSpec.webhook``):

- ``WebhookRoute.SIGNED``: ``POST <its webhook_path>``, Standard Webhooks signatures checked with the secret it
  signs with (a provider whose secret can't be had is polled instead, and gets no route);
- ``WebhookRoute.PER_JOB``: ``POST /<name>/webhooks/<job>/<token>``, the job's token checked;
- a provider that uploads its outputs to Encore (``TakesUploads``): ``PUT /<name>/uploads/<secret>/<file>``.

Nothing here names a provider: a new one's routes come with its declaration.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.config import Settings
from bot.providers.base import WebhookRoute
from bot.providers.plugins import Providers
from bot.web.per_job import JobWebhookHandler, JobWebhookView, PredictionCheck, UploadView
from bot.web.webhooks import PredictionHandler, SignedWebhookView, WebhookVerifier


@dataclass(frozen=True)
class SignedRoute:
    """Where a provider's signed webhooks come, and the check of their signatures."""

    path: str
    verifier: WebhookVerifier


async def signed_routes(providers: Providers, settings: Settings) -> dict[str, SignedRoute]:
    """Each built provider whose webhooks are signed and whose secret can be had, by name (the others are
    polled only)."""
    routes: dict[str, SignedRoute] = {}
    for name, client in providers.signing().items():
        secret = await client.webhook_secret()
        if secret:
            routes[name] = SignedRoute(providers.spec(name).signed_webhook_path(settings), WebhookVerifier(secret))
    return routes


@dataclass(frozen=True)
class Handlers:
    """What the routes hand their requests to (the job service's intake)."""

    signed: PredictionHandler  # (webhook id, prediction) -> False for a redelivery
    per_job: JobWebhookHandler  # (job id, token, prediction) -> False if the token is not the job's
    expects_upload: PredictionCheck  # prediction id -> whether an active job waits for its files


def mount(
    app: web.Application,
    providers: Providers,
    signed: dict[str, SignedRoute],
    handlers: Handlers,
    *,
    max_upload_bytes: int,
) -> None:
    """Add every built provider's routes to ``app``."""
    views: list[SignedWebhookView | JobWebhookView | UploadView] = [
        SignedWebhookView(route.verifier, handlers.signed, source=name, path=route.path)
        for name, route in signed.items()
    ]
    views += [JobWebhookView(name, handlers.per_job) for name in providers.with_webhook(WebhookRoute.PER_JOB)]
    views += [
        UploadView(name, uploads=store, expects_upload=handlers.expects_upload, max_upload_bytes=max_upload_bytes)
        for name, store in providers.upload_targets().items()
    ]
    for view in views:
        view.add_to(app)
