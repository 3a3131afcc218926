"""Self-tests of the Discord simulator, part 2: command sync, interactions, components, modals and their errors.

A small ``commands.Bot`` defined here stands in for Encore: a ``/music`` group (a subcommand with every option
type, a nested group, a modal), a ``/probe`` group whose handlers provoke each interaction error, a message
context menu and a DynamicItem button.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord import app_commands
from discord.ext import commands

from tests.fakes.discord import MIB, DiscordSimulator, Permission, SimFile, SimulatorError

AUDIO = b"ID3" + b"\x00" * 125


class RetryButton(discord.ui.DynamicItem[discord.ui.Button[discord.ui.View]], template=r"job:retry:(?P<id>\d+)"):
    def __init__(self, job_id: int) -> None:
        super().__init__(discord.ui.Button(label="Retry", custom_id=f"job:retry:{job_id}"))
        self.job_id = job_id

    @classmethod
    async def from_custom_id(
        cls, interaction: discord.Interaction, item: discord.ui.Item[Any], match: re.Match[str], /
    ) -> RetryButton:
        return cls(int(match["id"]))

    async def callback(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"retrying job {self.job_id}", view=None)


class DescribeModal(discord.ui.Modal, title="Describe your track"):
    description: discord.ui.TextInput[DescribeModal] = discord.ui.TextInput(
        label="Description", custom_id="description", max_length=200
    )
    mood: discord.ui.TextInput[DescribeModal] = discord.ui.TextInput(label="Mood", required=False)

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"noted: {self.description.value} / {self.mood.value or '-'}")


class CardModal(discord.ui.Modal, title="Describe this take"):
    text: discord.ui.TextInput[CardModal] = discord.ui.TextInput(label="Text", custom_id="text")

    async def on_submit(self, interaction: discord.Interaction) -> None:
        await interaction.response.edit_message(content=f"described: {self.text.value}", view=None)


class CardView(discord.ui.View):
    """A job card: a button that opens a modal (answered by updating the card) and a select."""

    def __init__(self) -> None:
        super().__init__(timeout=None)

    @discord.ui.button(label="Describe", custom_id="card:describe")
    async def describe(self, interaction: discord.Interaction, button: discord.ui.Button[CardView]) -> None:
        await interaction.response.send_modal(CardModal())

    @discord.ui.select(
        custom_id="card:mood",
        options=[discord.SelectOption(label="Happy", value="happy"), discord.SelectOption(label="Sad", value="sad")],
    )
    async def mood(self, interaction: discord.Interaction, select: discord.ui.Select[CardView]) -> None:
        await interaction.response.send_message(f"mood: {select.values[0]}", ephemeral=True)


class SimBot(commands.Bot):
    """Just enough of a music bot to exercise every simulator feature."""

    def __init__(self, guild_id: int, **kwargs: Any) -> None:
        super().__init__(command_prefix=commands.when_mentioned, intents=discord.Intents.default(), **kwargs)
        self.guild_id = guild_id
        self.gate = asyncio.Event()
        self.failures: asyncio.Queue[discord.HTTPException] = asyncio.Queue()

    async def setup_hook(self) -> None:
        self.add_dynamic_items(RetryButton)
        guild = discord.Object(self.guild_id)
        self.tree.add_command(make_music_group(), guild=guild)
        self.tree.add_command(make_probe_group(self), guild=guild)
        self.tree.add_command(app_commands.ContextMenu(name="Remix", callback=remix), guild=guild)
        await self.tree.sync(guild=guild)

    async def failure(self) -> discord.HTTPException:
        return await asyncio.wait_for(self.failures.get(), timeout=5)


def text_channel(interaction: discord.Interaction) -> discord.TextChannel:
    assert isinstance(interaction.channel, discord.TextChannel)
    return interaction.channel


async def remix(interaction: discord.Interaction, message: discord.Message) -> None:
    await interaction.response.send_message(f"remixing: {message.content} ({len(message.attachments)} files)")


def make_music_group() -> app_commands.Group:
    music = app_commands.Group(name="music", description="Make music")
    queue = app_commands.Group(name="queue", description="The job queue", parent=music)

    @music.command(name="generate", description="Generate a track")
    async def generate(
        interaction: discord.Interaction,
        prompt: str,
        duration: app_commands.Range[int, 1, 30],
        temperature: float = 1.0,
        instrumental: bool = False,
        reference: discord.Attachment | None = None,
        style: str | None = None,
    ) -> None:
        await interaction.response.defer(thinking=True)
        ref = await reference.read() if reference is not None else b""
        await interaction.edit_original_response(
            content=f"{prompt}|{duration}|{temperature}|{instrumental}|{len(ref)}|{style}"
        )
        view = discord.ui.View(timeout=None)
        view.add_item(RetryButton(42))
        await interaction.followup.send("here", file=discord.File(io.BytesIO(AUDIO), "out.mp3"), view=view)
        original = await interaction.original_response()
        await text_channel(interaction).send(
            f"{interaction.user.mention} your track is ready",
            reference=original,
            allowed_mentions=discord.AllowedMentions(users=[interaction.user], replied_user=False),
            file=discord.File(io.BytesIO(AUDIO), "final.ogg"),
        )

    @generate.autocomplete("style")
    async def style_choices(interaction: discord.Interaction, current: str) -> list[app_commands.Choice[str]]:
        return [app_commands.Choice(name=s, value=s) for s in ("rock", "jazz", "reggae") if s.startswith(current)]

    @music.command(name="describe", description="Describe a track in a form")
    async def describe(interaction: discord.Interaction) -> None:
        await interaction.response.send_modal(DescribeModal())

    @queue.command(name="clear", description="Clear the queue")
    async def clear(interaction: discord.Interaction, everything: bool) -> None:
        await interaction.response.send_message(f"cleared everything={everything}", ephemeral=True)

    return music


def make_probe_group(bot: SimBot) -> app_commands.Group:
    """Handlers that provoke the interaction error codes; each HTTPException lands in ``bot.failures``."""
    probe = app_commands.Group(name="probe", description="Error probes")

    async def record(coro: Any) -> None:
        try:
            await coro
        except discord.HTTPException as exc:
            await bot.failures.put(exc)

    @probe.command(name="late", description="Answer after the test opens the gate")
    async def late(interaction: discord.Interaction) -> None:
        await bot.gate.wait()
        await record(interaction.response.send_message("too late"))
        await record(interaction.followup.send("nor a followup"))  # a dead interaction has no webhook either

    @probe.command(name="expire-edit", description="Defer, then edit and read the original after the gate")
    async def expire_edit(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await bot.gate.wait()
        await record(interaction.edit_original_response(content="after 15 minutes"))
        await record(interaction.original_response())

    @probe.command(name="private", description="Defer publicly, then answer privately instead")
    async def private(interaction: discord.Interaction) -> None:
        await interaction.response.defer(thinking=True)
        await interaction.delete_original_response()
        await interaction.followup.send("only you can see this", ephemeral=True)

    @probe.command(name="expire", description="Defer, then follow up after the gate")
    async def expire(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        await bot.gate.wait()
        await record(interaction.followup.send("after 15 minutes"))

    @probe.command(name="twice", description="Respond twice")
    async def twice(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("one")
        await record(discord.InteractionResponse(interaction).send_message("two"))

    @probe.command(name="big", description="Follow up with a file over the limit")
    async def big(interaction: discord.Interaction) -> None:
        await interaction.response.defer()
        too_big = discord.File(io.BytesIO(b"\x00" * (interaction.filesize_limit + 1)), "big.mp3")
        await record(interaction.followup.send(file=too_big))

    @probe.command(name="file", description="Respond with a file")
    async def file(interaction: discord.Interaction) -> None:
        await record(interaction.response.send_message(file=discord.File(io.BytesIO(AUDIO), "a.mp3")))

    @probe.command(name="legacy", description="Defer ephemerally, then follow up publicly")
    async def legacy(interaction: discord.Interaction) -> None:
        await interaction.response.defer(ephemeral=True, thinking=True)
        await interaction.followup.send("fills the loading message", ephemeral=False)

    @probe.command(name="card", description="Post a job card")
    async def card(interaction: discord.Interaction) -> None:
        await interaction.response.send_message("card", view=CardView())

    @probe.command(name="long", description="Respond with too much text")
    async def long(interaction: discord.Interaction) -> None:
        await record(interaction.response.send_message("x" * 2001))

    return probe


@pytest.fixture
async def bot(sim: DiscordSimulator, caplog: pytest.LogCaptureFixture) -> AsyncIterator[SimBot]:
    client = SimBot(sim.guild.id, **sim.client_kwargs())
    async with sim.running(client):
        yield client
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], "the bot logged errors"


async def generate_finished(sim: DiscordSimulator) -> None:
    """``/music generate`` ends with a channel reply carrying final.ogg."""
    await sim.wait_for_file(sim.default_channel_id, lambda a: a.filename == "final.ogg")


async def test_sync_stores_the_command_tree(sim: DiscordSimulator, bot: SimBot) -> None:
    synced = await sim.wait_for_sync(sim.guild.id)
    assert sorted((c.name, c.type) for c in synced) == [("Remix", 3), ("music", 1), ("probe", 1)]
    music = sim.command("music", guild_id=sim.guild.id)
    chain, options = music.find_path(["generate"])
    assert [c["name"] for c in chain] == ["generate"]
    types = {o["name"]: o["type"] for o in options}
    assert types == {
        "prompt": 3,
        "duration": 4,
        "temperature": 10,
        "instrumental": 5,
        "reference": 11,
        "style": 3,
    }
    assert sim.command("Remix", type=3, guild_id=sim.guild.id).description == ""
    assert sim.commands_synced() == []
    fetched = await bot.tree.fetch_commands(guild=discord.Object(sim.guild.id))
    assert {c.name for c in fetched} == {"music", "probe", "Remix"}


async def test_slash_with_every_option_defer_edit_followup_and_channel_reply(
    sim: DiscordSimulator, bot: SimBot
) -> None:
    alice = sim.user("alice")
    handle = await alice.slash(
        "music generate",
        prompt="calm piano",
        duration=10,
        temperature=0.5,
        instrumental=True,
        reference=SimFile("ref.mp3", b"ID3-reference"),
        style="jazz",
    )
    response = await handle.wait_response()
    assert response.type == 5
    assert response.message is not None
    assert response.message.is_loading
    original = await handle.wait_original(lambda m: not m.is_loading)
    assert original.content == "calm piano|10|0.5|True|13|jazz"
    assert original.type == 20

    audio = await handle.wait_file()
    assert audio.filename == "out.mp3"
    assert audio.content_type == "audio/mpeg"
    assert audio.data == AUDIO
    followup = await handle.wait_followup(index=0)
    assert followup.custom_ids() == ["job:retry:42"]

    final = await sim.wait_for_file(sim.default_channel_id, lambda a: a.filename == "final.ogg")
    reply = next(m for m in sim.messages if final in m.attachments)
    assert reply.reply_to == original.id
    assert reply.mentions == [alice.id]
    assert final.content_type == "audio/ogg"
    assert sim.read_attachment(final) == AUDIO


async def test_nested_group_option_types_and_autocomplete(sim: DiscordSimulator, bot: SimBot) -> None:
    alice = sim.user("alice")
    handle = await alice.slash("music queue clear", everything=True)
    reply = await handle.wait_original()
    assert reply.content == "cleared everything=True"
    assert reply.is_ephemeral

    choices = await (await alice.autocomplete("music generate", focused="style", value="r")).wait_choices()
    assert [c["value"] for c in choices] == ["rock", "reggae"]

    with pytest.raises(SimulatorError, match="takes an integer"):
        await alice.slash("music generate", prompt="x", duration="ten")
    with pytest.raises(SimulatorError, match="required option"):
        await alice.slash("music generate", prompt="x")
    with pytest.raises(SimulatorError, match="outside"):
        await alice.slash("music generate", prompt="x", duration=99)
    with pytest.raises(SimulatorError, match="no subcommand"):
        await alice.slash("music compose", prompt="x")


async def test_dynamic_button_click_updates_the_message(sim: DiscordSimulator, bot: SimBot) -> None:
    alice = sim.user("alice")
    generate = await alice.slash("music generate", prompt="p", duration=5)
    card = await generate.wait_followup(lambda m: bool(m.components))
    click = await alice.click(card, "job:retry:42")
    assert (await click.wait_response()).type == 7
    updated = await sim.wait_for_edit(card.id, lambda m: m.content == "retrying job 42")
    assert updated.components == []
    with pytest.raises(SimulatorError, match="no component"):
        await alice.click(card, "job:retry:42")
    await generate_finished(sim)


async def test_message_context_menu_sees_content_without_the_intent(sim: DiscordSimulator, bot: SimBot) -> None:
    alice = sim.user("alice")
    target = await alice.send_message("a riff", files=[SimFile("riff.ogg", b"OggS")])
    handle = await alice.message_command("Remix", target)
    reply = await handle.wait_original()
    assert reply.content == "remixing: a riff (1 files)"
    assert reply.type == 23


async def test_modal_round_trip(sim: DiscordSimulator, bot: SimBot) -> None:
    alice = sim.user("alice")
    opener = await alice.slash("music describe")
    modal = await opener.wait_modal()
    assert modal["title"] == "Describe your track"
    with pytest.raises(SimulatorError, match="required"):
        await alice.submit_modal(opener, {"Mood": "happy"})
    submitted = await alice.submit_modal(opener, {"description": "slow and warm", "Mood": "cosy"})
    reply = await submitted.wait_original()
    assert reply.content == "noted: slow and warm / cosy"


async def test_first_followup_after_a_defer_fills_the_loading_message(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe legacy")
    followup = await handle.wait_followup(index=0)
    assert handle.original is not None
    assert followup.id == handle.original.id
    assert followup.content == "fills the loading message"
    assert followup.is_ephemeral
    assert not followup.is_loading


async def test_button_opens_modal_whose_submit_updates_the_card(sim: DiscordSimulator, bot: SimBot) -> None:
    alice = sim.user("alice")
    card = await (await alice.slash("probe card")).wait_original()
    assert card.custom_ids() == ["card:describe", "card:mood"]
    click = await alice.click(card, label="Describe")
    assert (await click.wait_modal())["custom_id"]
    submit = await alice.submit_modal(click, {"Text": "loud"})
    assert (await submit.wait_response()).type == 7
    assert (await sim.wait_for_edit(card.id)).content == "described: loud"

    card2 = await (await alice.slash("probe card")).wait_original()
    picked = await alice.select(card2, "card:mood", ["sad"])
    assert (await picked.wait_original()).content == "mood: sad"
    with pytest.raises(SimulatorError, match="not all in"):
        await alice.select(card2, "card:mood", ["angry"])


async def test_first_response_after_three_seconds_is_unknown_interaction(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe late")
    sim.clock.advance(3.1)  # the bot is stuck on the gate while Discord's clock runs on: no sleep needed
    bot.gate.set()
    failure = await bot.failure()
    assert isinstance(failure, discord.NotFound)
    assert failure.code == 10062
    assert (await handle.wait_error()).status == 404
    dead = await bot.failure()  # never answered, so its token opens nothing
    assert isinstance(dead, discord.NotFound)
    assert dead.code == 10015
    assert handle.response_type is None
    assert handle.followups == []
    assert [rec.id for rec in sim.interactions.late_answers] == [handle.id]
    with pytest.raises(AssertionError, match=r"1 interaction\(s\) answered after the 3 s deadline: probe late"):
        sim.assert_answered_in_time()
    sim.interactions.late_answers.clear()  # provoked on purpose


async def test_an_answer_just_inside_the_deadline_is_accepted(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe late")
    sim.clock.advance(2.9)
    bot.gate.set()
    assert (await handle.wait_original()).content == "too late"
    assert (await handle.wait_followup()).content == "nor a followup"
    sim.assert_answered_in_time()


async def test_edits_and_reads_with_an_expired_token_are_refused(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe expire-edit")
    assert (await handle.wait_response()).type == 5
    sim.clock.advance(15 * 60 + 1)
    bot.gate.set()
    for _ in range(2):  # PATCH and GET of @original
        failure = await bot.failure()
        assert failure.status == 401
        assert failure.code == 50027
    assert handle.original is not None
    assert handle.original.is_loading  # nothing changed it


async def test_deleting_the_loading_message_lets_the_followup_be_private(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe private")
    response = await handle.wait_response()
    assert response.message is not None
    assert response.message.is_loading
    assert not response.message.is_ephemeral
    answer = await handle.wait_message()
    assert answer.content == "only you can see this"
    assert answer.is_ephemeral
    assert answer.id != response.message.id
    assert handle.original is not None
    assert handle.original.deleted


async def test_expired_token_is_invalid_webhook_token(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe expire")
    assert (await handle.wait_response()).type == 5
    sim.clock.advance(15 * 60 + 1)
    bot.gate.set()
    failure = await bot.failure()
    assert failure.status == 401
    assert failure.code == 50027


async def test_second_response_is_already_acknowledged(sim: DiscordSimulator, bot: SimBot) -> None:
    handle = await sim.user("alice").slash("probe twice")
    failure = await bot.failure()
    assert failure.status == 400
    assert failure.code == 40060
    assert (await handle.wait_original()).content == "one"


async def test_followup_over_the_interaction_limit_is_413(sim: DiscordSimulator, bot: SimBot) -> None:
    await sim.user("alice").slash("probe big")
    failure = await bot.failure()
    assert failure.status == 413
    assert failure.code == 40005
    assert sim.requests_to("POST /webhooks/{webhook_id}/{webhook_token}")[-1].files[0].size == 10 * MIB + 1


async def test_response_file_needs_attach_files_in_app_permissions(sim: DiscordSimulator, bot: SimBot) -> None:
    await sim.set_bot_permissions(sim.default_channel_id, int(Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES))
    handle = await sim.user("alice").slash("probe file")
    assert handle.record.payload["app_permissions"] == str(int(Permission.VIEW_CHANNEL | Permission.SEND_MESSAGES))
    failure = await bot.failure()
    assert isinstance(failure, discord.Forbidden)
    assert failure.code == 50013


async def test_invalid_response_body_is_invalid_form_body(sim: DiscordSimulator, bot: SimBot) -> None:
    await sim.user("alice").slash("probe long")
    failure = await bot.failure()
    assert failure.code == 50035
    assert "data.content" in failure.text
    [recorded] = sim.take_validation_failures()
    assert recorded.route == "POST /interactions/{interaction_id}/{interaction_token}/callback"


async def test_rate_limited_followup_is_retried(sim: DiscordSimulator, bot: SimBot) -> None:
    sim.inject_rate_limit("POST /webhooks/{webhook_id}/{webhook_token}", retry_after_s=0.01)
    handle = await sim.user("alice").slash("music generate", prompt="p", duration=3)
    await generate_finished(sim)
    statuses = [c.status for c in handle.calls if c.route == "POST /webhooks/{webhook_id}/{webhook_token}"]
    assert statuses == [429, 200]


async def test_invalid_command_sync_is_rejected(sim: DiscordSimulator) -> None:
    client = discord.Client(intents=discord.Intents.default())
    tree = app_commands.CommandTree(client)

    @tree.command(name="ok", description="fine")
    async def ok(interaction: discord.Interaction) -> None:
        await interaction.response.send_message(f"ok in {type(interaction.channel).__name__}")

    async with sim.running(client):
        payload = [c.to_dict(tree) for c in tree.get_commands()]
        payload.append({**payload[0], "name": "Bad Name"})
        with pytest.raises(discord.HTTPException) as rejected:
            await client.http.bulk_upsert_global_commands(sim.application_id, payload)
        assert rejected.value.code == 50035
        assert "1.name" in rejected.value.text
        sim.take_validation_failures()
        await tree.sync()
        assert [c.name for c in sim.commands_synced()] == ["ok"]
        reply = await (await sim.user("alice").slash("ok", dm=True)).wait_original()
        assert reply.content == "ok in DMChannel"
        assert reply.guild_id is None
