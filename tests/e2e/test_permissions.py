"""Whose job is it? Rights count in the job's own server, for the member as they are there.

Two servers: "home", where alice makes her tracks, and "away". eve moderates away and isn't in home at all;
bob moderates away, and at home only the channel "stage"; mod moderates home (and sees its private "staff"
channel) and is a plain member away. Job ids are printed on every card, so knowing one gives nobody anything.
"""

from __future__ import annotations

import pytest

from bot.records import JobStatus
from tests.e2e.conftest import Encore, accepted, card_status, default_guild, job_id_of, status_is
from tests.fakes.discord import DiscordSimulator, SimUser
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, Permission, RoleConfig, SimMessage
from tests.fakes.replicate import FakeReplicate

ALICE, BOB, MOD = 4_100_000_000_000_000_001, 4_100_000_000_000_000_002, 4_100_000_000_000_000_003
REFUSED = "Only the person who asked for this track"


@pytest.fixture
def guilds() -> list[GuildConfig]:
    view, manage = int(Permission.VIEW_CHANNEL), int(Permission.MANAGE_MESSAGES)
    home = default_guild(
        name="home",
        channels=[
            ChannelConfig("general"),
            ChannelConfig("staff", overwrites={"@everyone": (0, view), "Moderators": (view, 0)}),
            ChannelConfig("stage", overwrites={"DJ": (manage, 0)}),  # bob moderates this channel only
        ],
        members=[
            MemberConfig("alice", id=ALICE),
            MemberConfig("bob", id=BOB, roles=["DJ"]),
            MemberConfig("mod", id=MOD, roles=["Moderators"]),
            MemberConfig("boss", roles=["Admins"]),
        ],
    )
    home.roles.append(RoleConfig("DJ"))
    away = GuildConfig(
        name="away",
        channels=[ChannelConfig("lobby")],
        members=[
            MemberConfig("zed"),  # owns away
            MemberConfig("eve", roles=["Moderators"]),
            MemberConfig("bob", id=BOB, roles=["Moderators"]),
            MemberConfig("mod", id=MOD),
            MemberConfig("alice", id=ALICE),
        ],
        roles=[RoleConfig("Moderators", permissions=int(Permission.MANAGE_MESSAGES))],
    )
    return [home, away]


def away(sim: DiscordSimulator, name: str) -> SimUser:
    return sim.user(name, guild_id=sim.guilds[1].id)


def posted_in(sim: DiscordSimulator, channel_id: int) -> list[SimMessage]:
    """What everyone in the channel sees (private replies left out)."""
    return [m for m in sim.messages if m.channel_id == channel_id and not m.is_ephemeral and not m.deleted]


def refused(handle_message: SimMessage) -> str:
    assert handle_message.is_ephemeral
    assert REFUSED in handle_message.content
    return handle_message.content


async def running_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> tuple[SimMessage, str]:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="home secret", duration=3)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    card = await handle.wait_original(status_is("Generating"))
    return card, pid


async def finished_job(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> SimMessage:
    fake.auto_advance = True
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="home secret", duration=3)
    await handle.wait_file()
    return await handle.wait_original(status_is("Done"))


async def test_a_moderator_elsewhere_cannot_cancel_a_job_here(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card, pid = await running_job(encore, sim, fake)
    job_id = job_id_of(card)
    for name in ("eve", "bob"):  # eve isn't in home at all; bob is, without rights there
        reply = await (await away(sim, name).slash("music cancel", job=job_id)).wait_original()
        text = refused(reply)
        assert "moderator of the server it was made in" in text
    at_home = await (await sim.user("bob").slash("music cancel", job=job_id)).wait_original()
    refused(at_home)
    assert fake.prediction(pid).status == "processing"
    assert encore.bot is not None
    assert (await encore.bot.service.get(job_id)).status == JobStatus.RUNNING

    # home's moderator still can, even from away, where mod is nobody special
    done = await (await away(sim, "mod").slash("music cancel", job=job_id)).wait_original()
    assert done.is_ephemeral
    assert f"Canceled job `{job_id}`" in done.content
    canceled = await sim.wait_for_edit(card.id, status_is("Canceled"))
    assert "Canceled by a moderator." in card_status(canceled)
    assert (await fake.wait_for_status(pid)).status == "canceled"


async def test_nobody_else_reposts_a_job_in_another_server(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card = await finished_job(encore, sim, fake)
    job_id = job_id_of(card)
    lobby = sim.channel("lobby", guild_id=sim.guilds[1].id)
    for name in ("eve", "bob"):
        reply = await (await away(sim, name).slash("music show", job=job_id)).wait_original()
        text = refused(reply)
        assert "outside the server it was made in" in text
        assert "home secret" not in text
    assert posted_in(sim, lobby.id) == []  # no card, no prompt, no audio


async def test_a_moderator_elsewhere_cannot_delete_a_reposted_card(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card = await finished_job(encore, sim, fake)
    job_id = job_id_of(card)
    general = card.channel_id
    delivered = [m for m in posted_in(sim, general) if any(a.filename.endswith(".wav") for a in m.attachments)]
    assert len(delivered) == 1
    # alice may show her own track in away; its Delete button there must still answer to home's rules
    shown = await (await away(sim, "alice").slash("music show", job=job_id)).wait_original()
    assert "Done" in card_status(shown)
    for name in ("bob", "eve"):  # both moderate away
        reply = await (await away(sim, name).click(shown, f"encore:delete:{job_id}")).wait_original()
        refused(reply)
    assert not sim.message(card.id).deleted
    assert not sim.message(delivered[0].id).deleted

    # home's own moderator may delete it
    deleted = await sim.user("mod").click(card, f"encore:delete:{job_id}")
    await deleted.wait_message(lambda m: "Deleted" in m.content)
    await sim.wait_for_delete(card.id)
    await sim.wait_for_delete(delivered[0].id)


@pytest.mark.parametrize("action", ["regen", "vary", "extend", "info", "full", "stems", "delete", "phone"])
async def test_no_button_carries_a_job_into_another_server(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, action: str
) -> None:
    card = await finished_job(encore, sim, fake)
    job_id = job_id_of(card)
    lobby = sim.channel("lobby", guild_id=sim.guilds[1].id)
    shown = await (await away(sim, "alice").slash("music show", job=job_id)).wait_original()
    predictions = len(fake.predictions)
    reply = await (await away(sim, "bob").click(shown, f"encore:{action}:{job_id}")).wait_message()
    text = refused(reply)
    assert "home secret" not in text
    assert len(fake.predictions) == predictions  # nothing made from it
    assert [m.id for m in posted_in(sim, lobby.id)] == [shown.id]  # nothing posted but alice's own card
    assert not sim.message(card.id).deleted


async def test_retry_is_refused_to_a_moderator_elsewhere(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="home secret", duration=3)
    await fake.fail(await fake.wait_for_prediction())
    card = await handle.wait_original(status_is("Failed"))
    job_id = job_id_of(card)
    shown = await (await away(sim, "alice").slash("music show", job=job_id)).wait_original()
    reply = await (await away(sim, "bob").click(shown, f"encore:retry:{job_id}")).wait_message()
    refused(reply)
    assert len(fake.predictions) == 1
    # the requester still may, where she likes
    again = await away(sim, "alice").click(shown, f"encore:retry:{job_id}")
    await accepted(again)
    await fake.wait_for_prediction()
    assert len(fake.predictions) == 2


async def test_the_requester_shows_her_job_in_a_dm_and_nobody_else_does(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    fake.auto_advance = True
    encore.configure(discord={"dev_guild_ids": []})  # global commands: the only kind DMs have
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="home secret", duration=3)
    await handle.wait_file()
    job_id = job_id_of(await handle.wait_original(status_is("Done")))

    mine = await (await sim.user("alice").slash("music show", dm=True, job=job_id)).wait_original()
    assert sim.state.channel(mine.channel_id).is_dm
    assert "Done" in card_status(mine)
    info = await (await sim.user("alice").click(mine, f"encore:info:{job_id}")).wait_original()
    assert info.is_ephemeral
    assert "home secret" in str(info.embeds)

    for name in ("bob", "mod", "eve"):  # not even home's moderator: a DM is nobody's server
        user = sim.user(name) if name != "eve" else away(sim, name)
        reply = await (await user.slash("music show", dm=True, job=job_id)).wait_original()
        refused(reply)
        assert posted_in(sim, sim.state.dm_channel(user.id).id) == []


async def test_rights_count_in_the_jobs_own_channel(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    card, pid = await running_job(encore, sim, fake)  # made in general
    job_id = job_id_of(card)
    stage, staff, general = (sim.channel(name) for name in ("stage", "staff", "general"))
    # bob may manage messages in stage, not in general where the job is
    reply = await (await sim.user("bob").slash("music cancel", channel_id=stage.id, job=job_id)).wait_original()
    assert "(or a moderator)" in refused(reply)
    assert fake.prediction(pid).status == "processing"
    await fake.succeed(pid)
    await sim.wait_for_edit(card.id, status_is("Done"))

    # a track made in staff, which bob can't see, isn't his to show in general or to read the details of
    fake.auto_advance = True
    private = await sim.user("mod").slash("music generate", channel_id=staff.id, prompt="staff secret", duration=2)
    await private.wait_file()
    private_id = job_id_of(await private.wait_original(status_is("Done")))
    before = [m.id for m in posted_in(sim, general.id)]
    reply = await (await sim.user("bob").slash("music show", job=private_id)).wait_original()
    text = refused(reply)
    assert "channel you can't see" in text
    assert "staff secret" not in text
    assert [m.id for m in posted_in(sim, general.id)] == before
    # the server's admin sees every channel, so may
    shown = await (await sim.user("boss").slash("music show", job=private_id)).wait_original()
    assert shown.embeds[0]["title"] == "staff secret"


async def test_when_discord_cant_say_who_someone_is_there_the_answer_is_no(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    card, pid = await running_job(encore, sim, fake)
    lookup = sim.inject_error("GET /guilds/{guild_id}/members/{user_id}", status=503, code=0, times=1)
    reply = await (await away(sim, "mod").slash("music cancel", job=job_id_of(card))).wait_original()
    assert reply.is_ephemeral
    assert "couldn't check what you may do" in reply.content
    assert lookup.hits == 1
    assert fake.prediction(pid).status == "processing"
