"""The job service: the engine's front door, which the cogs, the CLI and the web server call.

It wires the engine's rooms together and passes each call to the one that does it. Every new job goes
through the gate (``bot.jobs.gate``); see ``docs/ARCHITECTURE.md`` for the job's way through the rooms.
The service knows nothing of Discord: it reports through a :class:`~bot.jobs.phase.JobListener`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import aiohttp

from bot.audio.download import fetch_to_file
from bot.config import Settings
from bot.errors import BotError, JobNotFoundError
from bot.guild_settings import GuildSettings
from bot.jobs.access import Action, Actor, authorize
from bot.jobs.leases import CLI_HOLDER, new_holder
from bot.jobs.limits import day_start
from bot.jobs.loops import LoopClaim, Loops, Posted
from bot.jobs.phase import JobListener, Phase
from bot.jobs.rooms import build_rooms
from bot.jobs.tickets import Ticket
from bot.providers.plugins import Providers
from bot.records import Job, JobOrigin, JobRequest, JobStatus, Pause
from bot.storage.guild_repo import GuildRepo
from bot.storage.instances_repo import InstancesRepo
from bot.storage.jobs_repo import JobsRepo, Usage
from bot.storage.leases_repo import LeasesRepo
from bot.storage.loops_repo import LoopsRepo
from bot.storage.notify import LocalNotifier, Notifier
from bot.storage.plans_repo import PlansRepo
from bot.storage.prefs_repo import PreferencesRepo
from bot.storage.queue_repo import QueueRepo
from bot.storage.state_repo import StateRepo


class JobService:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: Providers,
        settings: Settings,
        listener: JobListener,
        signed_webhooks: Mapping[str, str] | None = None,
        plans: PlansRepo | None = None,
        guilds: GuildRepo | None = None,
        preferences: PreferencesRepo | None = None,
        state: StateRepo | None = None,
        attachments: aiohttp.ClientSession | None = None,
        loops: LoopsRepo | None = None,
        queue: QueueRepo,
        instances: InstancesRepo,
        leases: LeasesRepo,
        holder: str | None = None,
        notifier: Notifier | None = None,
        sole_process: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``queue`` and ``instances``: the scheduler's queue and the processes sharing the database; ``leases``:
        who does what to a job among those processes, this one's named ``holder``; ``notifier``: notices between
        them (default: this process only); ``sole_process``: no other bot process shares the database (SQLite),
        so the leases left by a previous run are void at startup."""
        self.repo = repo
        self._providers = providers
        self._attachments = attachments  # people's files, from Discord's CDN
        self._guilds = guilds
        self.settings = settings
        self.clock = clock
        self._rooms = rooms = build_rooms(
            repo=repo,
            providers=providers,
            settings=lambda: self.settings,
            listener=listener,
            signed_webhooks=signed_webhooks or {},
            plans=plans,
            guilds=guilds,
            preferences=preferences,
            state=state,
            queue=queue,
            instances=instances,
            clock=clock,
            job_for=self.job_for,
            leases_repo=leases,
            holder=holder or new_holder(),
            notifier=notifier or LocalNotifier(holder or ""),
        )
        self._leases_repo = leases
        self._sole_process = sole_process
        self.scheduler, self.poller, self.gate = rooms.scheduler, rooms.poller, rooms.gate
        # The rooms' own methods that callers use as they are.
        self.continue_track = rooms.recipes.continue_track
        self.follow_melody = rooms.recipes.follow_melody
        self.split_stems = rooms.recipes.split_stems
        self.compose_plan = rooms.plans.compose
        self.make_plan = rooms.plans.make
        self.plan_from_job = rooms.plans.from_job
        self.get_plan = rooms.plans.get
        self.set_plan_message = rooms.plans.set_message
        self.change_plan = rooms.plans.change
        self.track_of_message = rooms.lineage.track_of_message
        self.kept_track = rooms.lineage.kept_track
        self.check_text = rooms.gate.check_text
        self.guild_settings = rooms.gate.rules_for
        # A person's own defaults (/music prefer), filled in before the gate where a command left them out.
        self.preferences = rooms.defaults.of
        self.save_preferences = rooms.defaults.save
        self.clear_preferences = rooms.defaults.clear
        self.fill_defaults = rooms.defaults.fill
        # Progress from providers: webhooks (the web server) and polls.
        self.handle_prediction = rooms.intake.handle_prediction
        self.accept_webhook = rooms.intake.accept_webhook
        self.accept_job_webhook = rooms.intake.accept_job_webhook
        self.expects_upload = rooms.intake.expects_upload
        self.poll = rooms.intake.poll
        # Loops of delivered tracks: made here, not jobs (see bot/jobs/loops.py).
        self._loops = Loops(loops, rooms.pool, lambda: self.settings, clock)
        self.make_loop = self._loops.make
        self.loop_posted = self._loops.posted
        self.release_loop = self._loops.release
        self.loops_posted_in = self._loops.posted_in
        self.forget_loop = self._loops.forget

    # -- lifecycle ----------------------------------------------------------------------------------

    @property
    def outputs_dir(self) -> Path:
        return self.settings.storage.outputs_dir

    @property
    def pause(self) -> Pause | None:
        """Set by the bot's operator: no new jobs until resumed."""
        return self._rooms.pause.current

    @property
    def paused(self) -> bool:
        return self._rooms.pause.paused

    def apply_settings(self, settings: Settings) -> None:
        """Use ``settings`` from now on (``/encore reload``): limits, safety and job rules for new requests,
        the scheduler's caps for jobs waiting their turn, the poller's intervals for jobs being polled."""
        self.settings = settings
        self.scheduler.set_capacities(self._providers.registry.capacity_caps(settings))
        self.poller.configure(settings.jobs)

    async def pause_jobs(self, *, by: int) -> Pause:
        """Refuse new jobs until :meth:`resume_jobs` (kept across restarts); pausing again keeps the first."""
        return await self._rooms.pause.pause(by=by)

    async def resume_jobs(self) -> Pause | None:
        """Take new jobs again; returns the pause that ended (None: there was none)."""
        return await self._rooms.pause.resume()

    @property
    def holder(self) -> str:
        """What names this process's leases (``bot.jobs.leases``)."""
        return self._rooms.leases.holder

    async def start(self, *, resume: bool = True) -> None:
        """Resume every unfinished job (unless ``resume`` is false: then this process starts only the jobs it
        admits itself, as a terminal run sharing the bot's database does, and takes over none of another
        process's), then start polling and keeping this process's leases."""
        await asyncio.to_thread(self.outputs_dir.mkdir, parents=True, exist_ok=True)
        await self._rooms.pause.load()
        if resume and self._sole_process:
            # The only bot on this database: every lease but a CLI run's is its previous run's (a crash).
            await self._leases_repo.clear_except(CLI_HOLDER)
        self._rooms.tasks.open()
        await self.scheduler.start(any_job=resume)
        if resume:
            await self._rooms.reconcile.resume_all()
        self.poller.start()
        self._rooms.cards.start()
        self._rooms.leases.start(self._rooms.reconcile.adopt_orphans if resume else None)

    async def adopt_orphans(self) -> int:
        """Take over now the work no live lease covers (a stopped process's jobs); the lease keeper does this every
        third of ``[jobs] lease_s``. Returns how many jobs it took up."""
        return await self._rooms.reconcile.adopt_orphans()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop taking jobs, give downloads and deliveries in flight ``grace_s`` to finish, cancel the rest.

        Whatever is left resumes at the next start; recorded outcomes are never cut off half-written.
        """
        self._rooms.tasks.begin_stop()
        await self.scheduler.stop()
        await self._rooms.leases.halt()
        await self.poller.stop()
        await self._rooms.cards.stop()
        await self._rooms.tasks.stop(grace_s=grace_s)
        await self.scheduler.leave()  # the turns of jobs it was starting go back to the queue
        await self._rooms.leases.stop()  # given up: another process takes the jobs left over at once
        self._rooms.pool.close()

    # -- new jobs: every one through the gate ---------------------------------------------------------

    async def create(self, request: JobRequest, origin: JobOrigin) -> list[Job]:
        """Queue a request: one job, or ``count`` variations sharing a batch and a card."""
        return await self.gate.admit(Ticket(origin, request))

    async def regenerate(
        self, job_id: str, origin: JobOrigin, actor: Actor, *, count: int = 1, same_seed: bool = False
    ) -> list[Job]:
        """The same request again with new seeds (``count`` variations), or the same seed (a retry)."""
        return await self._rooms.recipes.regenerate(
            await self.get(job_id), origin, actor, count=count, same_seed=same_seed
        )

    # -- jobs and their cards -----------------------------------------------------------------------

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
        """Cancel a job (every unfinished variation of its batch) for its requester or a moderator; the
        provider's predictions are canceled too. Returns the job as it is afterwards."""
        await self._rooms.canceller.cancel(await self.job_for(job_id, actor, Action.CANCEL), by=actor.user_id)
        return await self.get(job_id)

    async def card(self, job_id: str) -> tuple[Job, Phase, list[Job]]:
        """What the card of ``job_id`` shows: its first job, its phase, and every job on it."""
        return await self._rooms.cards.show(await self.get(job_id))

    async def card_moved_on(self, members: Sequence[Job]) -> bool:
        """Whether a job of a card is in another state in the database than ``members`` show (moved elsewhere)."""
        return await self.repo.moved_on(members)

    async def set_card(self, job_id: str, message_id: int) -> None:
        await self.repo.update_fields(job_id, when_status=list(JobStatus), card_message_id=message_id)

    async def card_final(self, jobs: Sequence[Job]) -> None:
        """The card of these finished jobs shows how they ended: the next start leaves it alone."""
        await self.repo.mark_card_final([job.id for job in jobs], now=self.clock())

    async def full_track(self, job_id: str, actor: Actor) -> Job:
        """The newest finished part of ``job_id``'s chain that ``actor`` may see."""
        return await self._rooms.lineage.full_track(await self.job_for(job_id, actor, Action.FULL), actor)

    async def claim_loop(
        self,
        job_id: str,
        actor: Actor,
        *,
        bars: int,
        channel_id: int,
        guild_id: int | None,
        delivery: bool = False,
    ) -> LoopClaim | Posted:
        """Take the making of a loop of ``job_id``'s track for ``channel_id`` (``actor`` must be allowed to:
        ``Action.LOOP``), or learn where it was posted. ``delivery``: the job's own ``loop`` option, delivered
        with it (no rights or hourly limit to check)."""
        return await self._loops.claim(
            await self.get(job_id), actor, bars=bars, channel_id=channel_id, guild_id=guild_id, checked=delivery
        )

    # -- rules and usage ------------------------------------------------------------------------------

    async def save_guild_settings(self, guild_id: int, settings: GuildSettings, *, by: int) -> None:
        if self._guilds is None:
            raise BotError.keyed("refusals.settings_unavailable")
        await self._guilds.save(guild_id, settings, by=by)

    async def jobs_of(self, user_id: int, *, active_only: bool = False, limit: int = 25) -> list[Job]:
        """A person's newest jobs (only unfinished ones with ``active_only``)."""
        return await self.repo.list_for_user(user_id, active_only=active_only, limit=limit)

    async def history(self, user_id: int, *, page: int, per_page: int) -> tuple[list[Job], int]:
        """One page of a person's jobs, newest first, and how many they have in all."""
        return await self.repo.page_for_user(user_id, page=page, per_page=per_page)

    async def download_input(self, url: str, dest: Path) -> None:
        """Fetch a person's file (already checked: Discord's CDN only) to ``dest``: no redirect followed, cut
        off while streaming past ``[audio] max_input_bytes``. Raises TooLargeError or OutputError."""
        if self._attachments is None:
            raise BotError.keyed("refusals.files_unavailable")
        audio = self.settings.audio
        await fetch_to_file(
            self._attachments, url, dest, max_bytes=audio.max_input_bytes, timeout_s=audio.download_timeout_s
        )

    async def usage(self, user_id: int, guild_id: int | None) -> Usage:
        return await self.repo.usage(user_id=user_id, guild_id=guild_id, since=day_start(self.clock()))
