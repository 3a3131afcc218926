"""``python -m bot run`` (through ``tests.faults.botproc``) with its event loop timed, for ``bench.stages``.

Between SIGUSR1 and SIGUSR2 every callback the event loop runs is timed on the main thread's CPU clock and
filed under what it belongs to: the task whose step it is (named after the task's coroutine), or the callback
itself (a transport reading a socket, a thread handing back its result). Every SQL statement is counted too
(SQLite's trace callback, with literals replaced by ``?``). SIGUSR2 writes both to ``ENCORE_BENCH_STAGES_OUT``
as JSON. Timing costs two clock reads a callback; nothing else of the bot changes.

Run as a script (``python bench/_timed_bot.py``) with the checkout to measure first on ``PYTHONPATH``.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import re
import runpy
import signal
import sqlite3
import sys
import time
from typing import Any

_cpu_s: collections.defaultdict[str, float] = collections.defaultdict(float)
_steps: collections.Counter[str] = collections.Counter()
_sql: collections.Counter[str] = collections.Counter()
_on = False
_run = asyncio.events.Handle._run
_connect = sqlite3.connect
_LITERALS = re.compile(r"'[^']*'|\b\d+(\.\d+)?\b")


def _owner(handle: asyncio.Handle) -> str:
    callback = handle._callback
    task = getattr(callback, "__self__", None)
    if isinstance(task, asyncio.Task):
        coro = task.get_coro()
        return "task " + getattr(coro, "__qualname__", type(coro).__name__)
    return "callback " + (getattr(callback, "__qualname__", None) or type(callback).__name__)


def _timed_run(self: asyncio.Handle) -> None:
    if not _on:
        return _run(self)
    start = time.thread_time()
    try:
        return _run(self)
    finally:
        key = _owner(self)
        _cpu_s[key] += time.thread_time() - start
        _steps[key] += 1


def _trace(statement: str) -> None:
    if _on:
        _sql[" ".join(_LITERALS.sub("?", statement).split())[:120]] += 1


def _traced_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
    conn = _connect(*args, **kwargs)
    conn.set_trace_callback(_trace)
    return conn


def _start(*_: object) -> None:
    global _on
    _cpu_s.clear()
    _steps.clear()
    _sql.clear()
    _on = True


def _stop(*_: object) -> None:
    global _on
    _on = False
    report = {"loop": {key: [_cpu_s[key], _steps[key]] for key in _cpu_s}, "sql": dict(_sql)}
    with open(os.environ["ENCORE_BENCH_STAGES_OUT"], "w") as out:
        json.dump(report, out)


if __name__ == "__main__":
    asyncio.events.Handle._run = _timed_run
    sqlite3.connect = _traced_connect
    signal.signal(signal.SIGUSR1, _start)
    signal.signal(signal.SIGUSR2, _stop)
    sys.argv = ["tests.faults.botproc", "run"]
    runpy.run_module("tests.faults.botproc", run_name="__main__", alter_sys=True)
