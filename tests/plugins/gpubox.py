"""A provider added the way the architecture promises: this one module, and one registration
(``PROVIDERS.adding(gpubox.PROVIDER)``, what a line in ``bot/providers/registry.py`` would be).

"gpubox" is a second self-hosted model server of one's own (it speaks the Cog protocol, so it reuses the Cog
client), under a name of its own, with its own ``[gpubox]`` settings section (``ENCORE_GPUBOX__*``), its own
capacity, its own per-job webhook and upload routes (``/gpubox/webhooks/...``, ``/gpubox/uploads/...``), and no
cost. Nothing in ``bot/`` names it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator

from bot.config import LimitsSettings, Section, Settings
from bot.errors import ConfigError
from bot.providers.base import (
    BuildContext,
    Costed,
    OnRestart,
    ProviderProtocol,
    ProviderRoute,
    ProviderSpec,
    WebhookRoute,
)
from bot.providers.cog_server import CogClient, upload_store

NAME = "gpubox"


class GpuBoxSettings(Section):
    """``[gpubox]``: where the box is, how much it runs at once, the secret its uploads carry."""

    base_url: AnyHttpUrl | None = None
    jobs_at_once: int = Field(default=1, ge=1, le=8)
    retry_s: float = Field(default=5.0, gt=0, le=600)
    upload_secret: SecretStr | None = Field(default=None, min_length=16)  # ENCORE_GPUBOX__UPLOAD_SECRET only

    @field_validator("base_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


def _settings(settings: Settings) -> GpuBoxSettings:
    return settings.section(NAME, GpuBoxSettings)


def check(settings: Settings, routes: Sequence[ProviderRoute]) -> None:
    if routes and _settings(settings).base_url is None:
        models = ", ".join(route.model for route in routes)
        raise ConfigError(f"invalid configuration: {models} run on the GPU box, but [gpubox] base_url is not set")


def build(context: BuildContext, routes: Sequence[ProviderRoute]) -> CogClient | None:
    if not routes:
        return None
    settings = context.settings
    cfg = _settings(settings)
    assert cfg.base_url is not None
    uploads = upload_store(settings, NAME, cfg.upload_secret, root=settings.storage.dir / "gpubox-uploads", max_files=4)
    session = context.session(connect_s=5.0, read_s=30.0)
    return CogClient(session, base_url=str(cfg.base_url), uploads=uploads, retry_s=cfg.retry_s, name=NAME)


def cost_usd(job: Costed, predict_time_s: float | None, limits: LimitsSettings) -> float | None:
    return 0.0  # one's own box


PROVIDER = ProviderSpec[CogClient](
    name=NAME,
    title="the GPU box ([gpubox] base_url)",
    key_env=None,
    protocol=ProviderProtocol.PREDICTIONS,
    capacity=lambda settings: _settings(settings).jobs_at_once,
    cost_usd=cost_usd,
    webhook=WebhookRoute.PER_JOB,
    on_restart=OnRestart.POLL,
    check=check,
    build=build,
    settings=GpuBoxSettings,
)
