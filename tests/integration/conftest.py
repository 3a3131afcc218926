"""A harness running the real core (database, Replicate client, web server, job service) on loopback."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from bot.app import Core
from bot.config import Secrets, Settings
from bot.jobs.service import JobService
from bot.records import Job, JobOrigin, JobRequest
from tests.conftest import StorageBackend, make_settings
from tests.fakes.listener import RecordingListener
from tests.fakes.replicate import FakeReplicate


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Harness:
    def __init__(self, fake: FakeReplicate, data_dir: Path, backend: StorageBackend | None = None) -> None:
        self.fake = fake
        self.data_dir = data_dir
        self.backend = backend or StorageBackend("sqlite")
        self.listener = RecordingListener()
        self.core: Core | None = None
        self.settings: Settings | None = None
        self.token: str | None = None  # the API token the bot uses (default: the fake's)
        self.elevenlabs_key: str | None = None  # set (with an [elevenlabs] section) to make songs

    def configure(self, *, with_webhooks: bool = False, **sections: dict[str, Any]) -> Settings:
        replicate = {
            "api_base": self.fake.base_url,
            "max_retries": 3,
            "retry_base_s": 0.01,
            **sections.pop("replicate", {}),
        }
        sections["storage"] = {**self.backend.storage, **sections.get("storage", {})}
        webhook_section = dict(sections.pop("webhooks", {}))
        if with_webhooks:
            port = free_port()
            webhook_section |= {"public_url": f"http://127.0.0.1:{port}", "port": port}
            jobs = {"webhook_grace_s": 60.0, **sections.pop("jobs", {})}
            sections["jobs"] = jobs
        self.settings = make_settings(self.data_dir, replicate=replicate, webhooks=webhook_section, **sections)
        return self.settings

    @property
    def secrets(self) -> Secrets:
        env: dict[str, SecretStr | None] = {"REPLICATE_API_TOKEN": SecretStr(self.token or self.fake.token)}
        if self.elevenlabs_key:
            env["ELEVENLABS_API_KEY"] = SecretStr(self.elevenlabs_key)
        return Secrets(env=env)

    async def start(self, *, with_webhooks: bool = False, **sections: dict[str, Any]) -> JobService:
        if self.settings is None or with_webhooks or sections:
            self.configure(with_webhooks=with_webhooks, **sections)
        assert self.settings is not None
        core = Core(self.settings, self.secrets)
        await core.open()
        self.core = core
        return await core.start_service(self.listener)

    @property
    def service(self) -> JobService:
        assert self.core is not None
        assert self.core.service is not None
        return self.core.service

    async def stop(self) -> None:
        if self.core is not None:
            await self.core.close()
            self.core = None

    async def restart(self) -> JobService:
        """Stop the whole core and start a new one on the same database (a bot restart)."""
        await self.stop()
        return await self.start()

    async def submit(self, prompt: str = "warm lofi beat", *, user_id: int = 42, **fields: Any) -> Job:
        """One job (the first of a batch when ``count`` is given)."""
        jobs = await self.submit_all(prompt, user_id=user_id, **fields)
        return jobs[0]

    async def submit_all(self, prompt: str = "warm lofi beat", *, user_id: int = 42, **fields: Any) -> list[Job]:
        return await self.service.create(
            JobRequest(prompt=prompt, **fields), JobOrigin(user_id=user_id, guild_id=1, channel_id=2)
        )

    async def job(self, job_id: str) -> Job:
        return await self.service.get(job_id)


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


@pytest.fixture
async def harness(fake: FakeReplicate, tmp_path: Path, backend: StorageBackend) -> AsyncIterator[Harness]:
    h = Harness(fake, tmp_path / "data", backend)
    yield h
    await h.stop()
