"""A finished prediction's outputs: fetched, verified for what they really are, stitched, and recorded.

Nothing reaches delivery that isn't real audio (or, for Riffusion, a real image): each file is checked by
decoding it and named for the format found. A continuation is stitched back onto the part of the track the
model never saw, so the result is always the whole track. Once the file is on our disk the job moves to
succeeded, and only the winner of that move hands it on. One process fetches a job's output at a time (it
holds the job's fetch lease): a webhook heard by one process and a poll made by another download it once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import Awaitable, Callable
from functools import partial
from pathlib import Path
from typing import Any

import av.error

from bot.audio import off_loop
from bot.audio.download import guess_content_type
from bot.audio.prepare import stitch
from bot.audio.verify import OutputKind, OutputRejectedError, verify_output
from bot.catalog import get_model
from bot.config import Settings
from bot.errors import BotError, OutputError, StorageError
from bot.jobs.leases import Kind, Leases
from bot.jobs.outcomes import Outcomes
from bot.jobs.phase import CardFeed
from bot.jobs.tasks import Tasks
from bot.providers.base import DownloadedFile, Prediction, PredictionProvider
from bot.providers.plugins import Providers
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

_SEED_IN_LOGS = re.compile(r"seed\W{0,3}(-?\d{1,12})", re.IGNORECASE)
_OUTPUT_ATTEMPTS = 3
MAX_RESUBMITS = 1  # a prediction run again at most this often (its output expired, or the server lost it)


def _seed_from(prediction: Prediction, job: Job) -> int | None:
    if isinstance(job.input.get("seed"), int):
        return int(job.input["seed"])
    match = _SEED_IN_LOGS.search(prediction.logs or "")
    return int(match.group(1)) if match else None


async def _remove(*paths: Path | None) -> None:
    for path in paths:
        if path is not None:
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(path.unlink)


class Outputs:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: Providers,
        cards: CardFeed,
        outcomes: Outcomes,
        tasks: Tasks,
        transfers: asyncio.Semaphore,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
        resubmit: Callable[[Job], Awaitable[None]],
        pick_up: Callable[[str], Awaitable[None]],
        leases: Leases,
    ) -> None:
        """``resubmit(job)`` runs a job's prediction again; ``pick_up(job_id)`` takes a job up again from what
        the database says (after storage trouble)."""
        self._repo = repo
        self._registry = providers.registry
        self._providers = providers.predictions()
        self._cards = cards
        self._outcomes = outcomes
        self._tasks = tasks
        self._transfers = transfers
        self._settings = settings
        self._clock = clock
        self._resubmit = resubmit
        self._pick_up = pick_up
        self._leases = leases

    @property
    def outputs_dir(self) -> Path:
        return self._settings().storage.outputs_dir

    async def fetch(self, job_id: str, prediction: Prediction) -> None:
        """Download (and stitch) a finished output, then deliver. Any crash ends the job with a reason."""
        try:
            async with self._leases.claim(Kind.FETCH, job_id) as mine:
                if not mine:
                    log.debug("job %s: another process is fetching its output", job_id)
                    return
                await self._fetch_once(job_id, prediction)
        except StorageError as exc:  # the output is fetched again (the provider keeps it for a while)
            if await self._tasks.wait_for_storage(job_id, exc):
                await self._pick_up(job_id)
        except Exception:
            log.exception("job %s: fetching the output crashed", job_id)
            await self._outcomes.fail(
                job_id, "Something went wrong on my side while fetching the audio. Please try again."
            )

    async def _fetch_once(self, job_id: str, prediction: Prediction) -> None:
        job = await self._repo.get(job_id)
        if job is None or not job.status.is_active_at_provider:
            return
        await self._cards.notify(job.id, uploading=True)
        if prediction.output is None and prediction.data_removed:
            if job.attempts <= MAX_RESUBMITS:
                log.warning("job %s: output of %s expired; running it again", job.id, job.prediction_id)
                await self._resubmit(job)
            else:
                await self._outcomes.fail(
                    job.id, "The model's output expired before I could fetch it. Please try again."
                )
            return
        try:
            outputs = get_model(job.model).read_output(prediction.output)
        except (ValueError, BotError):
            await self._outcomes.fail(job.id, "The model finished but returned no audio. Please try again.")
            return
        provider = self._providers[job.provider]
        predict_time = prediction.metrics.predict_time if prediction.metrics else None
        if outputs.files:
            files: dict[str, Path] = {}
            for name, url in outputs.files.items():
                safe = "".join(c for c in name if c.isalnum() or c in "_-")[:40] or "stem"
                got = await self._download(job, provider, url, f"{job.id}-{safe}")
                if got is None:
                    return
                files[safe] = got.path
            await self.stems_done(job, files, predict_time_s=predict_time)
            return
        stored = await self._download(job, provider, outputs.audio, job.id)
        if stored is None:
            return
        image_path = None
        if outputs.image is not None:
            image = await self._download(job, provider, outputs.image, f"{job.id}-image", OutputKind.IMAGE)
            if image is None:
                return
            image_path = str(image.path)
        stitch_plan = job.context.get("stitch")
        if stitch_plan:
            stitched = await self._stitch(job, stored, stitch_plan)
            if stitched is None:
                return
            stored = stitched
        won = await self._repo.transition(
            job.id,
            JobStatus.SUCCEEDED,
            now=self._clock(),
            output_path=str(stored.path),
            output_size=stored.size,
            output_content_type=stored.content_type,
            seed=_seed_from(prediction, job),
            cost_usd=self.actual_cost(job, predict_time),
            predict_time_s=predict_time,
            total_time_s=prediction.metrics.total_time if prediction.metrics else None,
            image_path=image_path,
        )
        if not won:  # canceled while downloading: the files are nobody's
            await _remove(stored.path, Path(image_path) if image_path else None)
            return
        log.info("job %s output stored (%d bytes)", job.id, stored.size)
        await self._outcomes.succeeded(job)

    async def _stitch(self, job: Job, stored: DownloadedFile, plan: dict[str, Any]) -> DownloadedFile | None:
        """Put back the part of the source the model never saw, so the result is the whole track."""
        dest = self.outputs_dir / f"{job.id}-full.wav"
        try:
            await off_loop("stitch", stitch, Path(plan["source"]), float(plan["prefix_s"]), stored.path, dest)
            size = (await asyncio.to_thread(dest.stat)).st_size
        except (OSError, ValueError, KeyError, av.error.FFmpegError) as exc:
            await self._outcomes.fail(job.id, "I couldn't join the continuation onto your track.", detail=str(exc))
            return None
        await _remove(stored.path)
        return DownloadedFile(path=dest, size=size, content_type="audio/wav")

    async def _download(
        self, job: Job, provider: PredictionProvider, url: str, stem: str, kind: OutputKind = OutputKind.AUDIO
    ) -> DownloadedFile | None:
        """Fetch one output file into the outputs directory, retrying network trouble, and make sure it is
        ``kind`` (named for what it really is); None if it failed (the job has failed)."""
        # A neutral name until the file is known: the URL's extension must not steer FFmpeg's guess.
        dest = self.outputs_dir / f"{stem}.download"
        attempt = 0
        while True:
            try:
                async with self._transfers:
                    got = await provider.download(url, dest, max_bytes=self._settings().storage.max_output_bytes)
                return await self.verified(got, kind)
            except OutputError as exc:
                attempt += 1
                if not exc.retryable or attempt >= _OUTPUT_ATTEMPTS:
                    await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
                    return None
                log.warning("job %s: output download failed (%s), attempt %d", job.id, exc, attempt)
                if not await self._tasks.nap(self._tasks.retry_delay(attempt)):
                    return None  # stopping: the next start downloads it again

    async def verified(self, got: DownloadedFile, kind: OutputKind) -> DownloadedFile:
        """``got`` renamed after what it really is; OutputRejectedError (and the file gone) if it isn't ``kind``."""
        try:
            found = await verify_output(got.path, kind)
        except OutputRejectedError:
            await _remove(got.path)
            raise
        path = got.path.with_suffix(found.extension)
        await asyncio.to_thread(got.path.replace, path)
        return DownloadedFile(path=path, size=got.size, content_type=found.content_type)

    async def stems_done(self, job: Job, files: dict[str, Path], *, predict_time_s: float | None = None) -> None:
        """Record a job's stems (each file already verified) as its output."""
        first = next(iter(files.values()))
        total = await asyncio.to_thread(lambda: sum(path.stat().st_size for path in files.values()))
        if await self.record_stored(
            job,
            output_path=str(first),
            output_size=total,
            output_content_type=guess_content_type(first.name),
            cost_usd=self.actual_cost(job, predict_time_s),
            predict_time_s=predict_time_s,
            result_json=json.dumps({"files": [{"name": n, "path": str(p)} for n, p in files.items()]}),
        ):
            log.info("job %s: %d stems stored", job.id, len(files))

    async def record_stored(self, job: Job, **output: Any) -> bool:
        """Move ``job`` to succeeded with its stored ``output`` (columns), retried until storage takes it (the
        file exists: doing the work again would cost more). Only the winner of the move hands the job on."""
        won = await self._tasks.record(
            partial(self._repo.transition, job.id, JobStatus.SUCCEEDED, now=self._clock(), **output)
        )
        if won:
            await self._outcomes.succeeded(job)
        return won

    def actual_cost(self, job: Job, predict_time_s: float | None) -> float:
        """What a finished job cost, by its provider's rule (its declaration); the estimate if the provider gave
        no figure."""
        cost = self._registry.cost_usd(job, predict_time_s, self._settings().limits)
        return job.cost_usd if cost is None else cost
