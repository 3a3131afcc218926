"""Recipes: what each way of making music from music adds to a request, handed to the gate as a ticket.

- continue: MusicGen continues from the last part of a track that fits its window; the result is stitched
  back onto the rest, so it is the whole track, longer. It is the next part of its parent's chain, on the
  same MusicGen version, with its prompt unless one is given (and unless the parent was made in another
  server or DM by someone else: its prompt stays there).
- melody: MusicGen follows a clip's melody (trimmed to its window, resampled).
- regenerate, variations, retry: the same request again, with new seeds or the same one, keeping lineage.
- stems: a track split by the configured stem model (``[stems] provider``).

A recipe never checks, downloads or stores anything itself: it says what it needs (a claim, a clip and how
to shape it) and the gate (``bot.jobs.gate``) does the rest, in its order.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.audio import AudioPool
from bot.audio.prepare import prepare_clip
from bot.audio.probe import AudioInfo
from bot.catalog import DEMUCS, MUSICGEN, STEM_VARIATIONS, get_model, stems_model
from bot.config import Settings
from bot.errors import InvalidRequestError
from bot.jobs.access import Action, Actor
from bot.jobs.gate import Gate
from bot.jobs.tickets import Clip, ClipSource, OnJob, Shaped, Ticket
from bot.records import Job, JobOrigin, JobRequest

MUSICGEN_WINDOW_S = 30  # MusicGen continues from at most this much (and its output includes it)
MAX_EXTEND_S = 20


def check_extend(extra_s: int) -> None:
    if not 1 <= extra_s <= MAX_EXTEND_S:
        raise InvalidRequestError.keyed("refusals.extend_range", max=MAX_EXTEND_S)


class Recipes:
    def __init__(self, *, gate: Gate, pool: AudioPool, settings: Callable[[], Settings]) -> None:
        """``pool``: the threads people's files are decoded in (a clip is prepared there too)."""
        self._gate = gate
        self._pool = pool
        self._settings = settings

    def _scratch_clip(self) -> Path:
        return self._settings().storage.inputs_dir / f"{secrets.token_hex(8)}.wav"

    async def continue_track(
        self,
        source: ClipSource,
        origin: JobOrigin,
        *,
        prompt: str | None = None,
        extra_s: int = 10,
        model_version: str | None = None,
        parent: Job | None = None,
        actor: Actor | None = None,
        source_message_id: int | None = None,
    ) -> Job:
        """Continue ``source`` by ``extra_s`` seconds with MusicGen; the result is the whole track, longer.

        ``parent`` is the job whose track ``source`` is (None: audio from elsewhere, which is part 1). With an
        ``actor`` (a card's Extend), the actor must be allowed to extend the parent.
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
        before = JobRequest(model=MUSICGEN.key, prompt=prompt, duration_s=extra_s, params=params)

        async def shape(path: Path, info: AudioInfo) -> Shaped:
            window = min(info.duration_s, MUSICGEN_WINDOW_S - extra_s)
            start = max(0.0, info.duration_s - window)
            clip = self._scratch_clip()
            window = await self._pool.run("prepare", prepare_clip, path, clip, start_s=start)
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
                context["stitch"] = {"source": str(path), "prefix_s": start}
            request = JobRequest(
                model=MUSICGEN.key,
                prompt=prompt,
                duration_s=duration,
                params=params,
                files={"input_audio": str(clip)},
                audio_s=window,
                context=context,
            )
            return Shaped(request, scratch=clip)

        claim = OnJob(parent, actor, Action.EXTEND) if parent is not None and actor is not None else None
        [job] = await self._gate.admit(Ticket(origin, before, claim=claim, clip=Clip(source, shape)))
        return job

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
        before = JobRequest(
            model=MUSICGEN.key,
            prompt=prompt,
            duration_s=duration_s,
            seed=seed,
            params={"model_version": "stereo-melody-large", **(params or {})},
        )

        async def shape(path: Path, info: AudioInfo) -> Shaped:
            clip = self._scratch_clip()
            end = min(info.duration_s, MUSICGEN_WINDOW_S)
            length = await self._pool.run("prepare", prepare_clip, path, clip, end_s=end)
            # With ``continuation`` the output begins with the clip: it is the clip's part 2.
            context = {
                "kind": "melody",
                "audio_s": length,
                "source_message": source_message_id,
                "part": 2 if (params or {}).get("continuation") else 1,
            }
            update = {"files": {"input_audio": str(clip)}, "audio_s": length, "context": context}
            return Shaped(before.model_copy(update=update), scratch=clip)

        return await self._gate.admit(Ticket(origin, before, clip=Clip(source, shape)))

    async def regenerate(self, job: Job, origin: JobOrigin, actor: Actor, *, count: int, same_seed: bool) -> list[Job]:
        """The same request again with new seeds (``count`` variations), or the same seed (a retry).

        It keeps the job's lineage: a part of a chain made again is another take of that part (same parent).
        """
        action = Action.RETRY if same_seed else Action.VARY if count > 1 else Action.REGENERATE

        def request() -> JobRequest:
            context = {**job.context, "regenerated": True, "regenerated_from": job.id}
            return JobRequest(
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

        return await self._gate.admit(Ticket(origin, request, claim=OnJob(job, actor, action)))

    async def split_stems(
        self,
        source: ClipSource,
        origin: JobOrigin,
        *,
        stems: str = "six",
        name: str = "your track",
        parent: Job | None = None,
        actor: Actor | None = None,
        source_message_id: int | None = None,
    ) -> Job:
        """Split ``source`` into stems with the configured stem model. With ``parent`` and ``actor`` (a card's
        Stems), the actor must be allowed to split the parent."""
        if stems not in STEM_VARIATIONS:
            raise InvalidRequestError.keyed("refusals.stems_two_or_six")
        context: dict[str, Any] = {
            "kind": "stems",
            "parent": parent.id if parent else None,
            "source_message": source_message_id,
        }
        if parent is not None and parent.result.get("metadata", {}).get("is_explicit") is True:
            context["explicit"] = True  # its vocals are the song's: shown as the song is (bot.discord.explicit)
        prompt = f"Stems of {name}"[:200]
        settings = self._settings()
        splitter = stems_model(settings)
        if splitter is DEMUCS:
            model = "htdemucs_6s" if stems == "six" else "htdemucs"
            before = JobRequest(model=DEMUCS.key, prompt=prompt, params={"model": model}, context=context)
            key = "audio"
        else:
            before = JobRequest(model=splitter.key, prompt=prompt, params={"stems": stems}, context=context)
            key = "file"

        async def shape(path: Path, info: AudioInfo) -> Shaped:
            return Shaped(before.model_copy(update={"files": {key: str(path)}, "audio_s": info.duration_s}))

        claim = OnJob(parent, actor, Action.STEMS) if parent is not None and actor is not None else None
        [job] = await self._gate.admit(Ticket(origin, before, claim=claim, clip=Clip(source, shape)))
        return job
