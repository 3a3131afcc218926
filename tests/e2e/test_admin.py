"""Server admins' settings and the operator's commands, through Discord."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.e2e.conftest import Encore, accepted, card_field, card_status, status_is
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.errors import SimulatorError
from tests.fakes.discord.models import Permission, SimMessage
from tests.fakes.replicate import FakeReplicate

EXAMPLE = Path(__file__).resolve().parents[2] / "config.example.toml"


async def settings_card(sim: DiscordSimulator, user: str = "boss") -> SimMessage:
    return await (await sim.user(user).slash("musicadmin settings")).wait_original()


@pytest.mark.both_backends  # a key job flow, on both storage backends
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


async def test_operator_pause_resume_sync(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
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
    assert paused.is_ephemeral
    assert "paused by its operator" in paused.content
    assert "Resumed" in (await (await owner.slash("encore resume")).wait_original()).content
    await accepted(await member.slash("music generate", prompt="x", duration=2))
    synced = await (await owner.slash("encore sync")).wait_message(lambda m: "Synced" in m.content)
    assert "command(s)" in synced.content


@pytest.mark.both_backends  # a key job flow, on both storage backends
async def test_a_pause_outlives_a_restart_and_shows(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    owner, member = sim.user("alice"), sim.user("bob")
    await (await owner.slash("encore pause")).wait_original()
    await encore.restart()
    refused = await (await member.slash("music generate", prompt="after the restart", duration=2)).wait_message()
    assert refused.is_ephemeral
    assert "paused by its operator" in refused.content
    usage = await (await member.slash("music usage")).wait_original()
    assert "paused by its operator" in (usage.embeds[0].get("description") or "")
    again = await (await owner.slash("encore pause")).wait_original()
    assert "Already paused since <t:" in again.content
    assert f"by <@{owner.id}>" in again.content
    assert fake.predictions == {}

    assert "Resumed" in (await (await owner.slash("encore resume")).wait_original()).content
    await encore.restart()  # resuming is kept too
    await accepted(await member.slash("music generate", prompt="welcome back", duration=2))
    usage = await (await member.slash("music usage")).wait_original()
    assert "paused" not in (usage.embeds[0].get("description") or "")
    await fake.wait_for_prediction()


def shipped_config(tmp_path: Path, **changes: str) -> Path:
    """config.example.toml as shipped, with ``key = value`` lines changed (each key once in the file)."""
    text = EXAMPLE.read_text(encoding="utf-8")
    for key, value in changes.items():
        text, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text)
        assert found == 1, key
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


async def test_reload_reaches_the_queue_caps(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encore.use_config_file(shipped_config(tmp_path, replicate_jobs_in_flight="1"), monkeypatch)
    await encore.start()
    bob = sim.user("bob")
    first = await accepted(await bob.slash("music generate", prompt="first", duration=2))
    await fake.wait_for_prediction()
    second = await accepted(await bob.slash("music generate", prompt="second", duration=2))
    await sim.wait_for_edit(second.id, lambda m: "#1 in line" in card_status(m))  # waiting for the one slot
    assert len(fake.predictions) == 1

    shipped_config(tmp_path, replicate_jobs_in_flight="2")
    reply = await (await sim.user("alice").slash("encore reload")).wait_original()
    assert "Reloaded" in reply.content
    pid = await fake.wait_for_prediction()  # the second slot is taken at once
    assert fake.prediction(pid).input["prompt"] == "second"
    await sim.wait_for_edit(second.id, status_is("Starting"))
    assert "Starting" in card_status(await sim.wait_for_edit(first.id, status_is("Starting")))


async def test_reload_reaches_the_poller(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encore.use_config_file(shipped_config(tmp_path, poll_initial_s="60.0", poll_max_s="300.0"), monkeypatch)
    await encore.start()
    handle = await sim.user("bob").slash("music generate", prompt="polled at last", duration=2)
    await accepted(handle)
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)  # done at Replicate; Encore would look in a minute
    assert fake.count("GET", "/v1/predictions/") == 0

    shipped_config(tmp_path, poll_initial_s="0.05", poll_max_s="0.1")
    assert "Reloaded" in (await (await sim.user("alice").slash("encore reload")).wait_original()).content
    audio = await handle.wait_file(timeout_s=10)  # polled under the new intervals, not a minute later
    assert audio.filename.endswith(".wav")
    assert fake.count("GET", "/v1/predictions/") >= 1


async def test_reload_reaches_limits_and_safety(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    encore.use_config_file(shipped_config(tmp_path), monkeypatch)
    await encore.start()
    bob = sim.user("bob")
    await accepted(await bob.slash("music generate", prompt="a tuba solo", duration=2))
    usage = await (await bob.slash("music usage")).wait_original()
    assert card_field(usage, "Tracks") == "1 of 50"

    shipped_config(tmp_path, user_daily_jobs="1", blocked_words='["tuba"]')
    assert "Reloaded" in (await (await sim.user("alice").slash("encore reload")).wait_original()).content
    usage = await (await bob.slash("music usage")).wait_original()
    assert card_field(usage, "Tracks") == "1 of 1"  # what /music usage shows follows the reload too
    refused = await (await sim.user("mod").slash("music generate", prompt="more tuba", duration=2)).wait_message()
    assert refused.is_ephemeral
    assert "isn't allowed" in refused.content or "doesn't allow" in refused.content
    refused = await (await bob.slash("music generate", prompt="a harp", duration=2)).wait_message()
    assert "You've made 1 of your 1 tracks today" in refused.content
    assert len(fake.predictions) == 1
