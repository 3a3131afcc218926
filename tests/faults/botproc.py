"""Run the real bot, ``python -m bot ...``, in its own process against the Discord simulator.

``python -m tests.faults.botproc run --config PATH`` is ``python -m bot run --config PATH`` with one
difference: before the bot's CLI starts, discord.py is pointed at the simulator whose addresses are in
``ENCORE_SIM_API_URL`` (REST, e.g. ``http://127.0.0.1:PORT/api/v10``), ``ENCORE_SIM_GATEWAY_URL`` (the
websocket) and ``ENCORE_SIM_CDN_URL`` (assets), the three globals ``DiscordSimulator.install()`` sets in a
test's own process. Nothing of the bot is replaced: settings, secrets, startup and shutdown are its own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import discord.asset
import discord.gateway
import discord.http
import yarl

from bot.cli import main

if TYPE_CHECKING:
    from tests.fakes.discord import DiscordSimulator
    from tests.fakes.replicate import FakeReplicate

API_URL = "ENCORE_SIM_API_URL"
GATEWAY_URL = "ENCORE_SIM_GATEWAY_URL"
CDN_URL = "ENCORE_SIM_CDN_URL"


ROOT = Path(__file__).resolve().parents[2]


def environment(sim: DiscordSimulator, fake: FakeReplicate) -> dict[str, str]:
    """What a bot process started through this module needs besides its settings: the import path, the
    secrets (the simulator's bot token, the fake's API token) and the simulator's addresses."""
    return {
        "PYTHONPATH": str(ROOT),
        "DISCORD_TOKEN": sim.token,
        "REPLICATE_API_TOKEN": fake.token,
        API_URL: sim.api_url,
        GATEWAY_URL: sim.gateway.url,
        CDN_URL: sim.base_url,
    }


def point_discord_at_simulator() -> None:
    discord.http.Route.BASE = os.environ[API_URL]
    discord.gateway.DiscordWebSocket.DEFAULT_GATEWAY = yarl.URL(os.environ[GATEWAY_URL])
    discord.asset.Asset.BASE = os.environ[CDN_URL]  # pyright: ignore[reportAttributeAccessIssue]


if __name__ == "__main__":
    point_discord_at_simulator()
    sys.exit(main())
