"""Which database Encore uses: SQLite in ``[storage] dir`` (the default), or PostgreSQL at a URL.

A PostgreSQL URL may hold a password, so the URL in the settings (``[storage] url``, shown by ``check-config``)
may not; the password comes from the environment: the whole URL in ``ENCORE_DATABASE_URL`` (which wins over
``[storage] url``), or ``PGPASSWORD`` / ``~/.pgpass`` as for every PostgreSQL client. Messages show a URL
only through :func:`mask_url`.
"""

from __future__ import annotations

from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

from pydantic import SecretStr

from bot.errors import ConfigError

POSTGRES_SCHEMES = frozenset({"postgresql", "postgres"})
URL_ENV = "ENCORE_DATABASE_URL"
EXAMPLE_URL = "postgresql://encore@db.example.com:5432/encore"


def _parts(url: str) -> SplitResult | None:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        return None
    return parts if parts.scheme.lower() in POSTGRES_SCHEMES else None


def _query_password(parts: SplitResult) -> str | None:
    """A password given as ``?password=...`` (libpq and asyncpg take one there too)."""
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        if key == "password":
            return value
    return None


def url_problem(url: str, *, password_allowed: bool) -> str | None:
    """What is wrong with ``url`` as a PostgreSQL URL (None: nothing). Never quotes the URL."""
    parts = _parts(url)
    if parts is None:
        return f"must be a PostgreSQL URL such as {EXAMPLE_URL} (or empty for SQLite)"
    if url_password(url) is not None and not password_allowed:
        return (
            f"holds a password: put the whole URL in {URL_ENV} in the environment instead, or the password "
            "in PGPASSWORD or ~/.pgpass"
        )
    return None


def url_password(url: str) -> str | None:
    """The password in ``url`` (after the user name, or a ``password`` parameter), if it holds one."""
    parts = _parts(url)
    if parts is None:
        return None
    return parts.password if parts.password is not None else _query_password(parts)


def mask_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``, fit for logs and messages."""
    return _replace_password(url, "***")


def url_without_password(url: str) -> str:
    """``url`` with its password (if any) left out, for a command line (the password then comes from
    PGPASSWORD or ~/.pgpass)."""
    return _replace_password(url, None)


def _replace_password(url: str, replacement: str | None) -> str:
    parts = _parts(url)
    if parts is None:
        return "(not a PostgreSQL URL)"
    if url_password(url) is None:
        return url
    if parts.password is not None:
        userinfo, _, hostinfo = parts.netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        parts = parts._replace(netloc=f"{user}{'' if replacement is None else ':' + replacement}@{hostinfo}")
    if _query_password(parts) is not None:
        query = [
            (key, replacement if key == "password" else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
            if key != "password" or replacement is not None
        ]
        parts = parts._replace(query=urlencode(query, safe="*/"))
    # Always with "//" (geturl() drops it when there is no host: postgresql:///encore?host=/run/postgresql).
    query = f"?{parts.query}" if parts.query else ""
    fragment = f"#{parts.fragment}" if parts.fragment else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}{fragment}"


def database_url(storage_url: str, env_url: SecretStr | None) -> str | None:
    """The PostgreSQL URL to use: ``ENCORE_DATABASE_URL`` (``env_url``), else ``[storage] url``; None for
    SQLite. A malformed URL from the environment is a :class:`ConfigError` that doesn't quote it."""
    if env_url is not None:
        url = env_url.get_secret_value().strip()
        problem = url_problem(url, password_allowed=True)
        if problem:
            raise ConfigError(f"{URL_ENV} {problem}")
        return url
    return storage_url or None
