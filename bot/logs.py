"""Logging: the job id on every record, secrets masked, plain text or one JSON object per line.

Job ids: whoever works on a job binds it, and every record logged meanwhile carries ``job=<id>``::

    with job_context(job.id):
        log.info("submitted")           # ... bot.jobs.service job=ab12cd34ef: submitted

The id lives in a :mod:`contextvars` variable, so it follows ``await`` and is copied into tasks started
while it is bound (each asyncio task runs in its own copy of the context: binding in one task never
leaks into another). :func:`job_task_context` gives a task its job id without binding the caller.

Secrets: :class:`SecretMasker` replaces the values of the secret environment variables (read at
startup) wherever they appear in a record: its message, its arguments, its traceback. It is a handler
filter, so it sees records from every logger, discord.py's and aiohttp's included. Tokens made per
interaction or per job are recognised by their shape instead (:data:`TOKEN_PATTERNS`): Discord's interaction
tokens (in discord.py's DEBUG lines of webhook and callback URLs and of gateway events) and Cog webhook tokens
(in their URLs, and in the SQL parameters aiosqlite logs at DEBUG).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TextIO

# Secret values come from these variables only (see the README's Configuration section).
SECRET_ENV_VARS = (
    "DISCORD_TOKEN",
    "REPLICATE_API_TOKEN",
    "REPLICATE_WEBHOOK_SECRET",
    "ELEVENLABS_API_KEY",
    "ENCORE_COG__UPLOAD_SECRET",
    "ENCORE_DATABASE_URL",  # a PostgreSQL URL with its password (its password alone: bot/storage/postgres.py)
    "PGPASSWORD",  # the password PostgreSQL clients read from the environment
)
# Shorter values are not masked: they would mangle ordinary words and are no secret anyway.
MIN_SECRET_CHARS = 6
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s%(job_tag)s: %(message)s"
# Every job's webhook token (the token in a per-job webhook URL, a Cog server's) starts with this, so it is
# masked wherever it appears (see TOKEN_PATTERNS). ("cogwh_": Cog's were the first; tokens already made keep it.)
CALLBACK_TOKEN_PREFIX = "cogwh_"  # noqa: S105 - a prefix, not a secret
_SEGMENT = r"[^/\s?#'\"]+"  # one URL path segment
# Secrets recognised by their shape: (pattern, replacement).
TOKEN_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Discord's interaction tokens are base64 of "interaction:...".
    (re.compile(r"aW50ZXJhY3Rpb246[A-Za-z0-9_.=-]+"), "***INTERACTION_TOKEN***"),
    # ... and whatever their shape, the token segment of interaction webhooks and callbacks.
    (re.compile(rf"(/(?:webhooks|interactions)/\d+/){_SEGMENT}"), r"\1***INTERACTION_TOKEN***"),
    # A gateway event's or payload's "token" field.
    (re.compile(r"""(['"]token['"]\s*:\s*['"])[^'"]+"""), r"\1***TOKEN***"),
    # Cog webhook URLs carry their job's token; the token alone (an SQL parameter) has the prefix.
    (re.compile(rf"(/cog/webhooks/{_SEGMENT}/){_SEGMENT}"), r"\1***COG_WEBHOOK_TOKEN***"),
    (re.compile(rf"{CALLBACK_TOKEN_PREFIX}[A-Za-z0-9_-]+"), "***COG_WEBHOOK_TOKEN***"),
)

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("encore_job_id", default=None)


# -- job ids ----------------------------------------------------------------------------------------


def current_job() -> str | None:
    """The job id bound in this context, if any."""
    return _job_id.get()


def bind_job(job_id: str | None) -> contextvars.Token[str | None]:
    """Bind ``job_id`` for the rest of the current task (and tasks it starts); :func:`unbind_job` undoes it."""
    return _job_id.set(job_id)


def unbind_job(token: contextvars.Token[str | None]) -> None:
    _job_id.reset(token)


class _JobContext:
    def __init__(self, job_id: str | None) -> None:
        self._job_id = job_id
        self._token: contextvars.Token[str | None] | None = None

    def __enter__(self) -> None:
        self._token = _job_id.set(self._job_id)

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._token is not None
        _job_id.reset(self._token)
        self._token = None


def job_context(job_id: str | None) -> _JobContext:
    """Bind ``job_id`` inside a ``with`` block (sync or async code), restoring the previous one after.

    Not a decorator: on an ``async def`` it would bind only while the coroutine object is made.
    """
    return _JobContext(job_id)


def job_task_context(job_id: str | None) -> contextvars.Context:
    """A copy of the current context with ``job_id`` bound: ``asyncio.create_task(coro, context=...)``."""
    context = contextvars.copy_context()
    context.run(_job_id.set, job_id)
    return context


class JobFilter(logging.Filter):
    """Puts the bound job id on each record as ``record.job`` (None when no job is bound)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "job"):
            record.job = _job_id.get()
        return True


# -- secrets ----------------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else on a record came in through ``extra=``.
_RECORD_ATTRS = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {
    "message",
    "asctime",
    "job",
    "job_tag",
    "taskName",
}


class SecretMasker(logging.Filter):
    """Replaces known secret values in records with ``***NAME***``."""

    def __init__(self, secrets: Mapping[str, str] | None = None) -> None:
        super().__init__()
        self._secrets: dict[str, str] = {}
        for name, value in (secrets or {}).items():
            self.add(name, value)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SecretMasker:
        masker = cls()
        masker.load_env(environ)
        return masker

    def load_env(self, environ: Mapping[str, str] | None = None, names: Iterable[str] = SECRET_ENV_VARS) -> None:
        """Mask the values of the secret variables set in ``environ`` (default: ``os.environ``)."""
        env = os.environ if environ is None else environ
        for name in names:
            self.add(name, env.get(name, "").strip())

    def add(self, name: str, value: str) -> None:
        """Mask ``value`` from now on (e.g. a secret fetched at startup rather than set in the environment)."""
        if len(value) >= MIN_SECRET_CHARS:
            self._secrets[value] = name

    def __len__(self) -> int:
        return len(self._secrets)

    def mask(self, text: str) -> str:
        # Longest first, so a secret that contains another is replaced whole.
        for value in sorted(self._secrets, key=len, reverse=True):
            if value in text:
                text = text.replace(value, f"***{self._secrets[value]}***")
        for pattern, replacement in TOKEN_PATTERNS:
            text = pattern.sub(replacement, text)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
            masked = self.mask(message)
            if masked != message:
                record.msg, record.args = masked, None
        except Exception:  # a bad format string: logging's error report would print the raw arguments
            record.msg, record.args = self.mask(f"{record.msg} {record.args!r}"), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        if record.stack_info:
            record.stack_info = self.mask(record.stack_info)
        for key, value in list(record.__dict__.items()):  # fields given with extra=
            if key not in _RECORD_ATTRS and value is not None:
                text = value if isinstance(value, str) else str(value)
                masked = self.mask(text)
                if masked != text:
                    setattr(record, key, masked)
        return True


# One masker for the process, so secrets learned after startup can be added (see register_secret).
MASKER = SecretMasker()


def register_secret(name: str, value: str) -> None:
    """Mask ``value`` in every log line from now on."""
    MASKER.add(name, value)


# -- formats ----------------------------------------------------------------------------------------


class TextFormatter(logging.Formatter):
    """``2025-01-31 12:00:00,123 INFO    bot.jobs.service job=ab12cd34ef: message``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job", None)
        record.job_tag = f" job={job}" if job else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, job, exception, extras."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        job = getattr(record, "job", None)
        if job:
            entry["job"] = job
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = record.stack_info
        for key, value in record.__dict__.items():
            if key not in _RECORD_ATTRS and key not in entry:
                entry[key] = value
        return json.dumps(entry, default=str, ensure_ascii=False)


def make_handler(
    *, json_lines: bool = False, stream: TextIO | None = None, masker: SecretMasker = MASKER
) -> logging.Handler:
    """A stream handler with job ids, masked secrets and the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.addFilter(JobFilter())
    handler.addFilter(masker)
    return handler


def configure(
    level: str,
    *,
    json_lines: bool = False,
    stream: TextIO | None = None,
    environ: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Set up the root logger for the process: one handler on ``stream`` (stderr), secrets from ``environ``."""
    MASKER.load_env(environ)
    handler = make_handler(json_lines=json_lines, stream=stream)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    return handler
