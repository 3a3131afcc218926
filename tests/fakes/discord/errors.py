"""Errors: Discord API error replies (:class:`ApiError`) and test-side misuse (:class:`SimulatorError`)."""

from __future__ import annotations

import time
from typing import Any


class SimulatorError(Exception):
    """A test asked the simulator for something a real Discord client could not do."""


class SimulatorTimeoutError(TimeoutError):
    """A ``wait_for_*`` call ran out of time; the message says what was seen instead."""


class ApiError(Exception):
    """An error reply from the REST API: HTTP status plus Discord's JSON error body."""

    def __init__(
        self,
        status: int,
        code: int,
        message: str,
        *,
        errors: dict[str, Any] | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.extra = extra or {}
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "code": self.code}
        if self.errors is not None:
            body["errors"] = self.errors
        body.update(self.extra)
        return body

    def response_headers(self) -> dict[str, str]:
        """Headers to send with this error (computed when it is sent)."""
        return self.headers


# Codes from https://discord.com/developers/docs/topics/opcodes-and-status-codes#json
UNKNOWN_CHANNEL = 10003
UNKNOWN_MESSAGE = 10008
UNKNOWN_USER = 10013
UNKNOWN_WEBHOOK = 10015
UNKNOWN_APPLICATION_COMMAND = 10063
UNKNOWN_INTERACTION = 10062
REQUEST_TOO_LARGE = 40005
ALREADY_ACKNOWLEDGED = 40060
MISSING_ACCESS = 50001
CANNOT_EDIT_OTHERS_MESSAGE = 50005
EMPTY_MESSAGE = 50006
CANNOT_MESSAGE_USER = 50007
MISSING_PERMISSIONS = 50013
INVALID_WEBHOOK_TOKEN = 50027
INVALID_FORM_BODY = 50035
INVALID_JSON = 50109
REPLY_WITHOUT_HISTORY = 160002


def unauthorized() -> ApiError:
    return ApiError(401, 0, "401: Unauthorized")


def not_found_route() -> ApiError:
    return ApiError(404, 0, "404: Not Found")


def method_not_allowed() -> ApiError:
    return ApiError(405, 0, "405: Method Not Allowed")


def unknown_channel() -> ApiError:
    return ApiError(404, UNKNOWN_CHANNEL, "Unknown Channel")


def unknown_message() -> ApiError:
    return ApiError(404, UNKNOWN_MESSAGE, "Unknown Message")


def unknown_user() -> ApiError:
    return ApiError(404, UNKNOWN_USER, "Unknown User")


def unknown_webhook() -> ApiError:
    return ApiError(404, UNKNOWN_WEBHOOK, "Unknown Webhook")


def unknown_interaction() -> ApiError:
    return ApiError(404, UNKNOWN_INTERACTION, "Unknown interaction")


def request_too_large() -> ApiError:
    return ApiError(413, REQUEST_TOO_LARGE, "Request entity too large")


def already_acknowledged() -> ApiError:
    return ApiError(400, ALREADY_ACKNOWLEDGED, "Interaction has already been acknowledged.")


def missing_access() -> ApiError:
    return ApiError(403, MISSING_ACCESS, "Missing Access")


def missing_permissions() -> ApiError:
    return ApiError(403, MISSING_PERMISSIONS, "Missing Permissions")


def cannot_edit_others_message() -> ApiError:
    return ApiError(403, CANNOT_EDIT_OTHERS_MESSAGE, "Cannot edit a message authored by another user")


def empty_message() -> ApiError:
    return ApiError(400, EMPTY_MESSAGE, "Cannot send an empty message")


def cannot_message_user() -> ApiError:
    return ApiError(403, CANNOT_MESSAGE_USER, "Cannot send messages to this user")


def invalid_webhook_token() -> ApiError:
    return ApiError(401, INVALID_WEBHOOK_TOKEN, "Invalid Webhook Token")


def invalid_json() -> ApiError:
    return ApiError(400, INVALID_JSON, "The request body contains invalid JSON.")


def reply_without_history() -> ApiError:
    return ApiError(403, REPLY_WITHOUT_HISTORY, "Cannot reply without permission to read message history")


def invalid_form_body(errors: dict[str, Any]) -> ApiError:
    """400/50035 with Discord's nested ``errors`` object (leaves are ``{"_errors": [...]}``)."""
    return ApiError(400, INVALID_FORM_BODY, "Invalid Form Body", errors=errors)


def field_error(path: list[str | int], code: str, message: str) -> dict[str, Any]:
    """Nested ``errors`` object with one leaf at ``path``."""
    node: dict[str, Any] = {"_errors": [{"code": code, "message": message}]}
    for key in reversed(path):
        node = {str(key): node}
    return node


def merge_errors(into: dict[str, Any], other: dict[str, Any]) -> dict[str, Any]:
    """Merge two nested ``errors`` objects in place (``into``) and return it."""
    for key, value in other.items():
        if key == "_errors":
            into.setdefault("_errors", []).extend(value)
        elif key in into:
            merge_errors(into[key], value)
        else:
            into[key] = value
    return into


class RateLimitedError(ApiError):
    """A 429: Discord's body has ``message``, ``retry_after`` and ``global``, and no ``code``.

    ``X-RateLimit-Reset`` is set when the answer is sent, in real epoch seconds: discord.py compares it with
    real time, as it waits in real time.
    """

    def __init__(self, retry_after_s: float, *, is_global: bool, scope: str, bucket: str) -> None:
        headers = {
            "Via": "1.1 google",
            "Retry-After": str(max(1, round(retry_after_s))),
            "X-RateLimit-Limit": "5",
            "X-RateLimit-Remaining": "0",
            "X-RateLimit-Reset-After": f"{retry_after_s:.3f}",
            "X-RateLimit-Bucket": bucket,
            "X-RateLimit-Scope": scope,
        }
        if is_global:
            headers["X-RateLimit-Global"] = "true"
        extra = {"retry_after": retry_after_s, "global": is_global}
        super().__init__(429, 0, "You are being rate limited.", extra=extra, headers=headers)
        self.retry_after_s = retry_after_s

    def body(self) -> dict[str, Any]:
        body = super().body()
        del body["code"]
        return body

    def response_headers(self) -> dict[str, str]:
        return {**self.headers, "X-RateLimit-Reset": f"{time.time() + self.retry_after_s:.3f}"}


def rate_limited(
    retry_after_s: float, *, is_global: bool = False, scope: str = "user", bucket: str = "simulated"
) -> ApiError:
    """429 as Discord sends it: JSON body with ``retry_after`` and the rate-limit headers (incl. ``Via``)."""
    return RateLimitedError(retry_after_s, is_global=is_global, scope=scope, bucket=bucket)
