"""The rule of who may act on a job, for every action, from every side (bot.jobs.access)."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from bot.errors import NotAllowedError
from bot.jobs.access import MODERATOR, NOBODY, Action, Person, Standing, allowed, authorize
from tests.unit.test_cards import make_job

HOME, AWAY = 1, 9
JOB = make_job(user_id=42, guild_id=HOME, channel_id=2)
MEMBER = Standing(can_view=True)
REUSE = [a for a in Action if a not in (Action.CANCEL, Action.DELETE, Action.RETRY)]


@dataclass(frozen=True)
class Asked(Person):
    """A Person that records which server's standing was asked for."""

    asked: list[tuple[int, int | None]] = field(default_factory=list)

    async def standing(self, guild_id: int, channel_id: int | None) -> Standing:
        self.asked.append((guild_id, channel_id))
        return self.everywhere


@pytest.mark.parametrize("action", list(Action))
@pytest.mark.parametrize("where", [HOME, AWAY, None])
async def test_the_requester_may_do_anything_anywhere(action: Action, where: int | None) -> None:
    await authorize(JOB, Person(42, guild_id=where), action)
    await authorize(make_job(guild_id=None, channel_id=5), Person(42, guild_id=where), action)


@pytest.mark.parametrize("action", list(Action))
async def test_standing_is_asked_of_the_jobs_own_server_and_channel(action: Action) -> None:
    actor = Asked(7, guild_id=HOME, everywhere=MODERATOR)
    await authorize(JOB, actor, action)
    assert actor.asked == [(HOME, 2)]


@pytest.mark.parametrize("action", [Action.CANCEL, Action.DELETE, Action.RETRY])
async def test_moderation_needs_a_moderator_of_the_jobs_channel(action: Action) -> None:
    assert await allowed(JOB, Person(7, guild_id=HOME, everywhere=MODERATOR), action)
    for standing in (NOBODY, MEMBER):
        with pytest.raises(NotAllowedError, match=r"\(or a moderator\)"):
            await authorize(JOB, Person(7, guild_id=HOME, everywhere=standing), action)


async def test_a_moderator_there_may_cancel_or_delete_from_anywhere_but_not_retry() -> None:
    for action in (Action.CANCEL, Action.DELETE):
        assert await allowed(JOB, Person(7, guild_id=AWAY, everywhere=MODERATOR), action)
        assert await allowed(JOB, Person(7, guild_id=None, everywhere=MODERATOR), action)
        with pytest.raises(NotAllowedError, match="a moderator of the server it was made in"):
            await authorize(JOB, Person(7, guild_id=AWAY, everywhere=MEMBER), action)
    with pytest.raises(NotAllowedError, match="outside the server it was made in"):
        await authorize(JOB, Person(7, guild_id=AWAY, everywhere=MODERATOR), Action.RETRY)


@pytest.mark.parametrize("action", REUSE)
async def test_others_reuse_a_job_only_in_its_server_and_if_they_can_see_its_channel(action: Action) -> None:
    assert await allowed(JOB, Person(7, guild_id=HOME, everywhere=MEMBER), action)
    with pytest.raises(NotAllowedError, match="channel you can't see"):
        await authorize(JOB, Person(7, guild_id=HOME, everywhere=NOBODY), action)
    for where in (AWAY, None):  # another server, or a DM: not even its moderators
        with pytest.raises(NotAllowedError, match="outside the server it was made in"):
            await authorize(JOB, Person(7, guild_id=where, everywhere=MODERATOR), action)


@pytest.mark.parametrize("action", list(Action))
async def test_a_job_made_in_a_dm_is_its_requesters_alone(action: Action) -> None:
    private = make_job(user_id=42, guild_id=None, channel_id=5)
    with pytest.raises(NotAllowedError, match="private chat"):
        await authorize(private, Person(7, guild_id=None, everywhere=MODERATOR), action)
