"""A strict little reader of LRC synced lyrics, as music players read them, to check the files Encore attaches.

An LRC file is lines of tags in square brackets: ID tags (``[ti:Title]``, ``[ar:Artist]``, ``[length:mm:ss]``)
and time tags (``[mm:ss.xx]``) before the words sung from then on. A player takes every time tag at the start
of a line, so a line's text that began with ``[00:05.00]`` would time it twice: that is refused here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

_ID = re.compile(r"\[(ti|ar|al|by|length|offset|re|ve|au|#):([^\]]*)\]")
_TIME = re.compile(r"\[(\d{2,}):([0-5]\d)\.(\d{2})\]")


class LrcError(ValueError):
    pass


@dataclass
class Lrc:
    tags: dict[str, str] = field(default_factory=dict)
    lines: list[tuple[int, str]] = field(default_factory=list)  # (ms, text), in the file's order

    @property
    def times(self) -> list[int]:
        return [ms for ms, _ in self.lines]

    @property
    def texts(self) -> list[str]:
        return [text for _, text in self.lines]


def parse_lrc(text: str) -> Lrc:
    out = Lrc()
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        if (tag := _ID.fullmatch(line)) is not None:
            out.tags[tag.group(1)] = tag.group(2)
            continue
        time = _TIME.match(line)
        if time is None:
            raise LrcError(f"line {number} is neither an ID tag nor a timed line: {line!r}")
        minutes, seconds, hundredths = (int(g) for g in time.groups())
        rest = line[time.end() :]
        if _TIME.match(rest) or rest.startswith("["):
            raise LrcError(f"line {number}'s text would read as another tag: {line!r}")
        out.lines.append(((minutes * 60 + seconds) * 1000 + hundredths * 10, rest))
    return out
