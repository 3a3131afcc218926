"""A CPU budget for each Encore process (Linux control groups), for ``scripts/bench --only scaling
--cpu-per-process CORES``.

On a machine with fewer cores than the deployment has processes (plus the database and the fakes), more
processes only share the same cores, and the scaling figure measures the machine. With a budget, each process
may use at most ``CORES`` of a core (the kernel's CFS quota, per 100 ms), as if each had a small core of its
own, and the rest of the machine is left to the database and the fakes: the figure then says whether Encore's
processes scale with the cores they are given, or wait on each other (a lock, the database, a shared limit).

Needs permission to make control groups: cgroup v1's ``cpu`` controller (``/sys/fs/cgroup/cpu``) or cgroup v2
with ``cpu`` enabled (``/sys/fs/cgroup``), writable (root, on most machines). :func:`unavailable` says why not.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_V1 = Path("/sys/fs/cgroup/cpu")
_V2 = Path("/sys/fs/cgroup")
_PERIOD_US = 100_000


def _root() -> tuple[Path, bool] | None:
    """Where to make groups, and whether it is cgroup v2."""
    if (_V1 / "cpu.cfs_quota_us").exists() and os.access(_V1, os.W_OK):
        return _V1, False
    controllers = _V2 / "cgroup.subtree_control"
    if controllers.exists() and "cpu" in controllers.read_text().split() and os.access(_V2, os.W_OK):
        return _V2, True
    return None


def unavailable() -> str | None:
    """Why budgets can't be set here (None: they can)."""
    if _root() is None:
        return (
            "no writable cgroup cpu controller (/sys/fs/cgroup/cpu, or cgroup v2 with cpu enabled): "
            "run the benchmark as root on Linux"
        )
    return None


class CpuBudgets:
    """One control group per process, each limited to ``cores`` of a core; removed by :meth:`close`."""

    def __init__(self, cores: float, prefix: str) -> None:
        found = _root()
        if found is None:
            raise RuntimeError(unavailable())
        if not 0.01 <= cores <= (os.cpu_count() or 1):
            raise ValueError(f"a budget of {cores} cores is not between 0.01 and the machine's cores")
        self.cores = cores
        self._root, self._v2 = found
        self._prefix = f"encore-bench-{prefix}-{os.getpid()}"
        self._groups: list[Path] = []

    def limit(self, pid: int) -> None:
        """Move process ``pid`` (all its threads, and the processes it starts later) into a group of its own."""
        group = self._root / f"{self._prefix}-{len(self._groups)}"
        group.mkdir()
        self._groups.append(group)
        quota = round(self.cores * _PERIOD_US)
        if self._v2:
            (group / "cpu.max").write_text(f"{quota} {_PERIOD_US}")
        else:
            (group / "cpu.cfs_period_us").write_text(str(_PERIOD_US))
            (group / "cpu.cfs_quota_us").write_text(str(quota))
        (group / "cgroup.procs").write_text(str(pid))

    def close(self) -> None:
        """Move what is left back to the root group, and remove the groups."""
        for group in self._groups:
            with contextlib.suppress(OSError):
                for pid in (group / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        (self._root / "cgroup.procs").write_text(pid)
            with contextlib.suppress(OSError):
                group.rmdir()
        self._groups.clear()
