"""Progress intake: what providers report about predictions, by webhook or by poll, applied to jobs.

Every report goes through :meth:`Intake.apply`, which is safe to call any number of times in any order: each
move is a conditional UPDATE and only its winner acts. A finished prediction starts the output pipeline
(one at a time per job). A running one tells how far along it is (its logs' progress bar, see
``bot.jobs.progress``): the card shows it and the poller plans the next poll by it. Signed webhooks that finish a
prediction are taken once per id; those that only report progress (``start``, ``logs``) change nothing twice,
so they take no row (their ids are remembered in memory, the newest 10,000, so a replay is still answered as a
duplicate), and at most one a second per prediction is read at all (the newest of those that came meanwhile, a
second after the last). A webhook to a job's own URL must carry its job's token.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Callable

from bot.config import Settings
from bot.errors import PredictionLostError, ProviderError, ProviderNotFoundError, ProviderRateLimitError
from bot.jobs.outcomes import Outcomes
from bot.jobs.outputs import MAX_RESUBMITS, Outputs
from bot.jobs.phase import CardFeed
from bot.jobs.poller import Poller
from bot.jobs.progress import Forecast, Throttle
from bot.jobs.submit import Submitter
from bot.jobs.tasks import Tasks
from bot.logs import job_context
from bot.providers.base import Prediction, PredictionStatus, WebhookRoute
from bot.providers.plugins import Providers
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo
from bot.tokens import same_secret

log = logging.getLogger(__name__)

# Progress-only webhooks are read at most this often per prediction (Replicate sends `logs` at most every 0.5 s;
# of a flood, only the newest is read, once the time has come).
PROGRESS_WEBHOOK_EVERY_S = 1.0
_TYPICAL_FOR_S = 60.0  # a model's recent run time is read from the database at most this often
_NO_TYPICAL_FOR_S = 5.0  # (or this often while it has none: its first jobs are about to end)
_MAX_HELD = 10_000  # predictions whose newest progress waits for its turn (more: dropped, a flood)
_PROGRESS_IDS_KEPT = 10_000  # ids of progress-only webhooks remembered (in memory) to answer replays as duplicates


def _friendly_failure(prediction: Prediction) -> str:
    if prediction.status == PredictionStatus.ABORTED:
        return "The music service dropped the job before it started. Please try again."
    return "The model failed to make this track. Try a different prompt or settings."


class Intake:
    def __init__(
        self,
        *,
        repo: JobsRepo,
        providers: Providers,
        cards: CardFeed,
        outcomes: Outcomes,
        outputs: Outputs,
        submitter: Submitter,
        poller: Poller,
        tasks: Tasks,
        settings: Callable[[], Settings],
        clock: Callable[[], float],
        forecast: Forecast | None = None,
    ) -> None:
        self._repo = repo
        self._registry = providers.registry
        self._providers = providers.predictions()
        self._cards = cards
        self._outcomes = outcomes
        self._outputs = outputs
        self._submitter = submitter
        self._poller = poller
        self._tasks = tasks
        self._settings = settings
        self._clock = clock
        self._lost_once: set[str] = set()  # jobs whose provider said once that it lost them
        self._forecast = forecast or Forecast()
        self._progress_webhooks = Throttle(PROGRESS_WEBHOOK_EVERY_S)
        self._held: dict[str, Prediction] = {}  # the newest progress-only webhook waiting for its turn, by prediction
        self._progress_ids: OrderedDict[str, None] = OrderedDict()  # progress-only webhooks seen, oldest first
        self._typical: dict[str, tuple[float, float | None]] = {}  # model -> (read at, recent run time)

    def _reports_per_job(self, job: Job) -> bool:
        return self._registry.spec(job.provider).webhook is WebhookRoute.PER_JOB

    # -- webhooks -------------------------------------------------------------------------------------

    async def handle_prediction(self, prediction: Prediction) -> None:
        """Apply a provider's report (webhook or poll). Safe to call any number of times, in any order."""
        job = await self._repo.get_by_prediction(prediction.id)
        if job is None:
            log.debug("ignoring unknown prediction %s", prediction.id)
            return
        await self.apply(job, prediction)

    async def accept_webhook(self, webhook_id: str, prediction: Prediction) -> bool:
        """Handle a verified webhook once per ``webhook-id``. False for a redelivery (dropped).

        One that only reports progress leaves no trace (handling it twice would change nothing) and is read at
        most once a second per prediction: of those that come sooner, only the newest is read, when its time
        comes."""
        if not prediction.status.is_terminal:
            if webhook_id in self._progress_ids:
                return False  # a redelivery or a replay: it would change nothing
            self._progress_ids[webhook_id] = None
            if len(self._progress_ids) > _PROGRESS_IDS_KEPT:
                self._progress_ids.popitem(last=False)
            if self._take_progress(prediction):
                await self.handle_prediction(prediction)
            return True
        self._progress_webhooks.forget(prediction.id)
        self._held.pop(prediction.id, None)
        if not await self._repo.remember_webhook(webhook_id, now=self._clock()):
            log.debug("dropping redelivered webhook %s", webhook_id)
            return False
        try:
            await self.handle_prediction(prediction)
        except BaseException:
            # Not handled: forget the id so the provider's retry is processed.
            await asyncio.shield(self._repo.forget_webhook(webhook_id))
            raise
        return True

    async def accept_job_webhook(self, job_id: str, token: str, prediction: Prediction) -> bool:
        """A webhook to a job's own URL (a provider reporting per job): True if the path's token is the job's (else
        refused)."""
        job = await self._repo.get(job_id)
        if job is None or job.callback_token is None or not same_secret(token, job.callback_token):
            return False
        if self._reports_per_job(job) and prediction.id == job.prediction_id:
            if prediction.status.is_terminal:
                self._held.pop(prediction.id, None)
            if prediction.status.is_terminal or self._take_progress(prediction):
                await self.apply(job, prediction)
        else:
            log.debug("job %s: ignoring a webhook for prediction %s", job.id, prediction.id)
        return True

    def _take_progress(self, prediction: Prediction) -> bool:
        """Whether a progress-only webhook is read now: the first in a second; a later one waits out the second
        (only the newest of those that came meanwhile is read then)."""
        wait = self._progress_webhooks.wait_s(prediction.id, self._clock())
        if wait <= 0:
            return self._progress_webhooks.allow(prediction.id, self._clock())
        if prediction.id not in self._held:
            if len(self._held) >= _MAX_HELD:
                return False
            self._tasks.spawn(self._read_held(prediction.id, wait), name="held-progress:")
        self._held[prediction.id] = prediction
        return False

    async def _read_held(self, prediction_id: str, wait: float) -> None:
        await asyncio.sleep(wait)
        prediction = self._held.pop(prediction_id, None)
        if prediction is not None and self._progress_webhooks.allow(prediction_id, self._clock()):
            await self.handle_prediction(prediction)

    async def expects_upload(self, prediction_id: str) -> bool:
        """Whether an active job is waiting for this prediction's files (a provider reporting per job that
        uploads its outputs to Encore)."""
        job = await self._repo.get_by_prediction(prediction_id)
        return job is not None and self._reports_per_job(job) and job.status.is_active_at_provider

    # -- applying a report ------------------------------------------------------------------------------

    async def apply(self, job: Job, prediction: Prediction) -> None:
        with job_context(job.id):
            await self._apply(job, prediction)

    async def _apply(self, job: Job, prediction: Prediction) -> None:
        if not job.status.is_active_at_provider:
            return  # finished, or already being fetched and delivered
        status = prediction.status
        if not status.is_terminal:
            shows_more = await self._watch(job, prediction)
            # Only a job read as submitted can move: every poll of a running job would otherwise take the write lock.
            moved = (
                status == PredictionStatus.PROCESSING
                and job.status == JobStatus.SUBMITTED
                and await self._repo.transition(
                    job.id, JobStatus.RUNNING, expect_from=[JobStatus.SUBMITTED], now=self._clock()
                )
            )
            if moved or shows_more:
                await self._cards.notify(job.id)
            return
        self._forecast.ended(job.id, now=self._clock(), succeeded=status == PredictionStatus.SUCCEEDED)
        if status == PredictionStatus.SUCCEEDED:
            self._tasks.pipeline(job.id, self._outputs.fetch(job.id, prediction))
        elif status in (PredictionStatus.FAILED, PredictionStatus.ABORTED):
            await self._outcomes.fail(job.id, _friendly_failure(prediction), detail=f"provider: {prediction.error!r}")
        elif status == PredictionStatus.CANCELED and await self._repo.transition(
            job.id, JobStatus.CANCELED, error="The job was canceled at the music service.", now=self._clock()
        ):
            self._outcomes.released(job, "canceled")
            self._poller.unschedule(job.id)
            await self._cards.notify(job.id)

    async def _watch(self, job: Job, prediction: Prediction) -> bool:
        """A running prediction: how far along it is and when it should end, for the card and the poller.
        True if the card would show something new."""
        now = self._clock()
        typical = await self._typical_run_s(job.model, now)
        outlook = self._forecast.observe(
            job.id,
            job.model,
            processing=prediction.status == PredictionStatus.PROCESSING,
            logs=prediction.logs,
            now=now,
            submitted_at=job.submitted_at,
            typical_run_s=typical,
        )
        self._poller.expect(job.id, outlook.window)
        return self._cards.set_progress(job.id, outlook.progress)

    async def _typical_run_s(self, model: str, now: float) -> float | None:
        """How long the model's recent jobs took (read again at most every minute)."""
        read_at, value = self._typical.get(model, (float("-inf"), None))
        if now - read_at >= (_TYPICAL_FOR_S if value is not None else _NO_TYPICAL_FOR_S):
            value = await self._repo.typical_run_s(model)
            self._typical[model] = (now, value)
        return value

    # -- polling ----------------------------------------------------------------------------------------

    async def poll(self, job_id: str) -> bool:
        """Poll one job's prediction. Returns True while the job still needs polling."""
        with job_context(job_id):
            return await self._poll(job_id)

    async def _poll(self, job_id: str) -> bool:
        job = await self._repo.get(job_id)
        if job is None or not job.status.is_active_at_provider or job.prediction_id is None:
            if job is not None and job.status != JobStatus.QUEUED:
                self._outcomes.left(job)  # it may have ended in another process: its slot here is free
            return False
        if self._clock() - job.created_at > self._settings().jobs.timeout_s:
            if await self._outcomes.fail(job.id, "The job took too long and was stopped. Please try again."):
                await self._submitter.cancel_upstream(job.provider, job.prediction_id)
            return False
        try:
            prediction = await self._providers[job.provider].get(job.prediction_id)
        except PredictionLostError as exc:
            return await self._lost(job, exc)
        except ProviderNotFoundError:
            await self._outcomes.fail(job.id, "The music service lost track of this job. Please try again.")
            return False
        except ProviderError as exc:
            log.warning("job %s: poll failed: %s", job.id, exc)
            if isinstance(exc, ProviderRateLimitError) and exc.retry_after_s:
                self._poller.back_off(job.id, exc.retry_after_s)  # still throttled when the client gave up
            return True
        self._lost_once.discard(job.id)
        await self.apply(job, prediction)
        return not prediction.status.is_terminal

    async def _lost(self, job: Job, lost: PredictionLostError) -> bool:
        """The provider says it lost the job (an idle server that never reported it): believe it on the second
        look in a row, then run it again (once more at most)."""
        if job.id not in self._lost_once:
            self._lost_once.add(job.id)
            return True
        self._lost_once.discard(job.id)
        if job.attempts <= MAX_RESUBMITS:
            log.warning("job %s: the server lost prediction %s; running it again", job.id, job.prediction_id)
            await self._submitter.resubmit(job)
            return False
        await self._outcomes.fail(job.id, f"{lost.user_message} Please try again.", detail=str(lost))
        return False
