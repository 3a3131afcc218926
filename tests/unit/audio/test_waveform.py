from __future__ import annotations

import io
import math
import struct
import sys
import time
import wave
from array import array
from collections.abc import Callable
from pathlib import Path

import av
import pytest

from bot.audio.waveform import mono_u8, render_waveform
from tests.fakes.audio import encode_pcm, image_info, make_wav, wav_from_pcm


def rgb_rows(png: bytes) -> list[bytes]:
    with av.open(io.BytesIO(png), mode="r") as container:
        frame = next(container.decode(video=0)).reformat(format="rgb24")
        plane = frame.planes[0]
        data = bytes(plane)
        return [data[y * plane.line_size : y * plane.line_size + frame.width * 3] for y in range(frame.height)]


def test_the_picture_follows_the_loudness(tmp_path: Path) -> None:
    rate, seconds = 8000, 4
    # loud for the first half, silent for the second
    samples = array(
        "h", [int(20000 * math.sin(2 * math.pi * 200 * i / rate)) if i < rate * 2 else 0 for i in range(rate * seconds)]
    )
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    path = tmp_path / "half.wav"
    path.write_bytes(buffer.getvalue())
    png = render_waveform(path, width=200, height=40)
    assert (image_info(png).width, image_info(png).height) == (200, 40)
    top = rgb_rows(png)[5]  # a row well above the centre line
    bar = bytes((0x58, 0x65, 0xF2))
    assert top[10 * 3 : 11 * 3] == bar  # loud half: the bar reaches up here
    assert top[190 * 3 : 191 * 3] != bar  # silent half: it doesn't


# -- a plain PCM WAV is drawn from its samples, without decoding ----------------------------------------------

RATE = 16000


def shaped_pcm(seconds: float, *, channels: int = 2, silent: tuple[int, ...] = ()) -> bytes:
    """16-bit PCM of ``channels``: a loud tone for the first third, a quiet one for the second, silence for the
    last; the channels in ``silent`` are silent throughout."""
    third = int(seconds * RATE / 3)
    values = array("h")
    for i in range(third * 3):
        level = 20000 if i < third else 5000 if i < 2 * third else 0
        sample = int(level * math.sin(2 * math.pi * 440 * i / RATE))
        values.extend(0 if c in silent else sample for c in range(channels))
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def riff(fmt: bytes, data: bytes, *, before_data: bytes = b"", claimed: int | None = None) -> bytes:
    """A RIFF/WAVE file of a ``fmt `` chunk, ``before_data`` (whole chunks) and a ``data`` chunk that claims to
    hold ``claimed`` bytes (default: what it holds)."""
    body = b"WAVE" + struct.pack("<4sI", b"fmt ", len(fmt)) + fmt + before_data
    body += struct.pack("<4sI", b"data", len(data) if claimed is None else claimed) + data
    return b"RIFF" + struct.pack("<I", len(body)) + body


def pcm_fmt(channels: int, bits: int, *, tag: int = 1, extensible: bool = False) -> bytes:
    frame = channels * bits // 8
    head = struct.pack("<HHIIHH", 0xFFFE if extensible else tag, channels, RATE, RATE * frame, frame, bits)
    if not extensible:
        return head
    guid_tail = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    return head + struct.pack("<HHIH", 22, bits, 3, tag) + guid_tail


def to_24_bit(pcm16: bytes) -> bytes:
    return b"".join(b"\0" + pcm16[i : i + 2] for i in range(0, len(pcm16), 2))


def to_float(pcm16: bytes) -> bytes:
    values = array("h", pcm16)
    if sys.byteorder == "big":
        values.byteswap()
    return struct.pack(f"<{len(values)}f", *(v / 32768 for v in values))


def bar_heights(png: bytes) -> list[int]:
    """How many rows of each column the bar covers."""
    bar = bytes((0x58, 0x65, 0xF2))
    rows = rgb_rows(png)
    return [sum(row[x * 3 : x * 3 + 3] == bar for row in rows) for x in range(len(rows[0]) // 3)]


def decoded_heights(tmp_path: Path, pcm: bytes, channels: int) -> list[int]:
    """The bars drawn by decoding the same samples (losslessly, as FLAC: no shortcut applies to it)."""
    flac = tmp_path / "reference.flac"
    flac.write_bytes(encode_pcm(pcm, sample_rate=RATE, channels=channels, container="flac", codec="flac"))
    return bar_heights(render_waveform(flac, width=300, height=80))


def assert_same_shape(heights: list[int], reference: list[int]) -> None:
    # the loud third reaches the top, the quiet third about a quarter of it, the silent third nothing
    assert max(heights[5:95]) == max(reference[5:95]) == max(heights)
    for mine, theirs in zip(heights, reference, strict=True):
        assert abs(mine - theirs) <= 4
    assert max(heights[205:]) == min(heights)  # silence: the thinnest bar


@pytest.mark.parametrize(
    ("name", "channels", "make"),
    [
        ("16-bit stereo", 2, lambda pcm: riff(pcm_fmt(2, 16), pcm)),
        ("16-bit mono", 1, lambda pcm: riff(pcm_fmt(1, 16), pcm)),
        ("24-bit stereo", 2, lambda pcm: riff(pcm_fmt(2, 24), to_24_bit(pcm))),
        ("extensible 24-bit", 2, lambda pcm: riff(pcm_fmt(2, 24, extensible=True), to_24_bit(pcm))),
        ("tags before the samples", 2, lambda pcm: riff(pcm_fmt(2, 16), pcm, before_data=b"LIST\x05\0\0\0INFOx\0")),
        ("claims more than it holds", 2, lambda pcm: riff(pcm_fmt(2, 16), pcm, claimed=0xFFFFFFFF)),
        ("floating point (decoded)", 2, lambda pcm: riff(pcm_fmt(2, 32, tag=3), to_float(pcm))),
    ],
)
def test_a_wav_is_drawn_as_its_decoded_audio_would_be(
    tmp_path: Path, name: str, channels: int, make: Callable[[bytes], bytes]
) -> None:
    del name
    pcm = shaped_pcm(3.0, channels=channels)
    path = tmp_path / "track.wav"
    path.write_bytes(make(pcm))
    heights = bar_heights(render_waveform(path, width=300, height=80))
    assert_same_shape(heights, decoded_heights(tmp_path, pcm, channels))


def test_sound_in_one_channel_only_is_drawn(tmp_path: Path) -> None:
    pcm = shaped_pcm(3.0, channels=2, silent=(0,))
    path = tmp_path / "right.wav"
    path.write_bytes(wav_from_pcm(pcm, sample_rate=RATE, channels=2))
    heights = bar_heights(render_waveform(path, width=300, height=80))
    assert min(heights[5:95]) > 60  # the loud third, all from the right channel
    assert max(heights[205:]) == min(heights)  # silence: the thinnest bar


def test_a_wav_claiming_many_channels_costs_no_more_than_decoding_it(tmp_path: Path) -> None:
    """Each channel drawn from the samples costs a pass over the columns: a header claiming far more channels
    than music has (a hostile output that FFmpeg still reads) is decoded to mono like any other format."""
    channels = 16
    pcm = shaped_pcm(3.0, channels=channels, silent=tuple(range(1, channels)))
    path = tmp_path / "many.wav"
    path.write_bytes(riff(pcm_fmt(channels, 16), pcm))
    heights = bar_heights(render_waveform(path, width=300, height=80))
    assert min(heights[5:95]) > 10  # the loud third, from the one channel that isn't silent
    assert max(heights[205:]) == min(heights)
    assert thread_cpu_s(lambda: render_waveform(path, width=300, height=80)) < 2 * thread_cpu_s(lambda: mono_u8(path))


def thread_cpu_s(work: Callable[[], object]) -> float:
    """The least CPU time of three runs of ``work`` in this thread."""
    best = math.inf
    for _ in range(3):
        start = time.thread_time()
        work()
        best = min(best, time.thread_time() - start)
    return best


def test_drawing_a_wav_costs_less_than_decoding_it(tmp_path: Path) -> None:
    """A card's picture of a two-minute WAV reads its samples: it costs a fraction of what FFmpeg takes
    merely to decode the file to the low rate a picture needs (what every card cost before)."""
    path = tmp_path / "long.wav"
    path.write_bytes(make_wav(120, sample_rate=48000, channels=2))
    drawing = thread_cpu_s(lambda: render_waveform(path))
    decoding = thread_cpu_s(lambda: mono_u8(path))
    assert drawing < decoding / 2, (drawing, decoding)
