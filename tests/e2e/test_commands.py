"""The command tree as Discord sees it: valid, without clashes, and every command covered end to end."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

import discord
from discord import app_commands

from bot.discord.client import EncoreBot
from tests.e2e.conftest import Encore
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate
from tests.faults import botproc

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
        "music prefer",
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


GUILD_SYNC = "PUT /applications/{application_id}/guilds/{guild_id}/commands"


def with_extra_command(bot: EncoreBot) -> None:
    """The next version of Encore: one command more."""

    async def ping(interaction: discord.Interaction[Any]) -> None:
        await interaction.response.send_message("pong", ephemeral=True)

    bot.tree.add_command(app_commands.Command(name="ping", description="Is Encore there?", callback=ping))


async def test_commands_are_synced_only_when_they_changed(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()  # a new database: never synced
    assert len(sim.requests_to(GUILD_SYNC)) == 1
    await encore.restart()
    await encore.restart()
    assert len(sim.requests_to(GUILD_SYNC)) == 1  # the same commands: Discord isn't asked again
    await (await sim.user("alice").slash("music help")).wait_original()  # and they still work

    encore.before_start.append(with_extra_command)
    await encore.restart()  # a new version with one more command
    assert len(sim.requests_to(GUILD_SYNC)) == 2
    assert "ping" in [command.name for command in sim.commands_synced(sim.guild.id)]
    assert "pong" in (await (await sim.user("bob").slash("ping")).wait_original()).content
    await encore.restart()
    assert len(sim.requests_to(GUILD_SYNC)) == 2

    # On demand: the operator syncs whatever the hash says.
    synced = await (await sim.user("alice").slash("encore sync")).wait_original()
    assert "Synced 7 command(s)" in synced.content
    assert len(sim.requests_to(GUILD_SYNC)) == 3
    sim.assert_no_validation_failures()


async def test_sync_commands_from_the_terminal(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("ENCORE_", "REPLICATE_", "DISCORD_"))},
        **botproc.environment(sim, fake),
        "ENCORE_STORAGE__DIR": str(encore.data_dir),
        "ENCORE_DISCORD__DEV_GUILD_IDS": f"[{sim.guild.id}]",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.faults.botproc",  # python -m bot, pointed at the simulator
        "sync-commands",
        cwd=encore.data_dir.parent,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(60):
        stdout, stderr = await process.communicate()
    assert process.returncode == 0, stderr.decode()
    assert stdout.decode().strip() == f"Synced 6 command(s) to server(s) {sim.guild.id}."
    assert len(sim.requests_to(GUILD_SYNC)) == 1
    assert not sim.gateway.events.items  # it only logged in over HTTP: no gateway session, no jobs
    await encore.start()  # the bot finds them synced already
    assert len(sim.requests_to(GUILD_SYNC)) == 1
