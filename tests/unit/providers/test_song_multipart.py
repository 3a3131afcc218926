"""A song from ElevenLabs' ``/v1/music/detailed`` (``multipart/mixed``) arrives on disk as it streams: whatever
the boundary and line breaks, with audio that holds delimiter-like bytes, capped in size, and a cut-off or
hostile answer leaves nothing behind. Also why Encore parses it itself rather than with aiohttp's
``MultipartReader`` (docs/ARCHITECTURE.md): the reader refuses bare-LF bodies, which the SDKs accept."""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from bot.errors import ProviderUnavailableError, TooLargeError
from bot.providers import multipart
from bot.providers.elevenlabs import ElevenLabsClient
from bot.providers.elevenlabs_song import CUT_OFF
from tests.fakes.elevenlabs import FakeElevenLabs

BODY = {"prompt": "warm lofi beat", "music_length_ms": 5000, "model_id": "music_v1"}


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as made:
        yield made


def client(session: aiohttp.ClientSession, eleven: FakeElevenLabs) -> ElevenLabsClient:
    return ElevenLabsClient(session, api_base=eleven.base_url, api_key=eleven.api_key, max_retries=0)


def left_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("newline", ["\r\n", "\n"], ids=["crlf", "lf"])
@pytest.mark.parametrize("boundary", [None, "a-b=c", "----EncoreFake-0123"], ids=["rotating", "equals", "dashes"])
async def test_a_song_arrives_whole_whatever_its_boundary_and_line_breaks(
    session: aiohttp.ClientSession, tmp_path: Path, newline: str, boundary: str | None
) -> None:
    async with FakeElevenLabs(multipart_newline=newline, boundary=boundary, audio_trap=True) as eleven:
        song = await client(session, eleven).compose(
            BODY, tmp_path / "song.mp3", output_format="mp3_44100_128", length_s=5.0
        )
        [made] = eleven.generations
    assert song.path.read_bytes() == made.audio  # "\r\n--" and a near-boundary inside the audio kept
    assert song.metadata["title"] == made.metadata["title"]
    assert song.song_id == made.song_id
    assert left_in(tmp_path) == ["song.mp3"]


async def test_a_song_over_the_cap_is_refused_and_nothing_is_kept(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    async with FakeElevenLabs() as eleven:
        with pytest.raises(TooLargeError):
            await client(session, eleven).compose(
                BODY, tmp_path / "song.mp3", output_format="mp3_44100_128", length_s=5.0, max_bytes=4096
            )
    assert left_in(tmp_path) == []


async def test_a_song_cut_off_is_refused_and_nothing_is_kept(session: aiohttp.ClientSession, tmp_path: Path) -> None:
    async with FakeElevenLabs() as eleven:
        eleven.truncate(5000, path="/v1/music/detailed$")
        with pytest.raises(ProviderUnavailableError) as refused:
            await client(session, eleven).compose(
                BODY, tmp_path / "song.mp3", output_format="mp3_44100_128", length_s=5.0
            )
    assert refused.value.user_message == CUT_OFF
    assert left_in(tmp_path) == []


META = b'--bb\r\nContent-Type: application/json\r\n\r\n{"song_metadata": {"title": "x"}}\r\n'


@pytest.mark.parametrize(
    ("content_type", "body", "why"),
    [
        ("multipart/mixed", META + b"--bb--\r\n", "without a valid boundary"),
        ("multipart/mixed; boundary=bb", META + b"--bb--\r\n", "without audio"),
        (
            "multipart/mixed; boundary=bb",
            META + b"--bb\r\nContent-Type: audio/mpeg\r\n\r\nID3 and no end",
            "ended early",
        ),
        (
            "multipart/mixed; boundary=bb",
            META + b"--bb\r\nContent-Type: audio/mpeg\r\nX-A: " + b"a" * 20_000 + b"\r\n\r\nID3\r\n--bb--\r\n",
            "headers too long",
        ),
        ("multipart/mixed; boundary=bb", b"<html>" * 20_000, "preamble too long"),  # not multipart at all
    ],
    ids=["no-boundary", "no-audio", "never-closed", "huge-part-headers", "no-delimiter"],
)
async def test_hostile_answers_are_refused_and_nothing_is_kept(
    session: aiohttp.ClientSession, tmp_path: Path, content_type: str, body: bytes, why: str
) -> None:
    async with FakeElevenLabs() as eleven:
        eleven.inject(200, path="/v1/music/detailed$", body=body, content_type=content_type)
        with pytest.raises(ProviderUnavailableError, match=why):
            await client(session, eleven).compose(
                BODY, tmp_path / "song.mp3", output_format="mp3_44100_128", length_s=5.0
            )
    assert left_in(tmp_path) == []


async def test_a_long_song_streams_to_disk_without_being_held_in_memory(
    session: aiohttp.ClientSession, tmp_path: Path
) -> None:
    """40 MiB of audio over loopback (an answer written a piece at a time): the client's peak of Python memory
    stays a small fraction of it."""
    piece = bytes(range(256)) * 256
    head = b"--bb\r\nContent-Type: application/json\r\n\r\n{}\r\n--bb\r\nContent-Type: audio/mpeg\r\n\r\n"

    async def detailed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "multipart/mixed; boundary=bb"})
        await response.prepare(request)
        await response.write(head)
        for _ in range(640):
            await response.write(piece)
        await response.write(b"\r\n--bb--\r\n")
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/v1/music/detailed", detailed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    songs = ElevenLabsClient(session, api_base=f"http://127.0.0.1:{port}", api_key="k", max_retries=0)
    tracemalloc.start()
    try:
        song = await songs.compose(BODY, tmp_path / "song.mp3", output_format="mp3_44100_128", length_s=5.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await runner.cleanup()
    assert song.size == 640 * len(piece)
    assert peak < 8 * 1024 * 1024


# -- aiohttp's MultipartReader, against the same answers ----------------------------------------------------


async def read_with_aiohttp(response: aiohttp.ClientResponse) -> list[tuple[str, bytes]]:
    reader = aiohttp.MultipartReader.from_response(response)
    parts = []
    while (part := await reader.next()) is not None:
        assert isinstance(part, aiohttp.BodyPartReader)
        content = bytearray()
        while chunk := await part.read_chunk(64 * 1024):
            content += chunk
        parts.append((part.headers.get("Content-Type", ""), bytes(content)))
    return parts


async def test_aiohttps_multipart_reader_refuses_bare_lf_answers_which_encores_parser_takes(
    session: aiohttp.ClientSession,
) -> None:
    """Why Encore keeps bot/providers/multipart.py: with CRLF line breaks aiohttp's reader streams the song
    just as well, but the same answer with bare LFs (what the SDKs' parsers accept) fails in it."""
    for newline, aiohttp_reads_it in (("\r\n", True), ("\n", False)):
        async with FakeElevenLabs(multipart_newline=newline, audio_trap=True) as eleven:
            url = f"{eleven.base_url}/v1/music/detailed?output_format=mp3_44100_128"
            headers = {"xi-api-key": eleven.api_key}
            async with session.post(url, json=BODY, headers=headers) as response:
                if aiohttp_reads_it:
                    parts = await read_with_aiohttp(response)
                    assert parts[1] == ("audio/mpeg", eleven.generations[-1].audio)
                else:
                    with pytest.raises(ValueError, match="Reading after EOF"):
                        await read_with_aiohttp(response)
            async with session.post(url, json=BODY, headers=headers) as response:
                boundary = multipart.boundary_of(response.headers["Content-Type"])
                ours = multipart.parse(await response.read(), boundary)
            assert ours[1].content == eleven.generations[-1].audio
