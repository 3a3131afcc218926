"""Canceling a job: every unfinished variation of its card, at its provider too.

Each job moves to canceled by a conditional UPDATE (a job that finished meanwhile stays finished); its slot is
freed, its poll stops, a long call in flight is aborted and a prediction is canceled upstream. Variations of a
batch that did finish are still delivered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection

from bot.errors import JobStateError
from bot.jobs.calls import Calls
from bot.jobs.dispatch import Dispatch
from bot.jobs.outcomes import Outcomes
from bot.jobs.phase import CardFeed
from bot.jobs.poller import Poller
from bot.jobs.submit import Submitter
from bot.locales import Phrase
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

# What a job is already, when there is nothing left to cancel: refusals.already_state.<status> in the catalogues
_ALREADY = frozenset({JobStatus.SUCCEEDED, JobStatus.DELIVERED, JobStatus.FAILED, JobStatus.CANCELED})


class Canceller:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        predictions: Collection[str],
        cards: CardFeed,
        outcomes: Outcomes,
        poller: Poller,
        calls: Calls,
        submitter: Submitter,
        dispatch: Dispatch,
        clock: Callable[[], float],
    ) -> None:
        """``predictions``: the providers whose predictions can be canceled upstream."""
        self._repo = repo
        self._predictions = predictions
        self._cards = cards
        self._outcomes = outcomes
        self._poller = poller
        self._calls = calls
        self._submitter = submitter
        self._dispatch = dispatch
        self._clock = clock

    async def cancel(self, job: Job, *, by: int) -> None:
        """Cancel ``job``'s card (user ``by`` may: checked by the caller). JobStateError if nothing was left to."""
        members = await self._repo.list_batch(job.batch_id) if job.batch_id else [job]
        reason = "Canceled by a moderator." if job.user_id != by else "Canceled by the requester."
        canceled = []
        for member in members:
            if member.status.is_terminal or member.status == JobStatus.SUCCEEDED:
                continue
            if await self._repo.transition(member.id, JobStatus.CANCELED, error=reason, now=self._clock()):
                canceled.append(member)
        if not canceled:
            current = await self._repo.get(job.id)
            status = current.status if current is not None else job.status
            state = Phrase(f"refusals.already_state.{status.value}") if status in _ALREADY else status.value
            raise JobStateError.keyed("refusals.already", state=state)
        log.info("job %s canceled by %s (%d job(s))", job.id, by, len(canceled))
        for member in canceled:
            self._outcomes.released(member, "canceled")
        for member in canceled:
            self._poller.unschedule(member.id)
            self._calls.abort(member.id)
            # Read it again: a submission may have been recorded between our read and our move.
            current = await self._repo.get(member.id)
            if current is not None and current.prediction_id and current.provider in self._predictions:
                await self._submitter.cancel_upstream(current.provider, current.prediction_id)
        await self._cards.notify(job.id)
        if job.batch_id:
            self._dispatch.kick(job)  # variations that did finish are still delivered
