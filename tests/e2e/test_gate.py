"""The gate (``bot/jobs/gate.py``): every way a job starts goes through it, in its one order.

The ways into Encore are derived from what it registers: slash commands, message menus, card buttons and
selects, message listeners and the CLI's subcommands. Each is listed here, either as an entry point (a way a
job starts, with how a person uses it) or as a way that starts no job, with why; a new one fails
:func:`test_every_way_in_is_listed` until it is placed in one list or the other.

- paused: every entry point is refused before any clip is downloaded (the simulator's CDN counts requests) and
  before any job is stored;
- allowed: every entry point reaches the insert (a job is stored, and its card shows) through the gate;
- order: each recipe behind the entry points, given two reasons to refuse at once, refuses for the earlier
  step (who, then paused and the server's rules, then text, then quotas), reads no clip until every check
  has passed and stores nothing until the clip was read.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import discord
import pytest

from bot.cli import _parser as cli_parser
from bot.config import Settings
from bot.discord.client import EncoreBot
from bot.errors import BotError, InvalidRequestError, NotAllowedError
from bot.jobs.access import Person
from bot.jobs.limits import LimitError
from bot.jobs.service import JobService
from bot.records import Job, JobOrigin, JobRequest
from bot.storage.stats_repo import StatsRepo
from tests.e2e.conftest import Encore, card_status, job_id_of, status_is
from tests.e2e.test_plans import plan_id_of
from tests.e2e.test_variations import button as variation_button
from tests.fakes.audio import make_wav
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.discord.models import SimMessage
from tests.fakes.discord.users import OptionValue, SimUser
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.replicate import FakeReplicate
from tests.integration.test_cli import fake_env, finish, run_cli

CLIP = SimFile("zebra hum.wav", make_wav(3, sample_rate=16000, channels=1), "audio/wav")
PAUSED = "paused by its operator"
WORD = "zebra"  # in every prompt below, so a blocked word reaches every recipe's texts


# -- the world the entry points act on ------------------------------------------------------------------


@dataclass
class World:
    encore: Encore
    sim: DiscordSimulator
    fake: FakeReplicate
    tmp_path: Path
    alice: SimUser  # the requester of the jobs below, and Encore's operator
    bob: SimUser
    done: SimMessage  # alice's finished MusicGen card
    failed: SimMessage  # alice's failed card
    batch: SimMessage  # alice's finished batch of two variations (a row of buttons each)
    song: SimMessage  # alice's finished song (it has a plan: Edit plan)
    posted: SimMessage  # bob's message carrying a clip

    @property
    def service(self) -> JobService:
        assert self.encore.bot is not None
        return self.encore.bot.service

    async def stored(self) -> int:
        """How many jobs there are in the database."""
        assert self.encore.bot is not None
        stats = StatsRepo(self.encore.bot.core.db)
        return sum(count for _, _, count in await stats.counts_by_model_and_status())


async def make_world(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, tmp_path: Path) -> World:
    await encore.start()
    alice, bob = sim.user("alice"), sim.user("bob")
    failing = await alice.slash("music generate", prompt=f"{WORD} doomed", duration=2)
    await fake.fail(await fake.wait_for_prediction(timeout=10))
    failed = await failing.wait_original(status_is("Failed"))
    fake.auto_advance = True
    made = await alice.slash("music generate", prompt=f"{WORD} lofi base", duration=3)
    await made.wait_file()
    done = await made.wait_original(status_is("Done"))
    batching = await alice.slash("music generate", prompt=f"{WORD} two takes", duration=2, count=2)
    await batching.wait_message(lambda m: len(m.attachments) == 2)
    batch = await batching.wait_original(status_is("Done"))
    singing = await alice.slash("music song", prompt=f"a {WORD} jingle", length=5)
    await singing.wait_file()
    song = await singing.wait_original(status_is("Done"))
    posted = await bob.send_message("my clip", files=[CLIP])
    return World(encore, sim, fake, tmp_path, alice, bob, done, failed, batch, song, posted)


# -- the entry points: how a person starts a job each way -------------------------------------------------

Answered = Callable[[SimMessage], bool]


def answered(message: SimMessage) -> bool:
    """A refusal (a line of text) or a job card."""
    return bool(message.content) or bool(card_status(message))


async def compose(w: World, card: SimMessage) -> SimMessage:
    return await (await w.alice.click(card, f"encore:plancompose:{plan_id_of(card)}")).wait_message(answered)


def is_plan(message: SimMessage) -> bool:
    return bool(message.embeds) and str(message.embeds[0]["title"]).startswith("Plan:")


async def plan_then_compose(w: World) -> SimMessage:
    made = await w.alice.slash("music plan", prompt=f"a {WORD} ballad", length=12)
    return await compose(w, await made.wait_original(is_plan))


async def edit_plan_then_compose(w: World) -> SimMessage:
    again = await w.alice.click(w.song, f"encore:plan:{job_id_of(w.song)}")
    return await compose(w, await again.wait_original(is_plan))


async def button(w: World, card: SimMessage, action: str) -> SimMessage:
    return await (await w.alice.click(card, f"encore:{action}:{job_id_of(card)}")).wait_message(answered)


async def variation(w: World, action: str) -> SimMessage:
    """``action`` in the row of the batch's second variation."""
    return await (await w.alice.click(w.batch, variation_button(w.batch, 2, action))).wait_message(answered)


async def menu(w: World, name: str, values: dict[str, str] | None) -> SimMessage:
    handle = await w.bob.message_command(name, w.posted)
    if values is not None:
        await handle.wait_modal()
        handle = await w.bob.submit_modal(handle, values)
    return await handle.wait_message(answered)


async def reply(w: World) -> SimMessage:
    mark = w.sim.mark()
    sent = await w.bob.send_message(f"{WORD} keep going +5s", files=[CLIP], reply_to=w.posted, mention_bot=True)
    card = await w.sim.wait_for_message(sent.channel_id, lambda m: m.reply_to == sent.id, since=mark)
    return await w.sim.wait_for_edit(card.id, answered)


async def slash(w: World, command: str, **options: OptionValue) -> SimMessage:
    return await (await w.bob.slash(command, options=options)).wait_message(answered)


Entry = Callable[[World], Awaitable[SimMessage]]

#: Every way a job starts, keyed by how it is registered, with how a person uses it. ``jobs``: how many it makes.
ENTRY_POINTS: dict[str, tuple[Entry, int]] = {
    "/music generate": (lambda w: slash(w, "music generate", prompt=f"{WORD} beat", duration=2), 1),
    "/music melody": (lambda w: slash(w, "music melody", audio=CLIP, prompt=f"{WORD} strings", duration=4), 1),
    "/music blend": (lambda w: slash(w, "music blend", prompt_a=f"{WORD} bells", prompt_b="beats"), 1),
    "/music song": (lambda w: slash(w, "music song", prompt=f"a {WORD} song", length=5), 1),
    "/music stems": (lambda w: slash(w, "music stems", audio=CLIP), 1),
    "encore:plancompose": (plan_then_compose, 1),  # /music plan, then Compose
    "encore:regen": (lambda w: button(w, w.done, "regen"), 1),
    "encore:vary": (lambda w: button(w, w.done, "vary"), 3),
    "encore:retry": (lambda w: button(w, w.failed, "retry"), 1),
    "encore:extend": (lambda w: button(w, w.done, "extend"), 1),
    "encore:stems": (lambda w: button(w, w.done, "stems"), 1),
    "encore:plan": (edit_plan_then_compose, 1),  # Edit plan on a song, then Compose
    "encore:var:extend": (lambda w: variation(w, "extend"), 1),  # a batch card's row per variation
    "encore:var:vary": (lambda w: variation(w, "vary"), 3),
    "encore:var:stems": (lambda w: variation(w, "stems"), 1),
    "menu:Continue this track": (lambda w: menu(w, "Continue this track", {"Seconds to add (1-20)": "5"}), 1),
    "menu:Use as melody": (
        lambda w: menu(w, "Use as melody", {"Prompt": f"{WORD} strings", "Length in seconds": "6"}),
        1,
    ),
    "menu:Split stems": (lambda w: menu(w, "Split stems", None), 1),
    "listener:AudioIn.on_message": (reply, 1),  # a reply that mentions Encore
}
CLI_ENTRY_POINT = "cli:generate"

#: Every other way in, and why it starts no job.
NOT_ENTRY_POINTS: dict[str, str] = {
    "/music plan": "makes a plan (free at ElevenLabs); its Compose button is the entry point",
    "/music usage": "shows the day's usage",
    "/music prefer": "stores a person's defaults (commands fill them in before their ticket reaches the gate)",
    "/music help": "shows a guide",
    "/music models": "shows the catalog",
    "/music cancel": "cancels a job",
    "/music show": "posts a card again",
    "/music history": "lists a person's jobs",
    "/musicadmin settings": "shows and changes a server's rules",
    "/encore pause": "the operator stops new jobs",
    "/encore resume": "the operator takes new jobs again",
    "/encore reload": "reads the settings again",
    "/encore sync": "syncs the commands",
    "encore:cancel": "cancels a job",
    "encore:info": "shows a job's details",
    "encore:delete": "deletes a job's messages",
    "encore:full": "posts the newest part of a chain, already made",
    "encore:loop": "makes a loop of a delivered track here, on Encore's CPU: no provider, no job (bot/jobs/loops.py)",
    "encore:phone": "posts a finished track again as a voice message",
    "encore:lyrics": "shows a finished song's lyrics privately, from what was stored with it",
    "encore:var:info": "shows a variation's details",
    "encore:planadd": "adds a section to a plan",
    "encore:planedit": "edits a plan's section",
    "encore:planremove": "removes a plan's section",
    "encore:history": "turns the pages of a person's history",
    "encore:admin": "picks a server setting to change",
    "cli:run": "runs the bot",
    "cli:check-config": "prints the settings",
    "cli:models": "prints the catalog",
    "cli:sync-commands": "syncs the commands",
    "cli:db": "backs the database up, or shows what is in it",
}


def ways_in(bot: EncoreBot) -> set[str]:
    """Everything Encore registers that a person (or an operator at a terminal) can start."""
    ways = {f"/{c.qualified_name}" for c in bot.tree.walk_commands() if not isinstance(c, discord.app_commands.Group)}
    ways |= {f"menu:{c.name}" for c in bot.tree.get_commands(type=discord.AppCommandType.message)}
    ways |= {f"menu:{c.name}" for c in bot.tree.get_commands(type=discord.AppCommandType.user)}
    for item in _subclasses(discord.ui.DynamicItem):
        if item.__module__.split(".")[0] not in ("cogs", "bot"):
            continue  # a test's own (the simulator's self-tests define one), not Encore's
        pattern = item.__discord_ui_compiled_template__.pattern
        head = pattern.split("(?P<", 1)[0]
        actions = re.search(r"\(\?P<action>([a-z|]+)\)", pattern)
        ways |= {head + action for action in actions.group(1).split("|")} if actions else {head.rstrip(":")}
    ways |= {f"listener:{listener.__qualname__}" for listener in bot.extra_events.get("on_message", [])}
    commands = re.search(r"\{([a-z,-]+)\}", cli_parser().format_usage())
    assert commands is not None
    ways |= {f"cli:{name}" for name in commands.group(1).split(",")}
    return ways


def _subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub, *_subclasses(sub)}
    return found


@pytest.fixture
async def world(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs, tmp_path: Path
) -> World:
    return await make_world(encore, sim, fake, tmp_path)


async def test_every_way_in_is_listed(world: World) -> None:
    assert world.encore.bot is not None
    listed = {*ENTRY_POINTS, CLI_ENTRY_POINT, *NOT_ENTRY_POINTS}
    found = ways_in(world.encore.bot)
    assert found - listed == set(), "a new way in: list it as an entry point (and test it here) or say why not"
    assert listed - found == set(), "listed but gone"


def test_only_the_gate_stores_jobs() -> None:
    """The insert is the gate's last step, and no other code stores a job (JobsRepo.insert_many)."""
    root = Path(__file__).resolve().parents[2] / "bot"
    callers = {
        path.relative_to(root).as_posix()
        for path in root.rglob("*.py")
        if ".insert_many(" in path.read_text(encoding="utf-8") and path.parent.name != "storage"
    }
    assert callers == {"jobs/gate.py"}


async def cli_generate(w: World, *extra: str) -> tuple[int, str]:
    env = {**fake_env(w.fake, w.tmp_path), "ENCORE_STORAGE__DIR": str(w.encore.data_dir)}
    result = await finish(await run_cli(w.tmp_path, "generate", f"{WORD} from a terminal", *extra, env=env))
    return result.code, result.stderr


async def test_paused_every_entry_point_is_refused_before_inputs_and_the_insert(world: World) -> None:
    w = world
    assert "Paused" in (await (await w.alice.slash("encore pause")).wait_original()).content
    jobs, downloads, predictions = await w.stored(), w.sim.cdn.requests, len(w.fake.predictions)
    for name, (entry, _) in ENTRY_POINTS.items():
        answer = await entry(w)
        assert PAUSED in answer.content, (name, answer.content, answer.embeds)
    clip = w.tmp_path / "clip.wav"
    clip.write_bytes(CLIP.data)
    for extra in ((), ("--audio", str(clip))):
        code, stderr = await cli_generate(w, *extra)
        assert code != 0
        assert PAUSED in stderr, (extra, stderr)
    assert w.sim.cdn.requests == downloads  # no clip was downloaded
    assert list((w.encore.data_dir / "inputs").glob("*")) == []  # nor copied in from the terminal
    assert await w.stored() == jobs  # nothing was stored
    assert len(w.fake.predictions) == predictions


async def test_allowed_every_entry_point_reaches_the_insert(world: World) -> None:
    w = world
    for name, (entry, made) in ENTRY_POINTS.items():
        before = await w.stored()
        answer = await entry(w)
        assert card_status(answer), (name, answer.content)  # a job card, not a refusal
        assert await w.stored() == before + made, name
    before = await w.stored()
    code, stderr = await cli_generate(w, "--duration", "2")
    assert code == 0, stderr
    assert await w.stored() == before + 1


# -- the order, recipe by recipe (the same gate, called through the service) ------------------------------


class Clips:
    """A clip source that counts its downloads; ``fail`` makes the download fail."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.fetched = 0
        self.fail = False

    async def __call__(self) -> Path:
        self.fetched += 1
        if self.fail:
            raise InvalidRequestError("The download failed.")
        path = self.tmp_path / f"fetched-{self.fetched}.wav"
        shutil.copyfile(self.tmp_path / "source.wav", path)
        return path


Recipe = Callable[[JobService, JobOrigin, Person, Clips], Awaitable[list[Job]]]


def recipes(done: Job, song_plan: str) -> dict[str, tuple[Recipe, bool, bool]]:
    """Each recipe behind the entry points: how it is called, whether it claims a right over someone's job
    or plan (who may), and whether it downloads a clip."""
    kept = Path(done.output_path or "")

    async def one(job: Awaitable[Job]) -> list[Job]:
        return [await job]

    return {
        "create (generate, blend, song, the CLI)": (
            lambda s, o, a, c: s.create(JobRequest(prompt=f"{WORD} beat", duration_s=2), o),
            False,
            False,
        ),
        "melody (slash, menu, CLI --audio)": (
            lambda s, o, a, c: s.follow_melody(c, o, prompt=f"{WORD} strings", duration_s=4),
            False,
            True,
        ),
        "continue a clip (menu, reply, CLI --continue)": (
            lambda s, o, a, c: one(s.continue_track(c, o, prompt=f"{WORD} more", extra_s=5)),
            False,
            True,
        ),
        "stems of a clip (slash, menu, CLI --stems)": (
            lambda s, o, a, c: one(s.split_stems(c, o, name=f"{WORD}.wav")),
            False,
            True,
        ),
        "Extend": (lambda s, o, a, c: one(s.continue_track(kept, o, extra_s=5, parent=done, actor=a)), True, False),
        "Stems": (lambda s, o, a, c: one(s.split_stems(kept, o, name=done.prompt, parent=done, actor=a)), True, False),
        "Regenerate, Variations, Retry": (lambda s, o, a, c: s.regenerate(done.id, o, a), True, False),
        "Compose": (lambda s, o, a, c: one(s.compose_plan(song_plan, o)), True, False),
    }


async def test_each_recipe_refuses_in_the_gates_order(world: World) -> None:
    w = world
    service = w.service
    settings: Settings = service.settings
    done = await service.get(job_id_of(w.done))
    plan = await service.plan_from_job(job_id_of(w.song), origin_of(w, w.alice), Person(w.alice.id))
    (w.tmp_path / "source.wav").write_bytes(CLIP.data)
    stranger = Person(w.bob.id, guild_id=w.sim.guild.id)  # stands nowhere: sees no channel, moderates none

    blocked = settings.model_copy(update={"safety": settings.safety.model_copy(update={"blocked_words": [WORD]})})
    alice = Person(w.alice.id)

    for name, (recipe, claims, downloads) in recipes(done, plan.id).items():
        clips = Clips(w.tmp_path)
        jobs = await w.stored()
        made_today = (await service.usage(w.alice.id, w.sim.guild.id)).user_jobs
        limits = settings.limits.model_copy(update={"user_daily_jobs": made_today})  # alice has none left
        exhausted = settings.model_copy(update={"limits": limits})

        async def attempt(user: SimUser, actor: Person, *, recipe: Recipe = recipe, clips: Clips = clips) -> list[Job]:
            return await recipe(service, origin_of(w, user), actor, clips)

        if claims:  # 1 before 2: someone with no right, while paused, is told they have none
            await service.pause_jobs(by=w.alice.id)
            with pytest.raises(NotAllowedError):
                await attempt(w.bob, stranger)
            await service.resume_jobs()
        await service.pause_jobs(by=w.alice.id)  # 2 before 3
        service.apply_settings(blocked)
        with pytest.raises(BotError, match=PAUSED):
            await attempt(w.alice, alice)
        await service.resume_jobs()
        service.apply_settings(blocked.model_copy(update={"limits": exhausted.limits}))  # 3 before 4
        with pytest.raises(InvalidRequestError, match="word this server doesn't allow"):
            await attempt(w.alice, alice)
        service.apply_settings(exhausted)  # 4 before 5: no clip is read
        with pytest.raises(LimitError):
            await attempt(w.alice, alice)
        assert clips.fetched == 0, name
        service.apply_settings(settings)
        if downloads:  # 5 before 6: a clip that can't be had stores nothing
            clips.fail = True
            with pytest.raises(InvalidRequestError, match="download failed"):
                await attempt(w.alice, alice)
            assert clips.fetched == 1, name
            clips.fail = False
        assert await w.stored() == jobs, name  # no refusal stored anything
        made = await attempt(w.alice, alice)  # all allowed: the insert
        assert made, name
        assert await w.stored() == jobs + len(made), name
        assert clips.fetched == (2 if downloads else 0), name


def origin_of(w: World, user: SimUser) -> JobOrigin:
    return JobOrigin(user_id=user.id, guild_id=w.sim.guild.id, channel_id=w.sim.channel("general").id)
