"""Card upkeep: each job's card follows its job in Discord.

Edits are coalesced to at most one per ``card_edit_interval_s`` per card, posting the card over the command's
"thinking…" included (a job that ends within it goes from Queued straight to Done); news that is only how far
along the jobs are (a bar, the time left, the place in line) waits longer: :data:`PROGRESS_EDIT_S` through the
interaction, :data:`CHANNEL_PROGRESS_EDIT_S` as a channel message (Discord's bucket for those is the whole
channel's). One edit Discord could not take (5xx, 429) is tried again with backoff, so a card never stays
behind its job. While the interaction token lives the card is edited through it, after that (long queues,
restarts) as a channel message. A card an earlier process posted but never stored is found again in the
channel's history, and so is one another process posted and has not stored when the job ends here (it may have
died in between). Several processes edit one card: after an edit that shows a job still under way, the database
is read again, so an edit that overtook another process's final one is made good. What the card shows is
``render``'s.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av.error
import discord

from bot.audio import off_loop
from bot.audio.waveform import render_waveform
from bot.config import Settings
from bot.discord.render import ViewFactory, build_card
from bot.errors import StorageError
from bot.jobs.phase import TERMINAL_PHASES, Phase
from bot.jobs.service import JobService
from bot.locales import ENGLISH
from bot.naming import image_filename, waveform_filename
from bot.records import Job

log = logging.getLogger(__name__)

# Leave a margin so a call that starts just before expiry does not fail mid-flight.
TOKEN_MARGIN_S = 60.0
# Messages looked through after a job's card for what an earlier process posted and never heard back about.
HISTORY_LIMIT = 1000
# A card whose news is only progress is edited at most this often (through its interaction; as a channel message).
PROGRESS_EDIT_S = 3.0
CHANNEL_PROGRESS_EDIT_S = 15.0


def token_dead(exc: discord.HTTPException) -> bool:
    """Discord says the interaction token no longer works (expired: 401/50027; unknown webhook: 10015)."""
    return exc.status == 401 or exc.code in (50027, 10015)


async def find_message(
    bot: discord.Client, job: Job, after: int | None, match: Callable[[discord.Message], bool]
) -> int | None:
    """The first message after ``after`` in the job's channel that ``match`` accepts, if Discord shows it."""
    if job.channel_id is None or after is None:
        return None
    channel = bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
    try:
        async for message in channel.history(limit=HISTORY_LIMIT, after=discord.Object(after), oldest_first=True):
            if match(message):
                return message.id
    except discord.HTTPException as exc:
        log.warning("job %s: can't read the channel's history: %s %s", job.id, exc.status, exc.code)
    return None


@dataclass
class _CardState:
    latest: tuple[Job, Phase, Sequence[Job]] | None = None
    version: int = 0
    last_edit: float = 0.0
    task: asyncio.Task[None] | None = None
    news: bool = True  # something besides progress is waiting to be shown (a phase, an outcome)
    news_came: asyncio.Event = field(default_factory=asyncio.Event)


def _only_progress(before: tuple[Job, Phase, Sequence[Job]] | None, phase: Phase, members: Sequence[Job]) -> bool:
    """The card would change only in how far along its jobs are: same phase, same jobs in the same states."""
    if before is None or before[1] != phase:
        return False
    return [(m.id, m.status, m.error) for m in before[2]] == [(m.id, m.status, m.error) for m in members]


@dataclass
class _Live:
    interaction: discord.Interaction[Any]
    expires_at: float = field(default=0.0)


class Cards:
    """Every job card this process keeps up to date, and the interactions they were posted through."""

    def __init__(self, bot: discord.Client, settings: Settings, service: Callable[[], JobService] | None) -> None:
        self._bot = bot
        self._service = service  # the job service, once it runs: records what the cards show
        self._started_at = time.time()  # cards of older jobs were posted by an earlier process
        self._recovered: dict[str, int | None] = {}  # card key -> card an earlier process posted (None: none)
        self._interval_s = settings.discord.card_edit_interval_s
        # A card edit Discord could not take (5xx, 429) is tried again like a delivery.
        self._edit_attempts = 0
        self._edit_retry_s = 0.0
        self.apply_settings(settings)
        self._cards: dict[str, _CardState] = {}
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.view_factory: ViewFactory = lambda _job, _phase, _members, **_: None

    def apply_settings(self, settings: Settings) -> None:
        """The job rules of a reloaded config (``/encore reload``): attempts and delay of card edits."""
        self._edit_attempts = settings.jobs.delivery_attempts
        self._edit_retry_s = settings.jobs.retry_s

    # -- registration ---------------------------------------------------------------------------

    def register_interaction(
        self, job: Job, phase: Phase, members: Sequence[Job], interaction: discord.Interaction[Any] | None
    ) -> None:
        """Remember the interaction whose original response is this card (None: a plain channel message),
        and bring the card up to date.

        The card must be read after it was posted: news that arrived before is applied now, whichever
        of the two is newer.
        """
        key = job.card_key
        state = self._cards.setdefault(key, _CardState())
        if interaction is not None:
            self._live[key] = _Live(interaction, expires_at=interaction.expires_at.timestamp())
            state.last_edit = time.monotonic()  # posting the card was its first edit: news waits its turn
        newest = max(m.updated_at for m in members)
        if state.latest is None or max(m.updated_at for m in state.latest[2]) < newest:
            state.latest = (job, phase, members)
            state.version += 1
        # An interaction's card was posted as plain Queued: only news beyond that (its place in line) is shown.
        latest_job, latest_phase, _ = state.latest
        if interaction is None or latest_phase != Phase.QUEUED or "queue_position" in latest_job.result:
            self._kick(key, state)

    def forget(self, card_key: str) -> None:
        """Drop what is known about a card (it could not be posted)."""
        self._cards.pop(card_key, None)
        self._live.pop(card_key, None)

    def live_interaction(self, card_key: str) -> discord.Interaction[Any] | None:
        """The interaction the card was posted through, while its token still works."""
        live = self._live.get(card_key)
        if live is None:
            return None
        if time.time() >= live.expires_at - TOKEN_MARGIN_S:
            del self._live[card_key]
            return None
        return live.interaction

    def token_died(self, card_key: str) -> None:
        """Discord's clock wins: the card's interaction token no longer works, whatever ours said."""
        self._live.pop(card_key, None)

    def locale_of(self, job: Job) -> str:
        """The language of a job's card and of the message with its audio, which everyone in its channel sees:
        its server's preferred locale; in a DM its requester's, while their interaction is known; else English."""
        guild = self._bot.get_guild(job.guild_id) if job.guild_id is not None else None
        if guild is not None:
            return str(guild.preferred_locale)
        live = self._live.get(job.card_key)
        if live is not None:
            return str(live.interaction.guild_locale or live.interaction.locale)
        return ENGLISH

    def card_id(self, job: Job) -> int | None:
        """The card's message id: stored with the job, or found after a restart."""
        return job.card_message_id or self._recovered.get(job.card_key)

    def posted_earlier(self, job: Job) -> bool:
        """The job's card, if any, was posted by an earlier process that died before storing it."""
        return job.card_message_id is None and job.interaction_id is not None and job.created_at < self._started_at

    def unstored(self, job: Job) -> bool:
        """The job's card was posted (or is being posted) by another process, which has not stored it yet.

        That process may have died between posting it and storing it, while this one lives on (several processes
        share the jobs): the job ended here, and only here can its card be told, so it is looked up."""
        return job.card_message_id is None and job.interaction_id is not None and job.card_key not in self._live

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the card -------------------------------------------------------------------------------

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        state = self._cards.setdefault(job.card_key, _CardState())
        if not _only_progress(state.latest, phase, members):
            state.news = True
            state.news_came.set()
        state.latest = (job, phase, members)
        state.version += 1
        self._kick(job.card_key, state)

    def _interval_for(self, key: str, state: _CardState) -> float:
        if state.news:
            return self._interval_s
        live = self._live.get(key)
        through_interaction = live is not None and time.time() < live.expires_at - TOKEN_MARGIN_S
        return max(self._interval_s, PROGRESS_EDIT_S if through_interaction else CHANNEL_PROGRESS_EDIT_S)

    def _kick(self, key: str, state: _CardState) -> None:
        if state.task is None or state.task.done():
            task = asyncio.create_task(self._flush_card(key, state), name=f"card:{key}")
            state.task = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _flush_card(self, key: str, state: _CardState) -> None:
        """Apply the newest card state, waiting out the edit interval; loop while news arrives."""
        applied = -1
        failures = 0
        while state.version != applied and state.latest is not None:
            wait = state.last_edit + self._interval_for(key, state) - time.monotonic()
            if wait > 0:
                if state.news:
                    await asyncio.sleep(wait)
                else:  # only progress: wait longer, unless real news comes meanwhile
                    state.news_came.clear()
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(wait):
                            await state.news_came.wait()
                    continue
            applied, was_news, state.news = state.version, state.news, False
            job, phase, members = state.latest
            try:
                if phase not in TERMINAL_PHASES and await self._overtaken(state, members):
                    continue  # read a while ago (a place in line waits its turn): show what the jobs are now
                if not await self._edit_card(job, phase, members):
                    state.news = state.news or was_news
                    return  # no card yet: register_interaction will kick again
                failures = 0
                if self._service is not None:
                    if phase in TERMINAL_PHASES:
                        await self._service().card_final(members)
                    else:
                        await self._overtaken(state, members)  # a final edit elsewhere may have come first
            except discord.HTTPException as exc:  # Discord's trouble (5xx, 429): the card would stay stale
                failures += 1
                if failures < self._edit_attempts:
                    log.warning("job %s: card edit failed (%s), attempt %d", job.id, exc.status, failures)
                    applied = -1  # not shown: apply the newest state again
                    state.news = state.news or was_news
                    await asyncio.sleep(min(self._edit_retry_s * 2 ** (failures - 1), 300.0))
                else:
                    log.warning("job %s: card edit failed %d times (%s); giving up", job.id, failures, exc.status)
                    failures = 0
            except Exception:
                log.exception("job %s: card edit crashed", job.id)
            state.last_edit = time.monotonic()
        if state.latest is not None and state.latest[1] in TERMINAL_PHASES and state.version == applied:
            self._cards.pop(key, None)
            self._live.pop(key, None)

    async def _overtaken(self, state: _CardState, members: Sequence[Job]) -> bool:
        """Before and after an edit that shows the card's jobs still under way: if the database says they have
        moved on (another process moved them), the card's state becomes what they are now; True if it did.

        Several processes edit one card: the one that took the command, any that tells waiting cards their place
        in line, and whichever runs, finishes or delivers the job. A state read a while ago (a place in line
        waits up to :data:`CHANNEL_PROGRESS_EDIT_S` for its edit) is read again before it is shown; and an edit
        can still reach Discord after another process's final edit: read after this edit landed, the database
        shows every change whose card edit this one may have overtaken, so the newest state is shown last."""
        if self._service is None:
            return False
        service = self._service()
        try:
            if not await service.card_moved_on(members):
                return False
        except StorageError as exc:  # the edit goes on as it was: only a race with another process is left open
            log.warning("job %s: could not read whether its card is behind: %s", members[0].id, exc)
            return False
        lead, phase, fresh = await service.card(members[0].id)
        if state.latest is None or max(m.updated_at for m in state.latest[2]) <= max(m.updated_at for m in fresh):
            state.latest = (lead, phase, fresh)
        state.version += 1
        state.news = True
        return True

    async def _edit_card(self, job: Job, phase: Phase, members: Sequence[Job]) -> bool:
        """Edit the card; False if there is no card to edit yet."""
        locale = self.locale_of(job)
        kwargs: dict[str, Any] = {"embed": build_card(job, phase, members, locale=locale)}
        view = self.view_factory(job, phase, members, locale=locale)
        if view is not None:
            kwargs["view"] = view
        if phase == Phase.DONE:
            kwargs["attachments"] = await _card_images(job, kwargs["embed"])
        try:
            interaction = self.live_interaction(job.card_key)
            if interaction is not None:
                try:
                    await interaction.edit_original_response(**kwargs)
                    return True
                except discord.HTTPException as exc:
                    if not token_dead(exc):
                        raise
                    self.token_died(job.card_key)  # edit it as a channel message
                    for file in kwargs.get("attachments", []):
                        file.reset()
            card_id = job.card_message_id
            if self.posted_earlier(job) or (phase in TERMINAL_PHASES and self.unstored(job)):
                card_id = await self.recover_card(job)
                if card_id is None:
                    return True  # the process that took the command died before answering: no card, ever
            if card_id is None or job.channel_id is None:
                # A Discord job's card is still being posted: register_interaction will kick again.
                # A job with no card (e.g. from the CLI) never gets one.
                return job.interaction_id is None
            channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
            await channel.get_partial_message(card_id).edit(**kwargs)
        except discord.HTTPException as exc:
            if exc.status >= 500 or exc.status == 429:
                raise  # transient: _flush_card tries again
            log.warning("job %s: card edit failed: %s %s", job.id, exc.status, exc.code)
        return True

    async def recover_card(self, job: Job) -> int | None:
        """The card an earlier process posted for ``job`` but died before storing (looked up once).

        It is the original response to the job's command: the bot's message answering its interaction.
        """
        key = job.card_key
        if key not in self._recovered:
            me = self._bot.user

            def is_card(message: discord.Message) -> bool:
                meta = message.interaction_metadata
                return (
                    meta is not None and meta.id == job.interaction_id and me is not None and message.author.id == me.id
                )

            found = await find_message(self._bot, job, job.interaction_id, is_card)
            self._recovered[key] = found
            if found is not None:
                log.info("job %s: found its card %s, posted before a restart", job.id, found)
                if self._service is not None:
                    await self._service().set_card(job.id, found)
        return self._recovered[key]


async def _card_images(job: Job, embed: discord.Embed) -> list[discord.File]:
    """The Done card's pictures: the waveform, and a model's own image (a spectrogram) if it made one."""
    files: list[discord.File] = []
    waveform = None
    if job.output_path:
        try:
            waveform = await off_loop("waveform", render_waveform, Path(job.output_path))
        except (OSError, av.error.FFmpegError, IndexError) as exc:
            log.warning("job %s: no waveform (%s)", job.id, exc)
    if waveform is not None:
        files.append(discord.File(io.BytesIO(waveform), filename=waveform_filename(job)))
    image = None
    if job.image_path:
        try:
            image = await asyncio.to_thread(Path(job.image_path).read_bytes)
        except FileNotFoundError:
            log.warning("job %s: its image is missing", job.id)
    if image is not None:
        files.append(discord.File(io.BytesIO(image), filename=image_filename(job)))
        embed.set_image(url=f"attachment://{image_filename(job)}")
        if waveform is not None:
            embed.set_thumbnail(url=f"attachment://{waveform_filename(job)}")
    elif waveform is not None:
        embed.set_image(url=f"attachment://{waveform_filename(job)}")
    return files
