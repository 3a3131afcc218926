"""The files API (``/v1/files``): multipart uploads, metadata, download, delete, paginated list."""

from __future__ import annotations

import json

import aiohttp
from aiohttp import web

from .errors import Problem, _bad_request, _not_found
from .records import StoredFile, _new_id
from .state import ReplicateState


class FileRoutes(ReplicateState):
    """Handlers of the ``/v1/files`` routes."""

    async def _h_file_create(self, request: web.Request) -> web.Response:
        if not request.content_type.startswith("multipart/form-data"):
            raise _bad_request("Request must be multipart/form-data")
        reader = await request.multipart()
        content: bytes | None = None
        filename, content_type, metadata = "file", "application/octet-stream", {}
        while (part := await reader.next()) is not None:
            if not isinstance(part, aiohttp.BodyPartReader):
                continue
            if part.name == "content":
                data = bytearray()
                while chunk := await part.read_chunk():
                    data += chunk
                    if len(data) >= self.max_file_bytes:
                        raise Problem(413, "Content Too Large", "Files must be less than 100MB in size")
                content, filename = bytes(data), part.filename or filename
                content_type = part.headers.get("Content-Type", content_type)
            elif part.name == "metadata":
                try:
                    metadata = json.loads(await part.text())
                except ValueError:
                    metadata = None
                if not isinstance(metadata, dict):
                    raise _bad_request("metadata must be a JSON object")
            elif part.name in ("filename", "type"):
                value = await part.text()
                filename, content_type = (value, content_type) if part.name == "filename" else (filename, value)
        if content is None:
            raise _bad_request("The 'content' part is required")
        if len(filename.encode()) > 255:
            raise _bad_request("filename must be at most 255 bytes")
        stored = StoredFile(_new_id(), next(self._seq), content, content_type, filename, metadata)
        self.files[stored.id] = stored
        return web.json_response(stored.to_json(self.base_url), status=201)

    def _file(self, request: web.Request) -> StoredFile:
        if (stored := self.files.get(request.match_info["fid"])) is None:
            raise _not_found("File")
        return stored

    async def _h_file_get(self, request: web.Request) -> web.Response:
        return web.json_response(self._file(request).to_json(self.base_url))

    async def _h_file_delete(self, request: web.Request) -> web.Response:
        del self.files[self._file(request).id]
        return web.Response(status=204)

    async def _h_file_download(self, request: web.Request) -> web.Response:
        stored = self._file(request)
        return web.Response(body=stored.content, headers={"Content-Type": stored.content_type})

    async def _h_file_list(self, request: web.Request) -> web.Response:
        items = [(f.seq, f.to_json(self.base_url)) for f in self.files.values()]
        return web.json_response(self._page(request, items))
