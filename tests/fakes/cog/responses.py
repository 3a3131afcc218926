"""FastAPI-shaped answers: compact JSON, replies raised inside handlers, 422 ``detail`` lists, injected faults."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes import _http


def _dumps(value: Any) -> str:
    """FastAPI's JSONResponse encoding: compact, non-ASCII kept."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(text=_dumps(body), status=status, content_type="application/json", headers=headers)


class _Reply(Exception):
    """Raised inside handlers to answer with a ready response."""

    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


def _unprocessable(errors: list[dict[str, Any]]) -> _Reply:
    return _Reply(_json({"detail": errors}, 422))


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeCog.inject``. ``hits`` counts the requests it answered."""

    def response(self, status: int) -> web.Response:
        body = self.body
        if body is None:
            body = {"detail": f"fake: injected {status} {HTTPStatus(status).phrase}"}
        return _json(body, status, self.headers)
