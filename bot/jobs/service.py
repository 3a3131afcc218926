"""The job service: the rules of a job's life, from request to delivered audio.

Every state change goes through :meth:`JobsRepo.transition`, a conditional UPDATE; whoever wins a
move acts on it and everyone else backs off, so the webhook, the poller and users may race freely.
The service knows nothing of Discord: it reports through a :class:`JobListener`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from yarl import URL

from bot.audio.download import guess_content_type
from bot.catalog import validate_request
from bot.config import Settings
from bot.errors import (
    BotError,
    DeliveryError,
    JobNotFoundError,
    JobStateError,
    NotAllowedError,
    OutputError,
    ProviderError,
    ProviderNotFoundError,
    SubmissionUncertainError,
)
from bot.jobs.models import Job, JobOrigin, JobRequest, JobStatus, new_job_id
from bot.jobs.poller import Poller
from bot.providers.base import Prediction, PredictionStatus, Provider, output_urls
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

_SEED_IN_LOGS = re.compile(r"seed\W{0,3}(-?\d{1,12})", re.IGNORECASE)
_OUTPUT_ATTEMPTS = 3
_MAX_RESUBMITS = 1
_MAX_SUBMIT_ATTEMPTS = 3


class Phase(StrEnum):
    """What a person sees on the job card."""

    QUEUED = "Queued"
    STARTING = "Starting"
    GENERATING = "Generating"
    UPLOADING = "Uploading"
    DONE = "Done"
    FAILED = "Failed"
    CANCELED = "Canceled"


class JobListener(Protocol):
    """Implemented by Discord delivery and by the CLI."""

    async def job_updated(self, job: Job, phase: Phase) -> None:
        """The job moved; update whatever shows it. Must not raise."""
        ...

    async def deliver(self, job: Job) -> int | None:
        """Hand the finished file (``job.output_path``) to the user. Returns a message id if any.

        Raise :class:`DeliveryError` (``retryable=False`` when retrying cannot help).
        """
        ...


def phase_of(status: JobStatus) -> Phase:
    return {
        JobStatus.QUEUED: Phase.QUEUED,
        JobStatus.SUBMITTED: Phase.STARTING,
        JobStatus.RUNNING: Phase.GENERATING,
        JobStatus.SUCCEEDED: Phase.UPLOADING,
        JobStatus.DELIVERED: Phase.DONE,
        JobStatus.FAILED: Phase.FAILED,
        JobStatus.CANCELED: Phase.CANCELED,
    }[status]


def _friendly_failure(prediction: Prediction) -> str:
    if prediction.status == PredictionStatus.ABORTED:
        return "The music service dropped the job before it started. Please try again."
    return "The model failed to make this track. Try a different prompt or settings."


def _seed_from(prediction: Prediction, job: Job) -> int | None:
    if isinstance(job.input.get("seed"), int):
        return int(job.input["seed"])
    match = _SEED_IN_LOGS.search(prediction.logs or "")
    return int(match.group(1)) if match else None


class JobService:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: dict[str, Provider],
        settings: Settings,
        listener: JobListener,
        webhook_url: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.repo = repo
        self.providers = providers
        self.settings = settings
        self.listener = listener
        self.webhook_url = webhook_url
        self.clock = clock
        self.outputs_dir: Path = settings.storage.outputs_dir
        self.poller = Poller(self, settings.jobs, webhooks_on=webhook_url is not None, clock=clock)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._outcomes: set[asyncio.Task[Any]] = set()
        self._pipelines: dict[str, asyncio.Task[None]] = {}
        self._accepting = False
        self._stopping = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self, *, resume: bool = True) -> None:
        """Resume every unfinished job (unless ``resume`` is false), then start polling."""
        await asyncio.to_thread(self.outputs_dir.mkdir, parents=True, exist_ok=True)
        self._stopping.clear()
        self._accepting = True
        jobs = await self.repo.list_active() if resume else []
        if jobs:
            log.info("resuming %d unfinished job(s)", len(jobs))
        for job in jobs:
            self._resume(job)
        self.poller.start()

    async def stop(self, *, grace_s: float = 10.0) -> None:
        """Stop taking jobs, give downloads and deliveries in flight ``grace_s`` to finish, cancel the rest.

        Whatever is left resumes at the next start; recorded outcomes are never cut off half-written.
        """
        self._accepting = False
        self._stopping.set()  # backoff naps end now; only work in flight gets the grace period
        await self.poller.stop()
        pipelines = [task for task in self._pipelines.values() if not task.done()]
        if pipelines:
            await asyncio.wait(pipelines, timeout=grace_s)
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await asyncio.gather(*self._outcomes, return_exceptions=True)

    async def _nap(self, delay_s: float) -> bool:
        """Sleep before a retry; False (at once) if the service is stopping, so the caller gives up."""
        try:
            async with asyncio.timeout(delay_s):
                await self._stopping.wait()
        except TimeoutError:
            return True
        return False

    async def _record(self, coro: Coroutine[Any, Any, bool]) -> bool:
        """Run a write that records an outcome to completion even if our caller is cancelled."""
        task = asyncio.create_task(coro)
        self._outcomes.add(task)
        task.add_done_callback(self._outcomes.discard)
        return await asyncio.shield(task)

    def _resume(self, job: Job) -> None:
        if job.status == JobStatus.QUEUED:
            self._spawn(self._submit(job.id), name=f"submit:{job.id}")
        elif job.status.is_active_at_provider:
            self.poller.schedule(job.id, due=self.clock())
        elif job.status == JobStatus.SUCCEEDED:
            self._start_pipeline(job.id, self._deliver(job.id))

    def _spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed", task.get_name(), exc_info=task.exception())

    def _start_pipeline(self, job_id: str, coro: Coroutine[Any, Any, None]) -> bool:
        """Run the fetch/deliver pipeline for a job once at a time; a second caller backs off."""
        running = self._pipelines.get(job_id)
        if running is not None and not running.done():
            coro.close()
            return False
        task = self._spawn(coro, name=f"pipeline:{job_id}")
        self._pipelines[job_id] = task
        task.add_done_callback(lambda _: self._pipelines.pop(job_id, None))
        return True

    async def _notify(self, job_id: str) -> None:
        job = await self.repo.get(job_id)
        if job is not None:
            await self._notify_job(job, phase_of(job.status))

    async def _notify_job(self, job: Job, phase: Phase) -> None:
        try:
            await self.listener.job_updated(job, phase)
        except Exception:
            log.exception("listener failed on job %s", job.id)

    # -- creating and canceling ----------------------------------------------------------------

    async def create(self, request: JobRequest, origin: JobOrigin) -> Job:
        """Validate and queue a job; it is submitted in the background. Raises InvalidRequestError."""
        if not self._accepting:
            raise BotError("Encore is restarting and not taking new jobs right now. Please try again shortly.")
        validated = validate_request(request, self.settings)
        spec = validated.spec
        provider = self.providers.get(spec.provider)
        if provider is None:
            raise BotError(f"{spec.display_name} isn't available on this bot.")
        job = await self.repo.insert(
            job_id=new_job_id(),
            origin=origin,
            provider=spec.provider,
            model=spec.key,
            model_ref=spec.model_ref(self.settings),
            request=validated.as_record(),
            input=spec.build(validated),
            now=self.clock(),
        )
        log.info("job %s queued: model=%s user=%s", job.id, job.model, job.user_id)
        self._spawn(self._submit(job.id), name=f"submit:{job.id}")
        return job

    async def set_card(self, job_id: str, message_id: int) -> None:
        await self.repo.update_fields(job_id, when_status=list(JobStatus), card_message_id=message_id)

    async def get(self, job_id: str) -> Job:
        job = await self.repo.get(job_id)
        if job is None:
            raise JobNotFoundError()
        return job

    async def cancel(self, job_id: str, *, user_id: int, moderator: bool = False) -> Job:
        """Cancel a job for its requester (or a moderator). The provider's prediction is canceled too."""
        job = await self.get(job_id)
        if job.user_id != user_id and not moderator:
            raise NotAllowedError("Only the person who asked for this track (or a moderator) can cancel it.")
        if job.status.is_terminal or job.status == JobStatus.SUCCEEDED:
            raise JobStateError(f"That job is already {self._describe_status(job.status)}.")
        reason = "Canceled by a moderator." if job.user_id != user_id else "Canceled by the requester."
        if not await self.repo.transition(job.id, JobStatus.CANCELED, error=reason, now=self.clock()):
            job = await self.get(job_id)
            raise JobStateError(f"That job is already {self._describe_status(job.status)}.")
        log.info("job %s canceled by %s", job.id, user_id)
        self.poller.unschedule(job.id)
        if job.prediction_id:
            await self._cancel_upstream(job.provider, job.prediction_id)
        await self._notify(job.id)
        return await self.get(job_id)

    @staticmethod
    def _describe_status(status: JobStatus) -> str:
        return {
            JobStatus.SUCCEEDED: "finished and being posted",
            JobStatus.DELIVERED: "finished",
            JobStatus.FAILED: "over (it failed)",
            JobStatus.CANCELED: "canceled",
        }.get(status, status.value)

    async def _cancel_upstream(self, provider_name: str, prediction_id: str) -> None:
        try:
            await self.providers[provider_name].cancel(prediction_id)
        except (ProviderError, KeyError) as exc:
            log.warning("could not cancel prediction %s: %s", prediction_id, exc)

    async def _fail(self, job_id: str, reason: str, *, detail: str | None = None) -> bool:
        won = await self.repo.transition(job_id, JobStatus.FAILED, error=reason, now=self.clock())
        if won:
            log.info("job %s failed: %s", job_id, detail or reason)
            self.poller.unschedule(job_id)
            await self._notify(job_id)
        return won

    # -- submitting ----------------------------------------------------------------------------

    async def _submit(self, job_id: str, *, delay_s: float = 0.0) -> None:
        if delay_s and not await self._nap(delay_s):
            return
        job = await self.repo.get(job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return
        provider = self.providers[job.provider]
        if self.clock() - job.created_at > self.settings.jobs.timeout_s:
            await self._fail(job.id, "The music service couldn't take the job in time. Please try again.")
            return
        # A job that already tried may have reached the provider (a lost answer, a crash): look first,
        # and never create again unless the provider's own list shows the earlier try made nothing.
        if job.attempts > 0:
            since = datetime.fromtimestamp(job.created_at, UTC) - timedelta(minutes=2)
            try:
                found = await provider.find_submitted(job.model_ref, job.input, created_after=since)
            except ProviderError as exc:
                log.warning("job %s: can't check for an earlier submission yet: %s", job.id, exc)
                self._spawn(self._submit(job.id, delay_s=self._retry_delay(job.attempts)), name=f"submit:{job.id}")
                return
            if found is not None:
                await self._record_submission(job, found)
                return
            if job.attempts >= _MAX_SUBMIT_ATTEMPTS:
                await self._fail(job.id, SubmissionUncertainError.default_message + " Please try again.")
                return
        if not await self.repo.update_fields(job.id, when_status=[JobStatus.QUEUED], attempts=job.attempts + 1):
            return  # canceled meanwhile
        job = job.model_copy(update={"attempts": job.attempts + 1})
        try:
            prediction = await provider.submit(job.model_ref, job.input, webhook_url=self.webhook_url)
        except SubmissionUncertainError as exc:
            # The create may still be in flight: give it time to land before looking for it.
            log.warning("job %s: create uncertain (%s); checking the provider shortly", job.id, exc)
            self._spawn(self._submit(job.id, delay_s=self._retry_delay(1)), name=f"submit:{job.id}")
            return
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        await self._record_submission(job, prediction)

    def _retry_delay(self, attempt: int) -> float:
        return min(self.settings.jobs.retry_s * 2 ** max(0, attempt - 1), 300.0)

    async def _record_submission(self, job: Job, prediction: Prediction) -> None:
        won = await self.repo.transition(job.id, JobStatus.SUBMITTED, prediction_id=prediction.id, now=self.clock())
        if not won:  # canceled while the create was in flight: don't leave it running upstream
            await self._cancel_upstream(job.provider, prediction.id)
            return
        log.info("job %s submitted as prediction %s", job.id, prediction.id)
        await self._notify(job.id)
        self.poller.schedule(job.id)
        if prediction.status != PredictionStatus.STARTING:
            await self.handle_prediction(prediction)

    # -- progress from webhooks and polls ------------------------------------------------------

    async def handle_prediction(self, prediction: Prediction) -> None:
        """Apply a provider's report (webhook or poll). Safe to call any number of times, in any order."""
        job = await self.repo.get_by_prediction(prediction.id)
        if job is None:
            log.debug("ignoring unknown prediction %s", prediction.id)
            return
        await self._apply(job, prediction)

    async def accept_webhook(self, webhook_id: str, prediction: Prediction) -> bool:
        """Handle a verified webhook once per ``webhook-id``. False for a redelivery (dropped)."""
        if not await self.repo.remember_webhook(webhook_id, now=self.clock()):
            log.debug("dropping redelivered webhook %s", webhook_id)
            return False
        try:
            await self.handle_prediction(prediction)
        except BaseException:
            # Not handled: forget the id so the provider's retry is processed.
            await asyncio.shield(self.repo.forget_webhook(webhook_id))
            raise
        return True

    async def _apply(self, job: Job, prediction: Prediction) -> None:
        if not job.status.is_active_at_provider:
            return  # finished, or already being fetched and delivered
        status = prediction.status
        if status == PredictionStatus.PROCESSING:
            if await self.repo.transition(
                job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED], now=self.clock()
            ):
                await self._notify(job.id)
        elif status == PredictionStatus.SUCCEEDED:
            self._start_pipeline(job.id, self._fetch_output(job.id, prediction))
        elif status in (PredictionStatus.FAILED, PredictionStatus.ABORTED):
            await self._fail(job.id, _friendly_failure(prediction), detail=f"provider: {prediction.error!r}")
        elif status == PredictionStatus.CANCELED and await self.repo.transition(
            job.id, JobStatus.CANCELED, error="The job was canceled at the music service.", now=self.clock()
        ):
            self.poller.unschedule(job.id)
            await self._notify(job.id)

    async def poll(self, job_id: str) -> bool:
        """Poll one job's prediction. Returns True while the job still needs polling."""
        job = await self.repo.get(job_id)
        if job is None or not job.status.is_active_at_provider or job.prediction_id is None:
            return False
        if self.clock() - job.created_at > self.settings.jobs.timeout_s:
            if await self._fail(job.id, "The job took too long and was stopped. Please try again."):
                await self._cancel_upstream(job.provider, job.prediction_id)
            return False
        try:
            prediction = await self.providers[job.provider].get(job.prediction_id)
        except ProviderNotFoundError:
            await self._fail(job.id, "The music service lost track of this job. Please try again.")
            return False
        except ProviderError as exc:
            log.warning("job %s: poll failed: %s", job.id, exc)
            return True
        await self._apply(job, prediction)
        return not prediction.status.is_terminal

    # -- output and delivery -------------------------------------------------------------------

    async def _fetch_output(self, job_id: str, prediction: Prediction) -> None:
        job = await self.repo.get(job_id)
        if job is None or not job.status.is_active_at_provider:
            return
        await self._notify_job(job, Phase.UPLOADING)
        urls = output_urls(prediction.output)
        if not urls:
            if prediction.data_removed and job.attempts <= _MAX_RESUBMITS:
                await self._resubmit_expired(job)
            else:
                await self._fail(job.id, "The model finished but returned no audio. Please try again.")
            return
        url = urls[0]
        suffix = Path(URL(url).name).suffix.lower() if not url.startswith("data:") else ".wav"
        dest = self.outputs_dir / f"{job.id}{suffix or '.bin'}"
        provider = self.providers[job.provider]
        attempt = 0
        while True:
            try:
                stored = await provider.download(url, dest, max_bytes=self.settings.storage.max_output_bytes)
                break
            except OutputError as exc:
                attempt += 1
                if not exc.retryable or attempt >= _OUTPUT_ATTEMPTS:
                    await self._fail(job.id, exc.user_message, detail=str(exc))
                    return
                log.warning("job %s: output download failed (%s), attempt %d", job.id, exc, attempt)
                if not await self._nap(self._retry_delay(attempt)):
                    return  # stopping: the next start downloads it again
        content_type = stored.content_type
        if content_type in ("", "application/octet-stream"):
            content_type = guess_content_type(dest.name)
        metrics = prediction.metrics
        won = await self.repo.transition(
            job.id,
            JobStatus.SUCCEEDED,
            now=self.clock(),
            output_path=str(stored.path),
            output_size=stored.size,
            output_content_type=content_type,
            seed=_seed_from(prediction, job),
            predict_time_s=metrics.predict_time if metrics else None,
            total_time_s=metrics.total_time if metrics else None,
        )
        if not won:  # canceled while downloading: the file is nobody's
            with contextlib.suppress(FileNotFoundError):
                await asyncio.to_thread(stored.path.unlink)
            return
        self.poller.unschedule(job.id)
        log.info("job %s output stored (%d bytes)", job.id, stored.size)
        await self._deliver(job.id)

    async def _resubmit_expired(self, job: Job) -> None:
        """The provider already deleted the output (resumed too late): run the prediction again."""
        log.warning("job %s: output of %s expired; running it again", job.id, job.prediction_id)
        try:
            prediction = await self.providers[job.provider].submit(
                job.model_ref, job.input, webhook_url=self.webhook_url
            )
        except ProviderError as exc:
            await self._fail(job.id, exc.user_message, detail=str(exc))
            return
        if await self.repo.replace_prediction(job.id, old=job.prediction_id, new=prediction.id):
            self.poller.schedule(job.id)
        else:
            await self._cancel_upstream(job.provider, prediction.id)

    async def _deliver(self, job_id: str) -> None:
        jobs = self.settings.jobs
        while True:
            job = await self.repo.get(job_id)
            if job is None or job.status != JobStatus.SUCCEEDED:
                return
            attempt = await self.repo.count_delivery_attempt(job.id)
            if attempt == 0:
                return
            try:
                message_id = await self.listener.deliver(job)
            except DeliveryError as exc:
                if not exc.retryable or attempt >= jobs.delivery_attempts:
                    await self._fail(job.id, exc.user_message, detail=str(exc))
                    return
                log.warning("job %s: delivery attempt %d failed: %s", job.id, attempt, exc)
            except Exception:
                if attempt >= jobs.delivery_attempts:
                    log.exception("job %s: delivery failed for good", job.id)
                    await self._fail(job.id, DeliveryError.default_message)
                    return
                log.exception("job %s: delivery attempt %d crashed", job.id, attempt)
            else:
                if await self._record(
                    self.repo.transition(job.id, JobStatus.DELIVERED, delivery_message_id=message_id, now=self.clock())
                ):
                    log.info("job %s delivered", job.id)
                    await self._notify(job.id)
                return
            if not await self._nap(self._retry_delay(attempt)):
                return  # stopping: the next start delivers it from the stored file
