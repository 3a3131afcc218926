"""The SQL the repositories write, and what differs between SQLite and PostgreSQL.

Repositories write one SQL text for both databases, with SQLite's parameters: ``?`` in order, or ``:name``
(a name may appear more than once). :func:`numbered` turns such a text into PostgreSQL's ``$1, $2, ...`` once
per text (cached), skipping string literals, quoted names and comments. The few expressions the two spell
differently (reading a value out of a JSON column) come from the backend's :class:`Dialect`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

Params = Sequence[Any] | Mapping[str, Any]


class Row(Protocol):
    """A row as both backends return it: by position (``row[0]``), by column name (``row["id"]``), unpacked in
    order (``a, b = row``) and as a dict (``dict(row)``)."""

    def __getitem__(self, key: Any, /) -> Any: ...

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...

    def keys(self) -> Iterable[str]: ...


# A JSON path step: a key made of letters, digits and underscores (never a caller's text).
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Dialect:
    """What one database calls the few things the two spell differently."""

    name: Literal["sqlite", "postgres"]

    def json_text(self, column: str, *path: str) -> str:
        """The string at ``path`` in the JSON text of ``column`` (NULL where there is none)."""
        keys = _checked(column, path)
        if self.name == "sqlite":
            return f"json_extract({column}, '$.{'.'.join(keys)}')"
        # JSON is stored as text on both (see migrations/postgres/0001_jobs.sql); ::json parses it, as
        # json_extract does. The lineage index (0007) is on this very expression.
        return f"(({column})::json #>> '{{{','.join(keys)}}}')"

    def json_number(self, column: str, *path: str) -> str:
        """The number at ``path`` in the JSON text of ``column`` (NULL where there is none)."""
        if self.name == "sqlite":
            return self.json_text(column, *path)  # json_extract keeps a number's type
        return f"{self.json_text(column, *path)}::double precision"

    @property
    def now_s(self) -> str:
        """The database's own clock, in Unix epoch seconds: one clock for every process sharing the database,
        whatever their own say (one value through a statement)."""
        if self.name == "sqlite":
            return "((julianday('now') - 2440587.5) * 86400.0)"
        return "extract(epoch FROM statement_timestamp())::double precision"

    def skip_locked(self, table: str) -> str:
        """What ends a ``SELECT`` that picks rows of ``table`` (a name or alias) to change in this transaction:
        PostgreSQL locks the rows it picks and passes over rows another transaction holds; SQLite's transaction
        holds the whole database already, so nothing."""
        if self.name == "sqlite":
            return ""
        _checked(table, ())
        return f" FOR UPDATE OF {table} SKIP LOCKED"


SQLITE = Dialect("sqlite")
POSTGRES = Dialect("postgres")


def _checked(column: str, path: Sequence[str]) -> list[str]:
    for part in (column, *path):
        if not _KEY.match(part):
            raise ValueError(f"not a plain name: {part!r}")
    return list(path)


# What a parameter looks like, and what must be passed over whole: '...' literals ('' inside), "..." names,
# -- comments to the end of the line, /* ... */ comments, and :: (PostgreSQL's cast, never a parameter).
_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|--[^\n]*|/\*.*?\*/|::|\?|:([A-Za-z_][A-Za-z0-9_]*)""",
    re.DOTALL,
)


@functools.lru_cache(maxsize=1024)
def numbered(sql: str) -> tuple[str, tuple[str, ...] | int]:
    """``sql`` with PostgreSQL's ``$n`` parameters, and what they stand for: the names in ``$n`` order (named
    parameters), or how many ``?`` there were. A text must not mix the two."""
    names: list[str] = []
    positional = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal positional
        found = match.group(0)
        if found == "?":
            positional += 1
            return f"${positional}"
        name = match.group(1)
        if name is None:
            return found  # a literal, a quoted name, a comment or ::
        if name not in names:
            names.append(name)
        return f"${names.index(name) + 1}"

    text = _TOKENS.sub(replace, sql)
    if names and positional:
        raise ValueError("an SQL text uses both ? and :name parameters")
    return text, tuple(names) if names else positional


def arguments(sql: str, parameters: Params) -> tuple[str, list[Any]]:
    """``sql`` for PostgreSQL and its parameters in ``$n`` order."""
    text, wanted = numbered(sql)
    if isinstance(wanted, tuple):
        if not isinstance(parameters, Mapping):
            raise TypeError("this SQL takes named parameters (:name): pass a mapping")
        return text, [parameters[name] for name in wanted]
    if isinstance(parameters, Mapping):
        raise TypeError("this SQL takes ? parameters: pass a sequence")
    values = list(parameters)
    if len(values) != wanted:
        raise ValueError(f"the SQL takes {wanted} parameter(s), {len(values)} given")
    return text, values
