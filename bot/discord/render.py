"""What Encore shows in Discord for a job: the card's embed, and the text that comes with the audio.

Pure functions of the jobs and the card's phase (``bot.jobs.phase`` says which phase a card is in); no I/O.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import discord

from bot.jobs.phase import Phase
from bot.naming import model_label, seed_label, truncate
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

# Builds the card's buttons; set by the cog that owns them (cogs import bot, never the reverse).
ViewFactory = Callable[[Job, Phase, Sequence[Job]], discord.ui.View | None]


def mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def build_card(job: Job, phase: Phase, members: Sequence[Job] = ()) -> discord.Embed:
    """The job card: prompt, model, duration, and where the job (or every variation of its batch) stands."""
    members = list(members) or [job]
    embed = discord.Embed(title=truncate(inert(job.prompt) or "Untitled", 256), colour=_COLOURS[phase])
    embed.add_field(name="Model", value=model_label(job), inline=True)
    total_s = job.context.get("total_s")
    if job.context.get("kind") == "continuation" and total_s is not None:
        added = job.context.get("extra_s")
        value = f"Part {job.part} · total {clock(float(total_s))}" + (f" (+{added} s)" if added else "")
        embed.add_field(name="Track", value=value, inline=True)
    elif job.duration_s is not None:
        embed.add_field(name="Duration", value=f"{job.duration_s:g} s", inline=True)
    prompt_b = job.request.get("params", {}).get("prompt_b")
    if prompt_b:
        alpha = job.request.get("params", {}).get("alpha", 0.5)
        embed.add_field(name="Blended with", value=truncate(f"{inert(prompt_b)} (alpha {alpha:g})", 1024), inline=False)
    status = f"{_ICONS[phase]} {phase.value}"
    place = job.result.get("queue_position")
    if phase == Phase.QUEUED and place:
        status += f" · #{place} in line"
        eta = job.result.get("eta_s")
        if eta:
            status += f" · about {clock(float(eta))} to start"
    running_since = min((m.running_at for m in members if m.running_at), default=None)
    if phase == Phase.GENERATING and running_since:
        status += f" · started <t:{int(running_since)}:R>"
        received = job.result.get("received_bytes")
        if received:
            status += f" · {mib(int(received))} received"
    elif phase in (Phase.FAILED, Phase.CANCELED):
        reasons = sorted({m.error for m in members if m.error})
        if reasons:
            status += " · " + " ".join(reasons)
    if len(members) > 1 and phase not in (Phase.FAILED, Phase.CANCELED):
        ready = sum(m.status in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) for m in members)
        status += f" · {ready} of {len(members)} ready"
    embed.add_field(name="Status", value=truncate(status, 1024), inline=False)
    song = job.result.get("metadata") or {}
    if phase == Phase.DONE and song:
        if song.get("title"):
            embed.title = truncate(inert(str(song["title"])), 256)
            embed.description = truncate(f"*{inert(job.prompt)}*", 4096)
        if song.get("description"):
            embed.add_field(name="About", value=truncate(inert(str(song["description"])), 1024), inline=False)
        genres = inert(", ".join(str(g) for g in song.get("genres") or []))
        if genres:
            embed.add_field(name="Genres", value=truncate(genres, 1024), inline=True)
        languages = inert(", ".join(str(lang) for lang in song.get("languages") or []))
        if languages:
            embed.add_field(name="Languages", value=truncate(languages, 1024), inline=True)
        if song.get("is_explicit") is not None:
            embed.add_field(name="Explicit", value="yes" if song["is_explicit"] else "no", inline=True)
    stem_names = [str(f["name"]) for f in job.result.get("files") or []]
    if phase == Phase.DONE and stem_names:
        embed.add_field(name="Stems", value=truncate(inert(", ".join(stem_names)), 1024), inline=False)
    suggestion = job.result.get("suggestion")
    if phase == Phase.FAILED and isinstance(suggestion, str) and suggestion:
        embed.add_field(name="Try this prompt", value=truncate(inert(suggestion), 1024), inline=False)
    if phase == Phase.DONE:
        if len(members) > 1:
            lines = [
                f"{m.batch_index + 1} · {seed_label(m)} · `{m.id}`"
                + {JobStatus.DELIVERED: "", JobStatus.CANCELED: " (canceled)"}.get(m.status, " (failed)")
                for m in members
            ]
            lines.append("Each one has its own row of buttons below.")
            embed.add_field(name="Variations", value=truncate("\n".join(lines), 1024), inline=False)
        elif job.seed is not None:
            embed.add_field(name="Seed", value=str(job.seed), inline=True)
        times = [m.predict_time_s for m in members if m.predict_time_s is not None]
        if times:
            embed.add_field(name="Generation time", value=f"{max(times):.1f} s", inline=True)
    embed.set_footer(text=f"Job {job.id}" + (f" · {len(members)} variations" if len(members) > 1 else ""))
    return embed


def delivery_text(jobs: Sequence[Job], *, files: int, refit_limit: int | None) -> str:
    """The message that brings the audio: it mentions the requester and names the track, variations or stems.

    ``refit_limit``: the upload limit the files were re-encoded (and maybe split into ``files``) to fit.
    """
    lead = jobs[0]
    prompt = inert(truncate(lead.prompt, 150), previews=False)
    stems = [str(f["name"]) for f in lead.result.get("files") or []]
    if stems:
        content = f"<@{lead.user_id}> your stems are ready: **{prompt}**\n{inert(', '.join(stems))}"
    elif len(jobs) > 1:
        labels = ", ".join(f"{job.batch_index + 1} · {seed_label(job)}" for job in jobs)
        content = f"<@{lead.user_id}> your {len(jobs)} variations are ready: **{prompt}**\n{labels}"
    else:
        content = f"<@{lead.user_id}> your track is ready: **{prompt}**"
    if refit_limit is not None:
        content += f"\n(converted to Opus to fit the {mib(refit_limit)} upload limit here"
        content += f", in {files} parts)" if files > len(jobs) else ")"
    return content
