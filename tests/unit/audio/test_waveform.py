from __future__ import annotations

import io
import math
import wave
from array import array
from pathlib import Path

import av

from bot.audio.waveform import render_waveform
from tests.fakes.audio import image_info


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
