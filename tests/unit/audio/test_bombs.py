"""Audio bombs cost little: decoding stops at the limit, whatever a file claims, and hostile files are refused
for a fraction of a second of CPU, in threads of their own.

CPU bounds here are generous (a second, where the old code took 10 s and more); the figures belong in bench/.
"""

from __future__ import annotations

import asyncio
import io
import threading
import time
import tracemalloc
from pathlib import Path

import av
import pytest

from bot.audio import AudioPool
from bot.audio.prepare import prepare_clip
from bot.audio.probe import probe
from bot.errors import InvalidRequestError
from tests.fakes.audio import audio_info, encode_pcm, tone_pcm
from tests.fakes.bombs import flac_bomb, opus_bomb

LIMIT_S = 300.0  # the default [audio] max_input_s

BOMBS = {
    # 2.2 MiB that claim one second and decode to 341 hours (the old probe decoded it all: ~10 s of CPU).
    "flac-341-hours": (lambda: flac_bomb(150_000), "too long"),
    # Three hours of Opus silence in 540 KiB.
    "opus-3-hours": (lambda: opus_bomb(3 * 3600), "too long"),
    # 1.5 MiB of 16-sample frames: only 50 s of sound, but 140,000 decoder calls.
    "flac-tiny-frames": (lambda: flac_bomb(150_000, block=16, rate=48000), "far more pieces"),
    # Eight channels at 192 kHz, each frame 0.34 s: 57 million values a minute to decode and resample.
    "flac-192khz-8ch": (lambda: flac_bomb(600, rate=192000, channels=8), "more channels"),
}


def test_the_bombs_are_real() -> None:
    """What the tests below refuse really decodes to what they say, whatever the file claims."""
    small = flac_bomb(40)  # the same file as the big one, 40 frames long
    info = audio_info(small)
    assert info.duration_s == pytest.approx(40 * 65535 / 8000)  # 5.5 minutes...
    with av.open(io.BytesIO(small), "r") as container:
        assert container.duration == 1_000_000  # ...where the header claims one second (in microseconds)
    assert audio_info(opus_bomb(60)).duration_s == pytest.approx(60, abs=0.1)


@pytest.mark.parametrize("name", list(BOMBS))
async def test_a_bomb_is_refused_for_a_fraction_of_a_second(tmp_path: Path, name: str) -> None:
    make, message = BOMBS[name]
    path = tmp_path / "bomb"
    path.write_bytes(make())
    start = time.process_time()
    with pytest.raises(InvalidRequestError, match=message):
        await probe(path, max_s=LIMIT_S)
    assert time.process_time() - start < 1.0


async def test_a_bomb_at_a_low_limit_stops_at_that_limit(tmp_path: Path) -> None:
    path = tmp_path / "bomb.flac"
    path.write_bytes(flac_bomb(3))  # 24.6 s
    with pytest.raises(InvalidRequestError, match="the limit is 20 s"):
        await probe(path, max_s=20)
    assert (await probe(path, max_s=25)).duration_s == pytest.approx(3 * 65535 / 8000)


@pytest.mark.parametrize("frame_ms", ["5", "20", "60"])
async def test_ordinary_opus_frames_are_fine(tmp_path: Path, frame_ms: str) -> None:
    """Opus's 5 ms frames (200 packets a second) are the finest cut taken."""
    pcm = tone_pcm(48000 * 3, sample_rate=48000, channels=2)
    data = encode_pcm(
        pcm, sample_rate=48000, channels=2, container="ogg", codec="libopus", options={"frame_duration": frame_ms}
    )
    path = tmp_path / "clip.ogg"
    path.write_bytes(data)
    assert (await probe(path, max_s=LIMIT_S)).duration_s == pytest.approx(3.0, abs=0.05)


def test_a_clip_is_prepared_without_decoding_past_its_end(tmp_path: Path) -> None:
    """The melody window is the first 30 s: nothing after it is decoded (the old code decoded and resampled
    all 27 minutes of this file into memory first)."""
    source = tmp_path / "long.flac"
    source.write_bytes(flac_bomb(200))  # 27 minutes
    tracemalloc.start()
    try:
        length = prepare_clip(source, tmp_path / "clip.wav", end_s=30.0)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert length == pytest.approx(30.0)
    assert peak < 40 * 1024 * 1024  # 30 s of 32 kHz stereo is 3.8 MB; all of it would be 210 MB


async def test_the_pool_has_threads_of_its_own() -> None:
    pool = AudioPool(2)
    try:
        names = {await pool.run("probe", lambda: threading.current_thread().name) for _ in range(4)}
        assert all(name.startswith("encore-audio-in") for name in names)
    finally:
        pool.close()


async def test_a_busy_pool_starves_nothing_else() -> None:
    """Files keeping every decoding thread busy leave asyncio's default pool free; more files wait their turn."""
    pool = AudioPool(2)
    release = threading.Event()
    started = threading.Semaphore(0)

    def hostile() -> str:
        started.release()
        release.wait(timeout=30)
        return "decoded"

    try:
        busy = [asyncio.ensure_future(pool.run("probe", hostile)) for _ in range(2)]
        for _ in range(2):
            await asyncio.to_thread(started.acquire, timeout=10)
        waiting = asyncio.ensure_future(pool.run("probe", hostile))
        async with asyncio.timeout(10):
            assert await asyncio.to_thread(lambda: "other work") == "other work"
        assert not waiting.done()  # both threads are taken: the third file waits...
        assert not started.acquire(blocking=False)  # ...and has not started
        release.set()
        async with asyncio.timeout(10):
            assert await asyncio.gather(*busy, waiting) == ["decoded"] * 3
    finally:
        release.set()
        pool.close()
