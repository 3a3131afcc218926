"""What Encore shows in Discord for a job: the card's embed, and the text that comes with the audio.

Pure functions of the jobs and the card's phase (``bot.jobs.phase`` says which phase a card is in); no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import discord

from bot.jobs.phase import Phase, card_progress
from bot.jobs.progress import Progress, bar, percent
from bot.locales import ENGLISH, stored_text
from bot.locales import text as say
from bot.naming import model_label, truncate
from bot.records import Job, JobStatus
from bot.text import clock, inert

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


class ViewFactory(Protocol):
    """Builds the card's buttons, labelled in ``locale``; set by the cog that owns them (cogs import bot, never
    the reverse)."""

    def __call__(
        self, job: Job, phase: Phase, members: Sequence[Job], /, *, locale: str = ...
    ) -> discord.ui.View | None: ...


def _left(progress: Progress, locale: object) -> str:
    """About how long until the output, in the reader's words."""
    left = progress.left_s or 0.0
    if left < 1.5:
        return say(locale, "card.status.almost_done")
    if left < 60:
        return say(locale, "card.status.left_seconds", seconds=round(left))
    return say(locale, "card.status.left", time=clock(left))


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def _seed_label(job: Job, locale: object) -> str:
    """``naming.seed_label`` in ``locale``: the seed, else which variation it is."""
    seed = job.seed if job.seed is not None else job.request.get("seed")
    if seed is not None:
        return say(locale, "card.seed", seed=seed)
    return say(locale, "card.variation", index=job.batch_index + 1)


def phase_text(phase: Phase, locale: object) -> str:
    return say(locale, f"card.phase.{phase.name.lower()}")


def build_card(job: Job, phase: Phase, members: Sequence[Job] = (), *, locale: object = ENGLISH) -> discord.Embed:
    """The job card: prompt, model, duration, and where the job (or every variation of its batch) stands, in
    ``locale`` (the server's: everyone there sees it), failure reasons too where the catalogue has them. People's
    text and model names are shown as they are."""
    members = list(members) or [job]

    def field(key: str) -> str:
        return say(locale, f"card.fields.{key}")

    untitled = say(locale, "card.untitled")
    embed = discord.Embed(title=truncate(inert(job.prompt) or untitled, 256), colour=_COLOURS[phase])
    embed.add_field(name=field("model"), value=model_label(job), inline=True)
    total_s = job.context.get("total_s")
    if job.context.get("kind") == "continuation" and total_s is not None:
        added = job.context.get("extra_s")
        total = clock(float(total_s))
        if added:
            value = say(locale, "card.part_total_added", part=job.part, total=total, seconds=added)
        else:
            value = say(locale, "card.part_total", part=job.part, total=total)
        embed.add_field(name=field("track"), value=value, inline=True)
    elif job.duration_s is not None:
        embed.add_field(name=field("duration"), value=say(locale, "card.seconds", seconds=f"{job.duration_s:g}"))
    prompt_b = job.request.get("params", {}).get("prompt_b")
    if prompt_b:
        alpha = job.request.get("params", {}).get("alpha", 0.5)
        blended = say(locale, "card.blended", prompt=inert(prompt_b), alpha=f"{alpha:g}")
        embed.add_field(name=field("blended_with"), value=truncate(blended, 1024), inline=False)
    status = f"{_ICONS[phase]} {phase_text(phase, locale)}"
    place = job.result.get("queue_position")
    if phase == Phase.QUEUED and place:
        status += " · " + say(locale, "card.status.in_line", place=place)
        eta = job.result.get("eta_s")
        if eta:
            status += " · " + say(locale, "card.status.eta", time=clock(float(eta)))
    running_since = min((m.running_at for m in members if m.running_at), default=None)
    if phase in (Phase.STARTING, Phase.GENERATING):
        # "Generating ▓▓▓▓▓░░░░░ 52% · about 14 s left"; a song: "Generating · started … · 1.2 MiB received"
        progress = card_progress(members)
        if progress is not None and progress.fraction is not None:
            status += f" {bar(progress.fraction)} {percent(progress.fraction)}%"
        if phase == Phase.GENERATING and running_since and (progress is None or progress.fraction is None):
            status += " · " + say(locale, "card.status.started", moment=f"<t:{int(running_since)}:R>")
        if progress is not None and progress.received_bytes:
            status += " · " + say(locale, "card.status.received", size=mib(progress.received_bytes))
        if progress is not None and progress.left_s is not None:
            status += " · " + _left(progress, locale)
    elif phase in (Phase.FAILED, Phase.CANCELED):
        reasons = sorted({stored_text(locale, m.error) for m in members if m.error})
        if reasons:
            status += " · " + " ".join(reasons)
    if len(members) > 1 and phase not in (Phase.FAILED, Phase.CANCELED):
        ready = sum(m.status in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) for m in members)
        status += " · " + say(locale, "card.status.ready", ready=ready, total=len(members))
    embed.add_field(name=field("status"), value=truncate(status, 1024), inline=False)
    song = job.result.get("metadata") or {}
    if phase == Phase.DONE and song:
        if song.get("title"):
            embed.title = truncate(inert(str(song["title"])), 256)
            embed.description = truncate(f"*{inert(job.prompt)}*", 4096)
        if song.get("description"):
            embed.add_field(name=field("about"), value=truncate(inert(str(song["description"])), 1024), inline=False)
        genres = inert(", ".join(str(g) for g in song.get("genres") or []))
        if genres:
            embed.add_field(name=field("genres"), value=truncate(genres, 1024), inline=True)
        languages = inert(", ".join(str(lang) for lang in song.get("languages") or []))
        if languages:
            embed.add_field(name=field("languages"), value=truncate(languages, 1024), inline=True)
        if song.get("is_explicit") is not None:
            explicit = say(locale, "card.yes" if song["is_explicit"] else "card.no")
            embed.add_field(name=field("explicit"), value=explicit, inline=True)
    stem_names = [str(f["name"]) for f in job.result.get("files") or []]
    if phase == Phase.DONE and stem_names:
        embed.add_field(name=field("stems"), value=truncate(inert(", ".join(stem_names)), 1024), inline=False)
    suggestion = job.result.get("suggestion")
    if phase == Phase.FAILED and isinstance(suggestion, str) and suggestion:
        embed.add_field(name=field("try_prompt"), value=truncate(inert(suggestion), 1024), inline=False)
    if phase == Phase.DONE:
        if len(members) > 1:
            failed = " " + say(locale, "card.variation_failed")
            canceled = " " + say(locale, "card.variation_canceled")
            lines = [
                f"{m.batch_index + 1} · {_seed_label(m, locale)} · `{m.id}`"
                + {JobStatus.DELIVERED: "", JobStatus.CANCELED: canceled}.get(m.status, failed)
                for m in members
            ]
            lines.append(say(locale, "card.variation_rows"))
            embed.add_field(name=field("variations"), value=truncate("\n".join(lines), 1024), inline=False)
        elif job.seed is not None:
            embed.add_field(name=field("seed"), value=str(job.seed), inline=True)
        times = [m.predict_time_s for m in members if m.predict_time_s is not None]
        if times:
            seconds = say(locale, "card.seconds", seconds=f"{max(times):.1f}")
            embed.add_field(name=field("generation_time"), value=seconds, inline=True)
    if len(members) > 1:
        footer = say(locale, "card.footer_batch", id=job.id, count=len(members))
    else:
        footer = say(locale, "card.footer", id=job.id)
    embed.set_footer(text=footer)
    return embed


def delivery_text(jobs: Sequence[Job], *, files: int, refit_limit: int | None, locale: object = ENGLISH) -> str:
    """The message that brings the audio, in ``locale`` (the server's): it mentions the requester and names the
    track, variations or stems.

    ``refit_limit``: the upload limit the files were re-encoded (and maybe split into ``files``) to fit.
    """
    lead = jobs[0]
    mention = f"<@{lead.user_id}>"
    prompt = inert(truncate(lead.prompt, 150), previews=False)
    stems = [str(f["name"]) for f in lead.result.get("files") or []]
    if stems:
        content = say(locale, "delivery.stems", mention=mention, prompt=prompt, stems=inert(", ".join(stems)))
    elif len(jobs) > 1:
        labels = ", ".join(f"{job.batch_index + 1} · {_seed_label(job, locale)}" for job in jobs)
        content = say(locale, "delivery.variations", mention=mention, count=len(jobs), prompt=prompt, labels=labels)
    else:
        content = say(locale, "delivery.track", mention=mention, prompt=prompt)
    if refit_limit is not None:
        if files > len(jobs):
            content += "\n" + say(locale, "delivery.refit_parts", limit=mib(refit_limit), parts=files)
        else:
            content += "\n" + say(locale, "delivery.refit", limit=mib(refit_limit))
    return content
