"""Replicate's errors: ``application/problem+json`` bodies, raised inside handlers, and injected faults."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from aiohttp import web

from tests.fakes import _http

PROBLEM = "application/problem+json"


class Problem(Exception):
    """Raised inside handlers; rendered as an ``application/problem+json`` response."""

    def __init__(self, status: int, title: str, detail: str, **extra: Any) -> None:
        super().__init__(f"{status} {title}: {detail}")
        self.status = status
        self.body: dict[str, Any] = {"title": title, "detail": detail, "status": status, **extra}

    def response(self) -> web.Response:
        return web.json_response(self.body, status=self.status, content_type=PROBLEM)


def _not_found(what: str = "The requested resource") -> Problem:
    return Problem(404, "Not found", f"{what} could not be found.")


def _bad_request(detail: str) -> Problem:
    return Problem(400, "Bad Request", detail)


def _validation_problem(fields: list[dict[str, str]]) -> Problem:
    detail = "".join(f"- {f['field']}: {f['description']}\n" for f in fields)
    return Problem(422, "Input validation failed", detail, invalid_fields=fields)


@dataclass
class Fault(_http.Fault):
    """An injected failure; see ``FakeReplicate.inject``. ``hits`` counts the requests it answered."""

    drop_after_create: bool
    # Run the real handler (the prediction is created), then hold the answer until this is set.
    answer_when: asyncio.Event | None = field(default=None, kw_only=True)

    def response(self, status: int) -> web.Response:
        body = self.body
        if body is None and status == 429:
            body = {"detail": "Request was throttled. Your rate limit resets in ~30s."}
        elif body is None:
            phrase = HTTPStatus(status).phrase
            body = {"title": phrase, "detail": f"fake: injected {status} {phrase}", "status": status}
        return web.json_response(body, status=status, headers=self.headers, content_type=PROBLEM)
