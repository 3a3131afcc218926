"""Audio bombs: small files that decode to hours, or that make decoding slow on purpose. Made in milliseconds.

``flac_bomb`` writes FLAC by hand (the format is simple, and an encoder would take hours to make hours):
a STREAMINFO block that claims ``claimed_s`` seconds, then frames of the largest block size (65535 samples)
whose every subframe is CONSTANT, a dozen bytes a frame. At 8 kHz mono each frame is 8 s of sound, so 2 MiB
decode to about 340 hours. ``value`` is the constant sample: non-zero, so it isn't "silent" either. Small
``block`` sizes give the other bomb: a great many tiny frames, each costing a decoder call.

``opus_bomb`` muxes, with PyAV, Ogg Opus packets that hold six empty 20 ms CELT frames each (two bytes for
120 ms of digital silence), so a few hundred KiB decode to hours; Ogg's granule positions tell the truth.
"""

from __future__ import annotations

import io
import struct
from fractions import Fraction

import av
from av.audio.stream import AudioStream


def _crc_table(poly: int, width: int) -> list[int]:
    top, mask = 1 << (width - 1), (1 << width) - 1
    table = []
    for byte in range(256):
        crc = byte << (width - 8)
        for _ in range(8):
            crc = ((crc << 1) ^ poly) & mask if crc & top else (crc << 1) & mask
        table.append(crc)
    return table


_CRC8 = _crc_table(0x07, 8)
_CRC16 = _crc_table(0x8005, 16)


def _crc8(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = _CRC8[crc ^ byte]
    return crc


def _crc16(data: bytes) -> int:
    crc = 0
    for byte in data:
        crc = ((crc << 8) & 0xFFFF) ^ _CRC16[(crc >> 8) ^ byte]
    return crc


def _coded_number(n: int) -> bytes:
    """FLAC's frame number: UTF-8-style variable length."""
    if n < 0x80:
        return bytes([n])
    if n < 0x800:
        return bytes([0xC0 | n >> 6, 0x80 | n & 0x3F])
    if n < 0x10000:
        return bytes([0xE0 | n >> 12, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])
    if n < 0x200000:
        return bytes([0xF0 | n >> 18, 0x80 | n >> 12 & 0x3F, 0x80 | n >> 6 & 0x3F, 0x80 | n & 0x3F])
    raise ValueError("too many frames")


_RATE_CODES = {8000: 0b0100, 16000: 0b0101, 48000: 0b1010, 96000: 0b1011, 192000: 0b0011}


def flac_bomb(
    frames: int,
    *,
    block: int = 65535,
    rate: int = 8000,
    channels: int = 1,
    value: int = 1000,
    claimed_s: float = 1.0,
) -> bytes:
    """A FLAC stream of ``frames`` frames of ``block`` samples each (``frames * block / rate`` seconds)
    whose header claims ``claimed_s`` seconds."""
    rate_code = _RATE_CODES[rate]
    info = struct.pack(">HH", block, block) + bytes(6)  # min/max block size; frame sizes unknown
    info += (rate << 44 | (channels - 1) << 41 | 15 << 36 | round(claimed_s * rate)).to_bytes(8, "big")
    info += bytes(16)  # no MD5
    out = bytearray(b"fLaC" + bytes([0x80]) + len(info).to_bytes(3, "big") + info)  # last metadata block
    head = bytes([0xFF, 0xF8, 0b0111 << 4 | rate_code, (channels - 1) << 4 | 0b100 << 1])  # 16-bit samples
    subframes = (b"\x00" + struct.pack(">h", value)) * channels  # CONSTANT, no wasted bits
    for number in range(frames):
        header = head + _coded_number(number) + struct.pack(">H", block - 1)
        body = header + bytes([_crc8(header)]) + subframes
        out += body + struct.pack(">H", _crc16(body))
    return bytes(out)


def opus_bomb(seconds: float) -> bytes:
    """Ogg Opus that decodes to ``seconds`` of stereo silence in 120 ms packets of two bytes."""
    buf = io.BytesIO()
    with av.open(buf, "w", format="ogg") as out:
        stream = out.add_stream("libopus", rate=48000, layout="stereo")
        assert isinstance(stream, AudioStream)
        stream.codec_context.open()  # for the OpusHead the muxer writes
        # TOC 0xFF: CELT fullband 20 ms, stereo, code 3 (several frames); 0x06: constant size, six frames.
        payload = b"\xff\x06"
        for index in range(round(seconds / 0.12)):
            packet = av.Packet(payload)
            packet.stream = stream
            packet.pts = packet.dts = index * 5760
            packet.duration = 5760
            packet.time_base = Fraction(1, 48000)
            out.mux(packet)
    return buf.getvalue()
