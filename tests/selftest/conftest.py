"""Fixtures shared by the fakes' self-tests."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.fakes.discord import DiscordSimulator


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    async with DiscordSimulator() as simulator:
        yield simulator
        simulator.assert_no_validation_failures()
