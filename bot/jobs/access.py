"""Who may act on a job: the one rule every button and command goes through.

A job belongs to the server and channel it was made in. Its requester may do anything with it, anywhere
(show it in a DM, extend it in another server). Anyone else counts only as they stand *in the job's own
server*, never where they happen to be:

- cancel, delete: a moderator of the job's channel (Manage Messages there). These change nothing but the
  job and its own messages and answer privately, so a moderator may use them from anywhere.
- retry: a moderator of the job's channel, acting in the job's server.
- regenerate, variations, extend, stems, edit plan, full track, make it loop, info, show: a member who can see
  the job's channel, acting in the job's server. What they make or post appears where they act, so nothing of
  someone else's job is carried into another server or a DM.
- play on phone: the same (a member who can see the job's channel, acting in the job's server); the voice
  message is posted in the job's own channel, as a reply to its track.
- lyrics: the same; they are shown privately, to whoever asked.

A job made in a DM is its requester's alone. The core decides; the cogs only gather the facts
(:meth:`Actor.standing`) from Discord.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bot.errors import NotAllowedError
from bot.locales import Phrase
from bot.records import Job


class Action(StrEnum):
    CANCEL = "cancel"
    DELETE = "delete"
    RETRY = "retry"
    REGENERATE = "regenerate"
    VARY = "vary"
    EXTEND = "extend"
    STEMS = "stems"
    PLAN = "plan"
    FULL = "full"
    PHONE = "phone"
    LOOP = "loop"
    LYRICS = "lyrics"
    INFO = "info"
    SHOW = "show"


#: Someone else's job: only a moderator of its channel.
MODERATED = frozenset({Action.CANCEL, Action.DELETE, Action.RETRY})
#: ...and these a moderator may use from outside the job's server (they post nothing there).
FROM_ANYWHERE = frozenset({Action.CANCEL, Action.DELETE})

_WHAT = {action: Phrase(f"access.actions.{action.value}") for action in Action}


@dataclass(frozen=True)
class Standing:
    """What a person may do in one channel of one server."""

    can_view: bool = False  # they can see the channel
    moderator: bool = False  # Manage Messages there (or Administrator)


NOBODY = Standing()
MODERATOR = Standing(can_view=True, moderator=True)


class Actor(Protocol):
    """Someone acting on a job: who they are, where they act, and how they stand in a given server."""

    @property
    def user_id(self) -> int: ...

    @property
    def guild_id(self) -> int | None:
        """The server they act in (None: a DM, or the terminal)."""
        ...

    async def standing(self, guild_id: int, channel_id: int | None) -> Standing:
        """How they stand in ``channel_id`` of ``guild_id``; NOBODY if they aren't a member there."""
        ...


@dataclass(frozen=True)
class Person:
    """An actor who stands the same everywhere: the terminal (nowhere) or, in tests, a moderator."""

    user_id: int
    guild_id: int | None = None
    everywhere: Standing = NOBODY

    async def standing(self, guild_id: int, channel_id: int | None) -> Standing:
        return self.everywhere


async def authorize(job: Job, actor: Actor, action: Action) -> None:
    """Return if ``actor`` may do ``action`` to ``job``; raise NotAllowedError (a private, clear line) if not."""
    if actor.user_id == job.user_id:
        return
    what = _WHAT[action]
    if job.guild_id is None:
        raise NotAllowedError.keyed("access.private_chat", action=what)
    here = actor.guild_id == job.guild_id
    if not here and action not in FROM_ANYWHERE:
        raise NotAllowedError.keyed("access.other_server", action=what)
    standing = await actor.standing(job.guild_id, job.channel_id)
    if action in MODERATED:
        if standing.moderator:
            return
        raise NotAllowedError.keyed("access.moderator_here" if here else "access.moderator_there", action=what)
    if not standing.can_view:
        raise NotAllowedError.keyed("access.hidden_channel", action=what)


async def allowed(job: Job, actor: Actor, action: Action) -> bool:
    try:
        await authorize(job, actor, action)
    except NotAllowedError:
        return False
    return True
