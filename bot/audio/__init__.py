"""Audio work with PyAV (FFmpeg). Everything here blocks: call it through ``asyncio.to_thread``."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import ParamSpec, TypeVar

import av
from av.container import InputContainer

from bot.errors import StorageFullError, out_of_space
from bot.metrics import AUDIO_CPU

log = logging.getLogger(__name__)
P = ParamSpec("P")
T = TypeVar("T")


# How much FFmpeg reads to learn a file's streams. Its default (5 MB) makes it read a whole 30 s WAV before
# any work starts (~7 ms a file); every format Encore takes states its parameters in the first few KiB.
_PROBE_BYTES = 32 * 1024


def open_input(path: Path) -> InputContainer:
    """Open a media file for reading. Tags that are not valid UTF-8 (common in user files) are
    replaced rather than fatal: PyAV's default would raise UnicodeDecodeError before any audio is read."""
    return av.open(str(path), metadata_errors="replace", options={"probesize": str(_PROBE_BYTES)})


async def off_loop(work: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """Run blocking audio work ``fn`` in a thread; its CPU time counts in ``encore_audio_cpu_seconds_total``."""
    cpu_s = 0.0

    def timed() -> T:
        nonlocal cpu_s
        start = time.thread_time()
        try:
            return fn(*args, **kwargs)
        finally:
            cpu_s = time.thread_time() - start

    try:
        return await asyncio.to_thread(timed)
    finally:
        AUDIO_CPU.labels(work=work).inc(cpu_s)


def no_room(exc: OSError, dest: Path) -> StorageFullError | None:
    """The error for a write of ``dest`` that failed for lack of room (a full disk, a quota, a file size
    limit), logged for the operator; None when ``exc`` is some other failure."""
    if not out_of_space(exc):
        return None
    log.error("no room to write %s: %s", dest, exc.strerror)
    return StorageFullError(detail=f"writing {dest.name}: {exc.strerror}")
