"""The engine's rooms, built in their dependency order and wired together.

Each room gets the rooms below it; a call that goes up (the poller asking intake, outcomes handing a job to
delivery, outputs asking submit to run a prediction again, submit and outputs asking reconcile to pick a job
up) is a callback, bound here. The order, lowest first::

    tasks, leases, scheduler, poller, cards (phase) -> outcomes -> dispatch -> outputs -> calls -> submit
    -> intake -> reconcile, cancel -> gate -> recipes, plans (and a person's defaults, filled in before the gate)

Who polls a job is the poller's business only through its ``poll`` callback: it polls a job only while this
process holds the job's poll lease (``bot.jobs.leases``), and a lease another process took unschedules it here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from bot.audio import AudioPool
from bot.catalog import SONG
from bot.config import Settings
from bot.jobs.calls import Calls
from bot.jobs.cancel import Canceller
from bot.jobs.defaults import Defaults
from bot.jobs.dispatch import Dispatch
from bot.jobs.gate import Gate
from bot.jobs.intake import Intake
from bot.jobs.leases import Kind, Leases
from bot.jobs.lineage import Lineage
from bot.jobs.outcomes import Outcomes
from bot.jobs.outputs import Outputs
from bot.jobs.pause import PauseSwitch
from bot.jobs.phase import CardFeed, JobListener
from bot.jobs.plans_service import JobFor, PlanBook
from bot.jobs.poller import Poller
from bot.jobs.progress import Forecast
from bot.jobs.recipes import Recipes
from bot.jobs.reconcile import Reconcile
from bot.jobs.scheduler import Scheduler
from bot.jobs.submit import Submitter
from bot.jobs.tasks import Tasks
from bot.providers.base import Prediction
from bot.providers.plugins import Providers
from bot.records import Job
from bot.storage.guild_repo import GuildRepo
from bot.storage.instances_repo import InstancesRepo
from bot.storage.jobs_repo import JobsRepo
from bot.storage.leases_repo import LeasesRepo
from bot.storage.notify import Notifier
from bot.storage.plans_repo import PlansRepo
from bot.storage.prefs_repo import PreferencesRepo
from bot.storage.queue_repo import QueueRepo
from bot.storage.state_repo import StateRepo

# Downloads and uploads in progress at once: each holds up to a few MB (a batch of the file in memory, a
# file being posted), so a thousand jobs finishing together must queue, not all go at once.
_PARALLEL_TRANSFERS = 8

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Rooms:
    tasks: Tasks
    leases: Leases
    scheduler: Scheduler
    poller: Poller
    cards: CardFeed
    outcomes: Outcomes
    dispatch: Dispatch
    outputs: Outputs
    calls: Calls
    submitter: Submitter
    intake: Intake
    reconcile: Reconcile
    canceller: Canceller
    pause: PauseSwitch
    pool: AudioPool
    gate: Gate
    defaults: Defaults
    recipes: Recipes
    lineage: Lineage
    plans: PlanBook


def build_rooms(
    *,
    repo: JobsRepo,
    providers: Providers,
    settings: Callable[[], Settings],
    listener: JobListener,
    signed_webhooks: Mapping[str, str],
    plans: PlansRepo | None,
    guilds: GuildRepo | None,
    preferences: PreferencesRepo | None,
    state: StateRepo | None,
    queue: QueueRepo,
    instances: InstancesRepo,
    clock: Callable[[], float],
    job_for: JobFor,
    leases_repo: LeasesRepo,
    holder: str,
    notifier: Notifier,
) -> Rooms:
    """Every room of the engine, wired. ``providers``: the providers built for this run, and their declarations;
    ``settings()`` is the settings in use (``/encore reload`` changes it); ``signed_webhooks``: the URL of each
    provider whose signed webhooks can be checked, by name; ``job_for(job_id, actor, action)`` is the job if the
    actor may do that to it; ``queue`` and ``instances``: the scheduler's queue and the processes sharing the
    database; ``holder`` names this process's leases; ``notifier`` carries notices between processes (a pause,
    for one)."""
    first = settings()
    registry = providers.registry

    def retry_delay(attempt: int) -> float:
        return min(settings().jobs.retry_s * 2 ** max(0, attempt - 1), 300.0)

    # Upward calls, bound to rooms built further down.
    def start_job(job_id: str) -> None:
        submitter.start(job_id)

    def queue_moved(job_ids: list[str]) -> None:
        for job_id in job_ids:
            tasks.spawn(cards.notify(job_id), name=f"moved:{job_id}")

    def deliver(job: Job) -> None:
        dispatch.kick(job)

    async def poll(job_id: str) -> bool:
        # Only the holder of the job's poll lease polls it; another process's lease ends the job's polls here.
        if not await leases.hold(Kind.POLL, job_id):
            log.debug("job %s is polled by another process", job_id)
            return False
        again = await intake.poll(job_id)
        if not again:
            leases.forget(Kind.POLL, job_id)
        return again

    async def on_prediction(prediction: Prediction) -> None:
        await intake.handle_prediction(prediction)

    async def resubmit(job: Job) -> None:
        await submitter.resubmit(job)

    async def pick_up(job_id: str) -> None:
        await reconcile.pick_up(job_id)

    tasks = Tasks(retry_delay=retry_delay)
    leases = Leases(leases_repo, holder=holder, lease_s=lambda: settings().jobs.lease_s, clock=clock, notifier=notifier)
    scheduler = Scheduler(
        queue,
        instances,
        registry.capacity_caps(first),
        start_job,
        settings=lambda: settings().jobs,
        clock=clock,
        on_moved=queue_moved,
        instance=holder,  # the process's one name: its turns, its leases
    )
    poller = Poller(poll, first.jobs, webhooks_on=bool(signed_webhooks), clock=clock)
    leases.track(Kind.POLL, uses=lambda job_id: job_id in poller, on_lost=poller.unschedule)
    forecast = Forecast()  # how far along each running job is, and when it should end
    cards = CardFeed(repo, listener, scheduler, forecast=forecast, clock=clock)
    outcomes = Outcomes(
        repo=repo, cards=cards, scheduler=scheduler, poller=poller, tasks=tasks, clock=clock, on_ended=deliver
    )
    transfers = asyncio.Semaphore(_PARALLEL_TRANSFERS)
    dispatch = Dispatch(
        repo=repo,
        listener=listener,
        cards=cards,
        tasks=tasks,
        transfers=transfers,
        settings=settings,
        clock=clock,
        outcomes=outcomes,
        leases=leases,
    )
    outputs = Outputs(
        repo=repo,
        providers=providers,
        cards=cards,
        outcomes=outcomes,
        tasks=tasks,
        transfers=transfers,
        settings=settings,
        clock=clock,
        resubmit=resubmit,
        pick_up=pick_up,
        leases=leases,
    )
    calls = Calls(
        clients=providers.calls(),
        titles=lambda name: registry.spec(name).title,
        repo=repo,
        cards=cards,
        outcomes=outcomes,
        outputs=outputs,
        settings=settings,
        leases=leases,
    )
    submitter = Submitter(
        repo=repo,
        providers=providers,
        calls=calls,
        cards=cards,
        outcomes=outcomes,
        poller=poller,
        tasks=tasks,
        settings=settings,
        clock=clock,
        public_url=str(first.webhooks.public_url) if first.webhooks.public_url else None,
        signed_webhooks=signed_webhooks,
        on_prediction=on_prediction,
        pick_up=pick_up,
        leases=leases,
        instance=scheduler.instance,
    )
    intake = Intake(
        repo=repo,
        providers=providers,
        cards=cards,
        outcomes=outcomes,
        outputs=outputs,
        submitter=submitter,
        poller=poller,
        tasks=tasks,
        settings=settings,
        clock=clock,
        forecast=forecast,
    )
    reconcile = Reconcile(
        repo=repo,
        registry=registry,
        scheduler=scheduler,
        poller=poller,
        cards=cards,
        outcomes=outcomes,
        dispatch=dispatch,
        submitter=submitter,
        tasks=tasks,
        clock=clock,
        leases=leases,
        polled=frozenset(providers),
    )
    canceller = Canceller(
        repo=repo,
        predictions=frozenset(providers.predictions()),
        cards=cards,
        outcomes=outcomes,
        poller=poller,
        calls=calls,
        submitter=submitter,
        dispatch=dispatch,
        clock=clock,
    )
    pause = PauseSwitch(state, clock, notifier)
    songs = SONG.route(first).provider  # composition plans are made where songs are
    # People's files are decoded in threads of their own, one file at a time per person.
    pool = AudioPool(first.audio.decode_threads)
    gate = Gate(
        repo=repo,
        guilds=guilds,
        pause=pause,
        available=frozenset(providers),
        scheduler=scheduler,
        cards=cards,
        tasks=tasks,
        pool=pool,
        settings=settings,
        clock=clock,
    )
    return Rooms(
        tasks=tasks,
        leases=leases,
        scheduler=scheduler,
        poller=poller,
        cards=cards,
        outcomes=outcomes,
        dispatch=dispatch,
        outputs=outputs,
        calls=calls,
        submitter=submitter,
        intake=intake,
        reconcile=reconcile,
        canceller=canceller,
        pause=pause,
        pool=pool,
        gate=gate,
        defaults=Defaults(
            repo=preferences,
            rules=gate.rules_for,
            settings=settings,
            configured_format=lambda spec: providers.output_format(spec.route(settings()).provider),
            clock=clock,
        ),
        recipes=Recipes(gate=gate, pool=pool, settings=settings),
        lineage=Lineage(repo),
        plans=PlanBook(
            client=providers.planner(songs),
            title=registry.spec(songs).title,
            repo=plans,
            gate=gate,
            job_for=job_for,
            settings=settings,
        ),
    )
