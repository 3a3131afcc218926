"""Issue 8: kill -9 the bot at random points across 200 jobs in flight, restart it, and check that every job
ends delivered exactly once or failed with a reason: none lost, none duplicated.

The bot runs as a real process (``python -m bot run`` through ``tests/faults/botproc.py``) against the Discord
simulator and the fake Replicate, both in this test's process on 127.0.0.1; its database and files live in
``tmp_path`` and survive each SIGKILL. Five simulated users send 200 ``/music generate`` commands, only while
the bot is up and at most ``WINDOW`` of them waiting for their prediction at once (so commands keep coming
across the first kills, whatever pace the bot creates predictions at). The fake starts every prediction as
soon as it is created; one in four it finishes once the job's card shows it running (those tracks arrive
through the interaction while commands still come in), the others only when the test releases them, a batch
at a time, so the kills land in every phase of a job's life. A few predictions fail at the model on purpose.

Each kill happens after the k-th event of its phase since the previous restart (k from a seeded
``random.Random``): the k-th create request at the fake, status poll, completion webhook the bot answered or
output download; or, killed from inside the simulator before it answers the bot, the k-th card, audio
followup or audio message Discord took (so the bot never learns that it was posted). Waits are on events (the
fakes' hooks, the simulator's journals and listeners, the bot's log lines), never on sleeps. Runs in webhook
mode and in polling mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sqlite3
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from tests.conftest import NO_LIMITS
from tests.e2e.conftest import card_status
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.handles import InteractionHandle
from tests.fakes.discord.models import ChannelConfig, GuildConfig, MemberConfig, MessageEvent
from tests.fakes.discord.users import SimUser
from tests.fakes.replicate import FakeReplicate
from tests.faults._outcomes import TERMINAL, Asked, audio_messages, is_audio, job_ended, prompt_index
from tests.faults._process import BotProcess, Progress, Tripwire, crashed, listen_port, step
from tests.faults.conftest import Reliability

T = TypeVar("T")

SEED = 8  # the issue number: the same kill points on every run
JOBS = 200
USERS = ("alice", "bob", "carol", "dave", "erin")
WINDOW = 8  # commands waiting for their prediction at once (people don't all type at the same instant)
QUICK = frozenset(range(0, JOBS, 4))  # commands whose prediction finishes once their card shows it running
HELD = JOBS - len(QUICK)  # the others finish when released
ALL = 10**9  # released at the end: every prediction, re-runs included
FAILING = 8  # held predictions that fail at the model on purpose
MODEL_ERROR = "fake: CUDA out of memory"
STEP_TIMEOUT_S = 120.0  # any one wait; generous for a loaded 2-core machine
# Counted by a simulator listener, inline: a kill on these lands before Discord's answer leaves the simulator.
INLINE_COUNTERS = frozenset({"card", "audio", "followup"})


@dataclass(frozen=True)
class KillPoint:
    """Kill after the k-th ``counter`` event since the last restart, once ``release`` predictions may finish."""

    phase: str
    counter: str
    k_range: tuple[int, int]
    release: int | None = None  # held predictions the fake may have finished, set before waiting
    release_while_down: int | None = None  # set after the kill, before the restart
    after_commands: bool = False  # wait until every command was sent and answered (or its bot killed)


def kill_plan(mode: str) -> list[KillPoint]:
    """Seven kills, in the order a job meets them; each k range is well below what the phase must produce."""
    completions = (
        KillPoint("completion webhooks arriving", "webhook", (5, 25), release=90)
        if mode == "webhooks"
        else KillPoint("polls finding results", "poll", (20, 80), release=90)
    )
    return [
        KillPoint("commands: predictions being created", "create", (25, 60)),
        KillPoint("commands: Discord took a card, the bot never heard back", "card", (25, 60)),
        # >= 64 commands are left for this incarnation, 16 of them quick: their audio goes through the token.
        KillPoint("commands: Discord took audio sent through the interaction, never answered", "followup", (3, 8)),
        KillPoint("predictions running: status polls", "poll", (20, 80), release_while_down=50, after_commands=True),
        completions,
        KillPoint("outputs downloading", "download", (5, 15), release=120),
        KillPoint("uploads: Discord took the audio, the bot never heard back", "audio", (2, 10), release=HELD),
    ]


@dataclass
class Command:
    index: int
    user: SimUser
    handle: InteractionHandle
    incarnation: int  # the bot process that was up when it was sent


def read_jobs(path: Path) -> list[dict[str, Any]]:
    """Every job row, read straight from the bot's SQLite file (WAL: safe while the bot writes)."""
    with contextlib.closing(sqlite3.connect(path, timeout=30)) as conn:
        conn.row_factory = sqlite3.Row
        return [dict(row) for row in conn.execute("SELECT * FROM jobs")]


class Kill9:
    """The scenario: the bot process, the users, the fake's operator, and what every counter saw."""

    def __init__(self, sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, mode: str) -> None:
        self.sim = sim
        self.fake = fake
        self.mode = mode
        self.rng = random.Random(f"{SEED}-{mode}")
        self.failing = frozenset(self.rng.sample(sorted(set(range(JOBS)) - QUICK), FAILING))
        self.progress = Progress()
        port = listen_port()
        jobs: dict[str, Any] = {
            "poll_initial_s": 0.1,
            "poll_max_s": 0.5,
            "webhook_grace_s": 1.0,
            "retry_s": 0.05,
        }
        config: dict[str, dict[str, Any]] = {
            "discord": {"dev_guild_ids": [g.id for g in sim.guilds], "card_edit_interval_s": 0.0},
            "replicate": {"api_base": fake.base_url, "retry_base_s": 0.01},
            "webhooks": {"host": "127.0.0.1", "port": port},
            "jobs": jobs,
            "limits": {**NO_LIMITS, "replicate_jobs_in_flight": 0},
            "storage": {"dir": str(tmp_path / "data")},
            "logging": {"level": "INFO"},
        }
        if mode == "webhooks":
            config["webhooks"]["public_url"] = f"http://127.0.0.1:{port}"
        self.bot = BotProcess(sim, fake, tmp_path, config, self.progress)
        self.commands: list[Command] = []
        self.by_index: dict[int, Command] = {}
        self.predictions: list[str] = []  # in creation order
        self.held: list[str] = []  # predictions to finish when released
        self.created: set[int] = set()  # commands whose prediction exists
        self.released = 0  # held predictions the operator may finish
        self.kills: list[str] = []
        self._tasks: list[asyncio.Task[Any]] = []
        self.tripwire = Tripwire(self.progress)  # kills from inside the simulator
        self._cards: set[int] = set()  # messages already counted as a job card
        sim.state.listeners.append(self._on_message)

    # -- event pumps: every hook of the fakes and the simulator becomes a counter ---------------------

    def _pump(self, name: str, next_item: Callable[[], Awaitable[T]], counter: Callable[[T], str | None]) -> None:
        async def run() -> None:
            while True:
                try:
                    item = await next_item()
                except TimeoutError:
                    continue
                if (key := counter(item)) is not None:
                    self.progress.bump(key)

        self._tasks.append(asyncio.create_task(run(), name=f"pump:{name}"))

    def _journal(self, journal: Any) -> Callable[[], Awaitable[Any]]:
        position = 0

        async def next_item() -> Any:
            nonlocal position
            item = await journal.wait(lambda _: True, since=position, timeout_s=3600)
            position += 1
            return item

        return next_item

    def start_pumps(self) -> None:
        fake, sim = self.fake, self.sim
        self._pump("polls", lambda: fake.next_request("GET", "/v1/predictions/", timeout=3600), lambda _: "poll")
        self._pump("downloads", lambda: fake.next_request("GET", "/delivery/", timeout=3600), lambda _: "download")
        self._pump(
            "webhooks",
            lambda: fake.next_webhook_delivery(timeout=3600),
            lambda d: "webhook" if d.event == "completed" and d.status_code == 200 else None,
        )
        self._pump("callbacks", self._journal(sim.interactions.callbacks), lambda _: "callback")
        self._tasks.append(asyncio.create_task(self._operate(), name="operator"))
        self._tasks.append(asyncio.create_task(self._complete(self.held, lambda: self.released), name="held"))

    async def _on_message(self, event: MessageEvent) -> None:
        """The simulator's listener, called while it handles the bot's request, before it answers."""
        message = event.message
        kind = "message"
        if event.kind == "create" and any(is_audio(a.filename) for a in message.attachments):
            kind = "audio"
            if message.interaction_id is not None:
                self.progress.bump("followup")  # a followup through the interaction: no nonce protects it
        elif (
            event.kind in ("create", "edit")
            and message.interaction_id is not None
            and message.embeds
            and message.id not in self._cards
        ):
            # The job card, first shown: it replaces the defer's "thinking…" message (an edit), or is the answer.
            self._cards.add(message.id)
            kind = "card"
        self.progress.bump(kind)
        self.tripwire.check()

    # -- the fake Replicate's operator: start at once, finish when released ---------------------------

    async def _operate(self) -> None:
        while True:
            try:
                pid = await self.fake.wait_for_prediction(timeout=3600)
            except TimeoutError:
                continue
            self.predictions.append(pid)
            prediction = self.fake.prediction(pid)
            if prediction.status == "starting":
                await self.fake.begin(pid)
            index = prompt_index(prediction.input["prompt"])
            self.created.add(index)
            if index in QUICK:
                self._tasks.append(asyncio.create_task(self._finish_quick(pid, index), name=f"quick:{index}"))
            else:
                self.held.append(pid)
            self.progress.bump("create")

    async def _finish_quick(self, pid: str, index: int) -> None:
        """Finish once the job's card shows it running: the bot has the interaction in hand by then."""

        def running() -> bool:
            command = self.by_index.get(index)
            card = command.handle.original if command is not None else None
            return (card is not None and "Generating" in card_status(card)) or self.released >= ALL

        await self.progress.until(running)
        await self._finish(pid)

    async def _complete(self, queue: list[str], allowed: Callable[[], int]) -> None:
        """Finish the predictions of ``queue`` in order, as far as ``allowed()`` says."""
        done = 0

        def more() -> bool:
            return done < min(allowed(), len(queue))

        while True:
            await self.progress.until(more)
            pid = queue[done]
            done += 1
            await self._finish(pid)

    async def _finish(self, pid: str) -> None:
        prediction = self.fake.prediction(pid)
        if prediction.status != "processing":
            return  # canceled by the bot meanwhile
        if prompt_index(prediction.input["prompt"]) in self.failing:
            await self.fake.fail(pid, MODEL_ERROR)
        else:
            await self.fake.succeed(pid)
        self.progress.bump("finished")

    def release(self, count: int) -> None:
        self.released = max(self.released, count)
        self.progress.notify()

    # -- the users --------------------------------------------------------------------------------------

    async def send_commands(self) -> None:
        """Every user's commands, round robin, sent only while the bot is up, ``WINDOW`` in progress at most."""
        window = asyncio.Semaphore(WINDOW)
        settling: list[asyncio.Task[None]] = []
        users = [self.sim.user(name) for name in USERS]
        for index in range(JOBS):
            await window.acquire()
            user = users[index % len(users)]
            async with self.bot.issuing:  # a kill waits until this command is on the wire
                await self.bot.up.wait()
                incarnation = self.bot.incarnation
                handle = await user.slash(
                    "music generate", prompt=f"kill9 #{index:03d} lofi beat for {user.username}", duration=1 + index % 2
                )
                command = Command(index, user, handle, incarnation)
            self.commands.append(command)
            self.by_index[index] = command
            task = asyncio.create_task(self._settle(command))
            task.add_done_callback(lambda _: window.release())
            settling.append(task)
        await asyncio.gather(*settling)

    async def _settle(self, command: Command) -> None:
        """Until the command's prediction exists, its card shows it ended, or the bot it went to was killed."""

        def settled() -> bool:
            answer = command.handle.original
            # A card that shows the job ended, or an answer that is no card (a refusal): nothing will be created.
            # The defer's "thinking…" message is no answer yet.
            ended = (
                answer is not None
                and not answer.is_loading
                and (not answer.embeds or any(word in card_status(answer) for word in ("Failed", "Canceled")))
            )
            return command.index in self.created or ended or self.bot.deaths[command.incarnation].is_set()

        await self.progress.until(settled)

    # -- driving the scenario ---------------------------------------------------------------------------

    def step(self, what: str) -> contextlib.AbstractAsyncContextManager[None]:
        async def describe() -> str:
            counts = dict(sorted(self.progress.counts.items()))
            lines = [*crashed(self._tasks), *self.unfinished()[:20]]
            return f"counters: {counts}\nkills so far: {self.kills}\n" + "\n".join(lines) + f"\n{self.bot.tail()}"

        return step(what, timeout_s=STEP_TIMEOUT_S, describe=describe)

    def unfinished(self) -> list[str]:
        """Jobs not in a final state, and cards not showing one (for timeout messages)."""
        jobs = read_jobs(self.bot.database_path)
        lines = [f"job {j['id']} is {j['status']}" for j in jobs if j["status"] not in TERMINAL]
        by_interaction = {j["interaction_id"]: j for j in jobs}
        for command in self.commands:
            card = command.handle.original
            if card is not None and not any(word in card_status(card) for word in ("Done", "Failed", "Canceled")):
                job = by_interaction.get(command.handle.id)
                state = f"job {job['id']} is {job['status']}" if job else "no job"
                lines.append(f"command #{command.index}: card shows {card_status(card)!r}; {state}")
        return lines

    async def run(self) -> None:
        self.start_pumps()
        async with self.step("the first start"):
            await self.bot.start()
        users = asyncio.create_task(self.send_commands(), name="users")
        self._tasks.append(users)
        for point in kill_plan(self.mode):
            if point.after_commands:
                async with self.step("every command answered, or its bot killed"):
                    await users
            if point.release is not None:
                self.release(point.release)
            k = self.rng.randint(*point.k_range)
            target = self.progress.counts[point.counter] + k
            if point.counter in INLINE_COUNTERS:
                fired = self.tripwire.arm(point.counter, target, self.bot)
                async with self.step(f"event {k} of {point.counter!r} ({point.phase})"):
                    await fired.wait()
                await self.bot.reap()
            else:
                async with self.step(f"event {k} of {point.counter!r} ({point.phase})"):
                    await self.progress.reach(point.counter, target)
                await self.bot.kill()
            self.kills.append(f"{point.phase} (after {point.counter} #{k})")
            if point.release_while_down is not None:
                self.release(point.release_while_down)
            async with self.step(f"restart after kill {len(self.kills)}"):
                await self.bot.start()
        self.release(ALL)  # everything may finish now, and re-runs too if the bot asks for any
        async with self.step("every job finished and every card final"):
            while not await self.settled():
                await self.progress.changed()

    async def settled(self) -> bool:
        jobs = await asyncio.to_thread(read_jobs, self.bot.database_path)
        if any(job["status"] not in TERMINAL for job in jobs):
            return False
        for command in self.commands:
            card = command.handle.original
            if card is not None and not any(word in card_status(card) for word in ("Done", "Failed", "Canceled")):
                return False
        return True

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.bot.close()


@pytest.fixture
async def sim() -> AsyncIterator[DiscordSimulator]:
    guild = GuildConfig(
        name="Kill -9", channels=[ChannelConfig("general")], members=[MemberConfig(name) for name in USERS]
    )
    async with DiscordSimulator([guild]) as simulator:
        yield simulator


@pytest.fixture
async def fake() -> AsyncIterator[FakeReplicate]:
    async with FakeReplicate() as server:
        yield server


def check_outcomes(scenario: Kill9) -> tuple[Counter[str], list[str]]:
    """How every command and job ended, and every way one broke the rules (none lost, none duplicated)."""
    sim, fake = scenario.sim, scenario.fake
    jobs = read_jobs(scenario.bot.database_path)
    by_interaction = {job["interaction_id"]: job for job in jobs}
    audio = audio_messages(sim, [job["id"] for job in jobs])
    runs: dict[int, list[str]] = defaultdict(list)
    for pid in scenario.predictions:
        runs[prompt_index(fake.prediction(pid).input["prompt"])].append(pid)
    outcomes: Counter[str] = Counter()
    problems: list[str] = []
    commands = {command.handle.id: command for command in scenario.commands}
    strays = [job["id"] for job in jobs if job["interaction_id"] not in commands]
    problems += [f"job {job_id}: no command of ours has its interaction" for job_id in strays]

    for command in scenario.commands:
        index, handle = command.index, command.handle
        job = by_interaction.get(handle.id)
        card = handle.original if handle.response_type is not None else None
        if card is not None and card.is_loading:  # deferred, then killed before it answered
            card = None
        if card is None and not scenario.bot.deaths[command.incarnation].is_set():
            problems.append(f"command #{index}: the bot stayed up but never answered it")
        if job is None:
            if card is not None:
                problems.append(f"command #{index}: answered {card.content!r} {card.embeds} but stored no job")
            else:  # sent just before a kill: on Discord the user sees "The application did not respond"
                outcomes["unanswered: bot killed before replying"] += 1
            continue
        if len(runs[index]) > 1:
            problems.append(f"command #{index} (job {job['id']}): {len(runs[index])} predictions: {runs[index]}")
        asked = Asked(index, command.user.id, command.user.username, 1 + index % 2, index in scenario.failing)
        outcome, broken = job_ended(asked, job, audio=audio.get(job["id"], []), card=card, interaction_id=handle.id)
        problems += broken
        if outcome is not None:
            outcomes[outcome] += 1
    return outcomes, problems


@pytest.mark.timeout(300)
# A process killed mid-upload leaves a truncated multipart body, and aiohttp's parser in the simulator warns.
@pytest.mark.filterwarnings("ignore:unread_data:DeprecationWarning")
@pytest.mark.parametrize("mode", ["webhooks", "polling"])
async def test_kill9_at_random_points_loses_and_duplicates_nothing(
    sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path, mode: str, reliability: Reliability
) -> None:
    scenario = Kill9(sim, fake, tmp_path, mode)
    try:
        await scenario.run()
    finally:
        await scenario.close()  # SIGKILL the last incarnation too: the database is read as a crash left it

    outcomes, problems = check_outcomes(scenario)
    sim.assert_no_validation_failures()
    figures = (
        f"{len(scenario.kills)} kills, {len(scenario.commands)} commands, {len(scenario.predictions)} predictions; "
        f"outcomes {dict(outcomes)}; counters {dict(sorted(scenario.progress.counts.items()))}"
    )
    errors = scenario.bot.log_lines("ERROR", "Traceback")
    assert not problems, "\n".join([*problems[:40], figures, *errors[:20], scenario.bot.tail()])
    assert len(scenario.commands) == JOBS
    assert outcomes["delivered once"] > 0
    assert any("on purpose" in outcome for outcome in outcomes)
    print(figures)  # shown with -s; the record below goes to the reliability table
    faults = f"{len(scenario.kills)} kill -9 at " + "; ".join(scenario.kills)
    reliability.record(jobs=len(scenario.commands), faults=faults, outcomes=outcomes)
