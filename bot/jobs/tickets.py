"""Tickets: what an entry point hands the gate (``bot.jobs.gate``) to start jobs.

A ticket says who asks and where (:class:`~bot.records.JobOrigin`), what for (the request), what right it
claims over someone's job or plan (:class:`Claim`, checked first), and which clip it needs (:class:`Clip`,
read last, once everything else has passed). It checks nothing itself: the gate does, in its order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from bot.audio.probe import AudioInfo
from bot.errors import NotAllowedError
from bot.jobs.access import Action, Actor, authorize
from bot.records import Job, JobOrigin, JobRequest

# A clip handed in: a file on our disk (a track Encore made), or how to download one (a person's file),
# called only once every check that needs no download has passed.
ClipSource = Path | Callable[[], Awaitable[Path]]


@dataclass(frozen=True)
class Shaped:
    """What a recipe made of a clip: the request to store, and a file it made for the job (removed if the job
    isn't admitted after all)."""

    request: JobRequest
    scratch: Path | None = None


@dataclass(frozen=True)
class Clip:
    """A clip a request needs: where it comes from, and how the recipe shapes it once it is read."""

    source: ClipSource
    shape: Callable[[Path, AudioInfo], Awaitable[Shaped]]


class Claim(Protocol):
    """Step 1: the right to act on something that is someone's."""

    async def check(self) -> None:
        """Return if the claim holds; raise NotAllowedError (a private, clear line) if not."""
        ...


@dataclass(frozen=True)
class OnJob:
    """Acting on a job (Regenerate, Variations, Retry, Extend, Stems): as the actor stands in the job's server."""

    job: Job
    actor: Actor
    action: Action

    async def check(self) -> None:
        await authorize(self.job, self.actor, self.action)


@dataclass(frozen=True)
class OwnPlan:
    """Composing a plan: only the person who made it."""

    owner_id: int
    user_id: int

    async def check(self) -> None:
        if self.owner_id != self.user_id:
            raise NotAllowedError.keyed("refusals.plan_not_yours_compose")


@dataclass(frozen=True)
class Ticket:
    """One request to start jobs, as an entry point's recipe hands it to the gate.

    ``request`` is what is known before any clip is read; a callable is called after the claim is checked
    (a recipe whose request says something of the claimed job or plan).
    """

    origin: JobOrigin
    request: JobRequest | Callable[[], JobRequest]
    claim: Claim | None = None
    clip: Clip | None = None
