"""The job service: the rules of a job's life, from request to delivered audio.

Every state change goes through :meth:`JobsRepo.transition`, a conditional UPDATE; whoever wins a
move acts on it and everyone else backs off, so the webhook, the poller and users may race freely.
The service knows nothing of Discord: it reports through a :class:`JobListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import av.error

from bot import metrics
from bot.audio import AudioPool, off_loop
from bot.audio.download import guess_content_type
from bot.audio.prepare import prepare_clip, stitch
from bot.audio.probe import AudioInfo, probe
from bot.audio.stems import StemsError, unpack_stems
from bot.audio.verify import OutputKind, OutputRejectedError, verify_output
from bot.catalog import (
    MUSICGEN,
    SEED_MAX,
    SONG,
    STEM_VARIATIONS,
    Capability,
    ValidatedRequest,
    check_duration,
    clean_prompt,
    duration_range,
    get_model,
    validate_request,
)
from bot.config import Settings
from bot.errors import (
    BotError,
    CogBusyError,
    DeliveryError,
    InvalidRequestError,
    JobNotFoundError,
    JobStateError,
    NotAllowedError,
    OutputError,
    PredictionLostError,
    PromptRefusedError,
    ProviderError,
    ProviderNotFoundError,
    ProviderRateLimitError,
    StorageError,
    SubmissionUncertainError,
)
from bot.guild_settings import GuildSettings
from bot.jobs.access import Action, Actor, allowed, authorize
from bot.jobs.limits import LimitError, check_texts, check_usage, day_start, run_cost_usd
from bot.jobs.models import Job, JobOrigin, JobRequest, JobStatus, Pause, new_job_id
from bot.jobs.phase import JobListener, Phase, card_phase
from bot.jobs.plans import instrumental as plan_instrumental
from bot.jobs.plans import texts as plan_texts
from bot.jobs.plans import total_ms as plan_total_ms
from bot.jobs.poller import Poller
from bot.jobs.scheduler import Scheduler
from bot.logs import COG_TOKEN_PREFIX, job_context, job_task_context
from bot.providers import registry
from bot.providers.base import (
    CallProvider,
    DownloadedFile,
    OnRestart,
    Prediction,
    PredictionProvider,
    PredictionStatus,
    ProviderProtocol,
    WebhookRoute,
)
from bot.providers.elevenlabs import song_suffix
from bot.storage.guild_repo import GuildRepo
from bot.storage.jobs_repo import JobsRepo, NewJob, Usage
from bot.storage.plans_repo import PlanRecord, PlansRepo
from bot.storage.state_repo import StateRepo
from bot.tokens import same_secret

log = logging.getLogger(__name__)

_SEED_IN_LOGS = re.compile(r"seed\W{0,3}(-?\d{1,12})", re.IGNORECASE)
_OUTPUT_ATTEMPTS = 3
_PARALLEL_TRANSFERS = 8
INTERRUPTED = (
    "Interrupted: Encore restarted while this was being made. It wasn't run again by itself because it costs "
    "money; press Retry to make it again."
)
MUSICGEN_WINDOW_S = 30  # MusicGen continues from at most this much (and its output includes it)
MAX_EXTEND_S = 20
_MAX_RESUBMITS = 1
_MAX_SUBMIT_ATTEMPTS = 3
_STORAGE_RETRY_MAX_S = 60.0  # storage refusing writes (locked, full): look again at least this often
_PAUSE_KEY = "paused"  # in bot_state while the operator has paused new jobs

# A clip handed in: a file on our disk (a track Encore made), or how to download one (a person's file),
# called only once every check that needs no download has passed.
ClipSource = Path | Callable[[], Awaitable[Path]]


def check_extend(extra_s: int) -> None:
    if not 1 <= extra_s <= MAX_EXTEND_S:
        raise InvalidRequestError(f"You can add between 1 and {MAX_EXTEND_S} seconds at a time.")


def _friendly_failure(prediction: Prediction) -> str:
    if prediction.status == PredictionStatus.ABORTED:
        return "The music service dropped the job before it started. Please try again."
    return "The model failed to make this track. Try a different prompt or settings."


CLI_USER = 0  # jobs from `python -m bot generate`


def _check_guild_rules(rules: GuildSettings, origin: JobOrigin, model: str, duration_s: float) -> None:
    """A guild's own rules: where, who, which models and how long."""
    if rules.channels and origin.channel_id not in rules.channels:
        places = ", ".join(f"<#{c}>" for c in rules.channels[:5])
        raise NotAllowedError(f"Encore isn't used in this channel here. Try {places}.")
    if rules.roles and not set(origin.role_ids) & set(rules.roles):
        raise NotAllowedError("On this server, Encore is for members with certain roles. Ask an admin.")
    if rules.allowed_models is not None and model not in rules.allowed_models:
        allowed = ", ".join(rules.allowed_models) or "none"
        raise NotAllowedError(f"That model isn't enabled on this server. Enabled: {allowed}.")
    if rules.max_duration_s is not None and duration_s > rules.max_duration_s:
        raise InvalidRequestError(f"On this server tracks are at most {rules.max_duration_s} seconds long.")


def request_texts(validated: ValidatedRequest, context: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """Every text of a request that reaches the provider or the card, as (what it is, the text) pairs:
    the prompt, text options (``prompt_b``, ``negative_prompt``…) and a composition plan's texts."""
    texts = [("prompt", validated.prompt)]
    texts += [(f"`{name}`", value) for name, value in validated.params.items() if isinstance(value, str)]
    plan = (context or {}).get("composition_plan")
    if isinstance(plan, dict):
        texts += plan_texts(plan)
    return texts


def _plan_input(context: dict[str, Any], request: Any) -> dict[str, Any] | None:
    """A song composed from a plan sends the plan (and a seed if any) instead of a prompt and length."""
    plan = context.get("composition_plan")
    if plan is None:
        return None
    return {"composition_plan": plan, **({"seed": request.seed} if request.seed is not None else {})}


def _seed_from(prediction: Prediction, job: Job) -> int | None:
    if isinstance(job.input.get("seed"), int):
        return int(job.input["seed"])
    match = _SEED_IN_LOGS.search(prediction.logs or "")
    return int(match.group(1)) if match else None


class JobService:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: dict[str, PredictionProvider],
        settings: Settings,
        listener: JobListener,
        webhook_url: str | None = None,
        cog_webhook_base: str | None = None,
        elevenlabs: CallProvider | None = None,
        plans: PlansRepo | None = None,
        guilds: GuildRepo | None = None,
        state: StateRepo | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.providers = providers
        self.settings = settings
        self.listener = listener
        self.webhook_url = webhook_url
        # e.g. "https://encore.example.com/cog/webhooks": each Cog job gets /<job id>/<token> on it.
        self.cog_webhook_base = cog_webhook_base
        self.elevenlabs = elevenlabs
        self.plans = plans
        self.guilds = guilds
        self.state = state  # where a pause is kept across restarts (None: in memory only)
        self.pause: Pause | None = None  # set by the bot's operator: no new jobs until resumed
        self.clock = clock
        self.outputs_dir: Path = settings.storage.outputs_dir
        self.poller = Poller(self.poll, settings.jobs, webhooks_on=webhook_url is not None, clock=clock)
        self._tasks: set[asyncio.Task[Any]] = set()
        # Downloads and uploads in progress at once: each holds up to a few MB (a batch of the file in
        # memory, a file being posted), so a thousand jobs finishing together must queue, not all go at once.
        self._transfers = asyncio.Semaphore(_PARALLEL_TRANSFERS)
        self._outcomes: set[asyncio.Task[Any]] = set()
        self._pipelines: dict[str, asyncio.Task[None]] = {}
        self._uploading: set[str] = set()  # jobs whose output is being fetched
        self._dirty: set[str] = set()  # delivery units with news since their last look
        self._lost_once: set[str] = set()  # jobs an idle Cog server has not reported, seen once
        self._calls: dict[str, asyncio.Task[Any]] = {}  # synchronous provider calls in flight, by job
        self._storage_waits: dict[str, int] = {}  # jobs whose writes storage refused: how often in a row
        # Quotas are checked and jobs inserted under one lock: two requests can't both take the last slot.
        self._admission = asyncio.Lock()
        # People's files are decoded in threads of their own, one file at a time per person.
        self._input_pool = AudioPool(settings.audio.decode_threads)
        self._reading: set[int] = set()
        self.scheduler = Scheduler(
            registry.capacity_caps(settings), start=self._start_submit, on_moved=self._queue_moved
        )
        self._accepting = False
        self._stopping = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def paused(self) -> bool:
        return self.pause is not None

    def apply_settings(self, settings: Settings) -> None:
        """Use ``settings`` from now on (``/encore reload``): limits, safety and job rules for new requests,
        the scheduler's caps for jobs waiting their turn, the poller's intervals for jobs being polled."""
        self.settings = settings
        self.scheduler.set_capacities(registry.capacity_caps(settings))
        self.poller.configure(settings.jobs)

    async def pause_jobs(self, *, by: int) -> Pause:
        """Refuse new jobs until :meth:`resume_jobs` (jobs in progress finish). Kept in the database, so a
        restart stays paused. Pausing again keeps the first pause."""
        if self.pause is not None:
            return self.pause
        pause = Pause(by=by, at=self.clock())
        if self.state is not None:
            await self.state.put(_PAUSE_KEY, pause.model_dump_json(), now=pause.at)
        self.pause = pause
        return pause

    async def resume_jobs(self) -> Pause | None:
        """Take new jobs again; returns the pause that ended (None: there was none)."""
        if self.state is not None:
            await self.state.delete(_PAUSE_KEY)
        previous, self.pause = self.pause, None
        return previous

    async def start(self, *, resume: bool = True) -> None:
        """Resume every unfinished job (unless ``resume`` is false), then start polling."""
        await asyncio.to_thread(self.outputs_dir.mkdir, parents=True, exist_ok=True)
        stored = await self.state.get(_PAUSE_KEY) if self.state is not None else None
        self.pause = Pause.model_validate_json(stored) if stored else None
        if self.pause is not None:
            since = datetime.fromtimestamp(self.pause.at, UTC).isoformat(timespec="seconds")
            log.warning("new jobs are paused (since %s, by %s): /encore resume takes them again", since, self.pause.by)
        self._stopping.clear()
        self._accepting = True
        jobs = await self.repo.list_active() if resume else []
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        for job in jobs:
            self._resume(job)
        # Jobs that ended just before the last stop (a crash) may have cards that never showed it.
        behind = await self.repo.list_cards_behind() if resume else []
        for job in behind:
            self._spawn(self._notify(job.id), name=f"card:{job.id}")
        self.poller.start()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop taking jobs, give downloads and deliveries in flight ``grace_s`` to finish, cancel the rest.

        Whatever is left resumes at the next start; recorded outcomes are never cut off half-written.
        """
        self._accepting = False
        self._stopping.set()  # backoff naps end now; only work in flight gets the grace period
        await self.poller.stop()
        pipelines = [task for task in self._pipelines.values() if not task.done()]
        if pipelines:
            await asyncio.wait(pipelines, timeout=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._outcomes, return_exceptions=True)
        self._input_pool.close()

    async def _nap(self, delay_s: float) -> bool:
        """Sleep before a retry; False (at once) if the service is stopping, so the caller gives up."""
        try:
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    async def _record(self, write: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
        """Run a write that records an outcome to completion even if our caller is cancelled.

        The outcome already happened (a file is stored, a message posted), so a write that storage refuses
        (locked, full) is tried again until it is stored, rather than the work being done twice; only a stop
        gives up, and the next start picks the job up from what the database says.
        """
        task = asyncio.create_task(self._write_until_stored(write))
        self._outcomes.add(task)
        task.add_done_callback(self._outcomes.discard)
        return await asyncio.shield(task)

    async def _write_until_stored(self, write: Callable[[], Coroutine[Any, Any, bool]]) -> bool:
        attempt = 0
        while True:
            try:
                return await write()
            except StorageError as exc:
                attempt += 1
                delay = min(self._retry_delay(attempt), _STORAGE_RETRY_MAX_S)
                log.warning("recording an outcome failed (%s); trying again in %.1f s", exc, delay)
                if not await self._nap(delay):
                    raise

    async def _wait_for_storage(self, job_id: str, exc: StorageError) -> bool:
        """Storage refused a write for ``job_id``, so the step recorded nothing: back off before trying again.

        False if the service is stopping (the next start picks the job up from the database).
        """
        attempt = self._storage_waits[job_id] = self._storage_waits.get(job_id, 0) + 1
        delay = min(self._retry_delay(attempt), _STORAGE_RETRY_MAX_S)
        log.warning("job %s: storage refused a write (%s); trying again in %.1f s", job_id, exc, delay)
        return await self._nap(delay)

    async def _pick_up(self, job_id: str) -> None:
        """Take a job up again from what the database says, as a restart would (after storage trouble)."""
        job = await self.repo.get(job_id)
        if job is None or job.status.is_terminal:
            self._storage_waits.pop(job_id, None)
        elif job.status == JobStatus.QUEUED:
            self._spawn(self._submit(job.id), name=f"submit:{job.id}")  # it keeps its scheduler slot
        else:
            self._resume(job)

    def _resume(self, job: Job) -> None:
        if registry.spec(job.provider).on_restart is OnRestart.INTERRUPTED and job.status.is_active_at_provider:
            # The call died with the process; running it again would cost money again: ask first.
            self._spawn(self._fail(job.id, INTERRUPTED), name=f"interrupted:{job.id}")
            return
        if job.status == JobStatus.QUEUED:
            self.scheduler.add(job.id, provider=job.provider, user_id=job.user_id)
        elif job.status.is_active_at_provider:
            self.scheduler.adopt(job.id, provider=job.provider, user_id=job.user_id)
            self.poller.schedule(job.id, due=self.clock())
        elif job.status == JobStatus.SUCCEEDED:
            self._kick_delivery(job)

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        # Task names are "<what>:<job id>": log lines from the task carry the job id.
        job_id = name.rpartition(":")[2] or None
        task = asyncio.create_task(coro, name=name, context=job_task_context(job_id))
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def _start_pipeline(self, job_id: str, coro: Coroutine[Any, Any, None]) -> bool:
        """Run the fetch/deliver pipeline for a job once at a time; a second caller backs off."""
        running = self._pipelines.get(job_id)
        if running is not None and not running.done():
            coro.close()
            return False
        task = self._spawn(coro, name=f"pipeline:{job_id}")
        self._pipelines[job_id] = task
        task.add_done_callback(lambda _: self._pipelines.pop(job_id, None))
        return True

    async def _notify(self, job_id: str, *, uploading: bool = False) -> None:
        """Tell the listener how the card of ``job_id`` (its job, or its whole batch) looks now."""
        job = await self.repo.get(job_id)
        if job is None:
            return
        if uploading:
            self._uploading.add(job.id)
        else:
            self._uploading.discard(job.id)
        members = await self.repo.list_batch(job.batch_id) if job.batch_id else [job]
        phase = card_phase(members, uploading=frozenset(self._uploading))
        if phase == Phase.QUEUED:
            members = [await self._with_queue_place(m) for m in members]
        try:
            await self.listener.job_updated(members[0], phase, members)
        except Exception:
            log.exception("listener failed on job %s", job.id)

    # -- creating and canceling ----------------------------------------------------------------

    async def create(self, request: JobRequest, origin: JobOrigin) -> list[Job]:
        """Validate and queue a request: one job, or ``count`` variations sharing a batch and a card.

        Raises InvalidRequestError before anything is stored. Jobs are submitted in the background.
        """
        return await self._admit(request, origin)

    async def precheck(self, request: JobRequest, origin: JobOrigin) -> None:
        """Every check :meth:`create` makes that needs no clip (who, where, paused, rules, prompt, quotas and
        budget), storing nothing: made before a person's file is downloaded and decoded, so a refusal costs
        neither. The clip counts as given; what depends on its length is checked when the job is created."""
        await self._admit(request, origin, clip_pending=True)

    async def _admit(self, request: JobRequest, origin: JobOrigin, *, clip_pending: bool = False) -> list[Job]:
        if not self._accepting:
            raise BotError("Encore is restarting and not taking new jobs right now. Please try again shortly.")
        validated = validate_request(request, self.settings, clip_pending=clip_pending)
        spec = validated.spec
        if Capability.STEMS in spec.capabilities and not request.files and not clip_pending:
            raise InvalidRequestError(f"{spec.display_name} needs a track to split.")
        route = spec.route(self.settings)
        available = route.provider in self.providers or (self.elevenlabs and route.provider == self.elevenlabs.name)
        if not available:
            raise BotError(f"{spec.display_name} isn't available on this bot right now.")
        if self.paused:
            raise BotError("Encore is paused by its operator for now. Please try again later.")
        if origin.guild_id is None and not self.settings.safety.allow_dms and origin.user_id != CLI_USER:
            raise NotAllowedError("Encore isn't available in direct messages here. Try it in a server channel.")
        rules = await self.guild_settings(origin.guild_id)
        _check_guild_rules(rules, origin, spec.key, validated.duration_s)
        check_texts(request_texts(validated, request.context), self.settings.safety, rules.blocked_words)
        limits = self.settings.limits.model_copy(
            update={
                key: value
                for key in ("user_daily_jobs", "guild_daily_jobs", "guild_daily_budget_usd")
                if (value := getattr(rules, key)) is not None
            }
        )
        seeds: list[int | None] = [validated.seed] * validated.count
        if spec.seed_key is not None and (spec.auto_seed or validated.seed is not None):
            # Explicit seeds, so every variation can be labelled and made again.
            first = validated.seed if validated.seed is not None else secrets.randbelow(SEED_MAX) + 1
            seeds = [(first - 1 + i) % SEED_MAX + 1 for i in range(validated.count)]
        batch_id = new_job_id() if validated.count > 1 else None
        cost_each = spec.estimate_cost_usd(validated) / validated.count
        async with self._admission:
            now = self.clock()
            usage = await self.repo.usage(user_id=origin.user_id, guild_id=origin.guild_id, since=day_start(now))
            check_usage(
                usage,
                limits,
                in_guild=origin.guild_id is not None,
                count=validated.count,
                audio_s=validated.duration_s * validated.count,
                cost_usd=cost_each * validated.count,
                now=now,
            )
            if clip_pending:
                return []
            new_jobs = []
            for index, seed in enumerate(seeds):
                variant = validated.with_seed(seed)
                new_jobs.append(
                    NewJob(
                        job_id=new_job_id(),
                        origin=origin if index == 0 else origin.model_copy(update={"interaction_id": None}),
                        provider=route.provider,
                        model=spec.key,
                        model_ref=route.ref,
                        request={**variant.as_record(), "context": dict(request.context)},
                        input=_plan_input(request.context, variant) or spec.build_input(variant),
                        batch=(batch_id, index, validated.count) if batch_id else None,
                        callback_token=COG_TOKEN_PREFIX + secrets.token_urlsafe(24),
                        input_files=request.files,
                        cost_usd=cost_each,
                    )
                )
            # One statement: a batch is stored whole or (storage refusing it) not at all.
            jobs = await self.repo.insert_many(new_jobs, now=now)
        for job in jobs:
            log.info("job %s queued: model=%s user=%s batch=%s", job.id, job.model, job.user_id, job.batch_id)
            self.scheduler.add(job.id, provider=job.provider, user_id=job.user_id)
            if self.scheduler.position(job.id) is not None:  # it has to wait: its card says where it is
                self._spawn(self._notify(job.id), name=f"queued:{job.id}")
        return jobs

    async def set_card(self, job_id: str, message_id: int) -> None:
        await self.repo.update_fields(job_id, when_status=list(JobStatus), card_message_id=message_id)

    async def card_final(self, jobs: Sequence[Job]) -> None:
        """The card of these finished jobs shows how they ended: the next start leaves it alone."""
        await self.repo.mark_card_final([job.id for job in jobs], now=self.clock())

    async def continue_track(
        self,
        source: ClipSource,
        origin: JobOrigin,
        *,
        prompt: str | None = None,
        extra_s: int = 10,
        model_version: str | None = None,
        parent: Job | None = None,
        source_message_id: int | None = None,
    ) -> Job:
        """Continue ``source`` by ``extra_s`` seconds with MusicGen; the result is the whole track, longer.

        The model continues from the last part of the track that fits its window; the rest is stitched
        back on when the output arrives. Raises InvalidRequestError for unusable audio or settings.

        ``parent`` is the job whose track ``source`` is (None: audio from elsewhere, which is part 1): the new
        job is its next part, on the same MusicGen version, and takes its prompt when none is given, unless
        the parent was made in another server or DM by someone else (its prompt stays there).
        """
        check_extend(extra_s)
        if parent is not None and model_version is None and parent.model == MUSICGEN.key:
            model_version = parent.input.get("model_version")
        inherited = (
            parent.prompt
            if parent is not None and (parent.guild_id == origin.guild_id or parent.user_id == origin.user_id)
            else ""
        )
        params: dict[str, Any] = {"continuation": True}
        if model_version:
            params["model_version"] = model_version
        prompt = prompt or inherited or "Continue this track in the same style"
        # The result is at least the added seconds long: checked before the clip is fetched and read.
        await self.precheck(JobRequest(model="musicgen", prompt=prompt, duration_s=extra_s, params=params), origin)
        source, info = await self._read_clip(source, origin)
        window = min(info.duration_s, MUSICGEN_WINDOW_S - extra_s)
        start = max(0.0, info.duration_s - window)
        clip = self.settings.storage.inputs_dir / f"{secrets.token_hex(8)}.wav"
        window = await self._input_pool.run("prepare", prepare_clip, source, clip, start_s=start)
        # MusicGen takes whole seconds; its output includes the clip, so the total is start + duration.
        duration = round(window + extra_s)
        context: dict[str, Any] = {
            "kind": "continuation",
            "part": (parent.part + 1) if parent else 2,
            "total_s": round(start + duration, 2),
            "extra_s": extra_s,
            "audio_s": window,
            "parent": parent.id if parent else None,
            "source_message": source_message_id,
        }
        if start > 0:
            context["stitch"] = {"source": str(source), "prefix_s": start}
        request = JobRequest(
            model="musicgen",
            prompt=prompt,
            duration_s=duration,
            params=params,
            files={"input_audio": str(clip)},
            audio_s=window,
            context=context,
        )
        try:
            [job] = await self.create(request, origin)
        except BaseException:
            await asyncio.to_thread(clip.unlink, missing_ok=True)
            raise
        return job

    async def track_of_message(self, message_id: int, *, channel_id: int, filename: str | None = None) -> Job | None:
        """The job whose track Encore delivered as message ``message_id`` in ``channel_id``, or whose card that is.

        A batch delivers its variations in one message: ``filename`` (the attachment taken from it) names
        the one meant; its card names none. Stems are not a track to continue. None: not one of Encore's
        tracks, or not one track.
        """
        jobs = [j for j in await self.repo.for_message(message_id, channel_id=channel_id) if not j.result.get("files")]
        named = [j for j in jobs if filename is not None and j.id in filename]
        if named:
            return named[0]
        return jobs[0] if len(jobs) == 1 and jobs[0].batch_size == 1 else None

    async def kept_track(self, job: Job) -> Path | None:
        """``job``'s whole track on our disk, to continue it from (None: no longer kept)."""
        if job.status not in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) or not job.output_path:
            raise JobStateError("That track isn't finished, so there is nothing to continue yet.")
        path = Path(job.output_path)
        return path if await asyncio.to_thread(path.is_file) else None

    async def follow_melody(
        self,
        source: ClipSource,
        origin: JobOrigin,
        *,
        prompt: str,
        duration_s: int | None = None,
        params: dict[str, Any] | None = None,
        seed: int | None = None,
        source_message_id: int | None = None,
    ) -> list[Job]:
        """MusicGen following the melody of ``source``: decoded, trimmed to the model's window, resampled."""
        request = JobRequest(
            model="musicgen",
            prompt=prompt,
            duration_s=duration_s,
            seed=seed,
            params={"model_version": "stereo-melody-large", **(params or {})},
        )
        await self.precheck(request, origin)
        source, info = await self._read_clip(source, origin)
        clip = self.settings.storage.inputs_dir / f"{secrets.token_hex(8)}.wav"
        end = min(info.duration_s, MUSICGEN_WINDOW_S)
        length = await self._input_pool.run("prepare", prepare_clip, source, clip, end_s=end)
        # With ``continuation`` the output begins with the clip: it is the clip's part 2.
        context = {
            "kind": "melody",
            "audio_s": length,
            "source_message": source_message_id,
            "part": 2 if (params or {}).get("continuation") else 1,
        }
        request = request.model_copy(
            update={"files": {"input_audio": str(clip)}, "audio_s": length, "context": context}
        )
        try:
            return await self.create(request, origin)
        except BaseException:
            await asyncio.to_thread(clip.unlink, missing_ok=True)
            raise

    async def regenerate(
        self, job_id: str, origin: JobOrigin, actor: Actor, *, count: int = 1, same_seed: bool = False
    ) -> list[Job]:
        """The same request again with new seeds (``count`` variations), or the same seed (a retry).

        It keeps the job's lineage: a part of a chain made again is another take of that part (same parent).
        """
        action = Action.RETRY if same_seed else Action.VARY if count > 1 else Action.REGENERATE
        job = await self.job_for(job_id, actor, action)
        context = {**job.context, "regenerated": True, "regenerated_from": job.id}
        request = JobRequest(
            model=job.model,
            prompt=job.prompt,
            duration_s=job.duration_s if get_model(job.model).fixed_duration_s is None else None,
            params=dict(job.request.get("params") or {}),
            count=count,
            seed=job.request.get("seed") if same_seed else None,
            files=dict(job.input_files),
            audio_s=context.get("audio_s"),
            context=context,
        )
        return await self.create(request, origin)

    async def full_track(self, job_id: str, actor: Actor) -> Job:
        """The newest finished part of ``job_id``'s chain: each continuation holds everything before it.

        Only parts ``actor`` may see count: a continuation made in another server stays there.
        """
        job = await self.job_for(job_id, actor, Action.FULL)
        while True:
            finished = [
                c
                for c in await self.repo.children(job.id)
                if c.status == JobStatus.DELIVERED and c.output_path and await allowed(c, actor, Action.FULL)
            ]
            if not finished:
                break
            job = finished[-1]
        if job.status != JobStatus.DELIVERED or not job.output_path:
            raise JobStateError("That track isn't finished yet.")
        return job

    async def check_text(self, texts: Iterable[tuple[str, str]], guild_id: int | None) -> None:
        """Refuse blocked words and patterns in ``texts`` ((what, text) pairs) under the config's and the
        server's rules. :meth:`create` checks every text of a request; this is for the other ways in."""
        rules = await self.guild_settings(guild_id)
        check_texts(texts, self.settings.safety, rules.blocked_words)

    async def guild_settings(self, guild_id: int | None) -> GuildSettings:
        if guild_id is None or self.guilds is None:
            return GuildSettings()
        return await self.guilds.get(guild_id)

    async def save_guild_settings(self, guild_id: int, settings: GuildSettings, *, by: int) -> None:
        if self.guilds is None:
            raise BotError("Server settings aren't available on this bot.")
        await self.guilds.save(guild_id, settings, by=by)

    async def jobs_of(self, user_id: int, *, active_only: bool = False, limit: int = 25) -> list[Job]:
        """A person's newest jobs (only unfinished ones with ``active_only``)."""
        return await self.repo.list_for_user(user_id, active_only=active_only, limit=limit)

    async def history(self, user_id: int, *, page: int, per_page: int) -> tuple[list[Job], int]:
        """One page of a person's jobs, newest first, and how many they have in all."""
        return await self.repo.page_for_user(user_id, page=page, per_page=per_page)

    async def set_plan_message(self, plan_id: str, message_id: int) -> None:
        """Remember which message shows a plan's card."""
        if self.plans is not None:
            await self.plans.set_message(plan_id, message_id)

    async def default_model(self, guild_id: int | None) -> str:
        return (await self.guild_settings(guild_id)).default_model or "musicgen"

    async def usage(self, user_id: int, guild_id: int | None) -> Usage:
        return await self.repo.usage(user_id=user_id, guild_id=guild_id, since=day_start(self.clock()))

    async def card(self, job_id: str) -> tuple[Job, Phase, list[Job]]:
        """What the card of ``job_id`` shows: its first job, its phase, and every job on it."""
        job = await self.get(job_id)
        members = await self.repo.list_batch(job.batch_id) if job.batch_id else [job]
        phase = card_phase(members, uploading=frozenset(self._uploading))
        if phase == Phase.QUEUED:
            members = [await self._with_queue_place(m) for m in members]
        return members[0], phase, members

    async def get(self, job_id: str) -> Job:
        job = await self.repo.get(job_id)
        if job is None:
            raise JobNotFoundError()
        return job

    async def job_for(self, job_id: str, actor: Actor, action: Action) -> Job:
        """The job, if ``actor`` may do ``action`` to it (see ``bot.jobs.access``); else NotAllowedError."""
        job = await self.get(job_id)
        await authorize(job, actor, action)
        return job

    async def cancel(self, job_id: str, actor: Actor) -> Job:
        """Cancel a job (every unfinished variation of its batch) for its requester or a moderator.

        The provider's predictions are canceled too. Returns the job as it is afterwards.
        """
        job = await self.job_for(job_id, actor, Action.CANCEL)
        user_id = actor.user_id
        members = await self.repo.list_batch(job.batch_id) if job.batch_id else [job]
        reason = "Canceled by a moderator." if job.user_id != user_id else "Canceled by the requester."
        canceled = []
        for member in members:
            if member.status.is_terminal or member.status == JobStatus.SUCCEEDED:
                continue
            if await self.repo.transition(member.id, JobStatus.CANCELED, error=reason, now=self.clock()):
                canceled.append(member)
        if not canceled:
            job = await self.get(job_id)
            raise JobStateError(f"That job is already {self._describe_status(job.status)}.")
        log.info("job %s canceled by %s (%d job(s))", job.id, user_id, len(canceled))
        for member in canceled:
            await self._count_outcome(member.id, "canceled")
        for member in canceled:
            self.poller.unschedule(member.id)
            call = self._calls.pop(member.id, None)
            if call is not None:
                call.cancel()  # aborts the provider's request
            # Read it again: a submission may have been recorded between our read and our move.
            current = await self.repo.get(member.id)
            if current is not None and current.prediction_id and current.provider in self.providers:
                await self._cancel_upstream(current.provider, current.prediction_id)
        await self._notify(job.id)
        if job.batch_id:
            self._kick_delivery(job)  # variations that did finish are still delivered
        return await self.get(job_id)

    @staticmethod
    def _describe_status(status: JobStatus) -> str:
        return {
            JobStatus.SUCCEEDED: "finished and being posted",
            JobStatus.DELIVERED: "finished",
            JobStatus.FAILED: "over (it failed)",
            JobStatus.CANCELED: "canceled",
        }.get(status, status.value)

    async def _cancel_upstream(self, provider_name: str, prediction_id: str) -> None:
        try:
            await self.providers[provider_name].cancel(prediction_id)
        except (ProviderError, KeyError) as exc:
            log.warning("could not cancel prediction %s: %s", prediction_id, exc)

    async def _fail(self, job_id: str, reason: str, *, detail: str | None = None) -> bool:
        won = await self.repo.transition(job_id, JobStatus.FAILED, error=reason, now=self.clock())
        if won:
            log.info("job %s failed: %s", job_id, detail or reason)
            self._storage_waits.pop(job_id, None)
            await self._count_outcome(job_id, "failed")
            self.poller.unschedule(job_id)
            self._uploading.discard(job_id)
            await self._notify(job_id)
            job = await self.repo.get(job_id)
            if job is not None and job.batch_id:
                self._kick_delivery(job)  # the other variations may all be done now
        return won

    # -- submitting ----------------------------------------------------------------------------

    async def _submit(self, job_id: str, *, delay_s: float = 0.0) -> None:
        """Submit a queued job. Whatever goes wrong, the job ends with a reason: nobody waits forever."""
        try:
            await self._submit_once(job_id, delay_s=delay_s)
        except StorageError as exc:
            if await self._wait_for_storage(job_id, exc):
                await self._pick_up(job_id)
        except Exception:
            log.exception("job %s: submission crashed", job_id)
            await self._fail(job_id, "Something went wrong on my side while starting this job. Please try again.")

    async def _submit_once(self, job_id: str, *, delay_s: float) -> None:
        if delay_s and not await self._nap(delay_s):
            return
        job = await self.repo.get(job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return
        if registry.spec(job.provider).protocol is ProviderProtocol.CALL:
            await (self._run_stems(job) if job.model == "stems" else self._run_song(job))
            return
        provider = self.providers[job.provider]
        if self.clock() - job.created_at > self.settings.jobs.timeout_s:
            await self._fail(job.id, "The music service couldn't take the job in time. Please try again.")
            return
        # A job that already tried may have reached the provider (a lost answer, a crash): look first,
        # and never create again unless the provider's own list shows the earlier try made nothing.
        if job.attempts > 0:
            since = datetime.fromtimestamp(job.created_at, UTC) - timedelta(minutes=2)
            try:
                found = await provider.find_submitted(job.model_ref, job.input, created_after=since)
            except ProviderError as exc:
                log.warning("job %s: can't check for an earlier submission yet: %s", job.id, exc)
                self._spawn(self._submit(job.id, delay_s=self._retry_delay(job.attempts)), name=f"submit:{job.id}")
                return
            if found is not None:
                await self._record_submission(job, found)
                return
            if job.attempts >= _MAX_SUBMIT_ATTEMPTS:
                await self._fail(job.id, SubmissionUncertainError.default_message + " Please try again.")
                return
        if job.attempts == 0 and job.input_files:
            resolved = await self._resolve_files(job, provider)
            if resolved is None:
                return
            job = resolved
        if not await self.repo.update_fields(job.id, when_status=[JobStatus.QUEUED], attempts=job.attempts + 1):
            return  # canceled meanwhile
        job = job.model_copy(update={"attempts": job.attempts + 1})
        try:
            prediction = await provider.submit(
                job.model_ref, job.input, webhook_url=self._webhook_for(job), prediction_id=f"{job.id}-{job.attempts}"
            )
        except CogBusyError as exc:
            # Nothing was created: the job keeps its place and its attempts, and asks again later.
            log.info("job %s: %s; waiting", job.id, exc)
            await self.repo.update_fields(job.id, when_status=[JobStatus.QUEUED], attempts=job.attempts - 1)
            self._spawn(self._submit(job.id, delay_s=self.settings.cog.retry_s), name=f"submit:{job.id}")
            return
        except SubmissionUncertainError as exc:
            # The create may still be in flight: give it time to land before looking for it.
            log.warning("job %s: create uncertain (%s); checking the provider shortly", job.id, exc)
            self._spawn(self._submit(job.id, delay_s=self._retry_delay(1)), name=f"submit:{job.id}")
            return
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        await self._record_submission(job, prediction)

    async def _resolve_files(self, job: Job, provider: PredictionProvider) -> Job | None:
        """Hand the job's input files to the provider and store the references in its input."""
        data = dict(job.input)
        try:
            for key, path in job.input_files.items():
                data[key] = await provider.upload(Path(path))
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return None
        except OSError as exc:
            await self._fail(job.id, "Your audio file went missing before it could be sent.", detail=str(exc))
            return None
        if not await self.repo.set_input(job.id, data):
            return None  # canceled meanwhile
        return job.model_copy(update={"input": data})

    async def _begin_call(self, job: Job) -> CallProvider | None:
        """Start a synchronous ElevenLabs call for ``job``: submitted now, owned by this task (cancel aborts it)."""
        client = self.elevenlabs
        if client is None:
            await self._fail(job.id, "ElevenLabs isn't set up on this bot.")
            return None
        if not await self.repo.transition(
            job.id, JobStatus.SUBMITTED, prediction_id=f"{job.id}-{job.attempts + 1}", attempts=job.attempts + 1
        ):
            return None
        await self._notify(job.id)
        task = asyncio.current_task()
        assert task is not None
        self._calls[job.id] = task
        return client

    async def _run_song(self, job: Job) -> None:
        """An ElevenLabs song: one long call, owned by this task (cancel aborts it), progress as bytes arrive."""
        client = await self._begin_call(job)
        if client is None:
            return
        settings = self.settings.elevenlabs
        body = {key: value for key, value in job.input.items() if key != "output_format"}
        output_format = str(job.input.get("output_format", settings.output_format))
        body["model_id"] = settings.model_id
        if "composition_plan" in body and settings.model_id == "music_v1":
            body["respect_sections_durations"] = True  # later models always keep them

        async def progress(received: int) -> None:
            try:
                await self.repo.transition(job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED])
                await self.repo.update_fields(
                    job.id,
                    when_status=[JobStatus.RUNNING],
                    result_json=json.dumps({"received_bytes": received}),
                )
            except StorageError as exc:  # only the card's progress: the song goes on
                log.warning("job %s: progress not recorded: %s", job.id, exc)
                return
            await self._notify(job.id)

        try:
            if "seed" in body and "prompt" in body:
                body = await self._song_from_plan(client, body)
            song = await client.compose(
                body,
                self.outputs_dir / f"{job.id}{song_suffix(output_format)}",
                output_format=output_format,
                length_s=job.duration_s or 0.0,
                on_bytes=progress,
            )
        except PromptRefusedError as exc:
            await self.repo.update_fields(
                job.id,
                when_status=[JobStatus.SUBMITTED, JobStatus.RUNNING],
                result_json=json.dumps({"suggestion": exc.suggestion}),
            )
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        finally:
            self._calls.pop(job.id, None)
        try:
            audio = await self._verified(DownloadedFile(song.path, song.size, song.content_type), OutputKind.AUDIO)
        except OutputRejectedError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        result = {"metadata": song.metadata, "plan": song.plan, "song_id": song.song_id}
        won = await self._record(
            partial(
                self.repo.transition,
                job.id,
                JobStatus.SUCCEEDED,
                now=self.clock(),
                output_path=str(audio.path),
                output_size=audio.size,
                output_content_type=audio.content_type,
                seed=job.input.get("seed"),
                cost_usd=self._actual_cost(job, None),
                result_json=json.dumps(result),
            )
        )
        if won:
            log.info("job %s song stored (%d bytes)", job.id, audio.size)
            await self._count_outcome(job.id, "succeeded")
            self._kick_delivery(job)

    async def _run_stems(self, job: Job) -> None:
        """ElevenLabs stem separation: one call returning a ZIP of stems, unpacked next to the outputs."""
        client = await self._begin_call(job)
        if client is None:
            return
        try:
            archive = await client.separate_stems(
                Path(job.input_files["file"]),
                variation=STEM_VARIATIONS.get(str(job.input.get("stems")), "six_stems_v1"),
                output_format=self.settings.elevenlabs.stems_output_format,
            )
            files = await asyncio.to_thread(
                unpack_stems, archive, self.outputs_dir / f"{job.id}-stems", self.settings.storage.max_output_bytes
            )
            for name, path in files.items():
                stem = DownloadedFile(path, 0, "")
                files[name] = (await self._verified(stem, OutputKind.AUDIO)).path
        except (ProviderError, OutputRejectedError) as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        except StemsError as exc:
            await self._fail(job.id, "The stems came back damaged. Please try again.", detail=str(exc))
            return
        finally:
            self._calls.pop(job.id, None)
        await self._stems_done(job, files)

    async def _with_queue_place(self, job: Job) -> Job:
        """The job with its place in the queue and an estimate of the wait, for the card."""
        place = self.scheduler.position(job.id)
        if place is None:
            return job
        typical = await self.repo.typical_run_s(job.model)
        capacity = self.scheduler.capacity(job.provider) or 1
        eta = round(place * typical / capacity) if typical else None
        return job.model_copy(update={"result": {**job.result, "queue_position": place, "eta_s": eta}})

    async def _count_outcome(self, job_id: str, outcome: str) -> None:
        """A job stopped using its provider (succeeded, failed or canceled): count it, free its slot."""
        self.scheduler.released(job_id)
        job = await self.repo.get(job_id)
        if job is not None:
            metrics.record_job_finished(job.model, outcome, self.clock() - job.created_at)

    def _start_submit(self, job_id: str) -> None:
        self._spawn(self._submit(job_id), name=f"submit:{job_id}")

    def _queue_moved(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._spawn(self._notify(job_id), name=f"moved:{job_id}")

    async def _stems_done(self, job: Job, files: dict[str, Path], *, predict_time_s: float | None = None) -> None:
        first = next(iter(files.values()))
        total = await asyncio.to_thread(lambda: sum(path.stat().st_size for path in files.values()))
        won = await self._record(
            partial(
                self.repo.transition,
                job.id,
                JobStatus.SUCCEEDED,
                now=self.clock(),
                output_path=str(first),
                output_size=total,
                output_content_type=guess_content_type(first.name),
                cost_usd=self._actual_cost(job, predict_time_s),
                predict_time_s=predict_time_s,
                result_json=json.dumps({"files": [{"name": n, "path": str(p)} for n, p in files.items()]}),
            )
        )
        if won:
            self.poller.unschedule(job.id)
            self._uploading.discard(job.id)
            log.info("job %s: %d stems stored", job.id, len(files))
            await self._count_outcome(job.id, "succeeded")
            self._kick_delivery(job)

    async def split_stems(
        self,
        source: ClipSource,
        origin: JobOrigin,
        *,
        stems: str = "six",
        name: str = "your track",
        parent: Job | None = None,
        source_message_id: int | None = None,
    ) -> Job:
        """Split ``source`` into stems with the configured provider ([stems] provider)."""
        if stems not in STEM_VARIATIONS:
            raise InvalidRequestError("`stems` must be two or six.")
        context = {"kind": "stems", "parent": parent.id if parent else None, "source_message": source_message_id}
        prompt = f"Stems of {name}"[:200]
        if self.settings.stems.provider == "elevenlabs":
            request = JobRequest(model="stems", prompt=prompt, params={"stems": stems}, context=context)
            key = "file"
        else:
            model = "htdemucs_6s" if stems == "six" else "htdemucs"
            request = JobRequest(model="demucs", prompt=prompt, params={"model": model}, context=context)
            key = "audio"
        await self.precheck(request, origin)
        source, info = await self._read_clip(source, origin)
        request = request.model_copy(update={"files": {key: str(source)}, "audio_s": info.duration_s})
        [job] = await self.create(request, origin)
        return job

    async def _read_clip(self, source: ClipSource, origin: JobOrigin) -> tuple[Path, AudioInfo]:
        """The clip's file and what is in it: a person's file is downloaded now (every other check has
        passed) and read one at a time per person; decoding stops at ``[audio] max_input_s``, in threads
        of its own."""
        max_s = self.settings.audio.max_input_s
        if isinstance(source, Path):
            return source, await probe(source, max_s=max_s, pool=self._input_pool)
        if origin.user_id in self._reading:
            raise LimitError("I'm still reading your last file. Please wait until it's done, then try again.")
        self._reading.add(origin.user_id)
        try:
            path = await source()
            return path, await probe(path, max_s=max_s, pool=self._input_pool)
        finally:
            self._reading.discard(origin.user_id)

    # -- composition plans --------------------------------------------------------------------

    def _plans(self) -> tuple[CallProvider, PlansRepo]:
        if self.elevenlabs is None or self.plans is None:
            raise BotError("ElevenLabs isn't set up on this bot, so there are no composition plans.")
        return self.elevenlabs, self.plans

    async def make_plan(self, prompt: str, origin: JobOrigin, *, length_s: int | None = None) -> PlanRecord:
        """A composition plan for ``prompt`` (free at ElevenLabs), stored so it can be edited and composed."""
        client, repo = self._plans()
        text = clean_prompt(prompt, max_chars=SONG.max_prompt_chars or 4100)
        if length_s is not None:
            check_duration(SONG, self.settings, length_s, name="length")
        await self.check_text([("prompt", text)], origin.guild_id)
        model_id = self.settings.elevenlabs.model_id
        plan = await client.plan(text, model_id=model_id, length_ms=length_s * 1000 if length_s else None)
        return await repo.insert(
            plan_id=new_job_id(),
            user_id=origin.user_id,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            model_id=model_id,
            prompt=text,
            plan=plan,
        )

    async def plan_from_job(self, job_id: str, origin: JobOrigin, actor: Actor) -> PlanRecord:
        """The plan a finished song was made from, as a new plan to change and compose again."""
        _, repo = self._plans()
        job = await self.job_for(job_id, actor, Action.PLAN)
        plan = job.context.get("composition_plan") or job.result.get("plan")
        if not isinstance(plan, dict):
            raise JobStateError("That song has no composition plan to start from.")
        return await repo.insert(
            plan_id=new_job_id(),
            user_id=origin.user_id,
            guild_id=origin.guild_id,
            channel_id=origin.channel_id,
            model_id=self.settings.elevenlabs.model_id,
            prompt=job.prompt,
            plan=plan,
        )

    async def get_plan(self, plan_id: str) -> PlanRecord:
        _, repo = self._plans()
        record = await repo.get(plan_id)
        if record is None:
            raise BotError("I can't find that plan any more.")
        return record

    async def change_plan(
        self, plan_id: str, user_id: int, change: Callable[[dict[str, Any]], dict[str, Any]]
    ) -> PlanRecord:
        """Apply ``change`` to a plan for its owner; a conditional update, so concurrent edits can't be lost."""
        _, repo = self._plans()
        record = await self.get_plan(plan_id)
        if record.user_id != user_id:
            raise NotAllowedError("Only the person who made this plan can change it.")
        plan = change(record.plan)
        before = set(plan_texts(record.plan))
        await self.check_text([text for text in plan_texts(plan) if text not in before], record.guild_id)
        if not await repo.update_plan(plan_id, plan, expected_updated_at=record.updated_at):
            raise JobStateError("Someone changed this plan at the same moment. Please try again.")
        return await self.get_plan(plan_id)

    async def compose_plan(self, plan_id: str, origin: JobOrigin, *, seed: int | None = None) -> Job:
        record = await self.get_plan(plan_id)
        if record.user_id != origin.user_id:
            raise NotAllowedError("Only the person who made this plan can compose it.")
        total_s = round(plan_total_ms(record.plan) / 1000)
        low, high = duration_range(SONG, self.settings)
        if not low <= total_s <= high:
            raise InvalidRequestError(
                f"This plan lasts {total_s} seconds; songs here are {low} to {high} seconds. "
                "Shorten or remove a section, or add one."
            )
        request = JobRequest(
            model="song",
            prompt=record.prompt,
            duration_s=total_s,
            seed=seed,
            context={"kind": "plan", "plan_id": record.id, "composition_plan": record.plan},
        )
        [job] = await self.create(request, origin)
        return job

    async def _song_from_plan(self, client: CallProvider, body: dict[str, Any]) -> dict[str, Any]:
        """ElevenLabs takes a seed only with a composition plan: plan the prompt first (free), then compose it."""
        plan = await client.plan(
            str(body["prompt"]), model_id=str(body["model_id"]), length_ms=body.get("music_length_ms")
        )
        if body.get("force_instrumental"):
            plan = plan_instrumental(plan)
        return {
            "composition_plan": plan,
            "model_id": body["model_id"],
            "seed": body["seed"],
            **({"respect_sections_durations": True} if body["model_id"] == "music_v1" else {}),
        }

    def _actual_cost(self, job: Job, predict_time_s: float | None) -> float:
        """What a finished job cost (see :func:`run_cost_usd`); the estimate if the provider gave no figure."""
        cost = run_cost_usd(job, predict_time_s, self.settings.limits)
        return job.cost_usd if cost is None else cost

    def _webhook_for(self, job: Job) -> str | None:
        if registry.spec(job.provider).webhook is WebhookRoute.PER_JOB:
            if self.cog_webhook_base is None or job.callback_token is None:
                return None
            return f"{self.cog_webhook_base}/{job.id}/{job.callback_token}"
        return self.webhook_url

    def _schedule_poll(self, job: Job) -> None:
        grace = self.providers[job.provider].poll_grace_s
        self.poller.schedule(job.id, due=None if grace is None else self.clock() + grace)

    def _retry_delay(self, attempt: int) -> float:
        return min(self.settings.jobs.retry_s * 2 ** max(0, attempt - 1), 300.0)

    async def _record_submission(self, job: Job, prediction: Prediction) -> None:
        won = await self.repo.transition(job.id, JobStatus.SUBMITTED, prediction_id=prediction.id, now=self.clock())
        if not won:  # canceled while the create was in flight: don't leave it running upstream
            await self._cancel_upstream(job.provider, prediction.id)
            return
        log.info("job %s submitted as prediction %s", job.id, prediction.id)
        await self._notify(job.id)
        self._schedule_poll(job)
        if prediction.status != PredictionStatus.STARTING:
            await self.handle_prediction(prediction)

    # -- progress from webhooks and polls ------------------------------------------------------

    async def handle_prediction(self, prediction: Prediction) -> None:
        """Apply a provider's report (webhook or poll). Safe to call any number of times, in any order."""
        job = await self.repo.get_by_prediction(prediction.id)
        if job is None:
            log.debug("ignoring unknown prediction %s", prediction.id)
            return
        await self._apply(job, prediction)

    async def accept_webhook(self, webhook_id: str, prediction: Prediction) -> bool:
        """Handle a verified webhook once per ``webhook-id``. False for a redelivery (dropped)."""
        if not await self.repo.remember_webhook(webhook_id, now=self.clock()):
            log.debug("dropping redelivered webhook %s", webhook_id)
            return False
        try:
            await self.handle_prediction(prediction)
        except BaseException:
            # Not handled: forget the id so the provider's retry is processed.
            await asyncio.shield(self.repo.forget_webhook(webhook_id))
            raise
        return True

    async def accept_cog_webhook(self, job_id: str, token: str, prediction: Prediction) -> bool:
        """A Cog webhook for ``job_id``: True if the path's token is the job's (else it is refused)."""
        job = await self.repo.get(job_id)
        if job is None or job.callback_token is None or not same_secret(token, job.callback_token):
            return False
        if registry.spec(job.provider).webhook is WebhookRoute.PER_JOB and prediction.id == job.prediction_id:
            await self._apply(job, prediction)
        else:
            log.debug("job %s: ignoring a webhook for prediction %s", job.id, prediction.id)
        return True

    async def expects_upload(self, prediction_id: str) -> bool:
        """Whether an active Cog job is waiting for this prediction's files."""
        job = await self.repo.get_by_prediction(prediction_id)
        return (
            job is not None
            and registry.spec(job.provider).webhook is WebhookRoute.PER_JOB
            and job.status.is_active_at_provider
        )

    async def _apply(self, job: Job, prediction: Prediction) -> None:
        with job_context(job.id):
            await self._apply_bound(job, prediction)

    async def _apply_bound(self, job: Job, prediction: Prediction) -> None:
        if not job.status.is_active_at_provider:
            return  # finished, or already being fetched and delivered
        status = prediction.status
        if status == PredictionStatus.PROCESSING:
            # Only a job read as submitted can move: every poll of a running job would otherwise take the write lock.
            if job.status == JobStatus.SUBMITTED and await self.repo.transition(
                job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED], now=self.clock()
            ):
                await self._notify(job.id)
        elif status == PredictionStatus.SUCCEEDED:
            self._start_pipeline(job.id, self._fetch_output(job.id, prediction))
        elif status in (PredictionStatus.FAILED, PredictionStatus.ABORTED):
            await self._fail(job.id, _friendly_failure(prediction), detail=f"provider: {prediction.error!r}")
        elif status == PredictionStatus.CANCELED and await self.repo.transition(
            job.id, JobStatus.CANCELED, error="The job was canceled at the music service.", now=self.clock()
        ):
            await self._count_outcome(job.id, "canceled")
            self.poller.unschedule(job.id)
            await self._notify(job.id)

    async def poll(self, job_id: str) -> bool:
        """Poll one job's prediction. Returns True while the job still needs polling."""
        with job_context(job_id):
            return await self._poll(job_id)

    async def _poll(self, job_id: str) -> bool:
        job = await self.repo.get(job_id)
        if job is None or not job.status.is_active_at_provider or job.prediction_id is None:
            return False
        if self.clock() - job.created_at > self.settings.jobs.timeout_s:
            if await self._fail(job.id, "The job took too long and was stopped. Please try again."):
                await self._cancel_upstream(job.provider, job.prediction_id)
            return False
        try:
            prediction = await self.providers[job.provider].get(job.prediction_id)
        except PredictionLostError:
            # An idle server that never reported the job: believe it on the second look in a row.
            if job.id not in self._lost_once:
                self._lost_once.add(job.id)
                return True
            self._lost_once.discard(job.id)
            if job.attempts <= _MAX_RESUBMITS:
                log.warning("job %s: the server lost prediction %s; running it again", job.id, job.prediction_id)
                await self._resubmit(job)
                return False
            await self._fail(job.id, "The self-hosted model server lost this job twice. Please try again.")
            return False
        except ProviderNotFoundError:
            await self._fail(job.id, "The music service lost track of this job. Please try again.")
            return False
        except ProviderError as exc:
            log.warning("job %s: poll failed: %s", job.id, exc)
            if isinstance(exc, ProviderRateLimitError) and exc.retry_after_s:
                self.poller.back_off(job.id, exc.retry_after_s)  # still throttled when the client gave up
            return True
        self._lost_once.discard(job.id)
        await self._apply(job, prediction)
        return not prediction.status.is_terminal

    # -- output and delivery -------------------------------------------------------------------

    async def _fetch_output(self, job_id: str, prediction: Prediction) -> None:
        """Download (and stitch) a finished output, then deliver. Any crash ends the job with a reason."""
        try:
            await self._fetch_output_once(job_id, prediction)
        except StorageError as exc:  # the output is fetched again (the provider keeps it for a while)
            if await self._wait_for_storage(job_id, exc):
                await self._pick_up(job_id)
        except Exception:
            log.exception("job %s: fetching the output crashed", job_id)
            await self._fail(job_id, "Something went wrong on my side while fetching the audio. Please try again.")

    async def _fetch_output_once(self, job_id: str, prediction: Prediction) -> None:
        job = await self.repo.get(job_id)
        if job is None or not job.status.is_active_at_provider:
            return
        await self._notify(job.id, uploading=True)
        if prediction.output is None and prediction.data_removed:
            if job.attempts <= _MAX_RESUBMITS:
                log.warning("job %s: output of %s expired; running it again", job.id, job.prediction_id)
                await self._resubmit(job)
            else:
                await self._fail(job.id, "The model's output expired before I could fetch it. Please try again.")
            return
        try:
            outputs = get_model(job.model).read_output(prediction.output)
        except (ValueError, BotError):
            await self._fail(job.id, "The model finished but returned no audio. Please try again.")
            return
        provider = self.providers[job.provider]
        if outputs.files:
            files: dict[str, Path] = {}
            for name, url in outputs.files.items():
                safe = "".join(c for c in name if c.isalnum() or c in "_-")[:40] or "stem"
                got = await self._download(job, provider, url, f"{job.id}-{safe}")
                if got is None:
                    return
                files[safe] = got.path
            metrics = prediction.metrics
            await self._stems_done(job, files, predict_time_s=metrics.predict_time if metrics else None)
            return
        stored = await self._download(job, provider, outputs.audio, job.id)
        if stored is None:
            return
        image_path = None
        if outputs.image is not None:
            image = await self._download(job, provider, outputs.image, f"{job.id}-image", OutputKind.IMAGE)
            if image is None:
                return
            image_path = str(image.path)
        stitch_plan = job.context.get("stitch")
        if stitch_plan:
            stitched = await self._stitch(job, stored, stitch_plan)
            if stitched is None:
                return
            stored = stitched
        metrics = prediction.metrics
        won = await self.repo.transition(
            job.id,
            JobStatus.SUCCEEDED,
            now=self.clock(),
            output_path=str(stored.path),
            output_size=stored.size,
            output_content_type=stored.content_type,
            seed=_seed_from(prediction, job),
            cost_usd=self._actual_cost(job, metrics.predict_time if metrics else None),
            predict_time_s=metrics.predict_time if metrics else None,
            total_time_s=metrics.total_time if metrics else None,
            image_path=image_path,
        )
        if not won:  # canceled while downloading: the files are nobody's
            for path in (stored.path, Path(image_path) if image_path else None):
                if path is not None:
                    with contextlib.suppress(FileNotFoundError):
                        await asyncio.to_thread(path.unlink)
            return
        self.poller.unschedule(job.id)
        log.info("job %s output stored (%d bytes)", job.id, stored.size)
        await self._count_outcome(job.id, "succeeded")
        self._uploading.discard(job.id)
        self._kick_delivery(job)

    async def _stitch(self, job: Job, stored: DownloadedFile, plan: dict[str, Any]) -> DownloadedFile | None:
        """Put back the part of the source the model never saw, so the result is the whole track."""
        dest = self.outputs_dir / f"{job.id}-full.wav"
        try:
            await off_loop("stitch", stitch, Path(plan["source"]), float(plan["prefix_s"]), stored.path, dest)
            size = (await asyncio.to_thread(dest.stat)).st_size
        except (OSError, ValueError, KeyError, av.error.FFmpegError) as exc:
            await self._fail(job.id, "I couldn't join the continuation onto your track.", detail=str(exc))
            return None
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(stored.path.unlink)
        return DownloadedFile(path=dest, size=size, content_type="audio/wav")

    async def _download(
        self, job: Job, provider: PredictionProvider, url: str, stem: str, kind: OutputKind = OutputKind.AUDIO
    ) -> DownloadedFile | None:
        """Fetch one output file into the outputs directory, retrying network trouble, and make sure it is
        ``kind`` (named for what it really is); None if it failed (the job has failed)."""
        # A neutral name until the file is known: the URL's extension must not steer FFmpeg's guess.
        dest = self.outputs_dir / f"{stem}.download"
        attempt = 0
        while True:
            try:
                async with self._transfers:
                    got = await provider.download(url, dest, max_bytes=self.settings.storage.max_output_bytes)
                return await self._verified(got, kind)
            except OutputError as exc:
                attempt += 1
                if not exc.retryable or attempt >= _OUTPUT_ATTEMPTS:
                    await self._fail(job.id, exc.user_message, detail=str(exc))
                    return None
                log.warning("job %s: output download failed (%s), attempt %d", job.id, exc, attempt)
                if not await self._nap(self._retry_delay(attempt)):
                    return None  # stopping: the next start downloads it again

    async def _verified(self, got: DownloadedFile, kind: OutputKind) -> DownloadedFile:
        """``got`` renamed after what it really is; OutputRejectedError (and the file gone) if it isn't ``kind``."""
        try:
            found = await verify_output(got.path, kind)
        except OutputRejectedError:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(got.path.unlink)
            raise
        path = got.path.with_suffix(found.extension)
        await asyncio.to_thread(got.path.replace, path)
        return DownloadedFile(path=path, size=got.size, content_type=found.content_type)

    async def _resubmit(self, job: Job) -> None:
        """Run a job's prediction again (its output expired, or the server lost it), under a new id."""
        try:
            prediction = await self.providers[job.provider].submit(
                job.model_ref,
                job.input,
                webhook_url=self._webhook_for(job),
                prediction_id=f"{job.id}-{job.attempts + 1}",
            )
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        if await self.repo.replace_prediction(job.id, old=job.prediction_id, new=prediction.id):
            self._schedule_poll(job)
        else:
            await self._cancel_upstream(job.provider, prediction.id)

    def _kick_delivery(self, job: Job) -> None:
        """Deliver the job's card unit (the job, or its batch once every variation is done) soon.

        One delivery loop per unit at a time; news that arrives while it runs makes it look again.
        """
        key = f"deliver:{job.card_key}"
        self._dirty.add(key)
        running = self._pipelines.get(key)
        if running is None or running.done():
            self._start_pipeline(key, self._delivery_loop(key, job.id))

    async def _delivery_loop(self, key: str, job_id: str) -> None:
        while key in self._dirty:
            self._dirty.discard(key)
            try:
                await self._deliver(job_id)
            except StorageError as exc:
                if await self._wait_for_storage(job_id, exc):
                    self._dirty.add(key)  # look again

    async def _deliver(self, job_id: str) -> None:
        jobs = self.settings.jobs
        while True:
            job = await self.repo.get(job_id)
            if job is None:
                return
            members = await self.repo.list_batch(job.batch_id) if job.batch_id else [job]
            if any(m.status in (JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING) for m in members):
                return  # variations still running: the last one to finish delivers them all
            ready = [m for m in members if m.status == JobStatus.SUCCEEDED]
            if not ready:
                return
            lead = ready[0]
            attempt = await self.repo.count_delivery_attempt(lead.id)
            if attempt == 0:
                return
            try:
                async with self._transfers:
                    message_id = await self.listener.deliver(ready)
            except DeliveryError as exc:
                if not exc.retryable or attempt >= jobs.delivery_attempts:
                    for member in ready:
                        await self._fail(member.id, exc.user_message, detail=str(exc))
                    return
                log.warning("job %s: delivery attempt %d failed: %s", lead.id, attempt, exc)
            except Exception:
                if attempt >= jobs.delivery_attempts:
                    log.exception("job %s: delivery failed for good", lead.id)
                    for member in ready:
                        await self._fail(member.id, DeliveryError.default_message)
                    return
                log.exception("job %s: delivery attempt %d crashed", lead.id, attempt)
            else:
                for member in ready:
                    await self._record(
                        partial(
                            self.repo.transition,
                            member.id,
                            JobStatus.DELIVERED,
                            delivery_message_id=message_id,
                            now=self.clock(),
                        )
                    )
                    self._storage_waits.pop(member.id, None)
                log.info("job %s delivered (%d file(s))", lead.id, len(ready))
                await self._notify(lead.id)
                return
            if not await self._nap(self._retry_delay(attempt)):
                return  # stopping: the next start delivers it from the stored file
