"""The Dockerfile, docker-compose.example.yml and the README's ``docker run`` keep their promises (issue 12), and
so does docker-compose.postgres.example.yml, the recipe for two replicas on PostgreSQL (issue 14).

Docker can't run where the tests run, so the files are read as Docker and Compose read them: the final image
runs as a numeric non-root user, has a Python health check on /healthz (which is run here, for real, against
a server answering 200 and 503), starts Python in exec form so SIGTERM reaches it, and the Compose service is
read-only with a /tmp in memory, no capabilities and no privilege gain, its port published on loopback only.
The replicas' recipe: a PostgreSQL service with a health check the replicas wait for, its password from the
environment (never in the file), no published port; replicas hardened alike, each with its own data volume,
web port and shards (every shard held exactly once), one files volume shared at the path their settings name;
and each replica's environment, with Compose's variables filled in, is a configuration Encore accepts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from bot.config import load_settings
from bot.config.database import url_password
from tests.integration.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Instruction:
    keyword: str
    arguments: str


def instructions(path: Path) -> list[Instruction]:
    """A Dockerfile's instructions: comments dropped, ``\\`` continuations joined, keywords upper-cased."""
    lines: list[str] = []
    pending = ""
    for raw in path.read_text(encoding="utf-8").splitlines():
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    result = []
    for line in lines:
        keyword, _, arguments = line.partition(" ")
        result.append(Instruction(keyword.upper(), arguments.strip()))
    return result


def final_stage(path: Path) -> list[Instruction]:
    parsed = instructions(path)
    last_from = max(i for i, ins in enumerate(parsed) if ins.keyword == "FROM")
    return parsed[last_from:]


def only(stage: list[Instruction], keyword: str) -> Instruction:
    found = [ins for ins in stage if ins.keyword == keyword]
    assert len(found) == 1, f"expected one {keyword} in the final stage, found {len(found)}"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """A JSON-array (exec form) command; anything else would run under /bin/sh, which keeps signals."""
    command = json.loads(arguments)
    assert isinstance(command, list), arguments
    assert all(isinstance(part, str) for part in command)
    return command


def healthcheck_command() -> tuple[dict[str, str], list[str]]:
    """The HEALTHCHECK's options and its exec-form command."""
    arguments = only(final_stage(ROOT / "Dockerfile"), "HEALTHCHECK").arguments
    options_text, _, command = arguments.partition(" CMD ")
    options = dict(option.removeprefix("--").split("=", 1) for option in shlex.split(options_text))
    return options, exec_form(command)


def compose_file(name: str = "docker-compose.example.yml") -> dict[str, Any]:
    """A Compose file as Compose reads it (YAML, with its anchors and ``<<`` merges)."""
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


def compose_service() -> dict[str, Any]:
    return compose_file()["services"]["encore"]


def test_the_image_runs_as_a_numeric_non_root_user() -> None:
    stage = final_stage(ROOT / "Dockerfile")
    user = only(stage, "USER").arguments
    match = re.fullmatch(r"(\d+)(?::(\d+))?", user)
    assert match is not None, f"USER {user} is not numeric"
    uid, gid = match.groups()
    assert int(uid) != 0
    assert gid is None or int(gid) != 0
    created = " ".join(ins.arguments for ins in stage if ins.keyword == "RUN")
    assert f"--uid {uid}" in created  # the user exists (a home, /data owned by it)
    assert f"chown {uid}" in created
    assert stage.index(only(stage, "USER")) > max(i for i, ins in enumerate(stage) if ins.keyword == "RUN")


def test_python_is_pid_1_and_stops_on_sigterm() -> None:
    stage = final_stage(ROOT / "Dockerfile")
    assert exec_form(only(stage, "CMD").arguments) == ["python", "-m", "bot", "run"]
    assert not [ins for ins in stage if ins.keyword == "ENTRYPOINT"]
    signals = [ins.arguments for ins in stage if ins.keyword == "STOPSIGNAL"]
    assert signals in ([], ["SIGTERM"])
    assert "stop_signal" not in compose_service() or compose_service()["stop_signal"] == "SIGTERM"


def test_the_healthcheck_is_python_on_healthz() -> None:
    options, command = healthcheck_command()
    assert command[:2] == ["python", "-c"]
    assert "/healthz" in command[2]
    assert not {"curl", "wget"} & set(re.findall(r"\w+", " ".join(command)))
    assert options["timeout"] == "5s"
    assert "start-period" in options
    assert only(final_stage(ROOT / "Dockerfile"), "EXPOSE").arguments == "8080"
    assert "healthcheck" not in compose_service() or not compose_service()["healthcheck"].get("disable")


@pytest.fixture
async def healthz() -> AsyncIterator[tuple[int, list[int]]]:
    """A server on 127.0.0.1 answering /healthz with the statuses queued in the list (200 when empty)."""
    statuses: list[int] = []

    async def answer(_request: web.Request) -> web.Response:
        status = statuses.pop(0) if statuses else 200
        return web.json_response({"status": "ok" if status == 200 else "unhealthy"}, status=status)

    app = web.Application()
    app.router.add_get("/healthz", answer)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    yield port, statuses
    await runner.cleanup()


async def run_healthcheck(port: int) -> int:
    """Run the Dockerfile's HEALTHCHECK command as Docker would, with this Python and the port in its env."""
    _, command = healthcheck_command()
    env = {**os.environ, "ENCORE_WEBHOOKS__PORT": str(port)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *command[1:],
        env=env,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    async with asyncio.timeout(30):
        return await process.wait()


async def test_the_healthcheck_passes_on_200_and_fails_otherwise(healthz: tuple[int, list[int]]) -> None:
    port, statuses = healthz
    assert await run_healthcheck(port) == 0
    statuses.append(503)
    assert await run_healthcheck(port) != 0
    assert await run_healthcheck(free_port()) != 0  # nothing listening: unhealthy too


def test_compose_is_hardened() -> None:
    assert_hardened(compose_service())


def assert_hardened(service: dict[str, Any]) -> None:
    assert service["read_only"] is True
    tmpfs = service["tmpfs"]
    assert "/tmp" in ([tmpfs] if isinstance(tmpfs, str) else [entry.split(":")[0] for entry in tmpfs])  # noqa: S108
    assert service["cap_drop"] == ["ALL"]
    assert "cap_add" not in service
    assert "no-new-privileges:true" in service["security_opt"]
    assert "privileged" not in service
    assert any(str(volume).split(":")[1] == "/data" for volume in service["volumes"])  # the only writable place


def test_the_port_is_published_on_loopback_only() -> None:
    for entry in compose_service()["ports"]:
        assert str(entry).startswith("127.0.0.1:"), entry
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```sh\n(.*?)^```", readme, flags=re.MULTILINE | re.DOTALL)
    commands = [line.strip() for block in blocks for line in block.replace("\\\n", " ").splitlines()]
    docker_runs = [command for command in commands if command.startswith("docker run ")]
    assert docker_runs, "the README shows a docker run"
    for command in docker_runs:
        published = re.findall(r"(?:-p|--publish)[ =](\S+)", command)
        assert published, command
        assert all(port.startswith("127.0.0.1:") for port in published), command


# -- two replicas on PostgreSQL (issue 14) ------------------------------------------------------------------------

REPLICAS_FILE = "docker-compose.postgres.example.yml"


def replicas() -> dict[str, dict[str, Any]]:
    services = compose_file(REPLICAS_FILE)["services"]
    return {name: service for name, service in services.items() if name.startswith("encore")}


def filled(value: str) -> str:
    """A value with Compose's ``${NAME:?message}`` variables filled in as Compose would, from a made-up .env."""
    return re.sub(r"\$\{(\w+)(?::\?[^}]*)?\}", lambda match: f"<{match.group(1).lower()}>", value)


def test_postgres_is_healthchecked_private_and_its_password_comes_from_the_environment() -> None:
    compose = compose_file(REPLICAS_FILE)
    postgres = compose["services"]["postgres"]
    assert postgres["image"].startswith("postgres:")
    assert "ports" not in postgres  # only the replicas reach it
    test = postgres["healthcheck"]["test"]
    assert test[0] in ("CMD", "CMD-SHELL")
    assert "pg_isready" in " ".join(test)
    password = postgres["environment"]["POSTGRES_PASSWORD"]
    assert re.fullmatch(r"\$\{POSTGRES_PASSWORD:\?[^}]+\}", password), "the password must come from .env"
    assert any(str(volume).split(":")[1] == "/var/lib/postgresql/data" for volume in postgres["volumes"])
    for service in replicas().values():
        assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert service["environment"]["PGPASSWORD"] == password  # the same secret, from the same place


def test_the_replicas_are_hardened_and_each_has_its_own_data_and_port() -> None:
    services = replicas()
    assert len(services) == 2
    ports, data_volumes = [], []
    for service in services.values():
        assert_hardened(service)
        assert service["stop_grace_period"]
        assert "healthcheck" not in service or not service["healthcheck"].get("disable")  # the image's
        [published] = service["ports"]
        assert published.startswith("127.0.0.1:")
        ports.append(published.split(":")[1])
        data_volumes += [volume.split(":")[0] for volume in service["volumes"] if volume.endswith(":/data")]
    assert len(set(ports)) == 2
    assert len(set(data_volumes)) == 2


def test_the_replicas_share_one_files_volume_where_their_settings_say() -> None:
    volumes = compose_file(REPLICAS_FILE)["volumes"]
    shared = None
    for service in replicas().values():
        files_dir = service["environment"]["ENCORE_STORAGE__FILES_DIR"]
        mounted = {volume.split(":")[1]: volume.split(":")[0] for volume in service["volumes"]}
        assert files_dir in mounted
        assert mounted[files_dir] in volumes  # a named volume, not a host path one replica alone has
        assert shared in (None, (mounted[files_dir], files_dir))
        shared = (mounted[files_dir], files_dir)
    assert shared is not None
    # The image makes the mount point, owned by its user, so a fresh volume is writable by it.
    created = " ".join(ins.arguments for ins in final_stage(ROOT / "Dockerfile") if ins.keyword == "RUN")
    assert shared[1] in created


def test_each_replicas_environment_is_a_configuration_encore_accepts(monkeypatch: pytest.MonkeyPatch) -> None:
    held: list[int] = []
    counts = set()
    for name, service in replicas().items():
        environment = {key: filled(str(value)) for key, value in service["environment"].items()}
        with monkeypatch.context() as env:
            for key in [key for key in os.environ if key.startswith("ENCORE_")]:
                env.delenv(key)
            for key, value in environment.items():
                env.setenv(key, value)
            settings = load_settings(None)
        assert settings.storage.url == "postgresql://encore@postgres:5432/encore", name  # no password in it
        assert url_password(settings.storage.url) is None
        assert environment["PGPASSWORD"] == "<postgres_password>"
        assert str(settings.storage.files_dir) == environment["ENCORE_STORAGE__FILES_DIR"]
        counts.add(settings.discord.shard_count)
        held += settings.discord.shard_ids
    [count] = counts
    assert sorted(held) == list(range(count))  # every shard held, by exactly one replica


def test_the_readme_tells_how_to_run_more_than_one_process() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "## Running more than one process" in readme
    assert REPLICAS_FILE in readme
