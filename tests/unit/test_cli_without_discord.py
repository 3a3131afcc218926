"""The CLI runs without discord.py: ``python -m bot generate``, ``db`` and ``models`` don't load it, nor does the
core they use. (Which modules may import discord at all is an import-linter contract in pyproject.toml; this
checks what is loaded when, which static contracts can't: the CLI imports the Discord edge only inside the
``run`` and ``sync-commands`` commands.)"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_cli_runs_without_discord() -> None:
    check = "import sys, bot.cli, bot.app; assert 'discord' not in sys.modules, sorted(sys.modules)"
    result = subprocess.run([sys.executable, "-c", check], cwd=ROOT, capture_output=True, text=True, timeout=60)  # noqa: S603
    assert result.returncode == 0, result.stderr[-2000:]
