"""Fetching files from URLs we were handed: only allowed hosts, capped in size and time, off-loop writes.

A write the disk has no room for (full, over quota, over a file size limit) raises
:class:`~bot.errors.StorageFullError` and leaves no partial file behind.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import fnmatch
import mimetypes
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

import aiohttp
from yarl import URL

from bot.audio import no_room
from bot.errors import OutputError, TooLargeError
from bot.providers.base import DownloadedFile

_CHUNK = 256 * 1024
_WRITE_BATCH = 1024 * 1024


def host_allowed(url: str, patterns: Iterable[str]) -> bool:
    """True if the URL's host matches one of ``patterns`` (exact hosts or ``*.example.com``)."""
    try:
        host = URL(url).host
    except ValueError:
        return False
    if not host:
        return False
    host = host.lower().rstrip(".")
    return any(fnmatch.fnmatchcase(host, pattern.lower()) for pattern in patterns)


def input_url_allowed(url: str, hosts: Iterable[str], *, test_origin: str | None = None) -> bool:
    """Whether people's files may be downloaded from ``url``: https on port 443 of one of ``hosts``
    (Discord's CDN), with no user name or password; or, in tests only, exactly ``test_origin``
    (scheme, host and port of a Discord simulator)."""
    try:
        parsed = URL(url)
        if not parsed.scheme or not parsed.host or parsed.user is not None or parsed.password is not None:
            return False
        if test_origin is not None and parsed.origin() == URL(test_origin).origin():
            return True
    except ValueError:
        return False
    return parsed.scheme == "https" and parsed.port == 443 and host_allowed(url, hosts)


def guess_content_type(name: str, fallback: str = "application/octet-stream") -> str:
    guessed, _ = mimetypes.guess_type(name)
    return guessed or fallback


async def data_url(path: Path, *, content_type: str | None = None) -> str:
    """A ``data:<mime>;base64,...`` URL of a file (read off the event loop)."""
    data = await asyncio.to_thread(path.read_bytes)
    mime = content_type or guess_content_type(path.name)
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _decode_data_url(url: str) -> tuple[bytes, str]:
    header, sep, payload = url.partition(",")
    if not sep or not header.startswith("data:"):
        raise OutputError(detail="malformed data URL")
    meta = header[len("data:") :].split(";")
    content_type = meta[0] or "text/plain"
    try:
        data = base64.b64decode(payload, validate=True) if "base64" in meta[1:] else unquote_to_bytes(payload)
    except (binascii.Error, ValueError):
        raise OutputError(detail="malformed data URL payload") from None
    return data, content_type


async def save_data_url(url: str, dest: Path, *, max_bytes: int) -> DownloadedFile:
    """Store an inline ``data:`` URL output (as Cog servers return) like a download."""
    # Base64 is 4/3 the size of its payload: refuse oversized payloads before decoding them.
    if len(url) > max_bytes * 4 // 3 + 1024:
        raise OutputError(detail=f"inline output exceeds {max_bytes} bytes")
    data, content_type = await asyncio.to_thread(_decode_data_url, url)
    if len(data) > max_bytes:
        raise OutputError(detail=f"inline output exceeds {max_bytes} bytes")
    try:
        await asyncio.to_thread(_write_atomically, dest, [data])
    except OSError as exc:
        full = no_room(exc, dest)
        if full is None:
            raise
        raise full from None
    return DownloadedFile(path=dest, size=len(data), content_type=content_type)


def _write_atomically(dest: Path, chunks: list[bytes]) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    try:
        with part.open("wb") as handle:
            for chunk in chunks:
                handle.write(chunk)
            handle.flush()
            os.fsync(handle.fileno())
        part.replace(dest)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


class _PartFile:
    """A ``.part`` file written off the event loop, renamed into place when complete.

    Chunks are gathered up to ``_WRITE_BATCH`` bytes and written in one hop to a thread: a network read
    yields 16-64 KiB at a time, and a thread hop per chunk cost more CPU than the writes themselves.
    """

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.part = dest.with_name(dest.name + ".part")
        self._handle: BinaryIO | None = None
        self._pending: list[bytes] = []
        self._pending_bytes = 0

    async def __aenter__(self) -> _PartFile:
        await asyncio.to_thread(self.dest.parent.mkdir, parents=True, exist_ok=True)
        self._handle = await asyncio.to_thread(self.part.open, "wb")
        return self

    async def write(self, chunk: bytes) -> None:
        self._pending.append(chunk)
        self._pending_bytes += len(chunk)
        if self._pending_bytes >= _WRITE_BATCH:
            await self._flush()

    async def _flush(self) -> None:
        handle = self._handle
        assert handle is not None
        chunks, self._pending, self._pending_bytes = self._pending, [], 0
        if chunks:
            await asyncio.to_thread(handle.writelines, chunks)

    async def commit(self) -> None:
        await self._flush()
        handle = self._handle
        assert handle is not None

        def finish() -> None:
            handle.flush()
            os.fsync(handle.fileno())
            handle.close()
            self.part.replace(self.dest)

        await asyncio.to_thread(finish)
        self._handle = None

    async def __aexit__(self, *exc_info: object) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:  # not committed: throw the partial file away

            def discard() -> None:
                with contextlib.suppress(OSError):  # closing flushes, which fails again on a full disk
                    handle.close()
                with contextlib.suppress(FileNotFoundError):
                    self.part.unlink()

            await asyncio.to_thread(discard)


async def fetch_to_file(
    session: aiohttp.ClientSession,
    url: str,
    dest: Path,
    *,
    max_bytes: int,
    timeout_s: float,
    headers: Mapping[str, str] | None = None,
) -> DownloadedFile:
    """Stream ``url`` into ``dest`` (atomically), refusing more than ``max_bytes`` or ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            async with session.get(url, headers=dict(headers or {}), allow_redirects=False) as response:
                if response.status != 200:
                    retryable = response.status >= 500 or response.status in (408, 429)
                    raise OutputError(detail=f"download answered HTTP {response.status}", retryable=retryable)
                if response.content_length is not None and response.content_length > max_bytes:
                    raise TooLargeError(detail=f"output is {response.content_length} bytes, over {max_bytes}")
                content_type = response.content_type
                if not content_type or content_type == "application/octet-stream":
                    content_type = guess_content_type(URL(url).name)
                size = 0
                async with _PartFile(dest) as part:
                    async for chunk in response.content.iter_chunked(_CHUNK):
                        size += len(chunk)
                        if size > max_bytes:  # cut off here, whatever Content-Length said
                            raise TooLargeError(detail=f"output exceeds {max_bytes} bytes")
                        await part.write(chunk)
                    if response.content_length is not None and size != response.content_length:
                        raise OutputError(detail="download ended early", retryable=True)
                    await part.commit()
    except TimeoutError:
        raise OutputError(detail=f"download took longer than {timeout_s:g} s", retryable=True) from None
    except aiohttp.ClientError as exc:
        raise OutputError(detail=f"download failed: {type(exc).__name__}", retryable=True) from None
    except OSError as exc:
        full = no_room(exc, dest)
        if full is None:
            raise
        raise full from None
    return DownloadedFile(path=dest, size=size, content_type=content_type)
