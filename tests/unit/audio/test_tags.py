"""Delivered files say they are AI-generated, in the tags each format has: ID3 (MP3), Vorbis comments (Ogg,
FLAC), RIFF INFO plus an ``id3 `` chunk (WAV). Read back with FFmpeg (PyAV), as players would."""

from __future__ import annotations

import struct
from pathlib import Path

import av
import pytest

from bot.audio.fit import fit_audio, tag_copy
from bot.audio.id3 import c2pa_signed, tag_size
from tests.fakes.audio import audio_info, decode_pcm, encode_pcm, make_mp3, make_wav, tone_pcm
from tests.fakes.elevenlabs import read_manifest, sign_mp3

TAGS = {
    "title": "Warm lofi ☂",
    "artist": "Encore",
    "comment": "AI-generated with MusicGen (stereo-melody-large) on Replicate, by Encore; job abc; seed 5",
    "encoded_by": "Encore",
    "encoder": "Encore (AI music generation)",
    "AI_GENERATED": "yes",
    "AI_MODEL": "MusicGen (stereo-melody-large)",
    "AI_PROVIDER": "Replicate",
}
LIMIT = 10 * 1024 * 1024


def tags_of(path: Path) -> dict[str, str]:
    with av.open(str(path)) as container:
        return {**container.metadata, **container.streams.audio[0].metadata}


def _sources() -> dict[str, bytes]:
    pcm = tone_pcm(48000 * 2, sample_rate=48000, channels=2)
    return {
        "wav": make_wav(2),
        "mp3": make_mp3(2),
        "flac": encode_pcm(pcm, sample_rate=48000, channels=2, container="flac", codec="flac", bit_rate=None),
        "opus": encode_pcm(pcm, sample_rate=48000, channels=2, container="ogg", codec="libopus", bit_rate=96_000),
    }


@pytest.mark.parametrize("kind", ["wav", "mp3", "flac", "opus"])
def test_every_format_says_it_is_ai_generated_by_which_model_and_provider(tmp_path: Path, kind: str) -> None:
    src = tmp_path / f"in.{kind}"
    src.write_bytes(_sources()[kind])
    [fitted] = fit_audio(src, tmp_path / "out", stem="t", limit_bytes=LIMIT, tags=TAGS)
    tags = tags_of(fitted.path)
    assert (tags["AI_GENERATED"], tags["AI_MODEL"], tags["AI_PROVIDER"]) == ("yes", TAGS["AI_MODEL"], "Replicate")
    assert tags["comment"] == TAGS["comment"]  # one comment, not the comment twice
    assert tags["title"] == TAGS["title"]
    assert tags["encoded_by"] == "Encore"
    assert decode_pcm(fitted.path.read_bytes()).frames == decode_pcm(src.read_bytes()).frames


def _id3_frames(data: bytes) -> list[tuple[bytes, bytes]]:
    """(id, body) of the frames of the ID3v2.4 tag leading ``data``: read here by hand, not by the code tested."""
    end = tag_size(data[:10])
    position, frames = 10, []
    while position + 10 <= end and data[position] != 0:
        size = sum((b & 0x7F) << (7 * (3 - i)) for i, b in enumerate(data[position + 4 : position + 8]))
        frames.append((data[position : position + 4], data[position + 10 : position + 10 + size]))
        position += 10 + size
    return frames


def test_mp3_gets_a_real_comm_frame_txxx_fields_and_keeps_its_audio_frames(tmp_path: Path) -> None:
    original = make_mp3(2)
    src = tmp_path / "in.mp3"
    src.write_bytes(original)
    dest = tmp_path / "out.mp3"
    assert tag_copy(src, dest, TAGS)
    data = dest.read_bytes()
    frames = dict(_id3_frames(data))
    assert frames[b"COMM"] == b"\x03eng\x00" + TAGS["comment"].encode()  # players show COMM, not TXXX:comment
    txxx = [body for frame_id, body in _id3_frames(data) if frame_id == b"TXXX"]
    assert b"\x03AI_GENERATED\x00yes" in txxx
    assert frames[b"TENC"] == b"\x03Encore"
    assert frames[b"TSSE"] == b"\x03Encore (AI music generation)"
    assert data[tag_size(data[:10]) :] == original[tag_size(original[:10]) :]  # the audio, byte for byte
    # Tagging the tagged file again replaces the tag: one tag, one comment.
    again = tmp_path / "again.mp3"
    assert tag_copy(dest, again, {**TAGS, "comment": "second"})
    redone = again.read_bytes()
    assert tag_size(redone[tag_size(redone[:10]) :][:10]) == 0
    assert tags_of(again)["comment"] == "second"
    assert audio_info(redone).duration_s == pytest.approx(audio_info(original).duration_s)


def test_wav_info_has_the_comment_and_software_and_an_id3_chunk_the_rest(tmp_path: Path) -> None:
    src = tmp_path / "in.wav"
    src.write_bytes(make_wav(1))
    dest = tmp_path / "out.wav"
    assert tag_copy(src, dest, TAGS)
    data = dest.read_bytes()
    chunks = {}
    position = 12
    while position + 8 <= len(data):
        chunk_id, length = struct.unpack("<4sI", data[position : position + 8])
        chunks[chunk_id] = data[position + 8 : position + 8 + length]
        position += 8 + length + (length & 1)
    info = chunks[b"LIST"]
    assert info.startswith(b"INFO")
    assert b"ICMT" + struct.pack("<I", len(TAGS["comment"]) + 1) + TAGS["comment"].encode() + b"\0" in info
    assert b"ISFT" + struct.pack("<I", 29) + b"Encore (AI music generation)\0" in info
    assert b"AI_GENERATED\x00yes" in chunks[b"id3 "]
    again = tmp_path / "again.wav"
    assert tag_copy(dest, again, TAGS)
    assert again.read_bytes().count(b"id3 ") == 1  # replaced, not added


def test_a_c2pa_signed_mp3_is_delivered_exactly_as_made(tmp_path: Path) -> None:
    signed = sign_mp3(make_mp3(2), generator="music_v1")
    src = tmp_path / "song.mp3"
    src.write_bytes(signed)
    assert c2pa_signed(src)
    [fitted] = fit_audio(src, tmp_path / "out", stem="song", limit_bytes=LIMIT, tags=TAGS)
    assert fitted.path.read_bytes() == signed  # Encore's tags would break the signature
    assert read_manifest(fitted.path.read_bytes()) is not None


def test_unsigned_and_hostile_id3_tags_are_not_taken_for_c2pa(tmp_path: Path) -> None:
    plain = tmp_path / "plain.mp3"
    plain.write_bytes(make_mp3(1))
    assert not c2pa_signed(plain)
    # A tag claiming 256 MB in a tiny file, and a frame claiming more than the tag: read no further.
    huge = tmp_path / "huge.mp3"
    huge.write_bytes(b"ID3\x04\x00\x00\x7f\x7f\x7f\x7f" + b"GEOB" + b"\x7f\x7f\x7f\x7f\x00\x00" + b"x" * 50)
    assert not c2pa_signed(huge)
    lying = tmp_path / "lying.mp3"
    lying.write_bytes(b"ID3\x03\x00\x00\x00\x00\x00\x20" + b"GEOB" + b"\xff\xff\xff\xff\x00\x00" + b"\x00" * 22)
    assert not c2pa_signed(lying)
    dest = tmp_path / "out.mp3"
    assert not tag_copy(huge, dest, TAGS)  # nothing to tag: sent as it is
    assert dest.read_bytes() == huge.read_bytes()
