"""The multipart/mixed parser against what ElevenLabs sends and what could trip it up."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.providers.multipart import (
    MAX_HEADER_BYTES,
    MultipartError,
    MultipartStream,
    PartData,
    PartStart,
    boundary_of,
    parse,
)

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


# -- streaming: the same parts however the body is cut, hostile bodies refused -----------------------------


def stream_parts(chunks: list[bytes], boundary: str) -> list[tuple[str, bytes]]:
    """(content type, content) of each part, fed chunk by chunk through MultipartStream."""
    stream = MultipartStream(boundary)
    parts: list[tuple[str, bytearray]] = []
    for chunk in chunks:
        for event in stream.feed(chunk):
            if isinstance(event, PartStart):
                parts.append((event.content_type, bytearray()))
            else:
                assert isinstance(event, PartData)
                parts[-1][1].extend(event.data)
    stream.close()
    return [(kind, bytes(content)) for kind, content in parts]


TRAPS = [
    AUDIO,
    b"\r\n--b\r\n",  # a delimiter of another boundary
    b"x\r\n--bb-almost\r\nthe end\r\n",  # the boundary going on with other bytes: content
    b"\r\n--bb \tnot padding\r\n",  # whitespace then more than a line break: content
    b"",
]


@given(
    boundary=st.sampled_from(["bb", "a-b=c--d", "----=_Part_0_123.456"]),
    newline=st.sampled_from([b"\r\n", b"\n"]),
    audio=st.sampled_from(TRAPS) | st.binary(max_size=300),
    cuts=st.lists(st.integers(min_value=0, max_value=600), max_size=12),
)
def test_any_cutting_of_the_body_gives_the_same_parts(
    boundary: str, newline: bytes, audio: bytes, cuts: list[int]
) -> None:
    whole = body(boundary, newline=newline, audio=audio)
    points = sorted({0, len(whole), *(c for c in cuts if c < len(whole))})
    chunks = [whole[a:b] for a, b in itertools.pairwise(points)]
    meta, got = stream_parts(chunks, boundary)
    assert meta[0] == "application/json"
    assert got == ("audio/mpeg", audio)


def test_preamble_padding_and_epilogue_are_ignored() -> None:
    whole = b"a preamble line\r\n" + body("bb").replace(
        b"--bb\r\nContent-Type: audio", b"--bb  \t\r\nContent-Type: audio"
    )
    whole += b"an epilogue\r\n--bb\r\nContent-Type: audio/wav\r\n\r\nnot a part\r\n"
    assert [kind for kind, _ in stream_parts([whole], "bb")] == ["application/json", "audio/mpeg"]


def test_a_huge_song_streams_through_holding_back_only_a_delimiters_length() -> None:
    boundary = "----=_Part_0_123.456"
    head, tail = body(boundary, audio=b"@").split(b"@")
    stream = MultipartStream(boundary)
    fed = handed = 0
    chunk = bytes(range(256)) * 256  # 64 KiB of every byte value, "\r\n-" included
    for piece in [head] + [chunk] * 800:  # 50 MiB of audio
        fed += len(piece)
        handed += sum(len(e.data) for e in stream.feed(piece) if isinstance(e, PartData))
        assert fed - handed <= len(head) + len(b"\r\n--" + boundary.encode()) + 1
    stream.feed(tail)
    stream.close()


@pytest.mark.parametrize(
    ("whole", "refused"),
    [
        (b"--bb--\r\n", "without any part"),
        (body("bb", close=False), "ended early"),
        (body("bb")[:40], "ended early"),  # cut inside the first part's headers
        (b"--bb\r\nX-Big: " + b"a" * (MAX_HEADER_BYTES + 1) + b"\r\n\r\nx\r\n--bb--\r\n", "headers too long"),
        (b"--bb\r\n" + b"X-H: a\r\n" * 3000 + b"\r\nx\r\n--bb--\r\n", "headers too long"),
        (b"no delimiter here, just noise " * 4000, "preamble too long"),
        (b"--bb" + b" " * (MAX_HEADER_BYTES + 10), "delimiter line too long"),
    ],
    ids=["no-parts", "not-closed", "cut-in-headers", "huge-header", "many-headers", "endless-preamble", "endless-pad"],
)
def test_hostile_bodies_are_refused(whole: bytes, refused: str) -> None:
    def feed_in_pieces() -> None:
        stream = MultipartStream("bb")
        for piece in (whole[i : i + 1000] for i in range(0, len(whole), 1000)):
            stream.feed(piece)
        stream.close()

    with pytest.raises(MultipartError, match=refused):
        feed_in_pieces()
