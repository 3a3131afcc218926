"""The command tree as Discord sees it: valid, without clashes, and every command covered end to end."""

from __future__ import annotations

import re
from pathlib import Path

from discord import app_commands

from tests.e2e.conftest import Encore
from tests.fakes.discord import DiscordSimulator

E2E = Path(__file__).parent


def leaf_commands(encore: Encore) -> list[str]:
    assert encore.bot is not None
    names = []
    for command in encore.bot.tree.walk_commands():
        if isinstance(command, app_commands.Command):
            names.append(command.qualified_name)
    for menu in encore.bot.tree.get_commands(type=None):
        if isinstance(menu, app_commands.ContextMenu):
            names.append(menu.name)
    return names


async def test_synced_commands_are_exactly_the_tree(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    synced = sim.commands_synced(sim.guild.id)
    names = [command.name for command in synced]
    assert len(names) == len(set(names)), "command names clash"
    assert sorted(names) == ["Continue this track", "Split stems", "Use as melody", "encore", "music", "musicadmin"]
    leaves = leaf_commands(encore)
    assert len(leaves) == len(set(leaves))
    assert sorted(leaves) == [
        "Continue this track",
        "Split stems",
        "Use as melody",
        "encore pause",
        "encore reload",
        "encore resume",
        "encore sync",
        "music blend",
        "music cancel",
        "music generate",
        "music help",
        "music history",
        "music melody",
        "music models",
        "music plan",
        "music show",
        "music song",
        "music stems",
        "music usage",
        "musicadmin settings",
    ]


async def test_every_command_and_button_has_an_end_to_end_test(encore: Encore) -> None:
    await encore.start()
    sources = "\n".join(
        path.read_text(encoding="utf-8") for path in E2E.glob("test_*.py") if path.name != Path(__file__).name
    )
    invoked = set(re.findall(r'\.slash\(\s*"([^"]+)"', sources)) | set(
        re.findall(r'(?:\.message_command|\bmenu)\((?:\s*sim,)?\s*"([^"]+)"', sources)
    )
    missing = [name for name in leaf_commands(encore) if name not in invoked]
    assert missing == []
    actions = ("cancel", "regen", "vary", "extend", "info", "delete", "full", "history", "retry", "stems", "plan")
    for action in (*actions, "planedit", "planremove", "planadd", "plancompose", "admin"):
        assert f"encore:{action}:" in sources, action
