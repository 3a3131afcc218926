"""End to end: the real EncoreBot (unmodified discord.py) against the Discord simulator and the fake Replicate."""

from __future__ import annotations

import contextlib
import json
import tomllib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import Core
from bot.config import Secrets, Settings
from bot.discord.client import EncoreBot
from bot.providers.plugins import Registry
from bot.providers.registry import PROVIDERS
from tests.conftest import StorageBackend, make_settings
from tests.fakes.cog import FakeCog
from tests.fakes.discord import DiscordSimulator, InteractionHandle
from tests.fakes.discord.models import (
    ChannelConfig,
    GuildConfig,
    MemberConfig,
    Permission,
    RoleConfig,
    SimMessage,
)
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import free_port

SHIPPED_CONFIG = Path(__file__).resolve().parents[2] / "config.example.toml"


def shipped_config(*names: str) -> dict[str, dict[str, Any]]:
    """Sections of the shipped config.example.toml (the defaults), to run a test as Encore ships."""
    sections = tomllib.loads(SHIPPED_CONFIG.read_text(encoding="utf-8"))
    return {name: dict(sections[name]) for name in names}


def configure_as_shipped(encore: Encore) -> Settings:
    """``encore`` with the shipped [jobs], [limits] and [elevenlabs] settings (the fake's address aside)."""
    shipped = shipped_config("jobs", "limits", "elevenlabs")
    del shipped["elevenlabs"]["api_base"]
    return encore.configure(jobs=shipped["jobs"], limits=shipped["limits"], elevenlabs=shipped["elevenlabs"])


def default_guild(**overrides: Any) -> GuildConfig:
    config = GuildConfig(
        name="Encore Test Server",
        channels=[ChannelConfig("general"), ChannelConfig("quiet")],
        members=[
            MemberConfig("alice"),
            MemberConfig("bob"),
            MemberConfig("mod", roles=["Moderators"]),
            MemberConfig("boss", roles=["Admins"]),
        ],
        roles=[
            RoleConfig("Moderators", permissions=int(Permission.MANAGE_MESSAGES)),
            RoleConfig("Admins", permissions=int(Permission.ADMINISTRATOR)),
        ],
    )
    for key, value in overrides.items():
        setattr(config, key, value)
    return config


class Encore:
    """The bot under test: its core and its discord.py client, restartable on the same database.

    Settings come from :meth:`configure` (the tests' own: no limits, fast polls), or from a config file read
    as an operator's would be, with environment overrides (:meth:`use_config_file`); ``/encore reload``
    reads that file again.
    """

    def __init__(
        self, sim: DiscordSimulator, fake: FakeReplicate, data_dir: Path, backend: StorageBackend | None = None
    ) -> None:
        self.sim = sim
        self.fake = fake
        self.data_dir = data_dir
        self.backend = backend or StorageBackend("sqlite")
        self.providers: Registry = PROVIDERS  # the provider registry (a test may add one of its own)
        # Settings sections fixtures add to every configure(); the database is the backend's.
        self.defaults: dict[str, dict[str, Any]] = {"storage": dict(self.backend.storage)}
        self.config_path: Path | None = None
        self.settings: Settings = self.configure()
        self.bot: EncoreBot | None = None
        self._stack: contextlib.AsyncExitStack | None = None
        self.elevenlabs_key: str | None = None  # set to enable ElevenLabs (see the ``eleven`` fixture)
        # Called with each new client before it starts (e.g. another version's command tree).
        self.before_start: list[Callable[[EncoreBot], None]] = []

    def use_config_file(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
        """Settings from ``path`` exactly as written, except what an operator points at their own services
        through ``ENCORE_<SECTION>__<KEY>``: the providers' base URLs (the fakes), the web server's address
        and the data directory."""
        env = {
            "ENCORE_REPLICATE__API_BASE": self.fake.base_url,
            "ENCORE_STORAGE__DIR": str(self.data_dir),
            "ENCORE_STORAGE__URL": self.backend.url or "",
            "ENCORE_WEBHOOKS__HOST": "127.0.0.1",
            "ENCORE_WEBHOOKS__PORT": str(free_port()),
        }
        if "elevenlabs" in self.defaults:
            env["ENCORE_ELEVENLABS__API_BASE"] = str(self.defaults["elevenlabs"]["api_base"])
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        self.config_path = path
        self.settings = self.providers.load_settings(path)
        return self.settings

    def configure(self, *, with_webhooks: bool = False, **sections: dict[str, Any]) -> Settings:
        for name, values in self.defaults.items():
            sections[name] = {**values, **sections.get(name, {})}
        replicate = {"api_base": self.fake.base_url, "retry_base_s": 0.01, **sections.pop("replicate", {})}
        discord = {"dev_guild_ids": [g.id for g in self.sim.guilds], **sections.pop("discord", {})}
        # Attachments come from the simulator's CDN on loopback over http: the one origin allowed besides Discord's.
        sections["audio"] = {"test_cdn_origin": self.sim.base_url, **sections.get("audio", {})}
        webhooks = dict(sections.pop("webhooks", {}))
        if with_webhooks:
            port = free_port()
            webhooks |= {"public_url": f"http://127.0.0.1:{port}", "port": port}
            sections["jobs"] = {"webhook_grace_s": 60.0, **sections.get("jobs", {})}
        self.settings = make_settings(
            self.data_dir, self.providers, replicate=replicate, discord=discord, webhooks=webhooks, **sections
        )
        self.config_path = None
        return self.settings

    async def start(self) -> EncoreBot:
        stack = contextlib.AsyncExitStack()
        secrets = Secrets(
            env={
                "REPLICATE_API_TOKEN": SecretStr(self.fake.token),
                "ELEVENLABS_API_KEY": SecretStr(self.elevenlabs_key) if self.elevenlabs_key else None,
            }
        )
        core = Core(self.settings, secrets, self.providers)
        await core.open()
        stack.push_async_callback(core.close)
        bot = EncoreBot(core, config_path=self.config_path, **self.sim.client_kwargs())
        for prepare in self.before_start:
            prepare(bot)
        try:
            # Ready means setup_hook has run: the commands are synced by now if they needed it (a restart
            # with the same commands leaves them as they are on Discord's side).
            await stack.enter_async_context(self.sim.running(bot))
        except BaseException:
            await stack.aclose()
            raise
        self.bot, self._stack = bot, stack
        return bot

    async def stop(self) -> None:
        stack, self._stack, self.bot = self._stack, None, None
        if stack is not None:
            await stack.aclose()

    async def restart(self) -> EncoreBot:
        await self.stop()
        return await self.start()


COG_UPLOAD_SECRET = "e2e-upload-secret-000000"


def use_cog(encore: Encore, cog: FakeCog, *, upload_secret: str = COG_UPLOAD_SECRET) -> Settings:
    """Route MusicGen to the fake Cog server (webhooks on), which hands its files back to Encore's uploads."""
    settings = encore.configure(
        with_webhooks=True,
        models={"musicgen": {"provider": "cog"}},
        cog={"base_url": cog.base_url, "upload_secret": upload_secret},
    )
    cog.upload_url = f"{settings.webhooks.public_url}cog/uploads/{upload_secret}/"
    return settings


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


def use_elevenlabs(encore: Encore, server: FakeElevenLabs) -> None:
    """Configure ``encore`` to use the fake ElevenLabs ``server`` (before ``encore.start()``)."""
    encore.elevenlabs_key = server.api_key
    encore.defaults["elevenlabs"] = {"api_base": server.base_url, "retry_base_s": 0.01}
    encore.configure()


@pytest.fixture
async def eleven(encore: Encore) -> AsyncIterator[FakeElevenLabs]:
    """A fake ElevenLabs that ``encore`` is configured to use."""
    async with FakeElevenLabs(default_length_ms=5000) as server:
        use_elevenlabs(encore, server)
        yield server


@pytest.fixture
def guilds() -> list[GuildConfig]:
    return [default_guild()]


@pytest.fixture
async def sim(guilds: list[GuildConfig]) -> AsyncIterator[DiscordSimulator]:
    async with DiscordSimulator(guilds) as simulator:
        yield simulator
        # Every REST body the bot sent must have passed the official schemas and Discord's rules, and no
        # interaction may have been answered after Discord's 3 s deadline ("The application did not respond").
        simulator.assert_no_validation_failures()
        simulator.assert_answered_in_time()


@pytest.fixture
async def encore(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, backend: StorageBackend
) -> AsyncIterator[Encore]:
    harness = Encore(sim, fake, tmp_path / "data", backend)
    yield harness
    await harness.stop()


# -- reading what the bot posted -------------------------------------------------------------------


def card_status(message: SimMessage) -> str:
    """The Status field of the job card in ``message`` ("" if it has none)."""
    for embed in message.embeds:
        for field in embed.get("fields", []):
            if field.get("name") == "Status":
                return str(field.get("value", ""))
    return ""


def card_field(message: SimMessage, name: str) -> str | None:
    for embed in message.embeds:
        for field in embed.get("fields", []):
            if field.get("name") == name:
                return str(field.get("value"))
    return None


def status_is(word: str) -> Callable[[SimMessage], bool]:
    return lambda message: word in card_status(message)


async def accepted(handle: InteractionHandle, *, timeout_s: float = 5.0) -> SimMessage:
    """The job card that answers ``handle`` (it replaces the "is thinking…" of the defer)."""
    card = await handle.wait_original(timeout_s=timeout_s)
    assert card_status(card), f"not a job card: {dump(card)}"
    return card


async def admin_set(
    sim: DiscordSimulator, key: str, value: str, *, user: str = "boss", guild_id: int | None = None
) -> SimMessage:
    """A server admin sets ``key`` to ``value`` with ``/musicadmin settings`` (its menu, then its form); the
    private answer."""
    admin = sim.user(user, guild_id=guild_id)
    card = await (await admin.slash("musicadmin settings")).wait_original()
    picked = await admin.select(card, f"encore:admin:{guild_id or sim.guild.id}", [key])
    form = await picked.wait_modal()
    field = form["components"][0]
    inner = field.get("component") or field["components"][0]
    return await (await admin.submit_modal(picked, {inner["custom_id"]: value})).wait_original()


def job_id_of(card: SimMessage) -> str:
    footer = card.embeds[0]["footer"]["text"]
    assert footer.startswith("Job ")
    return footer.removeprefix("Job ")


def dump(message: SimMessage) -> str:
    return json.dumps({"content": message.content, "embeds": message.embeds, "components": message.components})
