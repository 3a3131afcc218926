"""C2PA content credentials as the fake signs MP3s (``sign_with_c2pa``), and how tests check them.

Where the real thing goes is the C2PA specification's: an MP3 carries its manifest store in an ID3v2 ``GEOB``
frame of MIME type ``application/x-c2pa-manifest-store`` in the tag at the start of the file. What goes in it is a guess
made checkable: a real store is signed JUMBF (COSE signatures over CBOR claims); the fake's is JSON with the
assertions a generator states (created by a trained algorithm: AI-generated) and a SHA-256 of every byte but
the manifest's own frame and the tag header (the other frames, then the audio), its "hard binding".
:func:`read_manifest` returns the manifest only while that hash holds, so a file whose bytes were changed after
signing (tags added, re-muxed, re-encoded) no longer verifies, as a real C2PA validator would report.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

MIME = b"application/x-c2pa-manifest-store"
AI_SOURCE = "http://cv.iptc.org/newscodes/digitalsourcetype/trainedAlgorithmicMedia"


def _syncsafe(n: int) -> bytes:
    return bytes([(n >> 21) & 127, (n >> 14) & 127, (n >> 7) & 127, n & 127])


def _unsyncsafe(raw: bytes) -> int:
    return raw[0] << 21 | raw[1] << 14 | raw[2] << 7 | raw[3]


def _frame_size(raw: bytes, version: int) -> int:
    return _unsyncsafe(raw) if version == 4 else int.from_bytes(raw, "big")


def _frames_end(data: bytes, version: int, end: int) -> int:
    """Where the frames of the tag ending at ``end`` stop (padding, if any, follows)."""
    position = 10
    while position + 10 <= end and data[position] != 0:
        position += 10 + _frame_size(data[position + 4 : position + 8], version)
    return position


def sign_mp3(mp3: bytes, *, generator: str) -> bytes:
    """``mp3`` with a manifest store in a GEOB frame, added to the ID3v2 tag it starts with (as C2PA tools do;
    an encoder's tag is usually there) or to a new ID3v2.4 tag."""
    version, frames, audio = 4, b"", mp3
    if mp3[:3] == b"ID3" and mp3[3] in (3, 4) and not mp3[5] & 0xD0:  # no unsynchronisation, extended header, footer
        version, end = mp3[3], 10 + _unsyncsafe(mp3[6:10])
        frames, audio = mp3[10 : _frames_end(mp3, version, end)], mp3[end:]  # its frames, without padding
    manifest = {
        "claim_generator": f"ElevenLabs fake ({generator})",
        "format": "audio/mpeg",
        "assertions": [
            {"label": "c2pa.actions", "data": {"actions": [{"action": "c2pa.created", "digitalSourceType": AI_SOURCE}]}}
        ],
        "hard_binding": {"alg": "sha256", "hash": hashlib.sha256(frames + audio).hexdigest()},
    }
    body = b"\x00" + MIME + b"\x00" + b"manifest.c2pa\x00" + b"c2pa manifest store\x00" + json.dumps(manifest).encode()
    size = _syncsafe(len(body)) if version == 4 else len(body).to_bytes(4, "big")
    frames += b"GEOB" + size + b"\x00\x00" + body
    return b"ID3" + bytes([version]) + b"\x00\x00" + _syncsafe(len(frames)) + frames + audio


def read_manifest(data: bytes) -> dict[str, Any] | None:
    """The manifest of a file :func:`sign_mp3` made, if its audio is still exactly what was signed; else None."""
    if data[:3] != b"ID3" or data[3] not in (3, 4):
        return None
    version, end = data[3], 10 + _unsyncsafe(data[6:10])
    position, others, manifest = 10, b"", None
    while position + 10 <= end and data[position] != 0:
        size = _frame_size(data[position + 4 : position + 8], version)
        frame_id, body = data[position : position + 4], data[position + 10 : position + 10 + size]
        if frame_id == b"GEOB" and body[1:].startswith(MIME + b"\x00"):
            manifest = json.loads(body.split(b"\x00", 4)[4])
        else:
            others += data[position : position + 10 + size]
        position += 10 + size
    if manifest is None:
        return None
    signed = manifest["hard_binding"]["hash"] == hashlib.sha256(others + data[end:]).hexdigest()
    return manifest if signed else None
