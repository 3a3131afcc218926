"""Long synchronous calls: a provider that answers one open request with the outcome (a song, a track's stems).

The call is owned by the task that makes it: canceling the job cancels that task, which aborts the request.
A call dies with the process, so at a restart the job isn't run again by itself (it costs money): it fails
as *interrupted* and offers Retry (see ``bot.jobs.reconcile``). While it runs, its process holds the job's call
lease, so other processes leave it alone; if the process dies, another fails it as interrupted once the lease
has run out. A song's card shows how much has arrived. What the request looks like is the provider's business
(:class:`~bot.providers.base.CallProvider`); this room only runs it, records the outcome and tells the card.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from bot.audio.verify import OutputKind
from bot.catalog.lyrics import line_times, lyric_lines
from bot.catalog.plans import total_ms
from bot.config import Settings
from bot.errors import OutputError, PromptRefusedError, ProviderError, StorageError
from bot.jobs.leases import Kind, Leases
from bot.jobs.outcomes import Outcomes
from bot.jobs.outputs import Outputs
from bot.jobs.phase import CardFeed
from bot.providers.base import CallProvider, DownloadedFile, Song, Stems
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)


def _timed_lines(job: Job, song: Song) -> dict[str, Any]:
    """When each lyric line of the song starts (``lyric_times_ms``, by :mod:`bot.catalog.lyrics`), if the
    provider sent word timestamps that time them."""
    if song.words is None or not song.plan:
        return {}
    length_ms = total_ms(song.plan) or int((job.duration_s or 0.0) * 1000)
    times = line_times(lyric_lines(song.plan), song.words, length_ms)
    if times is None:
        log.info("job %s: the word timestamps don't time its lyrics (%d words)", job.id, len(song.words))
        return {}
    return {"lyric_times_ms": times}


class Calls:
    def __init__(
        self,
        *,
        clients: Mapping[str, CallProvider],
        titles: Callable[[str], str],
        repo: JobsRepo,
        cards: CardFeed,
        outcomes: Outcomes,
        outputs: Outputs,
        settings: Callable[[], Settings],
        leases: Leases,
    ) -> None:
        """``clients``: the built call providers by name; ``titles(name)``: how a provider is named to people."""
        self._clients = clients
        self._titles = titles
        self._repo = repo
        self._cards = cards
        self._outcomes = outcomes
        self._outputs = outputs
        self._settings = settings
        self._leases = leases
        self._calls: dict[str, asyncio.Task[Any]] = {}  # calls in flight, by job

    def abort(self, job_id: str) -> None:
        """The job was canceled: abort its call, if one is in flight."""
        call = self._calls.pop(job_id, None)
        if call is not None:
            call.cancel()  # aborts the provider's request

    async def run(self, job: Job) -> None:
        """Make a queued job's call, in this task (canceling the job cancels it), and record what it made."""
        try:
            await self._run(job)
        finally:
            await self._leases.release(Kind.CALL, job.id)

    async def _run(self, job: Job) -> None:
        client = self._clients.get(job.provider)
        if client is None:
            await self._outcomes.fail(job.id, f"{self._titles(job.provider)} isn't set up on this bot.")
            return
        # Held while the call runs (taken before the job shows as at the provider, so no other process takes it
        # for one whose process is gone).
        if not await self._leases.take(Kind.CALL, job.id):
            return
        if not await self._repo.transition(
            job.id, JobStatus.SUBMITTED, prediction_id=f"{job.id}-{job.attempts + 1}", attempts=job.attempts + 1
        ):
            return
        await self._cards.notify(job.id)
        task = asyncio.current_task()
        assert task is not None
        self._calls[job.id] = task
        try:
            made = await client.call(
                job.model,
                dict(job.input),
                files=job.input_files,
                length_s=job.duration_s or 0.0,
                dest=self._outputs.outputs_dir / job.id,
                max_bytes=self._settings().storage.max_output_bytes,
                on_bytes=lambda received: self._progress(job, received),
            )
        except PromptRefusedError as exc:
            await self._repo.update_fields(
                job.id,
                when_status=[JobStatus.SUBMITTED, JobStatus.RUNNING],
                result_json=json.dumps({"suggestion": exc.suggestion}),
            )
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        except (ProviderError, OutputError) as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        finally:
            self._calls.pop(job.id, None)
        if isinstance(made, Stems):
            await self._stems(job, made)
        else:
            await self._song(job, made)

    async def _progress(self, job: Job, received: int) -> None:
        """Bytes of the answer have arrived: the job is running, and its card says how much."""
        try:
            await self._repo.transition(job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED])
            await self._repo.update_fields(
                job.id, when_status=[JobStatus.RUNNING], result_json=json.dumps({"received_bytes": received})
            )
        except StorageError as exc:  # only the card's progress: the call goes on
            log.warning("job %s: progress not recorded: %s", job.id, exc)
            return
        await self._cards.notify(job.id)

    async def _song(self, job: Job, song: Song) -> None:
        """A song: the file verified and recorded, with what came with it."""
        try:
            got = DownloadedFile(song.path, song.size, song.content_type)
            audio = await self._outputs.verified(got, OutputKind.AUDIO)
        except OutputError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        result = {
            "metadata": song.metadata,
            "plan": song.plan,
            "song_id": song.song_id,
            **({"model_id": song.model} if song.model else {}),  # the provider's own model (the file's tags say)
            **_timed_lines(job, song),
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

    async def _stems(self, job: Job, stems: Stems) -> None:
        """Stems: each file verified, then recorded together."""
        files = dict(stems.files)
        try:
            for name, path in files.items():
                files[name] = (await self._outputs.verified(DownloadedFile(path, 0, ""), OutputKind.AUDIO)).path
        except OutputError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        await self._outputs.stems_done(job, files)
