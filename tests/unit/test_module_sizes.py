"""Small rooms (issue 13): no module of the core or of the cogs grows past 400 lines, and the engine's facade
stays under 300.

A module that passes the limit has taken a second job: split it (see STYLE.md and docs/ARCHITECTURE.md), don't
raise the limit.
"""

from __future__ import annotations

from pathlib import Path

BOT = Path(__file__).resolve().parents[2] / "bot"
COGS = BOT.parent / "cogs"
MAX_LINES = 400
FACADE = BOT / "jobs" / "service.py"
MAX_FACADE_LINES = 300


def lines(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def test_no_module_of_the_core_passes_400_lines() -> None:
    modules = sorted(BOT.rglob("*.py"))
    assert len(modules) > 50  # (the core is where this test thinks it is)
    too_long = {str(path.relative_to(BOT)): lines(path) for path in modules if lines(path) > MAX_LINES}
    assert too_long == {}


def test_no_cog_passes_400_lines() -> None:
    modules = sorted(COGS.glob("*.py"))
    assert len(modules) > 5
    too_long = {path.name: lines(path) for path in modules if lines(path) > MAX_LINES}
    assert too_long == {}


def test_the_engine_s_facade_stays_a_facade() -> None:
    assert lines(FACADE) < MAX_FACADE_LINES
