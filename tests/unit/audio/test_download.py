"""Where people's files may come from, and downloads that follow no redirect and stop at their size limit
while streaming, against a real HTTP server on loopback."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.audio.download import fetch_to_file, input_url_allowed
from bot.errors import OutputError, TooLargeError
from tests.fakes.hostile import Endless, Servers

HOSTS = ["cdn.discordapp.com", "media.discordapp.net"]
TEST_ORIGIN = "http://127.0.0.1:8123"
FILE = "/attachments/1/2/hum.ogg?ex=1&is=2&hm=3&"


@pytest.mark.parametrize(
    "url",
    [
        f"https://cdn.discordapp.com{FILE}",
        f"https://media.discordapp.net{FILE}",
        f"https://cdn.discordapp.com:443{FILE}",
        f"https://CDN.discordapp.com.{FILE}",  # the same host, spelled differently
        f"{TEST_ORIGIN}{FILE}",  # the test CDN, exactly
    ],
)
def test_discords_cdn_is_allowed(url: str) -> None:
    assert input_url_allowed(url, HOSTS, test_origin=TEST_ORIGIN)


@pytest.mark.parametrize(
    "url",
    [
        f"http://cdn.discordapp.com{FILE}",  # not https
        f"https://cdn.discordapp.com:8443{FILE}",  # another port
        f"https://evil.example{FILE}",  # another host
        f"https://cdn.discordapp.com.evil.example{FILE}",
        f"https://evil.example/cdn.discordapp.com{FILE}",
        f"https://cdn.discordapp.com@evil.example{FILE}",  # user info: the host is evil.example
        f"https://user:pw@cdn.discordapp.com{FILE}",
        f"https://discord.com/api/v10{FILE}",  # Discord's API host is not its CDN
        f"ftp://cdn.discordapp.com{FILE}",
        f"//cdn.discordapp.com{FILE}",
        FILE,
        "",
        "https://[::1",
        f"http://127.0.0.1:8124{FILE}",  # the test CDN's host on another port
        f"https://127.0.0.1:8123{FILE}",  # ... another scheme
        f"http://localhost:8123{FILE}",  # ... another name for it
    ],
)
def test_anything_else_is_refused(url: str) -> None:
    assert not input_url_allowed(url, HOSTS, test_origin=TEST_ORIGIN)


def test_no_test_origin_no_exception() -> None:
    assert not input_url_allowed(f"{TEST_ORIGIN}{FILE}", HOSTS)


@pytest.fixture
async def servers() -> AsyncIterator[Servers]:
    async with Servers() as started:
        yield started


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


async def test_no_redirect_is_followed(servers: Servers, session: aiohttp.ClientSession, tmp_path: Path) -> None:
    elsewhere: list[str] = []

    async def target(request: web.Request) -> web.Response:
        elsewhere.append(request.path)
        return web.Response(body=b"audio")

    target_url = await servers.start(target)

    async def cdn(request: web.Request) -> web.Response:
        raise web.HTTPFound(f"{target_url}/file.ogg")

    base = await servers.start(cdn)
    with pytest.raises(OutputError, match="HTTP 302"):
        await fetch_to_file(session, f"{base}/file.ogg", tmp_path / "in.ogg", max_bytes=1024, timeout_s=10)
    assert elsewhere == []
    assert list(tmp_path.iterdir()) == []


async def test_a_body_without_a_length_is_cut_off_while_streaming(
    servers: Servers, session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    endless = Endless()
    base = await servers.start(endless)
    with pytest.raises(TooLargeError):
        await fetch_to_file(session, f"{base}/bomb.flac", tmp_path / "in.flac", max_bytes=256 * 1024, timeout_s=30)
    assert await endless.hung_up() < 32 * 1024 * 1024  # what the sockets' buffers took; all of it is 256 MiB
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("declared", "sent"), [(10_000_000, 100), (100, 5000)], ids=["too-large", "lying-small"])
async def test_a_declared_length_is_never_trusted_past_the_limit(
    servers: Servers,
    session: aiohttp.ClientSession,
    tmp_path: Path,
    declared: int,
    sent: int,
) -> None:
    async def liar(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Length": str(declared)})
        await response.prepare(request)
        with contextlib.suppress(ConnectionError, aiohttp.ClientConnectionResetError):
            await response.write(b"\1" * sent)
        return response

    base = await servers.start(liar)
    dest = tmp_path / "in.ogg"
    if declared > 1024:
        with pytest.raises(TooLargeError):
            await fetch_to_file(session, f"{base}/f.ogg", dest, max_bytes=1024, timeout_s=10)
        assert not dest.exists()
    else:  # HTTP framing: no more than the declared 100 bytes are read, whatever follows them
        stored = await fetch_to_file(session, f"{base}/f.ogg", dest, max_bytes=1024, timeout_s=10)
        assert stored.size == dest.stat().st_size == declared
