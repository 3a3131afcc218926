"""How an ElevenLabs song arrives: the ``multipart/mixed`` answer of ``/v1/music/detailed`` (a JSON part with its
plan and metadata, then the audio), streamed to disk as it comes, capped in size; raw PCM wrapped as WAV.

Nothing holds the whole song in memory: the body goes through :class:`~bot.providers.multipart.MultipartStream`
a chunk at a time, the audio part into a file next to ``dest`` (``.part``, renamed when complete, deleted
otherwise).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import wave
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, BinaryIO

import aiohttp

from bot.errors import ProviderUnavailableError, TooLargeError
from bot.providers import multipart
from bot.providers.base import Song, WordTime

log = logging.getLogger(__name__)

CUT_OFF = "The song was cut off on its way from ElevenLabs. Please try again."
_CHUNK = 64 * 1024
_PROGRESS_EVERY = 256 * 1024
_MAX_METADATA_BYTES = 4 * 1024 * 1024  # the JSON part: a plan, metadata, maybe word timestamps
MAX_WORDS = 20_000  # word timestamps kept of one song (a ten-minute song has a couple of thousand at most)


def song_suffix(output_format: str) -> str:
    """The file extension of a song in ``output_format`` as stored (raw PCM is wrapped as WAV)."""
    return {"opus": ".opus", "pcm": ".wav"}.get(output_format.split("_", 1)[0], ".mp3")


def pcm_rate(output_format: str) -> int | None:
    """The sample rate of a raw PCM format (``pcm_44100``), None for the others."""
    codec, _, rest = output_format.partition("_")
    return int(rest) if codec == "pcm" and rest.isdigit() else None


async def receive_song(
    response: aiohttp.ClientResponse,
    dest: Path,
    *,
    output_format: str,
    length_s: float,
    max_bytes: int,
    on_bytes: Callable[[int], Awaitable[None]] | None = None,
) -> Song:
    """The song in ``response`` (a 200 of ``/v1/music/detailed``), its audio written to ``dest``: a
    ProviderUnavailableError if the answer is malformed or cut off, TooLargeError past ``max_bytes``."""
    try:
        stream = multipart.MultipartStream(multipart.boundary_of(response.headers.get("Content-Type", "")))
    except multipart.MultipartError as exc:
        raise ProviderUnavailableError(CUT_OFF, detail=str(exc)) from None
    raw = dest.with_name(dest.name + ".part")
    await asyncio.to_thread(dest.parent.mkdir, parents=True, exist_ok=True)
    try:
        audio: BinaryIO = await asyncio.to_thread(raw.open, "wb")
        try:
            meta, audio_type, size = await _stream(stream, response, audio, max_bytes=max_bytes, on_bytes=on_bytes)
        finally:
            await asyncio.to_thread(audio.close)
        if audio_type is None or size == 0:
            raise ProviderUnavailableError(detail="detailed response without audio")
        rate = pcm_rate(output_format)
        if rate is not None:
            size = await asyncio.to_thread(_wav, raw, dest, rate=rate, length_s=length_s)
            audio_type = "audio/wav"
        else:
            await asyncio.to_thread(raw.replace, dest)
    except BaseException:
        await asyncio.to_thread(dest.unlink, missing_ok=True)
        raise
    finally:
        await asyncio.to_thread(raw.unlink, missing_ok=True)  # renamed, wrapped, or not wanted
    words = meta.get("words_timestamps")  # asked for with with_timestamps; null otherwise
    return Song(
        path=dest,
        size=size,
        content_type=audio_type,
        metadata=meta.get("song_metadata") or {},
        plan=meta.get("composition_plan"),
        song_id=response.headers.get("song-id"),
        words=word_times(words) if isinstance(words, list) else None,
    )


def word_times(items: list[Any]) -> list[WordTime]:
    """``words_timestamps`` (``[{word, start_ms, end_ms}]``) as sent, in their order; an item that isn't one
    (a missing or mistyped field) is left out. Whether the times make sense is for the reader to judge
    (``bot.catalog.lyrics``)."""
    out: list[WordTime] = []
    for item in items[:MAX_WORDS]:
        if not isinstance(item, dict):
            continue
        word, start, end = item.get("word"), _ms(item.get("start_ms")), _ms(item.get("end_ms"))
        if isinstance(word, str) and start is not None and end is not None:
            out.append(WordTime(word[:200], start, end))
    return out


def _ms(value: Any) -> int | None:
    """A number of milliseconds: an int, or a finite float (JSON doesn't tell them apart); not a bool."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


async def _stream(
    stream: multipart.MultipartStream,
    response: aiohttp.ClientResponse,
    audio: BinaryIO,
    *,
    max_bytes: int,
    on_bytes: Callable[[int], Awaitable[None]] | None,
) -> tuple[dict[str, Any], str | None, int]:
    """Feed the body through ``stream``: the first JSON part parsed, the first audio part written to
    ``audio``; returns the metadata, the audio's type (None: no audio part) and its size."""
    meta = bytearray()
    audio_type: str | None = None
    current = ""  # what the part being read is: "json", "audio" or "" (ignored)
    size = received = reported = 0
    try:
        async for chunk in response.content.iter_chunked(_CHUNK):
            received += len(chunk)
            for event in stream.feed(chunk):
                if isinstance(event, multipart.PartStart):
                    kind = event.content_type
                    if kind == "application/json" and not meta:
                        current = "json"
                    elif kind.startswith("audio/") and audio_type is None:
                        current, audio_type = "audio", kind
                    else:
                        current = ""
                elif current == "json":
                    meta += event.data
                    if len(meta) > _MAX_METADATA_BYTES:
                        raise ProviderUnavailableError(detail="song metadata too large")
                elif current == "audio":
                    size += len(event.data)
                    if size > max_bytes:
                        raise TooLargeError(
                            "The song is larger than Encore can take.", detail=f"song over {max_bytes} bytes"
                        )
                    await asyncio.to_thread(audio.write, event.data)
            if on_bytes is not None and received - reported >= _PROGRESS_EVERY:
                reported = received
                await on_bytes(received)
        stream.close()
    except multipart.MultipartError as exc:
        raise ProviderUnavailableError(CUT_OFF, detail=str(exc)) from None
    info: dict[str, Any] = {}
    if meta:
        try:
            parsed = json.loads(meta)
            info = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            log.warning("ElevenLabs sent unreadable song metadata")
    return info, audio_type, size


def _wav(pcm: Path, dest: Path, *, rate: int, length_s: float) -> int:
    """Raw 16-bit little-endian PCM (the file ``pcm``) as a WAV file at ``dest``; its size. ElevenLabs doesn't
    say how many channels it sends: a stereo song has twice the bytes of a mono one of the same length, so the
    size against ``length_s`` tells. Blocking: run it in a thread."""
    total = pcm.stat().st_size
    channels = 2 if length_s > 0 and total / (2 * rate) / length_s > 1.5 else 1
    frame = 2 * channels
    left = total - total % frame
    with pcm.open("rb") as source, wave.open(str(dest), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        while left > 0:
            data = source.read(min(left, 1024 * frame))
            if not data:
                break
            out.writeframes(data)
            left -= len(data)
    return dest.stat().st_size
