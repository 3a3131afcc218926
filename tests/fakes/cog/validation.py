"""Request models built the way cog builds them (pydantic, FastAPI's lax mode) and their 422 error lists."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, cast
from urllib.parse import urlparse

from pydantic import AfterValidator, AnyUrl, BaseModel, ConfigDict, Field, UrlConstraints, ValidationError, create_model

EVENTS = ("start", "output", "logs", "completed")  # cog's default webhook_events_filter: all four


def _jsonable(value: Any) -> Any:
    """FastAPI's jsonable_encoder for validation-error values (exceptions become ``{}``)."""
    if isinstance(value, BaseException):
        return {}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in cast(dict[Any, Any], value).items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in cast(Iterable[Any], value)]
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _check_uri(value: str) -> str:
    parts = urlparse(value)
    if (parts.scheme in ("http", "https") and parts.netloc) or (parts.scheme == "data" and "," in value):
        return value
    raise ValueError(f"'{value}' is not a valid URL (fake: file inputs must be http(s):// or data: URLs)")


def _annotation(title: str, prop: Mapping[str, Any]) -> Any:
    """A pydantic annotation for one property of a model's input JSON schema."""
    if "enum" in prop:
        values = list(prop["enum"])
        members = [(f"m{i}", v) for i, v in enumerate(values)]
        if all(isinstance(v, str) for v in values):
            return enum.Enum(title, members, type=str)
        return enum.Enum(title, members)
    kind = prop.get("type")
    constraints: dict[str, Any] = {}
    base: Any
    if kind in ("integer", "number"):
        base = int if kind == "integer" else float
        for key, arg in (("minimum", "ge"), ("maximum", "le"), ("exclusiveMinimum", "gt"), ("exclusiveMaximum", "lt")):
            if key in prop:
                constraints[arg] = prop[key]
    elif kind == "string":
        base = str
        for key, arg in (("minLength", "min_length"), ("maxLength", "max_length"), ("pattern", "pattern")):
            if key in prop:
                constraints[arg] = prop[key]
    elif kind == "boolean":
        base = bool
    elif kind == "array":
        base = list[_annotation(f"{title}Item", prop.get("items", {}))]
    elif kind == "object":
        base = dict[str, Any]
    else:
        base = Any
    meta: list[Any] = [Field(**constraints)] if constraints else []
    if kind == "string" and prop.get("format") == "uri":
        meta.append(AfterValidator(_check_uri))
    return cast(Any, Annotated)[(base, *meta)] if meta else base


def input_model(schema: Mapping[str, Any]) -> type[BaseModel]:
    """cog's ``Input`` model for a JSON schema: unknown keys ignored, enum values kept as plain values."""
    required = set(schema.get("required", ()))
    fields: dict[str, Any] = {}
    for i, (name, prop) in enumerate(dict(schema.get("properties", {})).items()):
        default = ... if name in required and "default" not in prop else prop.get("default")
        fields[f"f{i}"] = (_annotation(str(prop.get("title") or name), prop), Field(default, alias=name))
    config = ConfigDict(use_enum_values=True, protected_namespaces=(), extra="ignore")
    return create_model("Input", __config__=config, **fields)


class WebhookEvent(enum.StrEnum):
    START = "start"
    OUTPUT = "output"
    LOGS = "logs"
    COMPLETED = "completed"


WebhookUrl = Annotated[AnyUrl, UrlConstraints(allowed_schemes=["http", "https"], max_length=65536)]


def request_model(input_type: type[BaseModel]) -> type[BaseModel]:
    """cog's ``PredictionRequest`` with the model's ``Input`` (input optional, as cog's [compat] rule)."""
    return create_model(
        "PredictionRequest",
        __config__=ConfigDict(use_enum_values=True),
        input=(cast(Any, input_type | None), None),
        id=(str | None, None),
        created_at=(datetime | None, None),
        output_file_prefix=(str | None, None),
        webhook=(WebhookUrl | None, None),
        webhook_events_filter=(list[WebhookEvent] | None, Field(default_factory=lambda: list(EVENTS))),
    )


def fastapi_errors(exc: ValidationError, prefix: tuple[str | int, ...] = ("body",)) -> list[dict[str, Any]]:
    """pydantic errors as FastAPI renders them in a 422 ``detail`` list."""
    out: list[dict[str, Any]] = []
    for err in exc.errors(include_url=False):
        item: dict[str, Any] = {
            "type": err["type"],
            "loc": [*prefix, *err["loc"]],
            "msg": err["msg"],
            "input": _jsonable(err.get("input")),
        }
        if "ctx" in err:
            item["ctx"] = _jsonable(err["ctx"])
        out.append(item)
    return out


@dataclass(frozen=True)
class ParsedRequest:
    input: dict[str, Any]  # validated: all declared inputs, defaults filled, unknown keys dropped
    model_input: dict[str, Any]  # what ``run`` gets: only the inputs the client sent (coerced)
    id: str | None
    created_at: str | None
    webhook: str | None
    events: frozenset[str]
    output_file_prefix: str | None
