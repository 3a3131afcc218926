"""ElevenLabs' errors: ``{"detail": ...}`` bodies by code (modern and legacy shapes) and FastAPI's 422 lists."""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError


class ApiError(Exception):
    """Raised inside handlers; rendered as ``{"detail": ...}`` with ``status``."""

    def __init__(self, status: int, detail: Any, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(f"{status}: {detail}")
        self.status = status
        self.detail = detail
        self.headers = dict(headers or {})

    def response(self) -> web.Response:
        return web.json_response({"detail": self.detail}, status=self.status, headers=self.headers)


def _request_id() -> str:
    return secrets.token_hex(16)


# code -> (HTTP status, type or None for the legacy {status, message} shape, message)
ERRORS: dict[str, tuple[int, str | None, str]] = {
    "bad_prompt": (400, None, "fake: the prompt references an artist or copyrighted material."),
    "bad_composition_plan": (400, None, "fake: the composition plan references copyrighted material."),
    "invalid_request": (400, "invalid_request", "fake: invalid request."),
    "validation_error": (400, "validation_error", "fake: validation failed."),
    "invalid_audio": (400, "invalid_request", "fake: the file is not audio the server can decode."),  # guess
    "quota_exceeded": (401, None, "fake: this request exceeds your quota."),
    "missing_api_key": (401, "authentication_error", "fake: missing the xi-api-key header."),
    "invalid_api_key": (401, "authentication_error", "fake: invalid API key."),
    "insufficient_credits": (402, "payment_required", "fake: not enough credits for this request."),
    "subscription_required": (403, "authorization_error", "fake: the Music API needs a paid subscription."),
    "song_not_found": (404, "not_found", "fake: song not found."),
    "rate_limit_exceeded": (429, "rate_limit_error", "fake: too many requests; back off and retry."),
    "concurrent_limit_exceeded": (429, "rate_limit_error", "fake: too many concurrent requests."),
    "too_many_concurrent_requests": (429, None, "fake: too many concurrent requests."),  # the old name
    "system_busy": (429, "rate_limit_error", "fake: the system is busy; retry later."),
    "internal_error": (500, "internal_error", "fake: internal server error."),
    "service_unavailable": (503, "service_unavailable", "fake: service unavailable."),
}
_CODE_FOR_STATUS = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_credits",
    403: "subscription_required",
    404: "song_not_found",
    429: "rate_limit_exceeded",
    500: "internal_error",
    503: "service_unavailable",
}


def error_detail(code: str, message: str | None = None, *, param: str | None = None) -> dict[str, Any]:
    """The ``detail`` object of a non-422 error: the modern shape, or ``{status, message}`` for legacy codes."""
    _, kind, default = ERRORS[code]
    if kind is None:
        return {"status": code, "message": message or default}
    return {
        "type": kind,
        "code": code,
        "message": message or default,
        "request_id": _request_id(),
        "param": param,
        "status": code,
    }


def api_error(code: str, message: str | None = None, *, param: str | None = None) -> ApiError:
    return ApiError(ERRORS[code][0], error_detail(code, message, param=param))


class Invalid(Exception):
    """A 422 with FastAPI's ``detail`` list."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(json.dumps(errors))
        self.errors = errors

    def response(self) -> web.Response:
        return web.json_response({"detail": self.errors}, status=422)


def _err(loc: list[str | int], msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": loc, "msg": msg, "type": kind}


def _pydantic_errors(model: type[BaseModel], value: Any, loc: list[str | int]) -> list[dict[str, Any]]:
    try:
        model.model_validate(value, strict=True)
    except ValidationError as exc:
        return [_err([*loc, *e["loc"]], e["msg"], e["type"]) for e in exc.errors(include_url=False)]
    return []


def _one_of(values: tuple[str, ...] | list[str]) -> str:
    quoted = [f"'{v}'" for v in values]
    return "Input should be " + (", ".join(quoted[:-1]) + " or " + quoted[-1] if len(quoted) > 1 else quoted[0])
