"""The gate: the one way a job starts.

Every entry point (slash commands, card buttons, message menus, replies that mention Encore, composing a
plan, the CLI) hands a :class:`Ticket` to :meth:`Gate.admit`, which takes it through the same steps in the
same order, so that what is cheap and needs no download refuses first:

1. **who** may do this here: a ticket acting on someone's job (or plan) carries a :class:`Claim`, checked by
   ``bot.jobs.access`` as the person stands in the job's own server;
2. **where and when**: Encore is taking jobs (not restarting, not paused by its operator), the request is
   valid for its model and the model is available, DMs, and the server's channel, role, model and length rules;
3. **text rules** on every text the person supplied (prompt, text options, a plan's styles and lyrics);
4. **quotas and budget** (the person's, the server's, Encore's);
5. only then **inputs**: a person's clip is downloaded (bounded, by the entry point's fetch) and decoded
   (bounded by ``[audio] max_input_s``, one file at a time per person, in threads of their own), and the
   ticket's recipe shapes it into the request to store;
6. **the insert**: with a clip, steps 2 and 3 again on what will be stored (its length is known now); then one
   database transaction, alone for this person and this server in every process sharing the database
   (``JobsRepo.admitting``: advisory locks on PostgreSQL, SQLite's write lock), checks the quotas once more
   and inserts the jobs, so two requests can't both take the last slot, even in two processes.

Step 4 before the inputs is a first look that holds nothing: a download or a decode takes seconds and holds no
transaction or lock, and nothing is reserved, so a request that dies between the two (a crash, a cancel, a
refused file) leaves nothing to give back. The price: two requests racing for the last slot may both read
their files, and the second is refused at step 6. No entry point calls a step itself: recipes
(``bot.jobs.recipes``) and plans only build tickets.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.audio import AudioPool
from bot.audio.probe import probe
from bot.catalog import SEED_MAX, Capability, ModelRoute, ValidatedRequest, validate_request
from bot.catalog.plans import texts as plan_texts
from bot.config import LimitsSettings, Settings
from bot.errors import BotError, InvalidRequestError, NotAllowedError, StorageError
from bot.guild_settings import GuildSettings
from bot.jobs.limits import LimitError, check_texts, check_usage, day_start
from bot.jobs.pause import PauseSwitch
from bot.jobs.phase import CardFeed
from bot.jobs.scheduler import Scheduler
from bot.jobs.tasks import Tasks
from bot.jobs.tickets import Clip, Shaped, Ticket
from bot.logs import CALLBACK_TOKEN_PREFIX
from bot.records import Job, JobOrigin, JobRequest, new_job_id
from bot.storage.guild_repo import GuildRepo
from bot.storage.job_rows import NewJob
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

CLI_USER = 0  # jobs from `python -m bot generate`


@dataclass(frozen=True)
class _Screened:
    """A request that passed steps 2 and 3, with what steps 4 and 6 need."""

    request: JobRequest
    origin: JobOrigin
    validated: ValidatedRequest
    route: ModelRoute
    rules: GuildSettings


def request_texts(validated: ValidatedRequest, context: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every text of a request that reaches the provider or the card, as (what it is, the text) pairs:
    the prompt, text options (``prompt_b``, ``negative_prompt``…) and a composition plan's texts."""
    texts = [("prompt", validated.prompt)]
    texts += [(f"`{name}`", value) for name, value in validated.params.items() if isinstance(value, str)]
    plan = (context or {}).get("composition_plan")
    if isinstance(plan, dict):
        texts += plan_texts(plan)
    return texts


def _check_guild_rules(rules: GuildSettings, origin: JobOrigin, model: str, duration_s: float) -> None:
    """A guild's own rules: where, who, which models and how long."""
    if rules.channels and origin.channel_id not in rules.channels:
        places = ", ".join(f"<#{c}>" for c in rules.channels[:5])
        raise NotAllowedError.keyed("gate.channels", places=places)
    if rules.roles and not set(origin.role_ids) & set(rules.roles):
        raise NotAllowedError.keyed("gate.roles")
    if rules.allowed_models is not None and model not in rules.allowed_models:
        if rules.allowed_models:
            raise NotAllowedError.keyed("gate.model", allowed=", ".join(rules.allowed_models))
        raise NotAllowedError.keyed("gate.no_models")
    if rules.max_duration_s is not None and duration_s > rules.max_duration_s:
        raise InvalidRequestError.keyed("gate.max_duration", seconds=rules.max_duration_s)


def _plan_input(context: dict[str, Any], request: ValidatedRequest) -> dict[str, Any] | None:
    """A song composed from a plan sends the plan (and a seed if any) instead of a prompt and length."""
    plan = context.get("composition_plan")
    if plan is None:
        return None
    return {"composition_plan": plan, **({"seed": request.seed} if request.seed is not None else {})}


def _cost_each(validated: ValidatedRequest) -> float:
    return validated.spec.estimate_cost_usd(validated) / validated.count


class Gate:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        guilds: GuildRepo | None,
        pause: PauseSwitch,
        available: Collection[str],
        scheduler: Scheduler,
        cards: CardFeed,
        tasks: Tasks,
        pool: AudioPool,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
    ) -> None:
        """``available``: the providers this bot can use; ``pool``: the threads people's files are decoded in."""
        self._repo = repo
        self._guilds = guilds
        self._pause = pause
        self._available = available
        self._scheduler = scheduler
        self._cards = cards
        self._tasks = tasks
        self._pool = pool
        self._settings = settings
        self._clock = clock
        self._reading: set[int] = set()  # people whose file is being read (in this process)

    async def admit(self, ticket: Ticket) -> list[Job]:
        """Take ``ticket`` through every step, in order; the jobs it made (queued), or the first refusal."""
        if ticket.claim is not None:
            await ticket.claim.check()  # 1
        request = ticket.request() if callable(ticket.request) else ticket.request
        if ticket.clip is None:
            return await self._screen(request, ticket.origin)  # 2, 3, 4, 6
        await self._screen(request, ticket.origin, clip_pending=True)  # 2, 3, 4: nothing stored
        shaped = await self._take_clip(ticket.clip, ticket.origin)  # 5
        try:
            return await self._screen(shaped.request, ticket.origin)  # 2, 3, 4 on what is stored, then 6
        except BaseException:
            if shaped.scratch is not None:
                await asyncio.to_thread(shaped.scratch.unlink, missing_ok=True)
            raise

    async def _screen(self, request: JobRequest, origin: JobOrigin, *, clip_pending: bool = False) -> list[Job]:
        screened = await self._where(request, origin, clip_pending=clip_pending)  # 2
        check_texts(  # 3
            request_texts(screened.validated, request.context),
            self._settings().safety,
            screened.rules.blocked_words,
        )
        if clip_pending:
            await self._quotas(screened)  # 4: a first look, holding nothing while the clip is read
            return []
        origin, limits = screened.origin, self._limits(screened)
        async with self._repo.admitting(
            user_id=origin.user_id, guild_id=origin.guild_id, everyone=bool(limits.daily_budget_usd)
        ):
            now = await self._quotas(screened)  # 4, alone for this person and server until the insert commits
            jobs = await self._insert(screened, now=now)  # 6
        await self._queue(jobs)
        return jobs

    # -- 2: where and when ------------------------------------------------------------------------------

    async def _where(self, request: JobRequest, origin: JobOrigin, *, clip_pending: bool) -> _Screened:
        if not self._tasks.accepting:
            raise BotError.keyed("gate.restarting")
        settings = self._settings()
        validated = validate_request(request, settings, clip_pending=clip_pending)
        spec = validated.spec
        if Capability.STEMS in spec.capabilities and not request.files and not clip_pending:
            raise InvalidRequestError.keyed("gate.needs_track", model=spec.display_name)
        route = spec.route(settings)
        if route.provider not in self._available:
            raise BotError.keyed("gate.unavailable", model=spec.display_name)
        if self._pause.paused:
            raise BotError.keyed("gate.paused")
        if origin.guild_id is None and not settings.safety.allow_dms and origin.user_id != CLI_USER:
            raise NotAllowedError.keyed("gate.no_dms")
        rules = await self.rules_for(origin.guild_id)
        _check_guild_rules(rules, origin, spec.key, validated.duration_s)
        return _Screened(request, origin, validated, route, rules)

    async def rules_for(self, guild_id: int | None) -> GuildSettings:
        """A server's own rules (``/musicadmin settings``); none outside a server."""
        if guild_id is None or self._guilds is None:
            return GuildSettings()
        return await self._guilds.get(guild_id)

    # -- 3: text rules ----------------------------------------------------------------------------------

    async def check_text(self, texts: Iterable[tuple[str, str]], guild_id: int | None) -> None:
        """Refuse blocked words and patterns in ``texts`` ((what, text) pairs) under the config's and the
        server's rules: step 3 for texts that aren't a job's (a plan being made or changed, a reply's prompt
        before its card shows it). Every text of a job's request is checked in :meth:`admit`."""
        rules = await self.rules_for(guild_id)
        check_texts(texts, self._settings().safety, rules.blocked_words)

    # -- 4: quotas and budget ---------------------------------------------------------------------------

    def _limits(self, screened: _Screened) -> LimitsSettings:
        """The limits that apply: the settings', with the server's own quotas and budget where it set them."""
        return self._settings().limits.model_copy(
            update={
                key: value
                for key in ("user_daily_jobs", "guild_daily_jobs", "guild_daily_budget_usd")
                if (value := getattr(screened.rules, key)) is not None
            }
        )

    async def _quotas(self, screened: _Screened) -> float:
        """Refuse what would break a limit; returns the moment it was checked at."""
        validated, origin, limits = screened.validated, screened.origin, self._limits(screened)
        now = self._clock()
        usage = await self._repo.usage(user_id=origin.user_id, guild_id=origin.guild_id, since=day_start(now))
        check_usage(
            usage,
            limits,
            in_guild=origin.guild_id is not None,
            count=validated.count,
            audio_s=validated.duration_s * validated.count,
            cost_usd=_cost_each(validated) * validated.count,
            now=now,
        )
        return now

    # -- 5: inputs --------------------------------------------------------------------------------------

    async def _take_clip(self, clip: Clip, origin: JobOrigin) -> Shaped:
        """The clip downloaded now (every other check has passed) and read, one at a time per person; decoding
        stops at ``[audio] max_input_s``, in threads of its own. Then the recipe shapes it."""
        max_s = self._settings().audio.max_input_s
        if isinstance(clip.source, Path):
            path, info = clip.source, await probe(clip.source, max_s=max_s, pool=self._pool)
        else:
            if origin.user_id in self._reading:
                raise LimitError.keyed("gate.still_reading")
            self._reading.add(origin.user_id)
            try:
                path = await clip.source()
                info = await probe(path, max_s=max_s, pool=self._pool)
            finally:
                self._reading.discard(origin.user_id)
        return await clip.shape(path, info)

    # -- 6: the insert ----------------------------------------------------------------------------------

    async def _insert(self, screened: _Screened, *, now: float) -> list[Job]:
        request, origin, validated, route = screened.request, screened.origin, screened.validated, screened.route
        spec = validated.spec
        seeds: list[int | None] = [validated.seed] * validated.count
        if spec.seed_key is not None and (spec.auto_seed or validated.seed is not None):
            # Explicit seeds, so every variation can be labelled and made again.
            first = validated.seed if validated.seed is not None else secrets.randbelow(SEED_MAX) + 1
            seeds = [(first - 1 + i) % SEED_MAX + 1 for i in range(validated.count)]
        batch_id = new_job_id() if validated.count > 1 else None
        cost_each = _cost_each(validated)
        # The server asks for content credentials: sent with the call if its output is MP3 (bot.jobs.calls).
        signing = {"sign_with_c2pa": True} if spec.signs_c2pa and screened.rules.sign_with_c2pa else {}
        rows = []
        for index, seed in enumerate(seeds):
            variant = validated.with_seed(seed)
            rows.append(
                NewJob(
                    job_id=new_job_id(),
                    origin=origin if index == 0 else origin.model_copy(update={"interaction_id": None}),
                    provider=route.provider,
                    model=spec.key,
                    model_ref=route.ref,
                    request={**variant.as_record(), "context": dict(request.context)},
                    input={**(_plan_input(request.context, variant) or spec.build_input(variant)), **signing},
                    batch=(batch_id, index, validated.count) if batch_id else None,
                    callback_token=CALLBACK_TOKEN_PREFIX + secrets.token_urlsafe(24),
                    input_files=request.files,
                    cost_usd=cost_each,
                    reserved_for=self._scheduler.reserved_for,
                )
            )
        # One statement: a batch is stored whole or (storage refusing it) not at all.
        return await self._repo.insert_many(rows, now=now)

    async def _queue(self, jobs: list[Job]) -> None:
        """The jobs are stored: a round of claims starts what fits now; a job that has to wait has its card say
        where it is. (Stored is admitted: trouble here is only logged, the scheduler looks again shortly.)"""
        for job in jobs:
            log.info("job %s queued: model=%s user=%s batch=%s", job.id, job.model, job.user_id, job.batch_id)
        provider = jobs[0].provider
        await self._scheduler.dispatch(provider)
        try:
            waiting = set(await self._scheduler.order(provider))
        except StorageError as exc:
            log.warning("could not tell the cards of waiting jobs their place (%s)", exc)
            return
        for job in jobs:
            if job.id in waiting:  # it has to wait: its card says where it is
                self._tasks.spawn(self._cards.notify(job.id), name=f"queued:{job.id}")
