"""A strict ``multipart/mixed`` parser (RFC 2046) for ElevenLabs' detailed song responses.

A delimiter is ``--<boundary>`` at the start of a line; a part's content ends at the line break just
before the next delimiter, so binary content that happens to contain ``\\r\\n--`` is kept intact.
Line breaks may be CRLF (as the RFC says) or bare LF (tolerated).
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser

_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.IGNORECASE)


class MultipartError(ValueError):
    pass


@dataclass(frozen=True)
class Part:
    headers: Message
    content: bytes

    @property
    def content_type(self) -> str:
        return (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()

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


def _delimiters(body: bytes, dash_boundary: bytes) -> list[tuple[int, int, bool]]:
    """(start of the line break before it, end of the delimiter line, is_close) for each delimiter."""
    found = []
    at = 0
    while True:
        index = body.find(dash_boundary, at)
        if index < 0:
            return found
        at = index + len(dash_boundary)
        if index == 0:
            line_start = 0
        elif body[index - 1 : index] == b"\n":
            line_start = index - 2 if body[index - 2 : index] == b"\r\n" else index - 1
        else:
            continue  # "--boundary" in the middle of a line is content, not a delimiter
        after = body[at : at + 2]
        if after == b"--":
            found.append((line_start, at + 2, True))
            return found
        if after == b"\r\n":
            found.append((line_start, at + 2, False))
        elif after[:1] == b"\n":
            found.append((line_start, at + 1, False))
        elif after in (b"", b" ", b"\t"):
            end = body.find(b"\n", at)
            found.append((line_start, len(body) if end < 0 else end + 1, False))


def parse(body: bytes, boundary: str) -> list[Part]:
    """The parts of a complete multipart body. Raises MultipartError if it is malformed or truncated."""
    delimiters = _delimiters(body, b"--" + boundary.encode("latin-1"))
    if len(delimiters) < 2 or not delimiters[-1][2]:
        raise MultipartError("multipart body ended early (no closing delimiter)")
    parts = []
    for (_, content_start, _), (content_end, _, _) in itertools.pairwise(delimiters):
        raw = body[content_start:content_end]
        split = raw.find(b"\r\n\r\n")
        sep_len = 4
        lf_split = raw.find(b"\n\n")
        if split < 0 or (0 <= lf_split < split):
            split, sep_len = lf_split, 2
        if raw.startswith((b"\r\n", b"\n")):  # a part with no headers
            split, sep_len = 0, 2 if raw.startswith(b"\r\n") else 1
        if split < 0:
            raise MultipartError("multipart part without a header block")
        headers = BytesHeaderParser().parsebytes(raw[:split] + b"\r\n\r\n")
        parts.append(Part(headers=headers, content=raw[split + sep_len :]))
    return parts
