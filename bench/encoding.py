"""Encoding speed of every delivery path, in multiples of real time (audio seconds per CPU second).

The delivery formats are what :func:`bot.audio.fit.fit_audio` can produce: the file as made, with tags
(WAV: copied with an INFO chunk; MP3 and others: re-muxed), Opus in Ogg when it must shrink, and Opus
parts when even that is too big; plus the waveform picture every card gets and the decode that measures
a track. Each is timed on the thread's CPU clock (in the bot the work runs off the event loop).
"""

from __future__ import annotations

import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bot.audio.fit import _encode_opus, _remux_with_tags, _tag_wav, audio_duration_s, fit_audio
from bot.audio.waveform import render_waveform
from tests.fakes.audio import make_mp3, make_wav

TAGS = {"title": "benchmark", "artist": "Encore", "comment": "job bench"}


@dataclass(frozen=True)
class EncodingResult:
    name: str
    audio_s: float
    cpu_s: float  # median of the runs

    @property
    def times_real_time(self) -> float:
        return self.audio_s / self.cpu_s if self.cpu_s else float("inf")


def _timed(work: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.thread_time()
        work()
        times.append(time.thread_time() - start)
    return statistics.median(times)


def run(*, duration_s: float = 60.0, runs: int = 3) -> list[EncodingResult]:
    with tempfile.TemporaryDirectory(prefix="encore-bench-") as tmp:
        root = Path(tmp)
        wav = root / "in.wav"
        wav.write_bytes(make_wav(duration_s, sample_rate=48000, channels=2))  # 11.5 MB for 60 s
        mp3 = root / "in.mp3"
        mp3.write_bytes(make_mp3(duration_s, sample_rate=44100, channels=2))
        out = root / "out"
        out.mkdir()
        cases: list[tuple[str, Callable[[], object]]] = [
            ("WAV, tagged as is (fits)", lambda: _tag_wav(wav, out / "a.wav", TAGS)),
            ("MP3, tagged as is (fits)", lambda: _remux_with_tags(mp3, out / "a.mp3", TAGS)),
            ("Opus 192 kb/s (re-encode to fit)", lambda: _encode_opus(wav, out / "a.ogg", bitrate=192_000, tags=TAGS)),
            ("Opus 96 kb/s (re-encode to fit)", lambda: _encode_opus(wav, out / "b.ogg", bitrate=96_000, tags=TAGS)),
            (
                "fit_audio to 10 MiB (measure + Opus)",
                lambda: fit_audio(wav, out / "fit", stem="t", limit_bytes=10 * 1024 * 1024, tags=TAGS),
            ),
            (
                "fit_audio to 1 MiB (split into parts)",
                lambda: fit_audio(wav, out / "split", stem="t", limit_bytes=1024 * 1024, tags=TAGS),
            ),
            ("decode to measure length", lambda: audio_duration_s(wav)),
            ("waveform PNG for the card", lambda: render_waveform(wav)),
        ]
        return [EncodingResult(name, duration_s, _timed(work, runs)) for name, work in cases]
