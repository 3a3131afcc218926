"""Audio work with PyAV (FFmpeg). Everything here blocks: run it through :func:`off_loop` or an :class:`AudioPool`."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import time
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor
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
    return await _in_thread(None, work, functools.partial(fn, *args, **kwargs))


async def _in_thread(executor: Executor | None, work: str, fn: Callable[[], T]) -> T:
    """``fn`` in a thread of ``executor`` (None: asyncio's default pool), with the caller's context (the job
    id in logs), timed on the thread's own CPU clock."""
    cpu_s = 0.0

    def timed() -> T:
        nonlocal cpu_s
        start = time.thread_time()
        try:
            return fn()
        finally:
            cpu_s = time.thread_time() - start

    context = contextvars.copy_context()
    try:
        return await asyncio.get_running_loop().run_in_executor(executor, functools.partial(context.run, timed))
    finally:
        AUDIO_CPU.labels(work=work).inc(cpu_s)


class AudioPool:
    """Threads of their own for decoding audio people hand in.

    A hostile file can keep at most these ``threads`` busy, never asyncio's default pool that the rest of
    Encore's blocking work (files, fitting outputs, waveforms) shares. Work waits its turn for a thread.
    Closing it lets work in progress finish and drops what waits; it starts afresh when used again.
    """

    def __init__(self, threads: int) -> None:
        self.threads = threads
        self._executor: ThreadPoolExecutor | None = None

    async def run(self, work: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="encore-audio-in")
        return await _in_thread(self._executor, work, functools.partial(fn, *args, **kwargs))

    def close(self) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


def no_room(exc: OSError, dest: Path) -> StorageFullError | None:
    """The error for a write of ``dest`` that failed for lack of room (a full disk, a quota, a file size
    limit), logged for the operator; None when ``exc`` is some other failure."""
    if not out_of_space(exc):
        return None
    log.error("no room to write %s: %s", dest, exc.strerror)
    return StorageFullError(detail=f"writing {dest.name}: {exc.strerror}")
