"""Starting a queued job at its provider, when the scheduler gives it a turn.

A long-call provider's job is handed to ``bot.jobs.calls``. A prediction provider's job is created there,
with our webhook URL and an id of our own, and recorded as submitted. Creating costs money, so a job that
tried before (a lost answer, a crash) is never created twice: the provider's own list is searched first, and
a create whose outcome is unknown is looked for before it is tried again. A busy provider
(``ProviderBusyError``) made nothing: the job keeps its place and asks again when it said.

Only the process whose scheduler gave the job its turn starts it (``job.claimed_by``): every step that changes
the queued job is conditional on that claim, so a process that was taken for gone (and whose turn another took
over) backs off.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bot.config import Settings
from bot.errors import ProviderBusyError, ProviderError, StorageError, SubmissionUncertainError
from bot.jobs.calls import Calls
from bot.jobs.leases import Kind, Leases
from bot.jobs.outcomes import Outcomes
from bot.jobs.phase import CardFeed
from bot.jobs.poller import Poller
from bot.jobs.tasks import Tasks
from bot.providers.base import (
    Prediction,
    PredictionProvider,
    PredictionStatus,
    ProviderProtocol,
    WebhookRoute,
    job_webhooks_path,
)
from bot.providers.plugins import Providers
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

_MAX_SUBMIT_ATTEMPTS = 3


class Submitter:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: Providers,
        calls: Calls,
        cards: CardFeed,
        outcomes: Outcomes,
        poller: Poller,
        tasks: Tasks,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
        public_url: str | None,
        signed_webhooks: Mapping[str, str],
        on_prediction: Callable[[Prediction], Awaitable[None]],
        pick_up: Callable[[str], Awaitable[None]],
        leases: Leases,
        instance: str,
    ) -> None:
        """``public_url``: where providers reach Encore's web server (a provider reporting per job gets a URL of
        its job's own under it); ``signed_webhooks``: the URL of each provider whose webhooks are signed and can
        be checked, by name. ``on_prediction`` hears a prediction that was already under way when created
        (progress intake); ``pick_up(job_id)`` takes a job up again from the database after storage trouble;
        ``instance`` is this process (its scheduler's claims)."""
        self._instance = instance
        self._repo = repo
        self._registry = providers.registry
        self._providers = providers.predictions()
        self._calls = calls
        self._cards = cards
        self._outcomes = outcomes
        self._poller = poller
        self._tasks = tasks
        self._settings = settings
        self._clock = clock
        self._public_url = public_url.rstrip("/") if public_url else None
        self._signed_webhooks = dict(signed_webhooks)
        self._on_prediction = on_prediction
        self._pick_up = pick_up
        self._leases = leases

    def start(self, job_id: str, *, delay_s: float = 0.0) -> None:
        """Submit ``job_id`` in a task of its own (after ``delay_s``)."""
        self._tasks.spawn(self.submit(job_id, delay_s=delay_s), name=f"submit:{job_id}")

    async def submit(self, job_id: str, *, delay_s: float = 0.0) -> None:
        """Submit a queued job. Whatever goes wrong, the job ends with a reason: nobody waits forever."""
        try:
            await self._submit_once(job_id, delay_s=delay_s)
        except StorageError as exc:
            if await self._tasks.wait_for_storage(job_id, exc):
                await self._pick_up(job_id)
        except Exception:
            log.exception("job %s: submission crashed", job_id)
            await self._outcomes.fail(
                job_id, "Something went wrong on my side while starting this job. Please try again."
            )

    async def _submit_once(self, job_id: str, *, delay_s: float) -> None:
        if delay_s and not await self._tasks.nap(delay_s):
            return
        job = await self._repo.get(job_id)
        if job is None or job.status != JobStatus.QUEUED:
            return
        if job.claimed_by != self._instance or job.claimed_at is None:
            log.info("job %s: its turn isn't this process's (%s); leaving it", job.id, job.claimed_by)
            return
        if self._registry.spec(job.provider).protocol is ProviderProtocol.CALL:
            await self._calls.run(job)
        else:
            await self._create(job)

    async def _create(self, job: Job) -> None:
        provider = self._providers[job.provider]
        if self._clock() - job.created_at > self._settings().jobs.timeout_s:
            await self._outcomes.fail(job.id, "The music service couldn't take the job in time. Please try again.")
            return
        # A job that already tried may have reached the provider (a lost answer, a crash): look first,
        # and never create again unless the provider's own list shows the earlier try made nothing.
        if job.attempts > 0:
            since = datetime.fromtimestamp(job.created_at, UTC) - timedelta(minutes=2)
            try:
                found = await provider.find_submitted(job.model_ref, job.input, created_after=since)
            except ProviderError as exc:
                log.warning("job %s: can't check for an earlier submission yet: %s", job.id, exc)
                self.start(job.id, delay_s=self._tasks.retry_delay(job.attempts))
                return
            if found is not None:
                await self._record_submission(job, found)
                return
            if job.attempts >= _MAX_SUBMIT_ATTEMPTS:
                await self._outcomes.fail(job.id, SubmissionUncertainError.default_message + " Please try again.")
                return
        if job.attempts == 0 and job.input_files:
            resolved = await self._resolve_files(job, provider)
            if resolved is None:
                return
            job = resolved
        # This process will poll it: its lease is taken before the job shows as at the provider, so no other
        # process takes it for one whose process is gone (and before the create, not between its answer and the
        # record of it: a fast provider's news may come at once).
        await self._leases.take(Kind.POLL, job.id)
        if not await self._repo.update_fields(
            job.id, when_status=[JobStatus.QUEUED], when_claimed_by=self._instance, attempts=job.attempts + 1
        ):
            await self._leases.release(Kind.POLL, job.id)
            return  # canceled meanwhile, or its turn taken over
        job = job.model_copy(update={"attempts": job.attempts + 1})
        try:
            prediction = await provider.submit(
                job.model_ref, job.input, webhook_url=self._webhook_for(job), prediction_id=f"{job.id}-{job.attempts}"
            )
        except ProviderBusyError as exc:
            # Nothing was created: the job keeps its place and its attempts, and asks again when the provider said.
            log.info("job %s: %s; waiting", job.id, exc)
            await self._repo.update_fields(
                job.id, when_status=[JobStatus.QUEUED], when_claimed_by=self._instance, attempts=job.attempts - 1
            )
            self.start(job.id, delay_s=exc.retry_after_s)
            return
        except SubmissionUncertainError as exc:
            # The create may still be in flight: give it time to land before looking for it.
            log.warning("job %s: create uncertain (%s); checking the provider shortly", job.id, exc)
            self.start(job.id, delay_s=self._tasks.retry_delay(1))
            return
        except ProviderError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        await self._record_submission(job, prediction)

    async def _resolve_files(self, job: Job, provider: PredictionProvider) -> Job | None:
        """Hand the job's input files to the provider and store the references in its input."""
        data = dict(job.input)
        try:
            for key, path in job.input_files.items():
                data[key] = await provider.upload(Path(path))
        except ProviderError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return None
        except OSError as exc:
            await self._outcomes.fail(job.id, "Your audio file went missing before it could be sent.", detail=str(exc))
            return None
        if not await self._repo.set_input(job.id, data):
            return None  # canceled meanwhile
        return job.model_copy(update={"input": data})

    async def _record_submission(self, job: Job, prediction: Prediction) -> None:
        if not self._leases.holds(Kind.POLL, job.id):  # a create that took long, or a submission found by listing
            await self._leases.take(Kind.POLL, job.id)
        won = await self._repo.transition(job.id, JobStatus.SUBMITTED, prediction_id=prediction.id, now=self._clock())
        if not won:
            current = await self._repo.get(job.id)
            if current is not None and current.prediction_id == prediction.id:
                # Another process found this very prediction and recorded it: it is the job's, and that process's.
                await self._leases.release(Kind.POLL, job.id)
                return
            # Canceled while the create was in flight: don't leave it running upstream.
            await self.cancel_upstream(job.provider, prediction.id)
            return
        log.info("job %s submitted as prediction %s", job.id, prediction.id)
        await self._cards.notify(job.id)
        self._schedule_poll(job)
        if prediction.status != PredictionStatus.STARTING:
            await self._on_prediction(prediction)

    async def resubmit(self, job: Job) -> None:
        """Run a job's prediction again (its output expired, or the server lost it), under a new id."""
        try:
            prediction = await self._providers[job.provider].submit(
                job.model_ref,
                job.input,
                webhook_url=self._webhook_for(job),
                prediction_id=f"{job.id}-{job.attempts + 1}",
            )
        except ProviderError as exc:
            await self._outcomes.fail(job.id, exc.user_message, detail=str(exc))
            return
        if await self._repo.replace_prediction(job.id, old=job.prediction_id, new=prediction.id):
            self._schedule_poll(job)
        else:
            await self.cancel_upstream(job.provider, prediction.id)

    async def cancel_upstream(self, provider_name: str, prediction_id: str) -> None:
        """Cancel a prediction at its provider, as best we can (a failure is only logged)."""
        try:
            await self._providers[provider_name].cancel(prediction_id)
        except (ProviderError, KeyError) as exc:
            log.warning("could not cancel prediction %s: %s", prediction_id, exc)

    def _webhook_for(self, job: Job) -> str | None:
        """Where ``job``'s provider reports on it: a URL of the job's own (with its token), or the provider's
        signed-webhook URL; None: it is polled."""
        if self._registry.spec(job.provider).webhook is WebhookRoute.PER_JOB:
            if self._public_url is None or job.callback_token is None:
                return None
            return f"{self._public_url}{job_webhooks_path(job.provider)}/{job.id}/{job.callback_token}"
        return self._signed_webhooks.get(job.provider)

    def _schedule_poll(self, job: Job) -> None:
        grace = self._providers[job.provider].poll_grace_s
        self._poller.schedule(job.id, due=None if grace is None else self._clock() + grace)
