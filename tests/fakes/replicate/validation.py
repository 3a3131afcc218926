"""Request checks: bodies against the official OpenAPI spec, the ``Prefer``/``Cancel-After`` headers, webhook URLs."""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jsonschema

from .errors import _bad_request

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "replicate-openapi.json"


@cache
def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text())


@cache
def spec_validator(schema_name: str) -> jsonschema.Draft202012Validator:
    """Validator for ``#/components/schemas/<schema_name>`` of the official spec, ``$ref``s resolved."""
    root = {"$ref": f"#/components/schemas/{schema_name}", "components": _spec()["components"]}
    return jsonschema.Draft202012Validator(root)


def _parse_prefer(value: str | None) -> float | None:
    """Seconds to hold the create response open, from ``Prefer: wait[=N]``; None if absent."""
    if value is None:
        return None
    pattern = _spec()["components"]["parameters"]["parameters_prefer_header"]["schema"]["pattern"]
    v = value.strip()
    _, _, n = v.partition("=")
    if not re.fullmatch(pattern, v) or int(n or 60) > 60:
        raise _bad_request(f"Invalid Prefer header {value!r}: expected 'wait' or 'wait=N' with N in 1..60")
    return float(n or 60)


def _parse_cancel_after(value: str | None) -> float | None:
    """Seconds from ``Cancel-After`` (``30``, ``30s``, ``5m``, ``1h30m45s``); None if absent; min 5 s."""
    if value is None:
        return None
    v = value.strip()
    m = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", v)
    if re.fullmatch(r"\d+(?:\.\d+)?", v):
        seconds = float(v)
    elif v and m:
        seconds = int(m[1] or 0) * 3600 + int(m[2] or 0) * 60 + float(m[3] or 0)
    else:
        raise _bad_request(f"Invalid Cancel-After header {value!r}: expected e.g. 30s, 5m or 1h30m45s")
    if seconds < 5:
        raise _bad_request("Cancel-After must be at least 5 seconds")
    return seconds


def _webhook_url_ok(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme == "https":
        return bool(parts.hostname)
    # Deliberate leniency: tests run their webhook receiver on plain-http loopback.
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")
