"""The fault-injection suite: every test records what it injected and how the jobs ended.

``scripts/test tests/faults`` prints the records as a table at the end of the run (the figures in
RELIABILITY.md); with ``ENCORE_RELIABILITY_JSON=path`` they are also written there as JSON.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pytest

# The fixtures of the integration and end-to-end tests, for the scenarios here that run the same way.
from tests.e2e.conftest import encore, guilds, sim  # noqa: F401
from tests.integration.conftest import fake, harness  # noqa: F401


@dataclass
class FaultRecord:
    """One scenario: how many jobs ran, what was injected, and how every job ended."""

    scenario: str
    jobs: int
    faults: str
    outcomes: dict[str, int] = field(default_factory=dict)


_RECORDS = pytest.StashKey[list[FaultRecord]]()


class Reliability:
    def __init__(self, records: list[FaultRecord], scenario: str) -> None:
        self._records = records
        self._scenario = scenario

    def record(self, *, jobs: int, faults: str, outcomes: Counter[str] | dict[str, int]) -> None:
        """Add this test's figures (call once, after the assertions on the outcomes passed)."""
        self._records.append(FaultRecord(self._scenario, jobs, faults, dict(sorted(outcomes.items()))))


@pytest.fixture
def reliability(request: pytest.FixtureRequest) -> Reliability:
    records = request.config.stash.setdefault(_RECORDS, [])
    return Reliability(records, request.node.name)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "faults" in item.path.parts:
            item.add_marker(pytest.mark.faults)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    records = config.stash.get(_RECORDS, [])
    if not records:
        return
    terminalreporter.section("reliability: faults injected and how the jobs ended")
    for r in records:
        outcomes = ", ".join(f"{k} {v}" for k, v in r.outcomes.items())
        terminalreporter.write_line(f"{r.scenario}: {r.jobs} jobs; {r.faults}; {outcomes}")
    path = os.environ.get("ENCORE_RELIABILITY_JSON")
    if path:
        Path(path).write_text(json.dumps([asdict(r) for r in records], indent=2) + "\n")
