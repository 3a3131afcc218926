"""What PostgreSQL says, in Encore's terms: the storage trouble behind a failed statement
(:func:`storage_error`, :func:`connection_lost`), and the texts PostgreSQL can't keep made storable
(:func:`storable`). See ``bot.storage.postgres``'s docstring for what each kind of trouble means to the jobs.
"""

from __future__ import annotations

import re
from typing import Any

import asyncpg

from bot.errors import StorageBusyError, StorageCorruptError, StorageError, StorageFullError

# SQLSTATE codes: https://www.postgresql.org/docs/current/errcodes-appendix.html
_BUSY = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout: the busy timeout)
        "57014",  # query_canceled (statement_timeout, or cancelled by an operator)
        "53300",  # too_many_connections
    }
)
_FULL = frozenset({"53100"})  # disk_full
_CORRUPT = frozenset({"XX001", "XX002"})  # data_corrupted, index_corrupted
# connection_exception, insufficient_resources, operator_intervention (shutdown, recovery), system_error (I/O)
_FAILING_CLASSES = frozenset({"08", "53", "57", "58"})
_FAILING = frozenset({"25006", "XX000"})  # read_only_sql_transaction (a standby), internal_error
# asyncpg's client-side word for a connection that is already gone.
_CLOSED = "connection is closed"


def _sqlstate(exc: asyncpg.PostgresError) -> str:
    return str(getattr(exc, "sqlstate", "") or "")


def connection_lost(exc: BaseException) -> bool:
    """Whether ``exc`` says the connection (or the server behind it) is gone, not that a statement failed."""
    if isinstance(exc, asyncpg.PostgresError):
        code = _sqlstate(exc)
        return code[:2] == "08" or code in {"57P01", "57P02", "57P03"}
    if isinstance(exc, asyncpg.InterfaceError):
        return _CLOSED in str(exc)
    # InternalClientError: a connection whose end asyncpg has not fully noticed yet (the server sent its last
    # words, "terminating connection", and the socket's end is still on its way), used again meanwhile.
    return isinstance(exc, OSError | TimeoutError | asyncpg.InternalClientError)


def storage_error(exc: BaseException) -> StorageError | None:
    """The storage trouble behind a failed statement (None: a bug, such as bad SQL or a broken constraint)."""
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, asyncpg.PostgresError):
        code = _sqlstate(exc)
        if code in _BUSY:
            return StorageBusyError(detail=detail)
        if code in _FULL:
            return StorageFullError(detail=detail)
        if code in _CORRUPT:
            return StorageCorruptError(detail=detail)
        if code[:2] in _FAILING_CLASSES or code in _FAILING:
            return StorageError(detail=detail)
        return None
    if connection_lost(exc):
        return StorageError(detail=detail)
    return None


# In a JSON document: an escaped backslash (kept), a surrogate pair (kept), or what PostgreSQL's JSON functions
# refuse: an escaped NUL, or half a surrogate pair.
_JSON_ESCAPES = re.compile(
    r"(\\\\)|(\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2})|\\u(?:0000|d[89a-f][0-9a-f]{2})", re.IGNORECASE
)


def _json_escape(match: re.Match[str]) -> str:
    return match.group(0) if match.group(1) or match.group(2) else "\\ufffd"


def storable(value: Any) -> Any:
    """``value`` as PostgreSQL can keep it: U+FFFD for what its text and JSON refuse (see above)."""
    if not isinstance(value, str):
        return value
    if "\x00" in value:
        value = value.replace("\x00", "\ufffd")
    if value[:1] in ("{", "[") and "\\u" in value:
        value = _JSON_ESCAPES.sub(_json_escape, value)
    return value
