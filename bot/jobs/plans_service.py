"""Composition plans: made from a prompt (free) by the songs' provider, changed by their owner, composed into a song.

Plans are stored (``bot.storage.plans_repo``) so they can be edited section by section; every text a change
adds goes through the text rules; composing one hands a ticket to the gate like any other job.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from bot.catalog import SONG, check_duration, clean_prompt, duration_range
from bot.catalog.plans import texts as plan_texts
from bot.catalog.plans import total_ms as plan_total_ms
from bot.config import Settings
from bot.errors import BotError, InvalidRequestError, JobStateError, NotAllowedError
from bot.jobs.access import Action, Actor
from bot.jobs.gate import Gate
from bot.jobs.tickets import OwnPlan, Ticket
from bot.providers.base import Planner
from bot.records import Job, JobOrigin, JobRequest, new_job_id
from bot.storage.plans_repo import PlanRecord, PlansRepo

JobFor = Callable[[str, Actor, Action], Awaitable[Job]]


class PlanBook:
    def __init__(
        self,
        *,
        client: Planner | None,
        title: str,
        repo: PlansRepo | None,
        gate: Gate,
        job_for: JobFor,
        settings: Callable[[], Settings],
    ) -> None:
        """``client``: the songs' provider, if it makes plans; ``title``: how that provider is named to people;
        ``job_for(job_id, actor, action)``: the job, if the actor may do that to it."""
        self._client = client
        self._title = title
        self._repo = repo
        self._gate = gate
        self._job_for = job_for
        self._settings = settings

    def _plans(self) -> tuple[Planner, PlansRepo]:
        if self._client is None or self._repo is None:
            raise BotError.keyed("refusals.plan_no_provider", provider=self._title)
        return self._client, self._repo

    async def make(self, prompt: str, origin: JobOrigin, *, length_s: int | None = None) -> PlanRecord:
        """A composition plan for ``prompt`` (free), stored so it can be edited and composed."""
        client, repo = self._plans()
        settings = self._settings()
        text = clean_prompt(prompt, max_chars=SONG.max_prompt_chars or 4100)
        if length_s is not None:
            check_duration(SONG, settings, length_s, name="length")
        await self._gate.check_text([("prompt", text)], origin.guild_id)
        plan = await client.plan(text, length_ms=length_s * 1000 if length_s else None)
        return await repo.insert(
            plan_id=new_job_id(),
            user_id=origin.user_id,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            model_id=client.plan_model,
            prompt=text,
            plan=plan,
        )

    async def from_job(self, job_id: str, origin: JobOrigin, actor: Actor) -> PlanRecord:
        """The plan a finished song was made from, as a new plan to change and compose again."""
        client, repo = self._plans()
        job = await self._job_for(job_id, actor, Action.PLAN)
        plan = job.context.get("composition_plan") or job.result.get("plan")
        if not isinstance(plan, dict):
            raise JobStateError.keyed("refusals.plan_none")
        return await repo.insert(
            plan_id=new_job_id(),
            user_id=origin.user_id,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            model_id=client.plan_model,
            prompt=job.prompt,
            plan=plan,
        )

    async def set_message(self, plan_id: str, message_id: int) -> None:
        """Remember which message shows a plan's card."""
        if self._repo is not None:
            await self._repo.set_message(plan_id, message_id)

    async def get(self, plan_id: str) -> PlanRecord:
        _, repo = self._plans()
        record = await repo.get(plan_id)
        if record is None:
            raise BotError.keyed("refusals.plan_gone")
        return record

    async def change(
        self, plan_id: str, user_id: int, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> PlanRecord:
        """Apply ``change`` to a plan for its owner; a conditional update, so concurrent edits can't be lost."""
        _, repo = self._plans()
        record = await self.get(plan_id)
        if record.user_id != user_id:
            raise NotAllowedError.keyed("refusals.plan_not_yours")
        plan = change(record.plan)
        before = set(plan_texts(record.plan))
        await self._gate.check_text([text for text in plan_texts(plan) if text not in before], record.guild_id)
        if not await repo.update_plan(plan_id, plan, expected_updated_at=record.updated_at):
            raise JobStateError.keyed("refusals.plan_changed")
        return await self.get(plan_id)

    async def compose(self, plan_id: str, origin: JobOrigin, *, seed: int | None = None) -> Job:
        """A song composed from the plan, for the person who made it."""
        record = await self.get(plan_id)

        def request() -> JobRequest:
            total_s = round(plan_total_ms(record.plan) / 1000)
            low, high = duration_range(SONG, self._settings())
            if not low <= total_s <= high:
                raise InvalidRequestError.keyed("refusals.plan_length", seconds=total_s, low=low, high=high)
            return JobRequest(
                model=SONG.key,
                prompt=record.prompt,
                duration_s=total_s,
                seed=seed,
                context={"kind": "plan", "plan_id": record.id, "composition_plan": record.plan},
            )

        [job] = await self._gate.admit(Ticket(origin, request, claim=OwnPlan(record.user_id, origin.user_id)))
        return job
