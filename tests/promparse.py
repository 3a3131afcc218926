"""A strict little parser for Prometheus' text exposition format 0.0.4, to check what ``/metrics`` serves.

It refuses what Prometheus would refuse (bad names, bad escapes, samples before their ``# TYPE``, a
series twice, histogram buckets that are not cumulative or lack ``+Inf``) and gives the values back
by name and labels. Like Prometheus (3.0 and later) at ingestion, it reads ``le`` and ``quantile`` label
values as numbers: ``le="1"`` and ``le="1.0"`` are the same bucket.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
_ESCAPES = {"\\": "\\", '"': '"', "n": "\n"}


class ExpositionError(ValueError):
    pass


Labels = frozenset[tuple[str, str]]
_NUMERIC_LABELS = ("le", "quantile")


def _canonical(labels: dict[str, str], line: str) -> Labels:
    """``labels`` with the numeric ones (``le``, ``quantile``) in one spelling: ``1`` and ``1.0`` alike."""
    out = dict(labels)
    for name in _NUMERIC_LABELS:
        if name in out:
            out[name] = repr(_parse_value(out[name], line))
    return frozenset(out.items())


@dataclass
class Exposition:
    types: dict[str, str] = field(default_factory=dict)
    helps: dict[str, str] = field(default_factory=dict)
    samples: dict[tuple[str, Labels], float] = field(default_factory=dict)

    def value(self, name: str, /, **labels: str) -> float:
        """The value of one series; KeyError if it is not exposed."""
        return self.samples[(name, _canonical(labels, name))]

    def get(self, name: str, /, **labels: str) -> float:
        """The value of one series, 0 if it is not exposed (yet: a counter appears at its first count)."""
        return self.samples.get((name, _canonical(labels, name)), 0.0)

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample_name, labels in self.samples if sample_name == name]


def _family_of(sample: str, types: dict[str, str]) -> str:
    if sample in types:
        return sample
    for suffix in ("_bucket", "_sum", "_count"):
        base = sample.removesuffix(suffix)
        if base != sample and types.get(base) in ("histogram", "summary"):
            return base
    raise ExpositionError(f"sample {sample} has no # TYPE before it")


def _parse_labels(text: str, line: str) -> tuple[Labels, str]:
    """Parse ``{a="b",...}`` at the start of ``text``; returns the labels and the rest of the line."""
    labels: dict[str, str] = {}
    i = 1
    while True:
        if text[i] == "}":
            return _canonical(labels, line), text[i + 1 :]
        match = _LABEL.match(text, i)
        if not match:
            raise ExpositionError(f"bad label name in {line!r}")
        name = match.group()
        i = match.end()
        if text[i : i + 2] != '="':
            raise ExpositionError(f'expected =" after {name} in {line!r}')
        i += 2
        value = []
        while text[i] != '"':
            if text[i] == "\\":
                escaped = text[i + 1]
                if escaped not in _ESCAPES:
                    raise ExpositionError(f"bad escape \\{escaped} in {line!r}")
                value.append(_ESCAPES[escaped])
                i += 2
            elif text[i] == "\n":
                raise ExpositionError(f"raw newline in a label value in {line!r}")
            else:
                value.append(text[i])
                i += 1
        i += 1
        if name in labels:
            raise ExpositionError(f"label {name} twice in {line!r}")
        labels[name] = "".join(value)
        if text[i] == ",":
            i += 1
        elif text[i] != "}":
            raise ExpositionError(f"expected , or }} in {line!r}")


def _parse_value(text: str, line: str) -> float:
    special = {"+Inf": math.inf, "-Inf": -math.inf, "NaN": math.nan}
    if text in special:
        return special[text]
    try:
        return float(text)
    except ValueError:
        raise ExpositionError(f"bad value {text!r} in {line!r}") from None


def parse(text: str) -> Exposition:
    if text and not text.endswith("\n"):
        raise ExpositionError("the exposition must end with a newline")
    out = Exposition()
    for line in text.split("\n")[:-1]:
        if not line.strip():
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[1] in ("HELP", "TYPE"):
                name = parts[2]
                if not _NAME.fullmatch(name):
                    raise ExpositionError(f"bad metric name {name!r}")
                if parts[1] == "TYPE":
                    if name in out.types:
                        raise ExpositionError(f"# TYPE {name} twice")
                    kind = parts[3] if len(parts) > 3 else ""
                    if kind not in _TYPES:
                        raise ExpositionError(f"bad type {kind!r} for {name}")
                    out.types[name] = kind
                else:
                    out.helps[name] = parts[3] if len(parts) > 3 else ""
            continue
        match = _NAME.match(line)
        if not match:
            raise ExpositionError(f"bad sample line {line!r}")
        name, rest = match.group(), line[match.end() :]
        labels: Labels = frozenset()
        if rest.startswith("{"):
            labels, rest = _parse_labels(rest, line)
        if not rest.startswith(" "):
            raise ExpositionError(f"expected a space before the value in {line!r}")
        fields = rest.split()
        if len(fields) not in (1, 2):
            raise ExpositionError(f"expected a value (and a timestamp) in {line!r}")
        _family_of(name, out.types)
        key = (name, labels)
        if key in out.samples:
            raise ExpositionError(f"series {name}{dict(labels)} twice")
        out.samples[key] = _parse_value(fields[0], line)
    _check_histograms(out)
    return out


def _check_histograms(out: Exposition) -> None:
    for family, kind in out.types.items():
        if kind != "histogram":
            continue
        groups: dict[Labels, list[tuple[float, float]]] = {}
        for (name, labels), value in out.samples.items():
            if name == f"{family}_bucket":
                le = dict(labels).get("le")
                if le is None:
                    raise ExpositionError(f"{family}_bucket without le")
                rest = frozenset((k, v) for k, v in labels if k != "le")
                groups.setdefault(rest, []).append((_parse_value(le, le), value))
        for rest, buckets in groups.items():
            buckets.sort()
            counts = [count for _, count in buckets]
            if counts != sorted(counts):
                raise ExpositionError(f"{family}{dict(rest)} buckets are not cumulative")
            if buckets[-1][0] != math.inf:
                raise ExpositionError(f"{family}{dict(rest)} has no +Inf bucket")
            if out.samples.get((f"{family}_count", rest)) != buckets[-1][1]:
                raise ExpositionError(f"{family}{dict(rest)}: _count differs from the +Inf bucket")
            if (f"{family}_sum", rest) not in out.samples:
                raise ExpositionError(f"{family}{dict(rest)} has no _sum")
