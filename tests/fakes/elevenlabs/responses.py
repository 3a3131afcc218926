"""Response bodies: written in pieces, honouring holds, ``on_chunk`` and truncation; ``multipart/mixed`` and SSE."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from .faults import _TRUNCATE_AT
from .formats import AudioFormat, trap_mp3, waveform_visual
from .records import Generation, Transfer
from .state import ElevenLabsState


def _boundary(n: int) -> str:
    style = n % 3
    if style == 0:
        return "=" * 15 + str(secrets.randbelow(10**19)).zfill(19) + "=="
    if style == 1:
        return "----EncoreFake-" + secrets.token_hex(8)
    return secrets.token_hex(16)


def _quote_boundary(boundary: str) -> str:
    return f'"{boundary}"' if re.search(r"""[()<>@,;:\\"/\[\]?= ]""", boundary) else boundary


def _filename(title: str, ext: str) -> str:
    return (re.sub(r'[\\"\r\n/]', "", title).strip() or "song") + f".{ext}"


class ResponseWriter(ElevenLabsState):
    """Writes the 200 bodies: plain, chunked, ``multipart/mixed`` (detailed) and server-sent events."""

    def _pieces(self, data: bytes) -> list[bytes]:
        n = max(1, self.stream_chunks)
        size = max(1, math.ceil(len(data) / n))
        return [data[i : i + size] for i in range(0, len(data), size)] or [b""]

    def _events(self, gen: Generation, audio: bytes) -> list[bytes]:
        def event(kind: str, data: Any) -> bytes:
            return b"data: " + json.dumps({"event": kind, "data": data}).encode() + b"\n\n"

        events = [event("composition_plan", gen.plan), event("song_metadata", gen.metadata)]
        if self.sse_noise:
            events += [b": keep-alive\n\n", event("progress", {"percent": 50}), b"data: [not json]\n\n"]
        events += [event("audio_chunk", base64.b64encode(piece).decode()) for piece in self._pieces(audio)]
        if gen.with_timestamps:
            events.append(event("word_timestamps", gen.words_timestamps))
        events.append(event("completion", {"song_id": gen.song_id, "status": "completed"}))
        return events

    async def _send_detailed(
        self, request: web.Request, gen: Generation, audio: bytes, fmt: AudioFormat, headers: dict[str, str]
    ) -> web.StreamResponse:
        boundary = self.boundary or _boundary(next(self._boundaries))
        if self.audio_trap and fmt.codec == "mp3":
            audio = trap_mp3(audio, boundary)
        gen.audio, gen.boundary = audio, boundary
        nl, delim = self.multipart_newline.encode(), b"--" + boundary.encode()
        meta: dict[str, Any] = {
            "composition_plan": gen.plan,
            "song_metadata": gen.metadata,
            "words_timestamps": gen.words_timestamps,
        }
        if gen.body.get("with_waveform_visual"):
            gen.waveform_visual = await asyncio.to_thread(waveform_visual, fmt.sample_rate, fmt.frames(gen.length_ms))
            meta["waveform_visual"] = gen.waveform_visual
        filename = _filename(gen.metadata["title"], fmt.extension)
        body = b"".join(
            [
                delim + nl + b"Content-Type: application/json" + nl + nl + json.dumps(meta).encode() + nl,
                delim + nl + f"Content-Type: {fmt.content_type}".encode() + nl,
                f'Content-Disposition: attachment; filename="{filename}"'.encode() + nl + nl,
                audio + nl + delim + b"--" + nl,
            ]
        )
        headers["Content-Type"] = f"multipart/mixed; boundary={_quote_boundary(boundary)}"
        return await self._send(request, gen, self._pieces(body), headers)

    async def _send(
        self,
        request: web.Request,
        transfer: Transfer,
        pieces: list[bytes],
        headers: Mapping[str, str],
        *,
        chunked: bool = False,
    ) -> web.StreamResponse:
        """Write ``pieces`` as the 200 body, honouring holds, ``on_chunk`` and an injected truncation."""
        truncate_at = request.get(_TRUNCATE_AT)
        hold = next((h for h in self.holds if h.matches(request)), None)
        if hold is not None:
            hold.hits += 1
        resp = web.StreamResponse(status=200, headers=headers)
        if chunked:
            resp.enable_chunked_encoding()
        else:
            resp.content_length = sum(map(len, pieces))
        try:
            if hold is not None and hold.after_chunks <= 0:
                await hold._hold(transfer)
            await resp.prepare(request)
            for i, piece in enumerate(pieces):
                if hold is not None and i == hold.after_chunks and i > 0:
                    await hold._hold(transfer)
                if self.on_chunk is not None:
                    await self.on_chunk(transfer, i, piece)
                if truncate_at is not None and transfer.bytes_sent + len(piece) > truncate_at:
                    await resp.write(piece[: max(0, truncate_at - transfer.bytes_sent)])
                    transfer.bytes_sent = truncate_at
                    transfer.truncated = True
                    if request.transport is not None:
                        request.transport.close()  # flushes what was written, then closes
                    self._notify()
                    return resp
                await resp.write(piece)
                transfer.bytes_sent += len(piece)
            await resp.write_eof()
        except asyncio.CancelledError:
            self._aborted(transfer)
            raise
        except ConnectionError:
            self._aborted(transfer)
            return resp
        transfer.completed = True
        self._notify()
        return resp
