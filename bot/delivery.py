"""Discord delivery: the job card that follows a job, and the message that brings the audio.

The job service reports through :class:`DiscordDelivery` (a ``JobListener``). Card edits are
coalesced to at most one per ``card_edit_interval_s`` per job; one Discord could not take (5xx, 429) is
tried again with backoff, so a card never stays behind its job. While the interaction token lives,
the card is edited and the audio sent through it; after that (long queues, restarts) the card is
edited as a channel message and the audio arrives as a normal channel message replying to the card,
with a fixed nonce so a retry after a crash cannot post it twice.
"""

from __future__ import annotations

import asyncio
import io
import logging
import re
import time
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import av.error
import discord

from bot.audio import off_loop
from bot.audio.fit import fit_audio
from bot.audio.waveform import render_waveform
from bot.catalog import MODELS
from bot.config import Settings
from bot.errors import DeliveryError
from bot.jobs.models import Job, JobStatus
from bot.jobs.phase import TERMINAL_PHASES, Phase
from bot.jobs.service import JobService
from bot.text import inert

if TYPE_CHECKING:
    from discord.ext import commands

log = logging.getLogger(__name__)

DEFAULT_UPLOAD_LIMIT = 10 * 1024 * 1024
MAX_FILES = 10  # attachments per message
# Leave a margin so a call that starts just before expiry does not fail mid-flight.
TOKEN_MARGIN_S = 60.0
# Messages looked through after a job's card for what an earlier process posted and never heard back about.
HISTORY_LIMIT = 1000

_COLOURS = {
    Phase.QUEUED: discord.Colour.light_grey(),
    Phase.STARTING: discord.Colour.blurple(),
    Phase.GENERATING: discord.Colour.blurple(),
    Phase.UPLOADING: discord.Colour.teal(),
    Phase.DONE: discord.Colour.green(),
    Phase.FAILED: discord.Colour.red(),
    Phase.CANCELED: discord.Colour.dark_grey(),
}
_ICONS = {
    Phase.QUEUED: "⏳",
    Phase.STARTING: "🚀",
    Phase.GENERATING: "🎛️",
    Phase.UPLOADING: "📤",
    Phase.DONE: "✅",
    Phase.FAILED: "⚠️",
    Phase.CANCELED: "🛑",
}

# Builds the card's buttons; set by the cog that owns them (cogs import bot, never the reverse).
ViewFactory = Callable[[Job, Phase, Sequence[Job]], discord.ui.View | None]


def _token_dead(exc: discord.HTTPException) -> bool:
    """Discord says the interaction token no longer works (expired: 401/50027; unknown webhook: 10015)."""
    return exc.status == 401 or exc.code in (50027, 10015)


def _clock(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def model_label(job: Job) -> str:
    spec = MODELS.get(job.model)
    if spec is None:
        return job.model
    version = job.input.get("model_version") if any(p.name == "model_version" for p in spec.params) else None
    return f"{spec.display_name} ({version})" if version else spec.display_name


def _seed_label(job: Job) -> str:
    seed = job.seed if job.seed is not None else job.request.get("seed")
    return f"seed {seed}" if seed is not None else f"variation {job.batch_index + 1}"


def build_card(job: Job, phase: Phase, members: Sequence[Job] = ()) -> discord.Embed:
    """The job card: prompt, model, duration, and where the job (or every variation of its batch) stands."""
    members = list(members) or [job]
    embed = discord.Embed(title=_truncate(inert(job.prompt) or "Untitled", 256), colour=_COLOURS[phase])
    embed.add_field(name="Model", value=model_label(job), inline=True)
    total_s = job.context.get("total_s")
    if job.context.get("kind") == "continuation" and total_s is not None:
        added = job.context.get("extra_s")
        value = f"Part {job.part} · total {_clock(float(total_s))}" + (f" (+{added} s)" if added else "")
        embed.add_field(name="Track", value=value, inline=True)
    elif job.duration_s is not None:
        embed.add_field(name="Duration", value=f"{job.duration_s:g} s", inline=True)
    prompt_b = job.request.get("params", {}).get("prompt_b")
    if prompt_b:
        alpha = job.request.get("params", {}).get("alpha", 0.5)
        embed.add_field(
            name="Blended with", value=_truncate(f"{inert(prompt_b)} (alpha {alpha:g})", 1024), inline=False
        )
    status = f"{_ICONS[phase]} {phase.value}"
    place = job.result.get("queue_position")
    if phase == Phase.QUEUED and place:
        status += f" · #{place} in line"
        eta = job.result.get("eta_s")
        if eta:
            status += f" · about {_clock(float(eta))} to start"
    running_since = min((m.running_at for m in members if m.running_at), default=None)
    if phase == Phase.GENERATING and running_since:
        status += f" · started <t:{int(running_since)}:R>"
        received = job.result.get("received_bytes")
        if received:
            status += f" · {_mib(int(received))} received"
    elif phase in (Phase.FAILED, Phase.CANCELED):
        reasons = sorted({m.error for m in members if m.error})
        if reasons:
            status += " · " + " ".join(reasons)
    if len(members) > 1 and phase not in (Phase.FAILED, Phase.CANCELED):
        ready = sum(m.status in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) for m in members)
        status += f" · {ready} of {len(members)} ready"
    embed.add_field(name="Status", value=_truncate(status, 1024), inline=False)
    song = job.result.get("metadata") or {}
    if phase == Phase.DONE and song:
        if song.get("title"):
            embed.title = _truncate(inert(str(song["title"])), 256)
            embed.description = _truncate(f"*{inert(job.prompt)}*", 4096)
        if song.get("description"):
            embed.add_field(name="About", value=_truncate(inert(str(song["description"])), 1024), inline=False)
        genres = inert(", ".join(str(g) for g in song.get("genres") or []))
        if genres:
            embed.add_field(name="Genres", value=_truncate(genres, 1024), inline=True)
        languages = inert(", ".join(str(lang) for lang in song.get("languages") or []))
        if languages:
            embed.add_field(name="Languages", value=_truncate(languages, 1024), inline=True)
        if song.get("is_explicit") is not None:
            embed.add_field(name="Explicit", value="yes" if song["is_explicit"] else "no", inline=True)
    stem_names = [str(f["name"]) for f in job.result.get("files") or []]
    if phase == Phase.DONE and stem_names:
        embed.add_field(name="Stems", value=_truncate(inert(", ".join(stem_names)), 1024), inline=False)
    suggestion = job.result.get("suggestion")
    if phase == Phase.FAILED and isinstance(suggestion, str) and suggestion:
        embed.add_field(name="Try this prompt", value=_truncate(inert(suggestion), 1024), inline=False)
    if phase == Phase.DONE:
        if len(members) > 1:
            lines = [
                f"{m.batch_index + 1} · {_seed_label(m)} · `{m.id}`"
                + ("" if m.status == JobStatus.DELIVERED else " (failed)")
                for m in members
            ]
            lines.append("Pick one to extend: `/music show job:<id>`")
            embed.add_field(name="Variations", value=_truncate("\n".join(lines), 1024), inline=False)
        elif job.seed is not None:
            embed.add_field(name="Seed", value=str(job.seed), inline=True)
        times = [m.predict_time_s for m in members if m.predict_time_s is not None]
        if times:
            embed.add_field(name="Generation time", value=f"{max(times):.1f} s", inline=True)
    embed.set_footer(text=f"Job {job.id}" + (f" · {len(members)} variations" if len(members) > 1 else ""))
    return embed


def _slug(job: Job) -> str:
    """From the song's title when the model named it (ElevenLabs), else from the prompt."""
    title = (job.result.get("metadata") or {}).get("title") or job.prompt
    text = unicodedata.normalize("NFKD", str(title)).encode("ascii", "ignore").decode()
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:48].rstrip("-") or "encore"


def audio_filename(job: Job) -> str:
    """``<prompt-slug>-<job id>.<ext>`` (variations add ``-v<n>-seed<seed>``): readable, safe, unique."""
    suffix = Path(job.output_path or "").suffix or ".wav"
    if job.batch_size > 1:
        return f"{_slug(job)}-{job.id}-v{job.batch_index + 1}-{_seed_label(job).replace(' ', '')}{suffix}"
    return f"{_slug(job)}-{job.id}{suffix}"


def image_filename(job: Job) -> str:
    suffix = Path(job.image_path or "").suffix or ".jpg"
    return f"{_slug(job)}-{job.id}-spectrogram{suffix}"


def waveform_filename(job: Job) -> str:
    return f"{_slug(job)}-{job.id}-waveform.png"


def delivery_nonce(job: Job) -> str:
    """A fixed nonce per job: Discord drops a repeat of the same send (enforce_nonce)."""
    return f"encore-{job.id}"[:25]


@dataclass
class _CardState:
    latest: tuple[Job, Phase, Sequence[Job]] | None = None
    version: int = 0
    last_edit: float = 0.0
    task: asyncio.Task[None] | None = None


@dataclass
class _Live:
    interaction: discord.Interaction[Any]
    expires_at: float = field(default=0.0)


def track_tags(job: Job) -> dict[str, str]:
    """Metadata written into delivered files: title from the prompt, model, seed and job id."""
    seed = job.seed if job.seed is not None else job.request.get("seed")
    details = [f"model {model_label(job)}", f"job {job.id}"] + ([f"seed {seed}"] if seed is not None else [])
    return {
        "title": _truncate(job.prompt or "Untitled", 200),
        "artist": "Encore",
        "comment": "; ".join(details),
        "description": "; ".join(details),
    }


def output_files(job: Job) -> list[tuple[str, Path]]:
    """A finished job's files: ``("", its audio)``, or ``(stem name, file)`` for each stem."""
    assert job.output_path is not None
    return [(str(f["name"]), Path(f["path"])) for f in job.result.get("files") or []] or [("", Path(job.output_path))]


async def _fit_files(jobs: Sequence[Job], *, limit: int, work_dir: Path) -> tuple[list[discord.File], bool]:
    """Every file to post for ``jobs``, each fitted under ``limit`` (re-encoded or split if needed)."""
    files: list[discord.File] = []
    reencoded = False
    for job in jobs:
        for name, source in output_files(job):
            files_out, changed = await _fit_one(job, source, name, limit=limit, work_dir=work_dir)
            files.extend(files_out)
            reencoded = reencoded or changed
    return files, reencoded


async def _fit_one(job: Job, source: Path, name: str, *, limit: int, work_dir: Path) -> tuple[list[discord.File], bool]:
    """One file of a job (its audio, or one stem), fitted under ``limit``: one or more files to post."""
    stem = Path(audio_filename(job)).stem + (f"-{name}" if name else "")
    try:
        fitted = await off_loop(
            "fit", fit_audio, source, work_dir / job.id, stem=stem, limit_bytes=limit, tags=track_tags(job)
        )
    except FileNotFoundError:
        raise DeliveryError("The finished file went missing before it could be posted.", retryable=False) from None
    except (av.error.FFmpegError, ValueError, IndexError) as exc:
        raise DeliveryError("I couldn't prepare the audio for Discord.", detail=str(exc), retryable=False) from None
    files = []
    for item in fitted:
        data = await asyncio.to_thread(item.path.read_bytes)
        files.append(discord.File(io.BytesIO(data), filename=item.path.name))
    return files, any(item.reencoded for item in fitted)


class DiscordDelivery:
    def __init__(self, bot: commands.Bot, settings: Settings, service: Callable[[], JobService] | None = None) -> None:
        self._bot = bot
        self._service = service  # the job service, once it runs: records what the cards show
        self._started_at = time.time()  # cards of older jobs were posted by an earlier process
        self._recovered: dict[str, int | None] = {}  # card key -> card an earlier process posted (None: none)
        self._interval_s = settings.discord.card_edit_interval_s
        # A card edit Discord could not take (5xx, 429) is tried again like a delivery.
        self._edit_attempts = 0
        self._edit_retry_s = 0.0
        self.apply_settings(settings)
        self._work_dir = settings.storage.dir / "deliveries"
        self._cards: dict[str, _CardState] = {}
        self._live: dict[str, _Live] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.view_factory: ViewFactory = lambda _job, _phase, _members: None

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
        if interaction is not None:
            self._live[key] = _Live(interaction, expires_at=interaction.expires_at.timestamp())
        state = self._cards.setdefault(key, _CardState())
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

    def _live_interaction(self, card_key: str) -> discord.Interaction[Any] | None:
        live = self._live.get(card_key)
        if live is None:
            return None
        if time.time() >= live.expires_at - TOKEN_MARGIN_S:
            del self._live[card_key]
            return None
        return live.interaction

    async def close(self) -> None:
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # -- the card -------------------------------------------------------------------------------

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        if self._closed:
            return
        state = self._cards.setdefault(job.card_key, _CardState())
        state.latest = (job, phase, members)
        state.version += 1
        self._kick(job.card_key, state)

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
            wait = state.last_edit + self._interval_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            applied = state.version
            job, phase, members = state.latest
            try:
                if not await self._edit_card(job, phase, members):
                    return  # no card yet: register_interaction will kick again
                failures = 0
                if phase in TERMINAL_PHASES and self._service is not None:
                    await self._service().card_final(members)
            except discord.HTTPException as exc:  # Discord's trouble (5xx, 429): the card would stay stale
                failures += 1
                if failures < self._edit_attempts:
                    log.warning("job %s: card edit failed (%s), attempt %d", job.id, exc.status, failures)
                    applied = -1  # not shown: apply the newest state again
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

    async def _edit_card(self, job: Job, phase: Phase, members: Sequence[Job]) -> bool:
        """Edit the card; False if there is no card to edit yet."""
        kwargs: dict[str, Any] = {"embed": build_card(job, phase, members)}
        view = self.view_factory(job, phase, members)
        if view is not None:
            kwargs["view"] = view
        if phase == Phase.DONE:
            kwargs["attachments"] = await self._card_images(job, kwargs["embed"])
        try:
            interaction = self._live_interaction(job.card_key)
            if interaction is not None:
                try:
                    await interaction.edit_original_response(**kwargs)
                    return True
                except discord.HTTPException as exc:
                    if not _token_dead(exc):
                        raise
                    self._live.pop(job.card_key, None)  # Discord's clock wins: edit it as a channel message
                    for file in kwargs.get("attachments", []):
                        file.reset()
            card_id = job.card_message_id
            if card_id is None and job.interaction_id is not None and job.created_at < self._started_at:
                card_id = await self._recover_card(job)
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

    async def _recover_card(self, job: Job) -> int | None:
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

            found = await self._find_message(job, job.interaction_id, is_card)
            self._recovered[key] = found
            if found is not None:
                log.info("job %s: found its card %s, posted before a restart", job.id, found)
                if self._service is not None:
                    await self._service().set_card(job.id, found)
        return self._recovered[key]

    async def _find_message(self, job: Job, after: int | None, match: Callable[[discord.Message], bool]) -> int | None:
        """The first message after ``after`` in the job's channel that ``match`` accepts, if Discord shows it."""
        if job.channel_id is None or after is None:
            return None
        channel = self._bot.get_partial_messageable(job.channel_id, guild_id=job.guild_id)
        try:
            async for message in channel.history(limit=HISTORY_LIMIT, after=discord.Object(after), oldest_first=True):
                if match(message):
                    return message.id
        except discord.HTTPException as exc:
            log.warning("job %s: can't read the channel's history: %s %s", job.id, exc.status, exc.code)
        return None

    async def _earlier_delivery(self, lead: Job) -> int | None:
        """A message an earlier attempt posted with the lead job's audio, whose answer never came back.

        Discord drops a repeated channel message with the same nonce, but not a repeated interaction followup.
        """
        me = self._bot.user
        own = (waveform_filename(lead), image_filename(lead))

        def is_delivery(message: discord.Message) -> bool:
            names = [a.filename for a in message.attachments if a.filename not in own]
            return me is not None and message.author.id == me.id and any(lead.id in name for name in names)

        card_id = lead.card_message_id or self._recovered.get(lead.card_key)
        return await self._find_message(lead, card_id or lead.interaction_id, is_delivery)

    async def _card_images(self, job: Job, embed: discord.Embed) -> list[discord.File]:
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

    # -- the audio ------------------------------------------------------------------------------

    def _upload_limit(self, job: Job, interaction: discord.Interaction[Any] | None) -> int:
        if interaction is not None:
            return interaction.filesize_limit
        guild = self._bot.get_guild(job.guild_id) if job.guild_id else None
        return guild.filesize_limit if guild is not None else DEFAULT_UPLOAD_LIMIT

    async def files_for(self, jobs: Sequence[Job], *, limit: int) -> list[discord.File]:
        """The files of finished jobs, each fitted under ``limit`` (for re-posting, e.g. a full track)."""
        files, _ = await _fit_files(jobs, limit=limit, work_dir=self._work_dir)
        return files

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        if self._closed:
            raise DeliveryError(detail="shutting down")  # retried from the stored file after the restart
        lead = jobs[0]
        if lead.card_message_id is None and lead.interaction_id is not None and lead.created_at < self._started_at:
            await self._recover_card(lead)  # to reply to it
        if lead.delivery_attempts > 0 and (posted := await self._earlier_delivery(lead)) is not None:
            log.info("job %s: an earlier attempt posted it as message %s", lead.id, posted)
            return posted
        interaction = self._live_interaction(lead.card_key)
        limit = self._upload_limit(lead, interaction)
        files, reencoded = await _fit_files(jobs, limit=limit, work_dir=self._work_dir)
        prompt = inert(_truncate(lead.prompt, 150), previews=False)
        stems = [str(f["name"]) for f in lead.result.get("files") or []]
        if stems:
            content = f"<@{lead.user_id}> your stems are ready: **{prompt}**\n{inert(', '.join(stems))}"
        elif len(jobs) > 1:
            labels = ", ".join(f"{job.batch_index + 1} · {_seed_label(job)}" for job in jobs)
            content = f"<@{lead.user_id}> your {len(jobs)} variations are ready: **{prompt}**\n{labels}"
        else:
            content = f"<@{lead.user_id}> your track is ready: **{prompt}**"
        if reencoded:
            content += f"\n(converted to Opus to fit the {_mib(limit)} upload limit here"
            content += f", in {len(files)} parts)" if len(files) > len(jobs) else ")"
        # Ping the requester only: not roles or everyone, and not the card's author (the bot itself).
        mentions = discord.AllowedMentions(
            everyone=False, roles=False, users=[discord.Object(lead.user_id)], replied_user=False
        )
        # Discord takes 10 attachments per message: the first message carries the text, the rest follow.
        first, rest = files[:MAX_FILES], [files[i : i + MAX_FILES] for i in range(MAX_FILES, len(files), MAX_FILES)]
        message_id = await self._send(lead, interaction, content, first, mentions)
        for index, chunk in enumerate(rest, start=2):
            await self._send(lead, self._live_interaction(lead.card_key), f"(part {index})", chunk, mentions, index)
        return message_id

    async def _send(
        self,
        lead: Job,
        interaction: discord.Interaction[Any] | None,
        content: str,
        files: list[discord.File],
        mentions: discord.AllowedMentions,
        chunk: int = 1,
    ) -> int:
        try:
            if interaction is not None:
                try:
                    message = await interaction.followup.send(
                        content, files=files, allowed_mentions=mentions, wait=True
                    )
                    return message.id
                except discord.HTTPException as exc:
                    if not _token_dead(exc):
                        raise
                    log.info("job %s: interaction token expired early; posting in the channel", lead.id)
                    self._live.pop(lead.card_key, None)
                    for file in files:
                        file.reset()
            if lead.channel_id is None:
                raise DeliveryError(detail="job has no channel", retryable=False)
            channel = self._bot.get_partial_messageable(lead.channel_id, guild_id=lead.guild_id)
            nonce = delivery_nonce(lead) if chunk == 1 else f"{delivery_nonce(lead)[:22]}-{chunk}"
            kwargs: dict[str, Any] = {"files": files, "allowed_mentions": mentions, "nonce": nonce}
            card_id = lead.card_message_id or self._recovered.get(lead.card_key)
            if card_id is not None:
                kwargs["reference"] = discord.MessageReference(
                    message_id=card_id,
                    channel_id=lead.channel_id,
                    guild_id=lead.guild_id,
                    fail_if_not_exists=False,
                )
            message = await channel.send(content, **kwargs)
            return message.id
        except discord.Forbidden as exc:
            raise DeliveryError(
                "I don't have permission to post files in that channel. "
                "A server admin needs to give me Send Messages and Attach Files there.",
                detail=f"forbidden: {exc.code}",
                retryable=False,
            ) from None
        except discord.HTTPException as exc:
            if exc.status == 413 or exc.code == 40005:
                raise DeliveryError("The audio is too large to post here.", detail="413", retryable=False) from None
            if exc.status == 404 and exc.code in (10003, 10062):
                raise DeliveryError(
                    "The channel for this job no longer exists.", detail=f"{exc.code}", retryable=False
                ) from None
            raise DeliveryError(detail=f"Discord HTTP {exc.status} ({exc.code})") from None
