"""HTTP details discord.py depends on: exact JSON content type, JSON or multipart request bodies."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import BodyPartReader, web

from .errors import ApiError, invalid_json


@dataclass(frozen=True)
class UploadedFile:
    """One ``files[n]`` part of a multipart request."""

    index: int
    field_name: str
    filename: str
    data: bytes = field(repr=False)

    @property
    def size(self) -> int:
        return len(self.data)


@dataclass
class RequestBody:
    """``payload`` is the JSON body (or ``payload_json`` of a multipart body); ``None`` when empty."""

    payload: Any = None
    files: list[UploadedFile] = field(default_factory=list)
    multipart: bool = False


def json_response(data: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON reply with ``Content-Type`` exactly ``application/json`` (discord.py compares it verbatim)."""
    all_headers = {"Content-Type": "application/json"}
    all_headers.update(headers or {})
    return web.Response(status=status, body=json.dumps(data).encode(), headers=all_headers)


def error_response(error: ApiError) -> web.Response:
    return json_response(error.body(), status=error.status, headers=error.response_headers())


async def read_body(request: web.Request) -> RequestBody:
    """Parse a JSON or ``multipart/form-data`` body (``payload_json`` + ``files[n]``)."""
    if request.content_type == "multipart/form-data":
        return await _read_multipart(request)
    raw = await request.read()
    if not raw:
        return RequestBody()
    try:
        return RequestBody(payload=json.loads(raw))
    except ValueError:
        raise invalid_json() from None


async def _read_multipart(request: web.Request) -> RequestBody:
    body = RequestBody(multipart=True)
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            continue
        name = part.name or ""
        if name == "payload_json":
            try:
                body.payload = json.loads(await part.text())
            except ValueError:
                raise invalid_json() from None
        elif name.startswith("files[") and name.endswith("]") and name[6:-1].isdigit():
            data = bytes(await part.read())
            body.files.append(UploadedFile(int(name[6:-1]), name, part.filename or name, data))
        else:
            body.files.append(UploadedFile(-1, name, part.filename or name, bytes(await part.read())))
    return body
