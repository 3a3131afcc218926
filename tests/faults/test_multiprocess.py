"""Issue 14: three Encore processes on one PostgreSQL share the work, and losing one loses nothing.

Three real processes (``python -m bot run``, through ``tests/faults/_cluster.py``) hold the simulator's six
gateway shards two each, share one PostgreSQL database and one data directory, and in webhook mode take
Replicate's webhooks through a round-robin load balancer that skips dead processes. 300 ``/music generate``
commands come from 40 people in 60 servers (ten servers per shard), each to the process holding its server's
shard, only while that process is up, at most ``WINDOW`` groups waiting for their prediction at once.

Quotas bind: ``user_daily_jobs`` and ``guild_daily_jobs`` are low enough that ten people and a dozen busy servers
run into them. The ten heavy users send their commands three at once, one to a server of each process, so two
processes admit the same person's requests at the same moment, right at their limit. The provider runs at most
``CAP`` jobs at once, counted across the processes. The fake model runs each prediction for a seeded time
(``RUN_S``); a few fail on purpose.

``test_one_process_killed_at_a_random_moment_loses_and_duplicates_nothing``: in webhook mode and in poll mode, one
process (chosen by the seed) is killed with SIGKILL after the k-th event of a phase (chosen by the seed: a create at
Replicate, a card or an audio message Discord took and the bot never heard back about, a webhook, a poll, an
output download) and started again. ``test_a_rolling_restart_completes_every_job``: each process in turn gets
SIGTERM, exits, and starts again, while commands keep coming and jobs run.

Afterwards every job must have ended delivered exactly once (one audio message) or failed with a reason on its
card; none lost, none posted twice, none created twice at Replicate; no person and no server over its quota; never
more than ``CAP`` predictions running at once. ``ENCORE_MULTIPROC_SEED`` picks another seed (printed, and in every
failure message). Waits are on events (the fakes' hooks, the simulator's journals, the bots' log lines); the one
timer is the fake model's run time.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import NO_LIMITS
from tests.e2e.conftest import card_status, job_id_of
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.handles import InteractionHandle
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, MessageEvent
from tests.fakes.discord.sharding import guild_id_on_shard
from tests.fakes.replicate import FakeReplicate
from tests.faults._cluster import Cluster
from tests.faults._outcomes import TERMINAL, Asked, answer, audio_messages, is_audio, job_ended, prompt_index
from tests.faults._process import BotProcess, Progress, Tripwire, crashed, step
from tests.faults.conftest import Reliability
from tests.postgres import PostgresServer

pytestmark = [pytest.mark.multiprocess]

SEED = int(os.environ.get("ENCORE_MULTIPROC_SEED", "14"))  # the number, unless asked for another
PROCESSES, SHARDS, SERVERS = 3, 6, 60
USER_QUOTA, GUILD_QUOTA = 8, 6  # [limits] user_daily_jobs, guild_daily_jobs
CAP = 8  # [limits] replicate_jobs_in_flight: across every process
HEAVY, HEAVY_BURSTS = 10, 4  # people who send 12 commands, three at once (one to each process)
LIGHT, LIGHT_COMMANDS = 30, 6  # people who send 6, one at a time
BUSY_SERVERS, BUSY_WEIGHT = 12, 3  # servers that get three times the commands: over their quota
FAILING = 10  # light commands whose prediction fails at the model on purpose
RUN_S = (0.3, 1.5)  # how long the fake model runs a prediction
WINDOW = 12  # groups of commands waiting for their prediction at once
STEP_TIMEOUT_S = 180.0  # any one wait; generous for a loaded 2-core machine
MODEL_ERROR = "fake: CUDA out of memory"
USER_QUOTA_TEXT = f"of your {USER_QUOTA} tracks today"
GUILD_QUOTA_TEXT = f"This server has made its {GUILD_QUOTA} tracks for today"
INLINE_COUNTERS = frozenset({"card", "audio"})  # killed from inside the simulator, before it answers


# -- the plan: who sends what where, the same on every run of a seed -----------------------------------------


@dataclass(frozen=True)
class Planned:
    index: int
    user: str
    server: int  # index into SERVER_IDS


def server_id(index: int) -> int:
    """Server ``index`` is on shard ``index % SHARDS``: ten servers a shard."""
    return guild_id_on_shard(index % SHARDS, SHARDS, index)


SERVER_IDS = [server_id(i) for i in range(SERVERS)]
USERS = [f"heavy{i:02d}" for i in range(HEAVY)] + [f"light{i:02d}" for i in range(LIGHT)]
USER_IDS = {name: 3_000_000_000_000_000 + i for i, name in enumerate(USERS)}


def process_of_server(index: int) -> int:
    return (index % SHARDS) * PROCESSES // SHARDS


def make_plan(seed: int) -> list[list[Planned]]:
    """Groups of commands, in the order they are sent; a group's commands are sent at the same moment."""
    rng = random.Random(f"plan-{seed}")
    busy = set(rng.sample(range(SERVERS), BUSY_SERVERS))
    weights = [BUSY_WEIGHT if i in busy else 1 for i in range(SERVERS)]
    on_process = [[i for i in range(SERVERS) if process_of_server(i) == p] for p in range(PROCESSES)]
    groups: list[list[tuple[str, int]]] = []
    for user in USERS[:HEAVY]:  # three at once, one in a server of each process
        groups += [
            [(user, rng.choices(servers, [weights[i] for i in servers])[0]) for servers in on_process]
            for _ in range(HEAVY_BURSTS)
        ]
    for user in USERS[HEAVY:]:
        groups += [[(user, rng.choices(range(SERVERS), weights)[0])] for _ in range(LIGHT_COMMANDS)]
    # A heavy user's groups are alike: whichever comes third meets the limit (6 made, 3 asked at once, 2 left).
    rng.shuffle(groups)
    plan: list[list[Planned]] = []
    index = 0
    for group in groups:
        plan.append([Planned(index + n, user, server) for n, (user, server) in enumerate(group)])
        index += len(group)
    return plan


PLAN = make_plan(SEED)
COMMANDS = [command for group in PLAN for command in group]
FAILING_INDEXES = frozenset(
    random.Random(f"failing-{SEED}").sample([c.index for c in COMMANDS if c.user.startswith("light")], FAILING)
)


def guild_configs() -> list[GuildConfig]:
    members: dict[int, set[str]] = defaultdict(set)
    for command in COMMANDS:
        members[command.server].add(command.user)
    return [
        GuildConfig(
            name=f"Server {i}",
            id=SERVER_IDS[i],
            channels=[ChannelConfig("general")],
            members=[MemberConfig(name, id=USER_IDS[name]) for name in sorted(members[i])] or [MemberConfig("nobody")],
        )
        for i in range(SERVERS)
    ]


# -- the run ------------------------------------------------------------------------------------------------


@dataclass
class Sent:
    planned: Planned
    handle: InteractionHandle
    node: int  # the process it went to
    incarnation: int  # that process's incarnation when it was sent


@dataclass(frozen=True)
class KillPoint:
    victim: int
    counter: str
    k: int
    phase: str


def kill_point(mode: str, seed: int) -> KillPoint:
    """One kill, chosen by the seed: which process, after which event, and how many of them."""
    rng = random.Random(f"kill-{mode}-{seed}")
    victim = rng.randrange(PROCESSES)
    completions = ("webhook", (20, 120), "completion webhooks arriving through the balancer")
    if mode == "polling":
        completions = ("poll", (100, 600), "status polls")
    phases = [
        ("create", (20, 140), "predictions being created"),
        (f"card:{victim}", (10, 40), "Discord took its card, the process never heard back"),
        ("audio", (20, 120), "Discord took an audio message, the process never heard back"),
        ("download", (20, 120), "outputs downloading"),
        completions,
    ]
    counter, (low, high), phase = rng.choice(phases)
    return KillPoint(victim, counter, rng.randint(low, high), phase)


class Deployment:
    """Three processes, the people sending commands, the fake model, and what every counter saw."""

    def __init__(
        self,
        sim: DiscordSimulator,
        fake: FakeReplicate,
        tmp_path: Path,
        database_url: str,
        *,
        mode: str,
        limits: dict[str, Any],
        failing: frozenset[int],
    ) -> None:
        self.sim = sim
        self.fake = fake
        self.mode = mode
        self.failing = failing
        self.quotas = bool(limits.get("user_daily_jobs") or limits.get("guild_daily_jobs"))
        self.progress = Progress()
        jobs = {"poll_initial_s": 0.1, "poll_max_s": 0.5, "webhook_grace_s": 5.0, "retry_s": 0.05}
        self.cluster = Cluster(
            sim,
            fake,
            tmp_path,
            database_url,
            processes=PROCESSES,
            shard_count=SHARDS,
            webhooks=mode == "webhooks",
            progress=self.progress,
            sections={"jobs": jobs, "limits": {**NO_LIMITS, "replicate_jobs_in_flight": CAP, **limits}},
        )
        self.sent: list[Sent] = []
        self.by_interaction: dict[int, Sent] = {}
        self.runs: dict[int, list[str]] = defaultdict(list)  # command index -> its predictions, in order
        self.created: set[int] = set()
        self.events: list[str] = []  # what was done to the processes, with when
        self.started_at = 0.0
        self._tasks: list[asyncio.Task[Any]] = []
        self.tripwire = Tripwire(self.progress)  # kills from inside the simulator
        self._cards: set[int] = set()
        self._shown: dict[int, list[str]] = defaultdict(list)  # card -> each status it showed, in order
        sim.state.listeners.append(self._on_message)

    @property
    def nodes(self) -> list[BotProcess]:
        return self.cluster.nodes

    def note(self, what: str) -> None:
        line = f"{time.monotonic() - self.started_at:6.1f} s  {what}"
        self.events.append(line)
        print(line, flush=True)

    # -- counters from the fakes' hooks and the simulator's listener ------------------------------------------

    def _spawn(self, coro: Any, name: str) -> None:
        self._tasks.append(asyncio.create_task(coro, name=name))

    async def _count_requests(self) -> None:
        position = 0
        while True:
            request = await self.fake.request_at(position, timeout=3600)
            position += 1
            if request.method == "GET" and request.path.startswith("/v1/predictions/"):
                self.progress.bump("poll")
            elif request.method == "GET" and request.path.startswith("/delivery/"):
                self.progress.bump("download")

    async def _count_webhooks(self) -> None:
        while True:
            delivery = await self.fake.next_webhook_delivery(timeout=3600)
            if delivery.event == "completed" and delivery.status_code == 200:
                self.progress.bump("webhook")

    async def _on_message(self, event: MessageEvent) -> None:
        """The simulator's listener, called while it handles the bot's request, before it answers."""
        message = event.message
        if event.kind in ("create", "edit") and message.embeds:
            footer = message.embeds[0].get("footer", {}).get("text", "")
            self._shown[message.id].append(f"{card_status(message).split(' · ')[0]} ({footer})")
        if event.kind == "create" and any(is_audio(a.filename) for a in message.attachments):
            self.progress.bump("audio")
        elif (
            event.kind in ("create", "edit")
            and message.interaction_id is not None
            and message.embeds
            and message.id not in self._cards
            and message.guild_id is not None
        ):
            self._cards.add(message.id)  # a job card, first shown: the process that got the command posts it
            self.progress.bump("card")
            self.progress.bump(f"card:{self.cluster.node_of(message.guild_id)}")
        self.tripwire.check()

    # -- the fake model: runs each prediction for a while, then succeeds (or fails on purpose) ------------------

    async def _operate(self) -> None:
        while True:
            try:
                pid = await self.fake.wait_for_prediction(timeout=3600)
            except TimeoutError:
                continue
            prediction = self.fake.prediction(pid)
            index = prompt_index(prediction.input["prompt"])
            self.runs[index].append(pid)
            self.created.add(index)
            if prediction.status == "starting":
                await self.fake.begin(pid)
            self.progress.bump("create")
            run_s = random.Random(f"run-{SEED}-{pid}").uniform(*RUN_S)
            self._spawn(self._run(pid, index, run_s), f"model:{pid}")

    async def _run(self, pid: str, index: int, run_s: float) -> None:
        await asyncio.sleep(run_s)  # the model at work: the provider's time, not a wait for the bot
        if self.fake.prediction(pid).status != "processing":
            return  # canceled by the bot meanwhile
        if index in self.failing:
            await self.fake.fail(pid, MODEL_ERROR)
        else:
            await self.fake.succeed(pid)
        self.progress.bump("finished")

    # -- the people ----------------------------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _holding(self, nodes: list[BotProcess]) -> AsyncIterator[None]:
        """While every one of ``nodes`` is up, and none can be killed or stopped until the block ends."""
        while True:
            for node in nodes:
                await node.up.wait()
            async with contextlib.AsyncExitStack() as stack:
                for node in nodes:  # always in the same order: no two senders can deadlock
                    await stack.enter_async_context(node.issuing)
                if all(node.up.is_set() for node in nodes):
                    yield
                    return

    async def send(self, plan: list[list[Planned]]) -> None:
        """Every group of the plan, in order, ``WINDOW`` waiting for their predictions at most."""
        window = asyncio.Semaphore(WINDOW)
        settling: list[asyncio.Task[None]] = []
        for group in plan:
            await window.acquire()
            targets = sorted({self.cluster.node_of(SERVER_IDS[c.server]) for c in group})
            async with self._holding([self.nodes[n] for n in targets]):
                handles = await asyncio.gather(*(self._slash(c) for c in group))
            sent = [
                Sent(c, h, n := self.cluster.node_of(SERVER_IDS[c.server]), self.nodes[n].incarnation)
                for c, h in zip(group, handles, strict=True)
            ]
            for item in sent:
                self.sent.append(item)
                self.by_interaction[item.handle.id] = item
            task = asyncio.create_task(self._settle(sent))
            task.add_done_callback(lambda _: window.release())
            settling.append(task)
        await asyncio.gather(*settling)

    async def _slash(self, planned: Planned) -> InteractionHandle:
        user = self.sim.user(planned.user, guild_id=SERVER_IDS[planned.server])
        return await user.slash(
            "music generate", prompt=f"mp #{planned.index:03d} lofi for {planned.user}", duration=1 + planned.index % 2
        )

    async def _settle(self, group: list[Sent]) -> None:
        """Until each command's prediction exists, or its answer says it ended, or its process died."""

        def settled(item: Sent) -> bool:
            reply = answer(item.handle)
            ended = reply is not None and (
                not reply.embeds or any(word in card_status(reply) for word in ("Failed", "Canceled"))
            )
            died = self.nodes[item.node].deaths[item.incarnation].is_set()
            return item.planned.index in self.created or ended or died

        await self.progress.until(lambda: all(settled(item) for item in group))

    # -- driving ---------------------------------------------------------------------------------------------------

    def step(self, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        async def describe() -> str:
            counts = dict(sorted(self.progress.counts.items()))
            lines = [*crashed(self._tasks), *(await self.unfinished())[:20]]
            return (
                f"seed {SEED}\ncounters: {counts}\nevents: {self.events}\n"
                + "\n".join(lines)
                + f"\n{self.cluster.tails()}"
            )

        return step(what, timeout_s=STEP_TIMEOUT_S, describe=describe)

    async def start(self) -> None:
        self.started_at = time.monotonic()
        self._spawn(self._count_requests(), "count:requests")
        self._spawn(self._count_webhooks(), "count:webhooks")
        self._spawn(self._operate(), "operator")
        async with self.step("the first start of every process"):
            await self.cluster.start()
        self.note(f"{PROCESSES} processes up, shards {self.cluster.shards}")

    async def run(self, drive: Callable[[], Awaitable[None]]) -> tuple[Counter[str], dict[str, Any]]:
        """Start every process; send the plan's commands while ``drive()`` does what it does to the processes;
        wait for every job to finish, and check every rule. Returns the outcomes and the figures."""
        try:
            await self.start()
            people = asyncio.create_task(self.send(PLAN), name="people")
            self._tasks.append(people)
            await drive()
            await self.finish(people)
            outcomes, problems, figures = await check(self)
        finally:
            await self.close()
        self.sim.assert_no_validation_failures()
        print(f"outcomes {dict(outcomes)}\nfigures {figures}")
        assert not problems, report(outcomes, problems, figures, self.cluster)
        assert len(self.sent) == len(COMMANDS)
        return outcomes, figures

    async def kill_and_restart(self, point: KillPoint) -> None:
        victim = self.nodes[point.victim]
        target = self.progress.counts[point.counter] + point.k
        what = f"node-{point.victim} (shards {self.cluster.shards[point.victim]}) after {point.counter} #{point.k}"
        async with self.step(f"kill {what}: {point.phase}"):
            if point.counter.split(":")[0] in INLINE_COUNTERS:
                await self.tripwire.arm(point.counter, target, victim).wait()
                await victim.reap()
            else:
                await self.progress.reach(point.counter, target)
                await victim.kill()
        self.note(f"SIGKILL {what} ({point.phase})")
        async with self.step(f"restart node-{point.victim}"):
            await victim.start()
        self.note(f"node-{point.victim} up again")

    async def roll(self, n: int) -> None:
        node = self.nodes[n]
        async with self.step(f"SIGTERM node-{n}"):
            code = await node.stop(signal.SIGTERM, timeout_s=30.0)
        assert code == 0, f"node-{n} exited with {code} after SIGTERM\n{node.tail()}"
        self.note(f"node-{n} stopped by SIGTERM (exit {code})")
        async with self.step(f"start node-{n} again"):
            await node.start()
        self.note(f"node-{n} up again")

    async def finish(self, people: asyncio.Task[None]) -> None:
        async with self.step("every command sent and answered, or its process killed"):
            await people
        self.note(f"all {len(self.sent)} commands sent")
        async with self.step("every job finished and every card final"):
            while not await self.settled():
                await self.progress.changed()
        self.note("every job finished")

    async def settled(self) -> bool:
        jobs = await self.cluster.jobs()
        if any(job["status"] not in TERMINAL for job in jobs):
            return False
        cards = {job["interaction_id"] for job in jobs}
        for item in self.sent:
            card = item.handle.original
            if item.handle.id in cards and card is not None and not card.deleted and not final(card):
                return False
        return True

    async def unfinished(self) -> list[str]:
        """Each job not yet ended (its status, claim and leases), then each ended job whose card is not final
        (what it shows, and which message the job stored as its card)."""
        with contextlib.suppress(Exception):
            jobs = await self.cluster.jobs()
            leases = await self.cluster.leases()
            lines = [
                f"job {j['id']} is {j['status']} (claimed by {j.get('claimed_by')!r}; leases {leases.get(j['id'], [])})"
                for j in jobs
                if j["status"] not in TERMINAL
            ]
            by_interaction = {job["interaction_id"]: job for job in jobs}
            for item in self.sent:
                job, card = by_interaction.get(item.handle.id), item.handle.original
                if job is None or card is None or card.deleted or final(card):
                    continue
                lines.append(
                    f"job {job['id']} is {job['status']}, but its card {card.id} (stored: {job['card_message_id']}) "
                    f"shows {card_status(card)!r} (command #{item.planned.index}, node-{item.node}; "
                    f"it showed {' > '.join(self._shown[card.id][-6:])})"
                )
            return lines
        return ["(the database could not be read)"]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.cluster.close()


def final(card: Any) -> bool:
    return any(word in card_status(card) for word in ("Done", "Failed", "Canceled"))


# -- what the run left: every rule of the issue, as problems -----------------------------------------------------


def most_running_at_once(fake: FakeReplicate) -> int:
    """The most predictions that were running at Replicate at the same moment."""
    changes: list[tuple[datetime, int]] = []
    for prediction in fake.predictions.values():
        changes.append((prediction.created_at, 1))
        changes.append((prediction.completed_at or datetime.now(UTC), -1))
    most = running = 0
    for _, change in sorted(changes):  # an end before a start at the same instant
        running += change
        most = max(most, running)
    return most


async def check(deployment: Deployment) -> tuple[Counter[str], list[str], dict[str, Any]]:
    """How every command and job ended, every way one broke the rules, and the figures."""
    sim, cluster = deployment.sim, deployment.cluster
    jobs = await cluster.jobs()
    by_interaction = {job["interaction_id"]: job for job in jobs}
    audio = audio_messages(sim, [job["id"] for job in jobs])
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    ours = {item.handle.id for item in deployment.sent}
    problems += [
        f"job {j['id']}: no command of ours has its interaction" for j in jobs if j["interaction_id"] not in ours
    ]

    for item in deployment.sent:
        index, handle = item.planned.index, item.handle
        job = by_interaction.get(handle.id)
        reply = answer(handle)
        if reply is None and not deployment.nodes[item.node].deaths[item.incarnation].is_set():
            problems.append(f"command #{index}: node-{item.node} stayed up but never answered it")
        if job is None:
            if reply is None:
                outcomes["unanswered: its process was stopped before replying"] += 1
            elif reply.embeds:
                problems.append(f"command #{index}: answered with a card {job_id_of(reply)} but no job was stored")
            elif USER_QUOTA_TEXT in reply.content:
                outcomes["refused: the person's daily quota"] += 1
            elif GUILD_QUOTA_TEXT in reply.content:
                outcomes["refused: the server's daily quota"] += 1
            else:
                problems.append(f"command #{index}: refused {reply.content!r}")
            continue
        if len(deployment.runs[index]) > 1:
            problems.append(f"command #{index} (job {job['id']}): {len(deployment.runs[index])} predictions")
        user = item.planned.user
        asked = Asked(index, USER_IDS[user], user, 1 + index % 2, index in deployment.failing)
        card = reply if reply is not None and reply.embeds else None
        outcome, broken = job_ended(asked, job, audio=audio.get(job["id"], []), card=card, interaction_id=handle.id)
        problems += broken
        if job["status"] == "canceled":  # nobody cancels anything here
            problems.append(f"command #{index} (job {job['id']}): canceled ({job['error']}), though nobody canceled it")
        if outcome is not None:
            outcomes[outcome] += 1

    counted = [job for job in jobs if job["status"] not in ("failed", "canceled")]  # failed jobs give theirs back
    per_user = Counter(job["user_id"] for job in counted)
    per_guild = Counter(job["guild_id"] for job in counted)
    if deployment.quotas:
        names = {uid: name for name, uid in USER_IDS.items()}
        problems += [
            f"{names[u]} got {n} tracks, over the quota of {USER_QUOTA}" for u, n in per_user.items() if n > USER_QUOTA
        ]
        problems += [
            f"server {g} made {n} tracks, over its quota of {GUILD_QUOTA}"
            for g, n in per_guild.items()
            if n > GUILD_QUOTA
        ]
    running = most_running_at_once(deployment.fake)
    if running > CAP:
        problems.append(f"{running} predictions ran at Replicate at once, over the cap of {CAP}")
    delivered_by: Counter[str] = Counter()
    node_of_job = {
        job["id"]: deployment.by_interaction[job["interaction_id"]].node
        for job in jobs
        if job["interaction_id"] in ours
    }
    for n, node in enumerate(deployment.nodes):
        for line in node.log_lines(" delivered ("):
            job_id = line.split("job ", 1)[1].split(" ", 1)[0]
            delivered_by[
                "by the process that took the command" if node_of_job.get(job_id) == n else "by another process"
            ] += 1
    figures: dict[str, Any] = {
        "seed": SEED,
        "commands": len(deployment.sent),
        "jobs": len(jobs),
        "predictions": sum(len(runs) for runs in deployment.runs.values()),
        "most running at once": running,
        "deliveries": dict(delivered_by),
        "events": deployment.events,
    }
    if cluster.balancer is not None:
        figures["webhooks per process"] = dict(sorted(cluster.balancer.forwarded.items()))
        figures["balancer"] = {"failed over": cluster.balancer.failed_over, "502": cluster.balancer.bad_gateway}
    return outcomes, problems, figures


# -- fixtures and the tests ----------------------------------------------------------------------------------------


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    # Every shard may identify at once (Discord's max_concurrency for large bots is 16 and more).
    async with DiscordSimulator(guild_configs(), max_concurrency=SHARDS) as simulator:
        yield simulator


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        server.webhook_retries = 4
        yield server


@pytest.fixture
def database_url(postgres_server: PostgresServer) -> Iterator[str]:
    with postgres_server.fresh_database() as name:
        yield postgres_server.url(name)


def report(outcomes: Counter[str], problems: list[str], figures: dict[str, Any], cluster: Cluster) -> str:
    errors = cluster.log_lines("ERROR", "Traceback")
    head = [f"seed {SEED}: {len(problems)} problem(s)", *problems[:60]]
    return "\n".join([*head, f"outcomes {dict(outcomes)}", f"figures {figures}", *errors[:20]])


QUOTAS = {"user_daily_jobs": USER_QUOTA, "guild_daily_jobs": GUILD_QUOTA}


@pytest.mark.timeout(900)
# A process killed mid-upload leaves a truncated multipart body, and aiohttp's parser in the simulator warns.
@pytest.mark.filterwarnings("ignore:unread_data:DeprecationWarning")
@pytest.mark.parametrize("mode", ["webhooks", "polling"])
async def test_one_process_killed_at_a_random_moment_loses_and_duplicates_nothing(
    sim: DiscordSimulator,
    fake: FakeReplicate,
    tmp_path: Path,
    database_url: str,
    mode: str,
    reliability: Reliability,
) -> None:
    point = kill_point(mode, SEED)
    print(f"seed {SEED}: {len(COMMANDS)} commands in {len(PLAN)} groups; kill {point}")
    deployment = Deployment(sim, fake, tmp_path, database_url, mode=mode, limits=QUOTAS, failing=FAILING_INDEXES)
    outcomes, _ = await deployment.run(lambda: deployment.kill_and_restart(point))
    assert outcomes["delivered once"] > 0
    assert outcomes["refused: the person's daily quota"] > 0, "no one reached their quota: the test proves nothing"
    assert outcomes["refused: the server's daily quota"] > 0, "no server reached its quota: the test proves nothing"
    assert any("on purpose" in outcome for outcome in outcomes)
    kill = next(e for e in deployment.events if "SIGKILL" in e).split("  ", 1)[1]
    reliability.record(
        jobs=len(deployment.sent), faults=f"seed {SEED}, {mode}: {PROCESSES} processes, 1 {kill}", outcomes=outcomes
    )


@pytest.mark.timeout(900)
async def test_a_rolling_restart_completes_every_job(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, database_url: str, reliability: Reliability
) -> None:
    """SIGTERM each process in turn, wait for it to exit, start it again; commands keep coming to the others."""
    deployment = Deployment(sim, fake, tmp_path, database_url, mode="webhooks", limits={}, failing=frozenset())

    async def roll_all() -> None:
        for n in range(PROCESSES):
            # Jobs in flight in every phase when the next process goes: wait for more to be under way first.
            target = deployment.progress.counts["create"] + 40
            async with deployment.step(f"40 more predictions before restarting node-{n}"):
                await deployment.progress.reach("create", target)
            await deployment.roll(n)

    outcomes, figures = await deployment.run(roll_all)
    assert outcomes == Counter({"delivered once": len(COMMANDS)}), f"seed {SEED}: {dict(outcomes)}; {figures}"
    reliability.record(
        jobs=len(deployment.sent),
        faults=f"seed {SEED}, webhooks: rolling restart of {PROCESSES} processes (SIGTERM, exit, start), one at a time",
        outcomes=outcomes,
    )
