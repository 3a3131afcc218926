"""A strict, incremental ``multipart/mixed`` parser (RFC 2046) for ElevenLabs' detailed song responses.

Bytes are fed as they arrive (:meth:`MultipartStream.feed`) and come out as events: a part begins (its
headers), some of its content, the body ends. Nothing but one part's headers and a delimiter's length of
content is held, so a song of any size streams to disk; the caller caps what it keeps.

A delimiter is ``--<boundary>`` at the start of a line, followed by ``--`` (the close), or by optional
whitespace and a line break; a part's content ends at the line break just before it, so binary content that
happens to contain ``\\r\\n--`` (even ``\\r\\n--<boundary>`` followed by anything else) is kept intact. Line
breaks may be CRLF (as the RFC says) or bare LF (tolerated: aiohttp's ``MultipartReader`` refuses them, which is
why Encore has its own; see docs/ARCHITECTURE.md). Hostile input is refused, never guessed at: no boundary, a
part whose headers run past :data:`MAX_HEADER_BYTES`, a preamble past :data:`MAX_PREAMBLE_BYTES`, a body that
ends before its closing delimiter.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)
MAX_HEADER_BYTES = 16 * 1024  # one part's header block
MAX_PREAMBLE_BYTES = 64 * 1024  # what may come before the first delimiter (ignored)
_WHITESPACE = b" \t"


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class PartStart:
    """A part begins: its headers."""

    headers: Message

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

    @property
    def filename(self) -> str | None:
        return self.headers.get_filename()


@dataclass(frozen=True)
class PartData:
    """More content of the part that began last."""

    data: bytes


Event = PartStart | PartData


@dataclass(frozen=True)
class Part:
    """A whole part (:func:`parse`)."""

    headers: Message
    content: bytes

    @property
    def content_type(self) -> str:
        return PartStart(self.headers).content_type

    @property
    def filename(self) -> str | None:
        return self.headers.get_filename()


def boundary_of(content_type: str) -> str:
    if not content_type.lower().startswith("multipart/"):
        raise MultipartError(f"not a multipart response: {content_type[:60]!r}")
    match = _BOUNDARY.search(content_type)
    if not match or not 1 <= len(match.group(1)) <= 70:
        raise MultipartError("multipart response without a valid boundary")
    return match.group(1)


class MultipartStream:
    """Parses one multipart body fed in pieces of any size."""

    def __init__(self, boundary: str) -> None:
        self._dash = b"--" + boundary.encode("latin-1")
        self._buffer = bytearray()
        self._state = "preamble"  # preamble -> headers -> content -> headers ... -> done
        self._line_start = True  # (preamble) the buffer starts at the beginning of a line
        self._preamble = 0

    @property
    def done(self) -> bool:
        """Whether the closing delimiter has been seen (what follows it is ignored)."""
        return self._state == "done"

    def feed(self, data: bytes) -> list[Event]:
        """The events ``data`` completes; MultipartError if the body is malformed."""
        if self._state == "done":
            return []
        self._buffer += data
        events: list[Event] = []
        while self._step(events):
            pass
        return events

    def close(self) -> None:
        """The body has ended: MultipartError unless it was complete."""
        if self._state != "done":
            raise MultipartError("multipart body ended early (no closing delimiter)")

    # -- the states ------------------------------------------------------------------------------------

    def _step(self, events: list[Event]) -> bool:
        """Take what the buffer allows in the current state; whether to go on."""
        if self._state == "preamble":
            return self._preamble_line()
        if self._state == "headers":
            return self._headers(events)
        if self._state == "content":
            return self._content(events)
        return False

    def _delimiter_end(self, at: int) -> int | None:
        """For a ``--<boundary>`` at ``at``: the end of its line (-1 for the close, None to wait for more);
        -2 if it isn't a delimiter after all (it goes on with other bytes)."""
        after = at + len(self._dash)
        rest = bytes(self._buffer[after : after + 2])
        if rest == b"--":
            return -1
        if len(rest) < 2 and rest in (b"", b"-", b"\r"):
            return None
        if rest[:1] == b"\n" or rest == b"\r\n":
            return after + (1 if rest[:1] == b"\n" else 2)
        if rest[:1] in (b" ", b"\t"):  # transport padding, then the line break
            end = self._buffer.find(b"\n", after)
            if end < 0:
                if len(self._buffer) - after > MAX_HEADER_BYTES:
                    raise MultipartError("multipart delimiter line too long")
                return None
            if bytes(self._buffer[after:end]).rstrip(b"\r").strip(_WHITESPACE):
                return -2
            return end + 1
        return -2

    def _preamble_line(self) -> bool:
        if self._line_start and self._buffer.startswith(self._dash):
            end = self._delimiter_end(0)
            if end is None:
                return False
            if end == -1:
                raise MultipartError("multipart body without any part")
            if end >= 0:
                del self._buffer[:end]
                self._state = "headers"
                return True
        if self._line_start and len(self._buffer) < len(self._dash) and self._dash.startswith(self._buffer):
            return False  # maybe the start of the first delimiter
        newline = self._buffer.find(b"\n")
        skipped = len(self._buffer) if newline < 0 else newline + 1
        self._preamble += skipped
        if self._preamble > MAX_PREAMBLE_BYTES:
            raise MultipartError("multipart preamble too long (no delimiter)")
        del self._buffer[:skipped]
        self._line_start = newline >= 0
        return newline >= 0 and bool(self._buffer)

    def _headers(self, events: list[Event]) -> bool:
        if self._buffer[:1] == b"\n" or self._buffer[:2] == b"\r\n":  # a part without headers
            size, skip = 0, 1 if self._buffer[:1] == b"\n" else 2
        else:
            crlf, lf = self._buffer.find(b"\r\n\r\n"), self._buffer.find(b"\n\n")
            if crlf >= 0 and (lf < 0 or crlf < lf):
                size, skip = crlf, 4
            elif lf >= 0:
                size, skip = lf, 2
            else:
                if len(self._buffer) > MAX_HEADER_BYTES:
                    raise MultipartError("multipart part headers too long")
                return False
        if size > MAX_HEADER_BYTES:
            raise MultipartError("multipart part headers too long")
        headers = BytesHeaderParser().parsebytes(bytes(self._buffer[:size]) + b"\r\n\r\n")
        del self._buffer[: size + skip]
        events.append(PartStart(headers))
        self._state = "content"
        return True

    def _content(self, events: list[Event]) -> bool:
        marker = b"\n" + self._dash
        start = 0
        while True:
            found = self._buffer.find(marker, start)
            if found < 0:
                # Hand on all but the tail that could begin a delimiter ("\r\n--<boundary>" cut short).
                hand_on = len(self._buffer) - len(marker) - 1
                break
            end = self._delimiter_end(found + 1)
            if end == -2:
                start = found + 1  # "--<boundary>" going on with other bytes: content
                continue
            stop = found - 1 if found > 0 and self._buffer[found - 1] == ord("\r") else found
            if end is None:
                hand_on = stop  # wait for what follows it
                break
            if stop:
                events.append(PartData(bytes(self._buffer[:stop])))
            if end == -1:
                self._state = "done"
                self._buffer.clear()
                return False
            del self._buffer[:end]
            self._state = "headers"
            return True
        if hand_on > 0:
            events.append(PartData(bytes(self._buffer[:hand_on])))
            del self._buffer[:hand_on]
        return False


def parse(body: bytes, boundary: str) -> list[Part]:
    """The parts of a complete multipart body. Raises MultipartError if it is malformed or truncated."""
    stream = MultipartStream(boundary)
    parts: list[tuple[Message, bytearray]] = []
    for event in stream.feed(body):
        if isinstance(event, PartStart):
            parts.append((event.headers, bytearray()))
        else:
            parts[-1][1].extend(event.data)
    stream.close()
    return [Part(headers=headers, content=bytes(content)) for headers, content in parts]
