"""Dependency direction: the core never imports the cogs; only the Discord edge (``bot/discord/``) knows Discord."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DISCORD_EDGE = "bot/discord/"


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_core_never_imports_cogs_and_only_edges_import_discord() -> None:
    offenders = []
    for path in sorted((ROOT / "bot").rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        modules = imported_modules(path)
        if any(m == "cogs" or m.startswith("cogs.") for m in modules):
            offenders.append(f"{rel} imports cogs")
        if not rel.startswith(DISCORD_EDGE) and any(m == "discord" or m.startswith("discord.") for m in modules):
            offenders.append(f"{rel} imports discord")
    assert offenders == []


def test_the_cli_runs_without_discord() -> None:
    """``python -m bot generate``, ``db`` and ``models`` don't load discord.py (nor does the core they use)."""
    check = "import sys, bot.cli, bot.app; assert 'discord' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)  # noqa: S603
    assert result.returncode == 0, result.stderr[-2000:]


def test_storage_and_providers_do_not_import_each_other() -> None:
    for package, forbidden in (("storage", "bot.providers"), ("providers", "bot.storage")):
        for path in (ROOT / "bot" / package).rglob("*.py"):
            assert not any(m.startswith(forbidden) for m in imported_modules(path)), path
