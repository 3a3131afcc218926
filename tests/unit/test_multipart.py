"""The multipart/mixed parser against what ElevenLabs sends and what could trip it up."""

from __future__ import annotations

import json

import pytest

from bot.providers.multipart import MultipartError, boundary_of, parse

AUDIO = b"ID3\x03\x00binary\r\n--not-a-boundary\r\nmore\x00\xff bytes\r\n"


def body(boundary: str, *, newline: bytes = b"\r\n", audio: bytes = AUDIO, close: bool = True) -> bytes:
    meta = json.dumps({"song_metadata": {"title": "Rain"}}).encode()
    b = boundary.encode()
    out = (
        b"--"
        + b
        + newline
        + b"Content-Type: application/json"
        + newline
        + newline
        + meta
        + newline
        + b"--"
        + b
        + newline
        + b"Content-Type: audio/mpeg"
        + newline
        + b'Content-Disposition: attachment; filename="Rain.mp3"'
        + newline
        + newline
        + audio
        + newline
    )
    return out + (b"--" + b + b"--" + newline if close else b"")


@pytest.mark.parametrize("boundary", ["simple", "a-b=c--d", "----=_Part_0_123.456"])
def test_parts_and_binary_audio_survive(boundary: str) -> None:
    meta, audio = parse(body(boundary), boundary)
    assert json.loads(meta.content)["song_metadata"]["title"] == "Rain"
    assert meta.content_type == "application/json"
    assert (audio.content_type, audio.filename) == ("audio/mpeg", "Rain.mp3")
    assert audio.content == AUDIO  # ends at the CRLF before the delimiter; inner "\r\n--" kept


def test_bare_lf_is_tolerated() -> None:
    _, audio = parse(body("b", newline=b"\n", audio=b"\x00\x01\x02"), "b")
    assert audio.content == b"\x00\x01\x02"


def test_truncated_body_is_an_error() -> None:
    with pytest.raises(MultipartError, match="ended early"):
        parse(body("b", close=False), "b")
    with pytest.raises(MultipartError, match="ended early"):
        parse(body("b")[:80], "b")


def test_boundary_from_content_type() -> None:
    assert boundary_of('multipart/mixed; boundary="a=b-c"') == "a=b-c"
    assert boundary_of("multipart/mixed; charset=utf-8; boundary=xyz") == "xyz"
    for bad in ("application/json", "multipart/mixed"):
        with pytest.raises(MultipartError):
            boundary_of(bad)
