"""The provider registry: every provider the settings use builds itself from them (and reaches its service),
an unknown or unusable configuration is a clear ConfigError, and the core's lookups (caps, cost, restart,
protocol, webhook route) come from each provider's declaration."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr

from bot.catalog import DEMUCS, ELEVENLABS_STEMS, SONG
from bot.config import LimitsSettings, ModelRoute, Secrets
from bot.errors import ConfigError
from bot.providers import registry
from bot.providers.base import (
    CallProvider,
    OnRestart,
    PredictionProvider,
    ProviderProtocol,
    WebhookRoute,
)
from bot.providers.cog_server import CogClient
from bot.records import Job, JobStatus
from tests.conftest import make_settings
from tests.fakes.cog import FakeCog
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.models import DEMUCS as FAKE_DEMUCS
from tests.fakes.models import MUSICGEN
from tests.fakes.replicate import FakeReplicate

UPLOAD_SECRET = "upload-secret-0123456789"


class Sessions:
    """The session factory the core passes in: every session it made is closed at the end."""

    def __init__(self) -> None:
        self.made: list[tuple[float, float]] = []
        self._sessions: list[aiohttp.ClientSession] = []

    def __call__(self, *, connect_s: float, read_s: float) -> aiohttp.ClientSession:
        self.made.append((connect_s, read_s))
        timeout = aiohttp.ClientTimeout(total=None, connect=connect_s, sock_read=read_s)
        session = aiohttp.ClientSession(timeout=timeout)
        self._sessions.append(session)
        return session

    async def close(self) -> None:
        for session in self._sessions:
            await session.close()


@pytest.fixture
async def sessions() -> AsyncIterator[Sessions]:
    made = Sessions()
    yield made
    await made.close()


def secrets(replicate: FakeReplicate | None = None, eleven: FakeElevenLabs | None = None) -> Secrets:
    return Secrets(
        env={
            "REPLICATE_API_TOKEN": SecretStr(replicate.token) if replicate else None,
            "ELEVENLABS_API_KEY": SecretStr(eleven.api_key) if eleven else None,
        }
    )


def job(provider: str, model: str, **fields: Any) -> Job:
    return Job.model_validate(
        {
            "id": "abc234defg",
            "user_id": 42,
            "guild_id": 1,
            "channel_id": 2,
            "interaction_id": None,
            "token_expires_at": None,
            "card_message_id": None,
            "provider": provider,
            "model": model,
            "model_ref": "x/y",
            "request": {"prompt": "rain", "duration_s": 30},
            "input": {},
            "prediction_id": None,
            "status": JobStatus.SUCCEEDED,
            "created_at": 100.0,
            "updated_at": 100.0,
            **fields,
        }
    )


# -- building ----------------------------------------------------------------------------------------


async def test_every_configured_provider_builds_from_its_settings_and_reaches_its_service(
    tmp_path: Path, sessions: Sessions
) -> None:
    async with FakeReplicate() as replicate, FakeCog() as cog, FakeElevenLabs() as eleven:
        # MusicGen on a Cog server, the rest on Replicate, songs on ElevenLabs, stems by Demucs on Replicate.
        settings = make_settings(
            tmp_path / "data",
            replicate={"api_base": replicate.base_url, "connect_timeout_s": 3.0, "read_timeout_s": 31.0},
            elevenlabs={"api_base": eleven.base_url},
            cog={
                "base_url": cog.base_url,
                "upload_secret": UPLOAD_SECRET,
                "connect_timeout_s": 4.0,
                "read_timeout_s": 32.0,
            },
            webhooks={"public_url": "https://encore.example.com"},
            models={"musicgen": {"provider": "cog"}},
            stems={"provider": "replicate", "demucs_ref": f"{FAKE_DEMUCS.ref}:{FAKE_DEMUCS.versions[0]}"},
        )

        providers = registry.build(settings, secrets(replicate, eleven), sessions)

        assert providers.configured() == {"replicate": True, "cog": True, "elevenlabs": True}
        assert set(providers.predictions()) == {"replicate", "cog"}
        assert isinstance(providers["replicate"], PredictionProvider)
        assert isinstance(providers["cog"], PredictionProvider)
        assert isinstance(providers.calls()["elevenlabs"], CallProvider)
        # Each built itself from its own section: its own session and timeouts, its address, its secret.
        assert sorted(sessions.made) == [(3.0, 31.0), (4.0, 32.0), (10.0, 300.0)]
        made = await providers.predictions()["replicate"].submit(
            f"{MUSICGEN.ref}:{MUSICGEN.versions[0]}", {"prompt": "rain", "duration": 1}
        )
        assert made.id in replicate.predictions  # the token and api_base were the fake's
        cog_client = providers["cog"]
        assert isinstance(cog_client, CogClient)
        assert await cog_client.health() == "READY"
        uploads = providers.upload_targets()["cog"]
        assert uploads is not None
        assert uploads.public_prefix == f"https://encore.example.com/cog/uploads/{UPLOAD_SECRET}/"
        assert uploads.root == settings.storage.dir / "uploads"
        client = providers.planner("elevenlabs")
        assert client is not None
        plan = await client.plan("warm lofi beat", length_ms=10_000)
        assert plan.get("sections")  # the API key was the fake's
        assert providers.signing() == {"replicate": providers["replicate"]}
        assert providers.with_webhook(WebhookRoute.PER_JOB) == ["cog"]


async def test_a_provider_nothing_routes_to_is_not_built(tmp_path: Path, sessions: Sessions) -> None:
    settings = make_settings(tmp_path / "data")  # Replicate models and songs; no ELEVENLABS_API_KEY, no Cog

    providers = registry.build(settings, Secrets(env={"REPLICATE_API_TOKEN": SecretStr("r8_test")}), sessions)

    assert providers.configured() == {"replicate": True, "cog": False, "elevenlabs": False}
    assert providers.calls() == {}
    assert providers.upload_targets() == {}
    assert len(sessions.made) == 1


async def test_the_replicate_webhook_secret_comes_from_the_environment_else_from_replicate(
    tmp_path: Path, sessions: Sessions
) -> None:
    async with FakeReplicate() as replicate:
        settings = make_settings(tmp_path / "data", replicate={"api_base": replicate.base_url})
        asked = registry.build(settings, secrets(replicate), sessions).signing()["replicate"]
        assert await asked.webhook_secret() == replicate.webhook_secret
        assert [r.path for r in replicate.requests] == ["/v1/webhooks/default/secret"]

        configured = Secrets(
            env={"REPLICATE_API_TOKEN": SecretStr(replicate.token), "REPLICATE_WEBHOOK_SECRET": SecretStr("s3")}
        )
        given = registry.build(settings, configured, sessions).signing()["replicate"]
        assert await given.webhook_secret() == "s3"
        assert len(replicate.requests) == 1  # not asked again


# -- settings it can't run with ------------------------------------------------------------------------


def test_an_unknown_provider_in_the_config_file_is_a_clear_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENCORE_MODELS__MUSICGEN__PROVIDER", "elsewhere")
    with pytest.raises(ConfigError) as refused:
        registry.load_settings(None)
    message = refused.value.user_message
    assert "[models] musicgen.provider" in message
    assert all(name in message for name in registry.PROVIDERS)  # it says which names would do


def test_the_configs_provider_names_and_sections_are_the_registrys() -> None:
    settings = registry.PROVIDERS.settings()
    assert {name for name in registry.PROVIDERS if registry.PROVIDERS[name].settings} <= set(
        type(settings).model_fields
    )
    for name, provider in registry.PROVIDERS.items():
        if provider.settings is not None:
            assert settings.section(name, provider.settings) == provider.settings()  # its own model, its defaults
    assert {route.provider for _, route in settings.models} <= set(registry.PROVIDERS)  # shipped routes are known


def test_a_route_to_a_provider_the_registry_lacks_is_refused_before_anything_opens(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "data")
    # Settings made in code skip the config's validation; the registry still refuses the name.
    models = settings.models.model_copy(update={"riffusion": ModelRoute.model_construct(provider="nowhere", ref="a/b")})
    settings = settings.model_copy(update={"models": models})

    with pytest.raises(ConfigError, match=r"unknown provider 'nowhere' \(known: cog, elevenlabs, replicate\)"):
        registry.check(settings)


@pytest.mark.parametrize(
    ("sections", "message"),
    [
        ({}, "REPLICATE_API_TOKEN is not set. Put it in the environment (it is never read from the config file)."),
        (
            {"models": {"musicgen": {"ref": "not a ref"}}},
            "invalid configuration: [models.musicgen] ref: not a Replicate model reference: 'not a ref'",
        ),
        (
            {"stems": {"provider": "replicate"}},  # the shipped placeholder demucs_ref
            "invalid configuration: [stems] demucs_ref: set a pinned version id of the demucs model",
        ),
        (
            {"models": {"musicgen": {"provider": "cog"}, "stable_audio": {"provider": "cog"}}},
            "invalid configuration: musicgen, stable_audio run on a Cog server, but [cog] base_url is not set",
        ),
        (
            {"models": {"musicgen": {"provider": "cog"}}, "cog": {"base_url": "http://gpu-box:5000"}},
            "invalid configuration: musicgen run on a Cog server, which can only report back by webhook",
        ),
    ],
    ids=["no-token", "bad-ref", "demucs-placeholder", "cog-no-base-url", "cog-no-public-url"],
)
def test_settings_a_provider_cant_run_with_are_refused_in_its_words(
    tmp_path: Path, sessions: Sessions, sections: dict[str, Any], message: str
) -> None:
    settings = make_settings(tmp_path / "data", **sections)
    token = None if not sections else SecretStr("r8_test")

    with pytest.raises(ConfigError) as refused:
        registry.build(settings, Secrets(env={"REPLICATE_API_TOKEN": token}), sessions)
    assert refused.value.user_message.startswith(message)
    assert sessions.made == []  # refused before any connection was set up


# -- the core's lookups --------------------------------------------------------------------------------


def test_each_providers_cap_comes_from_its_own_setting(tmp_path: Path) -> None:
    settings = make_settings(
        tmp_path / "data",
        limits={"replicate_jobs_in_flight": 7, "elevenlabs_jobs_in_flight": 3},
        cog={"max_concurrency": 2},
    )
    assert registry.capacity_caps(settings) == {"replicate": 7, "cog": 2, "elevenlabs": 3}


def test_each_provider_prices_a_finished_job_by_its_own_rule() -> None:
    limits = LimitsSettings(replicate_usd_per_s=0.002, elevenlabs_usd_per_s=0.01)
    assert registry.cost_usd(job("replicate", "musicgen"), 12.5, limits) == pytest.approx(0.025)  # GPU seconds
    assert registry.cost_usd(job("replicate", DEMUCS.key), 40.0, limits) == pytest.approx(0.08)
    assert registry.cost_usd(job("replicate", "musicgen"), None, limits) is None  # no figure: the estimate stands
    assert registry.cost_usd(job("cog", "musicgen"), 12.5, limits) == 0.0  # your own GPUs
    assert registry.cost_usd(job("elevenlabs", SONG.key), None, limits) == pytest.approx(0.3)  # 30 s of song
    assert registry.cost_usd(job("elevenlabs", ELEVENLABS_STEMS.key), None, limits) is None


def test_what_the_core_asks_of_each_provider_is_declared() -> None:
    declared = {name: (spec.protocol, spec.webhook, spec.on_restart) for name, spec in registry.PROVIDERS.items()}
    assert declared == {
        "replicate": (ProviderProtocol.PREDICTIONS, WebhookRoute.SIGNED, OnRestart.POLL),
        "cog": (ProviderProtocol.PREDICTIONS, WebhookRoute.PER_JOB, OnRestart.POLL),
        "elevenlabs": (ProviderProtocol.CALL, WebhookRoute.NONE, OnRestart.INTERRUPTED),
    }
    assert {name: (spec.title, spec.key_env) for name, spec in registry.PROVIDERS.items()} == {
        "replicate": ("Replicate", "REPLICATE_API_TOKEN"),
        "cog": ("the Cog server ([cog] base_url)", None),
        "elevenlabs": ("ElevenLabs", "ELEVENLABS_API_KEY"),
    }
    assert registry.spec("elevenlabs").on_restart is OnRestart.INTERRUPTED
    with pytest.raises(ConfigError, match="unknown provider 'elsewhere'"):
        registry.spec("elsewhere")
