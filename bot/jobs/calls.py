"""Long synchronous calls: a provider that answers one open request with the audio (ElevenLabs songs, stems).

The call is owned by the task that makes it: canceling the job cancels that task, which aborts the request.
A call dies with the process, so at a restart the job isn't run again by itself (it costs money): it fails
as *interrupted* and offers Retry (see ``bot.jobs.reconcile``). While it runs, its process holds the job's call
lease, so other processes leave it alone; if the process dies, another fails it as interrupted once the lease
has run out. A song's card shows how much has arrived.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bot.audio.stems import StemsError, unpack_stems
from bot.audio.verify import OutputKind, OutputRejectedError
from bot.catalog import ELEVENLABS_STEMS, STEM_VARIATIONS
from bot.config import Settings
from bot.errors import PromptRefusedError, ProviderError, StorageError
from bot.jobs.leases import Kind, Leases
from bot.jobs.outcomes import Outcomes
from bot.jobs.outputs import Outputs
from bot.jobs.phase import CardFeed
from bot.jobs.plans import instrumental as plan_instrumental
from bot.providers.base import CallProvider, DownloadedFile
from bot.providers.elevenlabs import song_suffix
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)


def _signed(job: Job, output_format: str) -> bool:
    """The job's server asked for C2PA content credentials, and its output is MP3: ElevenLabs signs only MP3
    (the request is refused otherwise), so for any other format it isn't asked."""
    return bool(job.input.get("sign_with_c2pa")) and output_format.startswith("mp3_")


class Calls:
    def __init__(
        self,
        *,
        client: CallProvider | None,
        repo: JobsRepo,
        cards: CardFeed,
        outcomes: Outcomes,
        outputs: Outputs,
        settings: Callable[[], Settings],
        leases: Leases,
    ) -> None:
        self._client = client
        self._repo = repo
        self._cards = cards
        self._outcomes = outcomes
        self._outputs = outputs
        self._settings = settings
        self._leases = leases
        self._calls: dict[str, asyncio.Task[Any]] = {}  # calls in flight, by job

    async def run(self, job: Job) -> None:
        """Make a queued job's call, in this task (canceling the job cancels it)."""
        try:
            await (self._stems(job) if job.model == ELEVENLABS_STEMS.key else self._song(job))
        finally:
            await self._leases.release(Kind.CALL, job.id)

    def abort(self, job_id: str) -> None:
        """The job was canceled: abort its call, if one is in flight."""
        call = self._calls.pop(job_id, None)
        if call is not None:
            call.cancel()  # aborts the provider's request

    async def _begin(self, job: Job) -> CallProvider | None:
        """Start a call for ``job``: submitted now, owned by this task (cancel aborts it)."""
        client = self._client
        if client is None:
            await self._outcomes.fail(job.id, "ElevenLabs isn't set up on this bot.")
            return None
        # Held while the call runs (taken before the job shows as at the provider, so no other process takes it
        # for one whose process is gone).
        if not await self._leases.take(Kind.CALL, job.id):
            return None
        if not await self._repo.transition(
            job.id, JobStatus.SUBMITTED, prediction_id=f"{job.id}-{job.attempts + 1}", attempts=job.attempts + 1
        ):
            return None
        await self._cards.notify(job.id)
        task = asyncio.current_task()
        assert task is not None
        self._calls[job.id] = task
        return client

    async def _song(self, job: Job) -> None:
        """A song: one long call, progress as bytes arrive, the file verified and recorded."""
        client = await self._begin(job)
        if client is None:
            return
        settings = self._settings().elevenlabs
        body = {key: value for key, value in job.input.items() if key not in ("output_format", "sign_with_c2pa")}
        output_format = str(job.input.get("output_format", settings.output_format))
        body["model_id"] = settings.model_id
        if _signed(job, output_format):
            body["sign_with_c2pa"] = True
        if "composition_plan" in body and settings.model_id == "music_v1":
            body["respect_sections_durations"] = True  # later models always keep them

        async def progress(received: int) -> None:
            try:
                await self._repo.transition(job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED])
                await self._repo.update_fields(
                    job.id,
                    when_status=[JobStatus.RUNNING],
                    result_json=json.dumps({"received_bytes": received}),
                )
            except StorageError as exc:  # only the card's progress: the song goes on
                log.warning("job %s: progress not recorded: %s", job.id, exc)
                return
            await self._cards.notify(job.id)

        try:
            if "seed" in body and "prompt" in body:
                body = await self._song_from_plan(client, body)
            song = await client.compose(
                body,
                self._outputs.outputs_dir / f"{job.id}{song_suffix(output_format)}",
                output_format=output_format,
                length_s=job.duration_s or 0.0,
                on_bytes=progress,
            )
        except PromptRefusedError as exc:
            await self._repo.update_fields(
                job.id,
                when_status=[JobStatus.SUBMITTED, JobStatus.RUNNING],
                result_json=json.dumps({"suggestion": exc.suggestion}),
            )
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        except ProviderError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        finally:
            self._calls.pop(job.id, None)
        try:
            got = DownloadedFile(song.path, song.size, song.content_type)
            audio = await self._outputs.verified(got, OutputKind.AUDIO)
        except OutputRejectedError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        result = {
            "metadata": song.metadata,
            "plan": song.plan,
            "song_id": song.song_id,
            "model_id": body["model_id"],  # which ElevenLabs model made it (the file's tags say)
        }
        if await self._outputs.record_stored(
            job,
            output_path=str(audio.path),
            output_size=audio.size,
            output_content_type=audio.content_type,
            seed=job.input.get("seed"),
            cost_usd=self._outputs.actual_cost(job, None),
            result_json=json.dumps(result),
        ):
            log.info("job %s song stored (%d bytes)", job.id, audio.size)

    async def _song_from_plan(self, client: CallProvider, body: dict[str, Any]) -> dict[str, Any]:
        """ElevenLabs takes a seed only with a composition plan: plan the prompt first (free), then compose it."""
        plan = await client.plan(
            str(body["prompt"]), model_id=str(body["model_id"]), length_ms=body.get("music_length_ms")
        )
        if body.get("force_instrumental"):
            plan = plan_instrumental(plan)
        return {
            "composition_plan": plan,
            "model_id": body["model_id"],
            "seed": body["seed"],
            **({"respect_sections_durations": True} if body["model_id"] == "music_v1" else {}),
            **({"sign_with_c2pa": True} if body.get("sign_with_c2pa") else {}),
        }

    async def _stems(self, job: Job) -> None:
        """Stem separation: one call returning a ZIP of stems, unpacked next to the outputs."""
        client = await self._begin(job)
        if client is None:
            return
        settings = self._settings()
        output_format = settings.elevenlabs.stems_output_format
        try:
            archive = await client.separate_stems(
                Path(job.input_files["file"]),
                variation=STEM_VARIATIONS.get(str(job.input.get("stems")), "six_stems_v1"),
                output_format=output_format,
                sign_with_c2pa=_signed(job, output_format),
            )
            files = await asyncio.to_thread(
                unpack_stems,
                archive,
                self._outputs.outputs_dir / f"{job.id}-stems",
                settings.storage.max_output_bytes,
            )
            for name, path in files.items():
                stem = DownloadedFile(path, 0, "")
                files[name] = (await self._outputs.verified(stem, OutputKind.AUDIO)).path
        except (ProviderError, OutputRejectedError) as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        except StemsError as exc:
            await self._outcomes.fail(job.id, "The stems came back damaged. Please try again.", detail=str(exc))
            return
        finally:
            self._calls.pop(job.id, None)
        await self._outputs.stems_done(job, files)
