"""Seamless loops of a track, for producers to drop into a project. Blocking: run it through an ``AudioPool``.

1. **Read.** At most :data:`WINDOW_S` of the track is decoded (and never more than the caller's limit), so a
   ten-minute song costs no more than a minute of it.
2. **Tempo** (:func:`find_tempo`). Onset strength is the spectral flux of the log spectrum, 100 frames a second;
   its autocorrelation, weighted towards 120 BPM (one octave either side), picks the beat period between 60
   and 200 BPM, and a comb of beats fitted to the whole envelope refines the period and finds the beats. A
   tempo counts only when the beats stand out (the normalised autocorrelation at the beat period reaches
   :data:`MIN_CONFIDENCE`): noise, drones and rubato give none.
3. **Cut.** With a tempo, the loop is ``bars`` bars of four beats from a bar's first beat (the strongest of the
   four beats of a bar, most often the downbeat) near the middle of what was read, each end moved onto the
   attack of its beat (to the millisecond), so the loop holds exactly whole bars of the music; the tempo named
   is the one those bars make. Without one, it is ``bars`` bars at 120 BPM (two seconds a bar, the length a DAW
   grid at its default tempo expects) from the middle.
4. **Seam.** The loop's last few milliseconds (:data:`BEAT_FADE_S`; :data:`FREE_FADE_S` without a tempo) are
   crossfaded into the audio just before its start, so what follows its last sample is what preceded its first
   in the track: the wrap is as smooth as the track itself. Its end first moves by up to 5 ms (on the beat only
   earlier, never into the next attack) to where the two sides of the fade are most alike, so they join in
   phase and a held note neither dips nor beats through the seam. On the beat the fade is linear (the two
   sides are alike); without a tempo it keeps the power even (they may not be).
5. **Write.** 16-bit WAV with a ``smpl`` chunk (the loop's first and last sample: samplers loop it as it is) and,
   with a tempo, an ``acid`` chunk (tempo, beats, 4/4) that DAWs read to stretch it to a project's tempo.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import av.error
import numpy as np
import numpy.typing as npt

from bot.audio import no_room, open_input
from bot.audio.fit import tag_copy
from bot.audio.prepare import decode
from bot.errors import InvalidRequestError

Floats = npt.NDArray[np.float64]

BAR_CHOICES = (1, 2, 4, 8, 16)
DEFAULT_BARS = 4
BEATS_PER_BAR = 4
MIN_BPM, MAX_BPM = 60.0, 200.0
FREE_BPM = 120.0  # the grid a loop without a tempo is cut to
WINDOW_S = 64.0  # the most of a track read to make a loop
MAX_LOOP_S = 32.0  # longer loops have fewer bars (a 32 s, 48 kHz stereo WAV is 6 MB: it always fits Discord)
MIN_SOURCE_S = 2.0  # a shorter track is refused
MIN_CONFIDENCE = 0.2
BEAT_FADE_S = 0.02
FREE_FADE_S = 0.25
MAX_RATE = 48_000

_FPS = 100.0  # onset frames a second
_PRIOR_OCTAVES = 1.0
_ATTACK_SEARCH_S = 0.03  # how far from the comb's beat its attack is looked for
_ATTACK_BLOCK_S = 0.001
_PHASE_SEARCH_S = 0.005  # how much the loop's end may move to meet its start in phase (a 100 Hz period's half)


class LoopTooShortError(InvalidRequestError):
    default_key = "refusals.loop_short"


@dataclass(frozen=True)
class Tempo:
    bpm: float
    beats_s: tuple[float, ...]  # every beat found, in seconds from the start
    downbeat: int  # the index in ``beats_s`` of a bar's first beat (the strongest of the four)
    confidence: float


@dataclass(frozen=True)
class Loop:
    path: Path
    frames: int
    rate: int
    channels: int
    bars: int
    bpm: float | None  # None: no steady beat found; the loop is ``bars`` bars at 120 BPM
    start_s: float  # where in the track it was taken from

    @property
    def seconds(self) -> float:
        return self.frames / self.rate


def loop_name(bars: int, bpm: float | None, seconds: float) -> str:
    """What a loop file's name ends with: ``loop_120bpm_4bars``, or ``loop_8s`` without a tempo."""
    if bpm is None:
        return f"loop_{round(seconds, 1):g}s"
    return f"loop_{round(bpm)}bpm_{bars}bar{'s' if bars != 1 else ''}"


def loop_label(loop: Loop) -> str:
    """A loop in words: ``4 bars at 120 BPM (8.0 s)``, or ``8.0 s (no steady beat found)``."""
    if loop.bpm is None:
        return f"{loop.seconds:.1f} s (no steady beat found, so it is cut to {loop.bars} bars at 120 BPM)"
    bars = f"{loop.bars} bar{'s' if loop.bars != 1 else ''}"
    return f"{bars} at {loop.bpm:.1f} BPM ({loop.seconds:.1f} s)"


# -- tempo -------------------------------------------------------------------------------------------------


def onset_strength(mono: Floats, rate: int) -> tuple[Floats, float]:
    """Spectral flux of the log spectrum of ``mono``, and its frames per second (about 100)."""
    factor = max(1, rate // 16_000)  # analysis at 16-24 kHz: plenty for attacks, a quarter of the work
    if factor > 1:
        usable = len(mono) // factor * factor
        mono = mono[:usable].reshape(-1, factor).mean(axis=1)
    analysis_rate = rate / factor
    hop = max(1, round(analysis_rate / _FPS))
    n_fft = 1 << math.ceil(math.log2(analysis_rate * 0.046))
    peak = float(np.max(np.abs(mono))) if len(mono) else 0.0
    if peak == 0.0:
        return np.zeros(0), analysis_rate / hop
    padded = np.pad(mono / peak, n_fft // 2).astype(np.float32)
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    window = np.hanning(n_fft).astype(np.float32)
    flux = np.zeros(len(frames))
    previous: npt.NDArray[np.float32] | None = None
    for first in range(0, len(frames), 512):  # in chunks: a minute of spectra at once is 50 MB
        spectra = np.log1p(10.0 * np.abs(np.fft.rfft(frames[first : first + 512] * window, axis=1)))
        if previous is not None:
            spectra = np.vstack([previous, spectra])
        rises = np.maximum(np.diff(spectra, axis=0), 0.0).sum(axis=1)
        start = first if previous is not None else first + 1
        flux[start : start + len(rises)] = rises
        previous = spectra[-1:]
    return flux, analysis_rate / hop


def find_tempo(mono: Floats, rate: int) -> Tempo | None:
    """The beat of ``mono`` (float samples at ``rate``), or None when no steady beat stands out."""
    envelope, fps = onset_strength(mono, rate)
    lag_min, lag_max = math.floor(fps * 60 / MAX_BPM), math.ceil(fps * 60 / MIN_BPM)
    if len(envelope) < 4 * lag_max:  # fewer than four beats at the slowest tempo
        return None
    centred = envelope - envelope.mean()
    power = np.abs(np.fft.rfft(centred, 2 * len(centred))) ** 2
    autocorr = np.fft.irfft(power)[: len(centred)]
    if autocorr[0] <= 1e-9 * len(centred):
        return None  # a flat envelope: a steady tone, silence
    lags = np.arange(len(centred))
    normalised = autocorr / autocorr[0] * len(centred) / np.maximum(len(centred) - lags, 1)
    candidates = np.arange(lag_min, lag_max + 1)
    bpms = 60 * fps / candidates
    prior = np.exp(-0.5 * (np.log2(bpms / 120.0) / _PRIOR_OCTAVES) ** 2)
    best = int(candidates[np.argmax(normalised[candidates] * prior)])
    confidence = float(normalised[best])
    if confidence < MIN_CONFIDENCE:
        return None
    period, phase = _fit_comb(envelope, _parabolic_peak(normalised, best))
    bpm = 60 * fps / period
    if not MIN_BPM * 0.97 <= bpm <= MAX_BPM * 1.03:
        return None
    count = int((len(envelope) - 1 - phase) // period) + 1
    beats = phase + period * np.arange(count)
    strength = np.interp(beats, np.arange(len(envelope)), envelope)
    per_position = [float(strength[i::BEATS_PER_BAR].mean()) for i in range(min(BEATS_PER_BAR, count))]
    downbeat = int(np.argmax(per_position))
    return Tempo(bpm=float(bpm), beats_s=tuple(float(b) / fps for b in beats), downbeat=downbeat, confidence=confidence)


def _parabolic_peak(values: Floats, index: int) -> float:
    """The peak near ``index``, between samples (a parabola through it and its neighbours)."""
    left, middle, right = values[index - 1], values[index], values[index + 1]
    curve = left - 2 * middle + right
    return index + (0.5 * (left - right) / curve if curve < 0 else 0.0)


def _fit_comb(envelope: Floats, period: float) -> tuple[float, float]:
    """The beat period (frames) within 2% of ``period`` and the phase whose comb of beats gathers the most onset
    strength over the whole envelope."""
    positions = np.arange(len(envelope))
    best = (-1.0, period, 0.0)
    for trial in np.linspace(period * 0.98, period * 1.02, 41):
        phases = np.arange(0.0, trial, 0.25)
        count = int((len(envelope) - 1 - trial) // trial)
        beats = phases[:, None] + trial * np.arange(count)[None, :]
        scores = np.interp(beats, positions, envelope).mean(axis=1)
        top = int(np.argmax(scores))
        if scores[top] > best[0]:
            best = (float(scores[top]), float(trial), float(phases[top]))
    return best[1], best[2]


def _attack(mono: Floats, rate: int, around: int) -> int:
    """Where the attack nearest ``around`` begins (a millisecond early at most): the first sample from which the
    next millisecond holds a third of the most energy any millisecond within :data:`_ATTACK_SEARCH_S` of
    ``around`` holds; ``around`` if the energy there barely changes (no attack)."""
    window = max(1, round(rate * _ATTACK_BLOCK_S))
    reach = round(rate * _ATTACK_SEARCH_S)
    first = max(0, around - reach)
    part = mono[first : min(len(mono), around + reach)]
    if len(part) <= 2 * window:
        return around
    running = np.concatenate([[0.0], np.cumsum(part**2)])
    energy = running[window:] - running[:-window]  # energy[j]: the millisecond from sample j on
    low, high = float(energy.min()), float(energy.max())
    if high <= low * 4:
        return around
    return first + int(np.argmax(energy >= low + (high - low) / 3))


# -- the loop ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Cut:
    start: int
    frames: int
    bars: int
    bpm: float | None


def _fitting_bars(bars: int, bar_s: float, room_s: float) -> int | None:
    """The most bars, ``bars`` or fewer by halves, that last at most :data:`MAX_LOOP_S` and ``room_s``."""
    while bars >= 1:
        if bars * bar_s <= min(MAX_LOOP_S, room_s):
            return bars
        bars //= 2
    return None


def _beat_cut(mono: Floats, rate: int, tempo: Tempo, bars: int, fade: int) -> _Cut | None:
    """Whole bars from a bar's first beat near the middle, both ends on their beat's attack; None if no bar fits."""
    beats = [round(b * rate) for b in tempo.beats_s]
    starts = [i for i in range(tempo.downbeat, len(beats), BEATS_PER_BAR) if beats[i] >= fade]
    bar_s = BEATS_PER_BAR * 60 / tempo.bpm
    wanted = _fitting_bars(bars, bar_s, (len(mono) - fade) / rate)
    while wanted is not None:
        span = wanted * BEATS_PER_BAR
        fits = [i for i in starts if i + span < len(beats)]
        if fits:
            middle = (len(mono) - span * 60 / tempo.bpm * rate) / 2
            first = min(fits, key=lambda i: abs(beats[i] - middle))
            start = _attack(mono, rate, beats[first])
            end = _attack(mono, rate, beats[first + span])
            if start >= fade and end > start:
                return _Cut(start, end - start, wanted, span * 60 * rate / (end - start))
        wanted = wanted // 2 or None
    return None


def _free_cut(length: int, rate: int, bars: int, fade: int) -> _Cut | None:
    """``bars`` bars at 120 BPM (fewer if they don't fit) from the middle."""
    bar_s = BEATS_PER_BAR * 60 / FREE_BPM
    wanted = _fitting_bars(bars, bar_s, (length - fade) / rate)
    if wanted is None:
        return None
    frames = round(wanted * bar_s * rate)
    return _Cut(max(fade, (length - frames) // 2), frames, wanted, None)


def _in_phase(mono: Floats, start: int, frames: int, fade: int, *, earlier: int, later: int) -> int:
    """The loop length, from ``frames - earlier`` to ``frames + later``, whose last ``fade`` frames are most like
    the ``fade`` frames before ``start`` (normalised correlation): the crossfade then joins two stretches in
    phase, so a sustained note neither dips nor beats through the seam."""
    shortest = max(fade + 1, frames - earlier)
    longest = min(frames + later, len(mono) - start)
    before = mono[start - fade : start]
    if longest <= shortest or not np.any(before):
        return frames
    candidates = np.lib.stride_tricks.sliding_window_view(mono[start + shortest - fade : start + longest], fade)
    norms = np.linalg.norm(candidates, axis=1) * np.linalg.norm(before)
    likeness = candidates @ before / np.maximum(norms, 1e-12)
    return shortest + int(np.argmax(likeness))


def seamless(samples: Floats, start: int, frames: int, fade: int, *, equal_power: bool) -> Floats:
    """``samples[start:start + frames]`` (frames x channels) with its last ``fade`` frames crossfaded into the
    ``fade`` frames before ``start``: its last frame is the one before ``start``, so the wrap continues it."""
    loop = samples[start : start + frames].copy()
    ramp = (np.arange(fade) + 1.0) / fade  # reaches 1 on the last frame
    fade_in = np.sin(ramp * np.pi / 2) if equal_power else ramp
    fade_out = np.cos(ramp * np.pi / 2) if equal_power else 1.0 - ramp
    loop[frames - fade :] = (
        samples[start + frames - fade : start + frames] * fade_out[:, None]
        + samples[start - fade : start] * fade_in[:, None]
    )
    return loop


def make_loop(src: Path, dest: Path, *, bars: int, max_s: float, tags: Mapping[str, str]) -> Loop:
    """Write a seamless loop of ``bars`` bars of ``src`` (fewer if they don't fit) to ``dest`` as WAV.

    Reads at most ``min(WINDOW_S, max_s)`` seconds. LoopTooShortError if the track is shorter than
    :data:`MIN_SOURCE_S` or holds no whole bar at its tempo; StorageFullError if there is no room for it."""
    if bars not in BAR_CHOICES:
        raise InvalidRequestError.keyed("refusals.loop_bars_any", choices=", ".join(map(str, BAR_CHOICES)))
    try:
        with open_input(src) as container:
            codec = container.streams.audio[0].codec_context
            rate = min(codec.sample_rate or MAX_RATE, MAX_RATE)
            channels = min(max(codec.channels, 1), 2)
        pcm = decode(src, rate=rate, channels=channels, until_s=min(WINDOW_S, max_s))
    except (av.error.FFmpegError, IndexError, ValueError) as exc:
        raise InvalidRequestError(key="refusals.loop_unreadable", detail=str(exc)) from None
    samples = np.frombuffer(pcm.data, dtype="<i2").reshape(-1, channels).astype(np.float64) / 32768.0
    seconds = len(samples) / rate
    if seconds < MIN_SOURCE_S:
        raise LoopTooShortError.keyed("refusals.loop_source_short", seconds=f"{seconds:.1f}", least=f"{MIN_SOURCE_S:g}")
    mono = samples.mean(axis=1)
    tempo = find_tempo(mono, rate)
    cut = None
    if tempo is not None:
        fade = round(min(BEAT_FADE_S, 15 / tempo.bpm / 8) * rate)
        cut = _beat_cut(mono, rate, tempo, bars, fade)
        if cut is None:
            raise LoopTooShortError.keyed("refusals.loop_no_bar", bpm=f"{tempo.bpm:.0f}")
    else:
        fade = round(FREE_FADE_S * rate)
        cut = _free_cut(len(samples), rate, bars, fade)
        if cut is None:
            raise LoopTooShortError.keyed("refusals.loop_too_short", seconds=f"{seconds:.1f}")
        fade = min(fade, cut.frames // 10)
    reach = round(_PHASE_SEARCH_S * rate)
    # On the beat the end only moves earlier (never into the next beat's attack); the tempo is what it makes.
    frames = _in_phase(mono, cut.start, cut.frames, fade, earlier=reach, later=0 if cut.bpm else reach)
    cut = _Cut(cut.start, frames, cut.bars, cut.bpm * cut.frames / frames if cut.bpm else None)
    loop = seamless(samples, cut.start, cut.frames, fade, equal_power=cut.bpm is None)
    pcm16 = np.clip(np.round(loop * 32768.0), -32768, 32767).astype("<i2")
    part = dest.with_name(dest.name + ".part")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        part.write_bytes(loop_wav(pcm16, rate, bpm=cut.bpm, beats=cut.bars * BEATS_PER_BAR))
        tag_copy(part, dest, tags)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        full = no_room(exc, dest)
        if full is None:
            raise
        raise full from None
    finally:
        part.unlink(missing_ok=True)
    return Loop(
        path=dest,
        frames=cut.frames,
        rate=rate,
        channels=channels,
        bars=cut.bars,
        bpm=cut.bpm,
        start_s=cut.start / rate,
    )


# -- the file ------------------------------------------------------------------------------------------------


def _chunk(chunk_id: bytes, body: bytes) -> bytes:
    return struct.pack("<4sI", chunk_id, len(body)) + body + b"\0" * (len(body) & 1)


def smpl_chunk(frames: int, rate: int) -> bytes:
    """One forward loop over every frame (``end`` is the last frame, inclusive), played forever."""
    header = struct.pack("<9I", 0, 0, round(1e9 / rate), 60, 0, 0, 0, 1, 0)
    loop = struct.pack("<6I", 0, 0, 0, frames - 1, 0, 0)
    return _chunk(b"smpl", header + loop)


def acid_chunk(bpm: float, beats: int) -> bytes:
    """ACID loop information: a loop (not a one-shot) to stretch, ``beats`` beats in 4/4 at ``bpm``."""
    stretch = 0x04
    return _chunk(b"acid", struct.pack("<IHHfIHHf", stretch, 60, 0x8000, 0.0, beats, 4, BEATS_PER_BAR, bpm))


def loop_wav(pcm16: npt.NDArray[np.int16], rate: int, *, bpm: float | None, beats: int) -> bytes:
    """A 16-bit PCM WAV of ``pcm16`` (frames x channels) with its loop points, and its tempo when known."""
    frames, channels = pcm16.shape
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * channels * 2, channels * 2, 16)
    chunks = _chunk(b"fmt ", fmt) + smpl_chunk(frames, rate)
    if bpm is not None:
        chunks += acid_chunk(bpm, beats)
    chunks += _chunk(b"data", pcm16.tobytes())
    return b"RIFF" + struct.pack("<I", 4 + len(chunks)) + b"WAVE" + chunks
