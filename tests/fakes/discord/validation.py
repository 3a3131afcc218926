"""Request-body validation against Discord's official OpenAPI spec, plus rules the spec does not state.

``validate_request(path_template, method, body)`` looks up the operation's ``application/json`` request
schema in ``tests/specs/discord-openapi.json`` (multipart bodies are validated through their ``payload_json``)
and returns Discord's nested ``errors`` object (empty when valid). Compiled validators are cached per
operation; the spec is parsed once per process.

One deliberate change to the spec: ``SnowflakeType`` also accepts non-negative integers, because Discord
accepts them and discord.py sends ``message_reference.message_id``, ``attachments[].id`` and
``allowed_mentions.users`` as ints.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from .errors import field_error, merge_errors
from .models import IS_COMPONENTS_V2, iter_components

SPEC_PATH = Path(__file__).resolve().parents[2] / "specs" / "discord-openapi.json"
_SPEC_URI = "urn:discord-openapi"

MESSAGE_CONTENT_LIMIT = 2000
EMBED_TOTAL_LIMIT = 6000
ATTACHMENTS_PER_MESSAGE = 10


@functools.cache
def _spec() -> dict[str, Any]:
    spec: dict[str, Any] = json.loads(SPEC_PATH.read_text(encoding="utf-8"))
    snowflake = spec["components"]["schemas"]["SnowflakeType"]
    spec["components"]["schemas"]["SnowflakeType"] = {
        "anyOf": [snowflake, {"type": "integer", "minimum": 0, "maximum": 2**64 - 1}]
    }
    return spec


def schema(name: str) -> dict[str, Any]:
    """One of the spec's named schemas (``components/schemas/<name>``)."""
    return _spec()["components"]["schemas"][name]


@functools.cache
def _registry() -> Registry[Any]:
    resource = Resource.from_contents(_spec(), default_specification=DRAFT202012)
    return Registry().with_resource(_SPEC_URI, resource)


def _pointer_token(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


@functools.cache
def _validator(path_template: str, method: str) -> Draft202012Validator | None:
    op = _spec()["paths"].get(path_template, {}).get(method.lower())
    if op is None:
        return None
    content = op.get("requestBody", {}).get("content", {})
    if "application/json" not in content:
        return None
    pointer = "/".join(
        _pointer_token(t)
        for t in ("paths", path_template, method.lower(), "requestBody", "content", "application/json", "schema")
    )
    return Draft202012Validator({"$ref": f"{_SPEC_URI}#/{pointer}"}, registry=_registry())


def has_schema(path_template: str, method: str) -> bool:
    return _validator(path_template, method) is not None


def validate_request(path_template: str, method: str, body: Any) -> dict[str, Any]:
    """Discord-style nested ``errors`` for ``body`` (``{}`` if valid or the operation has no schema)."""
    validator = _validator(path_template, method)
    if validator is None:
        return {}
    errors: dict[str, Any] = {}
    for error in validator.iter_errors(body):
        for leaf in _leaves(error):
            merge_errors(errors, _to_discord(leaf))
    return errors


def _branch_score(errors: list[ValidationError]) -> tuple[bool, bool, int]:
    """Lower is a better guess of the union branch the sender meant."""
    wrong_discriminator = any(e.validator in ("enum", "const") and list(e.relative_path) == ["type"] for e in errors)
    wrong_type = any(e.validator == "type" and not e.relative_path for e in errors)
    return (wrong_discriminator, wrong_type, len(errors))


def _leaves(error: ValidationError) -> list[ValidationError]:
    """Replace a failed anyOf/oneOf by the errors of the branch the sender most likely meant."""
    if not error.context:
        return [error]
    branches: dict[Any, list[ValidationError]] = defaultdict(list)
    for sub in error.context:
        branches[sub.relative_schema_path[0]].append(sub)
    best = min(branches.values(), key=_branch_score)
    return [leaf for sub in best for leaf in _leaves(sub)]


_TYPE_CODES = {
    "integer": ("NUMBER_TYPE_COERCE", 'Value "{v}" is not int.'),
    "number": ("NUMBER_TYPE_COERCE", 'Value "{v}" is not a number.'),
    "string": ("BASE_TYPE_STRING", 'Could not interpret "{v}" as string.'),
    "boolean": ("BOOLEAN_TYPE_CONVERT", 'Value "{v}" is not a boolean.'),
    "array": ("LIST_TYPE_CONVERT", "Only iterables may be used in a ListType"),
    "object": ("DICT_TYPE_CONVERT", "Only dictionaries may be used in a DictType"),
}


def _to_discord(error: ValidationError) -> dict[str, Any]:
    path: list[str | int] = list(error.absolute_path)
    kind, inst = error.validator, error.instance
    value: Any = error.validator_value
    if kind == "required":
        missing = [k for k in value if isinstance(inst, dict) and k not in inst]
        return field_error([*path, missing[0] if missing else "?"], "BASE_TYPE_REQUIRED", "This field is required")
    if kind in ("maxLength", "maxItems"):
        return field_error(path, "BASE_TYPE_MAX_LENGTH", f"Must be {value} or fewer in length.")
    if kind in ("minLength", "minItems"):
        return field_error(path, "BASE_TYPE_MIN_LENGTH", f"Must be {value} or more in length.")
    if kind == "type":
        expected = [value] if isinstance(value, str) else [t for t in value if t != "null"]
        code, message = _TYPE_CODES.get(expected[0] if expected else "", ("BASE_TYPE_REQUIRED", "{v}"))
        return field_error(path, code, message.format(v=inst))
    if kind in ("enum", "const"):
        choices = value if kind == "enum" else [value]
        return field_error(path, "BASE_TYPE_CHOICES", f"Value must be one of {set(choices)}.")
    if kind in ("minimum", "exclusiveMinimum"):
        return field_error(path, "NUMBER_TYPE_MIN", f"int value should be greater than or equal to {value}.")
    if kind in ("maximum", "exclusiveMaximum"):
        return field_error(path, "NUMBER_TYPE_MAX", f"int value should be less than or equal to {value}.")
    if kind == "pattern":
        return field_error(path, "STRING_TYPE_REGEX", "String value did not match validation regex.")
    if kind == "uniqueItems":
        return field_error(path, "LIST_ITEM_VALUE_DUPLICATE", "List items must be unique.")
    return field_error(path, "BASE_TYPE_INVALID", error.message[:200])


# ---------------------------------------------------------------------------------------------
# Rules the spec does not encode (reference 2.8)


def _embed_chars(embed: dict[str, Any]) -> int:
    total = len(embed.get("title") or "") + len(embed.get("description") or "")
    total += len((embed.get("footer") or {}).get("text") or "")
    total += len((embed.get("author") or {}).get("name") or "")
    for fld in embed.get("fields") or []:
        total += len(fld.get("name") or "") + len(fld.get("value") or "")
    return total


def message_rules(payload: Any, file_count: int) -> dict[str, Any]:
    """Message-body rules beyond the spec: 2000 characters, 6000 embed characters, 10 files, rows."""
    errors: dict[str, Any] = {}
    if not isinstance(payload, dict):
        return errors
    content = payload.get("content")
    if isinstance(content, str) and MESSAGE_CONTENT_LIMIT < len(content) <= 4000:  # the spec says 4000
        merge_errors(
            errors,
            field_error(["content"], "BASE_TYPE_MAX_LENGTH", f"Must be {MESSAGE_CONTENT_LIMIT} or fewer in length."),
        )
    embeds = payload.get("embeds") or []
    if isinstance(embeds, list) and sum(_embed_chars(e) for e in embeds if isinstance(e, dict)) > EMBED_TOTAL_LIMIT:
        merge_errors(
            errors, field_error(["embeds"], "MESSAGE_EMBED_TOO_LONG", "Embed size exceeds maximum size of 6000")
        )
    if file_count > ATTACHMENTS_PER_MESSAGE:
        merge_errors(
            errors,
            field_error(
                ["attachments"], "BASE_TYPE_MAX_LENGTH", f"Must be {ATTACHMENTS_PER_MESSAGE} or fewer in length."
            ),
        )
    merge_errors(errors, component_rules(payload.get("components") or [], payload.get("flags") or 0))
    return errors


def component_rules(components: Iterable[Any], flags: int) -> dict[str, Any]:
    """Unique custom_ids; at most 5 action rows unless the message uses Components V2 (flag 32768)."""
    comps = [c for c in components if isinstance(c, dict)]
    errors: dict[str, Any] = {}
    if not flags & IS_COMPONENTS_V2 and len(comps) > 5:
        merge_errors(errors, field_error(["components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length."))
    seen: set[str] = set()
    for comp in iter_components(comps):
        custom_id = comp.get("custom_id")
        if isinstance(custom_id, str):
            if custom_id in seen:
                merge_errors(
                    errors,
                    field_error(
                        ["components"], "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated"
                    ),
                )
            seen.add(custom_id)
    return errors


def is_empty_message(payload: dict[str, Any], file_count: int, kept_attachments: int = 0) -> bool:
    """Discord's 50006 rule: nothing to show."""
    content = payload.get("content")
    return not (
        (isinstance(content, str) and content.strip())
        or payload.get("embeds")
        or payload.get("components")
        or payload.get("sticker_ids")
        or payload.get("poll")
        or file_count
        or kept_attachments
    )


def callback_rules(payload: Any, file_count: int) -> dict[str, Any]:
    """Interaction callbacks: message rules on ``data`` for types 4 and 7; modals take 1 to 5 components."""
    if not isinstance(payload, dict) or not isinstance(payload.get("data"), dict):
        return {}
    data: dict[str, Any] = payload["data"]
    if payload.get("type") in (4, 7):
        errors = message_rules(data, file_count)
        return {"data": errors} if errors else {}
    components = data.get("components") or []
    if payload.get("type") == 9 and isinstance(components, list) and len(components) > 5:
        return field_error(["data", "components"], "BASE_TYPE_MAX_LENGTH", "Must be 5 or fewer in length.")
    return {}
