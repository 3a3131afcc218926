"""Server admins' settings and the operator's commands, through Discord."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, accepted
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.errors import SimulatorError
from tests.fakes.discord.models import Permission, SimMessage
from tests.fakes.replicate import FakeReplicate


async def settings_card(sim: DiscordSimulator, user: str = "boss") -> SimMessage:
    return await (await sim.user(user).slash("musicadmin settings")).wait_original()


async def test_admin_changes_and_members_feel_them(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    guild_id = sim.guild.id
    card = await settings_card(sim)
    assert card.is_ephemeral
    assert "max_duration_s: default" in str(card.embeds)

    async def set_value(key: str, value: str) -> SimMessage:
        picked = await sim.user("boss").select(card, f"encore:admin:{guild_id}", [key])
        form = await picked.wait_modal()
        field = form["components"][0]
        inner = field.get("component") or field["components"][0]
        return await (await sim.user("boss").submit_modal(picked, {inner["custom_id"]: value})).wait_original()

    reply = await set_value("max_duration_s", "10")
    assert "**max_duration_s** is now 10" in reply.content
    refused = await (await sim.user("bob").slash("music generate", prompt="x", duration=12)).wait_message()
    assert "at most 10 seconds" in refused.content

    bad = await set_value("max_duration_s", "lots")
    assert "isn't a number" in bad.content

    quiet = sim.channel("quiet")
    await set_value("channels", f"<#{quiet.id}>")
    elsewhere = await (await sim.user("bob").slash("music generate", prompt="x")).wait_message()
    assert "isn't used in this channel" in elsewhere.content
    inside = await sim.user("bob").slash("music generate", channel_id=quiet.id, prompt="x", duration=5)
    await accepted(inside)

    await set_value("blocked_words", "banana, kiwi")
    fruit = await (
        await sim.user("bob").slash("music generate", channel_id=quiet.id, prompt="banana song")
    ).wait_message()
    assert "doesn't allow" in fruit.content

    await set_value("allowed_models", "riffusion")
    model = await (await sim.user("bob").slash("music generate", channel_id=quiet.id, prompt="x")).wait_message()
    assert "isn't enabled on this server" in model.content
    await set_value("default_model", "riffusion")
    ok = await sim.user("bob").slash("music generate", channel_id=quiet.id, prompt="riff")
    await accepted(ok)  # the server's default model is the allowed one

    await set_value("channels", "all")
    await set_value("allowed_models", "all")
    await set_value("default_model", "default")
    moderators = next(r for r in sim.guild.roles if r.name == "Moderators")
    await set_value("roles", f"<@&{moderators.id}>")
    no_role = await (await sim.user("bob").slash("music generate", prompt="x", duration=2)).wait_message()
    assert "members with certain roles" in no_role.content
    with_role = await sim.user("mod").slash("music generate", prompt="x", duration=2)
    await accepted(with_role)
    inputs = [fake.prediction(await fake.wait_for_prediction()).input for _ in range(3)]
    prompts = [i.get("prompt") or i.get("prompt_a") for i in inputs]  # musicgen's prompt, riffusion's prompt_a
    assert prompts == ["x", "riff", "x"]  # only the three allowed requests ever reached the provider


async def test_only_admins_see_or_change_settings(encore: Encore, sim: DiscordSimulator) -> None:
    await encore.start()
    with pytest.raises(SimulatorError, match="lacks permissions"):  # Discord doesn't even offer it to bob
        await sim.user("bob").slash("musicadmin settings")
    card = await settings_card(sim)
    picked = await sim.user("bob").select(card, f"encore:admin:{sim.guild.id}", ["roles"])
    assert "Manage Server" in (await picked.wait_original()).content


async def test_operator_pause_resume_reload_sync(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    owner, member = sim.user("alice"), sim.user("bob")
    assert sim.command("encore", guild_id=sim.guild.id).default_member_permissions == Permission.ADMINISTRATOR
    with pytest.raises(SimulatorError, match="lacks permissions"):  # Discord doesn't offer it to members
        await member.slash("encore pause")
    admin = await (await sim.user("boss").slash("encore pause")).wait_original()  # an admin, not the operator
    assert admin.is_ephemeral
    assert "operator" in admin.content
    assert encore.bot is not None
    assert not encore.bot.service.paused
    assert "Paused" in (await (await owner.slash("encore pause")).wait_original()).content
    paused = await (await member.slash("music generate", prompt="x")).wait_message()
    assert "paused by its operator" in paused.content
    assert "Resumed" in (await (await owner.slash("encore resume")).wait_original()).content
    await accepted(await member.slash("music generate", prompt="x", duration=2))
    assert "Reloaded" in (await (await owner.slash("encore reload")).wait_original()).content
    synced = await (await owner.slash("encore sync")).wait_message(lambda m: "Synced" in m.content)
    assert "command(s)" in synced.content
