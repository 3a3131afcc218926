"""ID3v2 tags on MP3 files: written by hand, so a comment is a real ``COMM`` frame (FFmpeg's muxer writes it as
``TXXX:comment``, which players don't show) and the audio frames are copied byte for byte.

Also reads the one thing Encore must not disturb: a C2PA manifest store (content credentials), which an MP3
carries in a ``GEOB`` frame of type ``application/x-c2pa-manifest-store``. Its signature covers the whole file,
so a signed file is delivered exactly as it was made (see ``bot.audio.fit.tag_copy``).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from pathlib import Path

C2PA_MIME = b"application/x-c2pa-manifest-store"
_HEADER = 10
_MAX_TAG_BYTES = 16 * 1024 * 1024  # a tag larger than this is read no further (a manifest is a few KiB)
_COPY_BLOCK = 1024 * 1024
# Generic tag names (FFmpeg's) -> the ID3v2.4 text frame that holds them; "comment" is a COMM frame and any
# other name a TXXX frame described by that name (e.g. TXXX:AI_GENERATED).
_TEXT_FRAMES = {
    "title": b"TIT2",
    "artist": b"TPE1",
    "album": b"TALB",
    "genre": b"TCON",
    "encoded_by": b"TENC",
    "encoder": b"TSSE",
}
_UTF8 = b"\x03"


def _syncsafe(value: int) -> bytes:
    return bytes(((value >> shift) & 0x7F) for shift in (21, 14, 7, 0))


def _unsyncsafe(raw: bytes) -> int:
    return (raw[0] & 0x7F) << 21 | (raw[1] & 0x7F) << 14 | (raw[2] & 0x7F) << 7 | (raw[3] & 0x7F)


def tag_size(head: bytes) -> int:
    """How many bytes an ID3v2 tag at the start of ``head`` takes (header, frames, padding, footer); 0 if none."""
    if len(head) < _HEADER or head[:3] != b"ID3" or head[3] == 0xFF or head[4] == 0xFF:
        return 0
    return _HEADER + _unsyncsafe(head[6:10]) + (_HEADER if head[5] & 0x10 else 0)


def _frame(frame_id: bytes, body: bytes) -> bytes:
    return frame_id + _syncsafe(len(body)) + b"\x00\x00" + body


def id3_tag(tags: Mapping[str, str]) -> bytes:
    """An ID3v2.4 tag (UTF-8 text) holding ``tags``: text frames, ``COMM`` for the comment, ``TXXX`` otherwise."""
    frames = b""
    for name, value in tags.items():
        if not value:
            continue
        text = value.encode()
        if name in _TEXT_FRAMES:
            frames += _frame(_TEXT_FRAMES[name], _UTF8 + text)
        elif name == "comment":
            frames += _frame(b"COMM", _UTF8 + b"eng" + b"\x00" + text)  # no description: the comment itself
        else:
            frames += _frame(b"TXXX", _UTF8 + name.encode() + b"\x00" + text)
    return b"ID3\x04\x00\x00" + _syncsafe(len(frames)) + frames


def _frames(tag: bytes) -> list[tuple[bytes, bytes]]:
    """(frame id, body) of each frame of a whole ID3v2.3 or v2.4 tag; unsynchronised or odd tags give none."""
    version, flags = tag[3], tag[5]
    if version not in (3, 4) or flags & 0x80:
        return []
    end = len(tag) - (_HEADER if flags & 0x10 else 0)
    position = _HEADER
    if flags & 0x40:  # an extended header: skip it
        size = _unsyncsafe(tag[10:14]) if version == 4 else struct.unpack(">I", tag[10:14])[0] + 4
        position += size
    found = []
    while position + _HEADER <= end and tag[position : position + 1] != b"\x00":
        raw = tag[position + 4 : position + 8]
        size = _unsyncsafe(raw) if version == 4 else struct.unpack(">I", raw)[0]
        body = tag[position + _HEADER : position + _HEADER + size]
        found.append((tag[position : position + 4], body))
        position += _HEADER + size
    return found


def c2pa_signed(path: Path) -> bool:
    """Whether the MP3 at ``path`` carries a C2PA manifest store (a GEOB frame of its MIME type)."""
    with path.open("rb") as handle:
        size = tag_size(handle.read(_HEADER))
        if not size or size > _MAX_TAG_BYTES:
            return False
        handle.seek(0)
        tag = handle.read(size)
    for frame_id, body in _frames(tag):
        # GEOB: encoding byte, MIME type (Latin-1, NUL-terminated), file name, description, object.
        if frame_id == b"GEOB" and body[1 : 1 + len(C2PA_MIME) + 1] == C2PA_MIME + b"\x00":
            return True
    return False


def tag_mp3(src: Path, dest: Path, tags: Mapping[str, str]) -> bool:
    """Copy the MP3 ``src`` to ``dest`` with ``tags`` in a new ID3v2.4 tag in place of any it had; the audio
    (and a trailing ID3v1 tag) byte for byte. False, writing nothing, if ``src`` isn't MPEG audio after its tag."""
    with src.open("rb") as inp:
        skip = 0
        while size := tag_size(inp.read(_HEADER)):  # some files carry more than one tag
            skip += size
            inp.seek(skip)
        inp.seek(skip)
        sync = inp.read(2)
        if len(sync) < 2 or sync[0] != 0xFF or sync[1] & 0xE0 != 0xE0 or sync[1] & 0x06 == 0:
            return False  # not an MPEG audio frame (layer 0 is ADTS AAC's)
        inp.seek(skip)
        with dest.open("wb") as out:
            out.write(id3_tag(tags))
            while block := inp.read(_COPY_BLOCK):
                out.write(block)
    return True
