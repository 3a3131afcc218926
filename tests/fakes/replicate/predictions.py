"""The prediction state machine (starting -> processing -> succeeded/failed/canceled/aborted) and how tests drive it.

Tests drive it step by step (``begin``, ``progress``, ``succeed``...), or let each prediction run by itself for
as long as a real one does (``timing``: see timing.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.fakes.models import FetchError, InputFile, ModelError, OutputFile, fetch_url, resolve_inputs

from .records import TERMINAL, Prediction, _now
from .timing import Meter, RunPlan, tqdm_line, updates
from .webhooks import WebhookSender


class PredictionEngine(WebhookSender):
    """Runs predictions: fetches file inputs, runs the model in a thread, publishes outputs, emits webhooks."""

    # ------------------------------------------------------------ state machine

    @staticmethod
    def _require(pred: Prediction, *statuses: str) -> None:
        if pred.status not in statuses:
            raise RuntimeError(f"prediction {pred.id} is {pred.status}; expected one of {statuses}")

    async def _step(self, pred: Prediction, *, to_end: bool = False) -> None:
        """auto_advance: one step (starting -> processing -> succeeded/failed), or all the way."""
        if pred.status == "starting":
            self._begin(pred)
            if not to_end:
                return
        if pred.status == "processing" and not pred.running:
            await self._succeed(pred)

    def _begin(self, pred: Prediction) -> None:
        self._require(pred, "starting")
        pred.status, pred.started_at = "processing", _now()
        self._emit(pred, "start")
        self._notify()

    async def _fetch(self, url: str) -> InputFile:
        """A file input: from this fake's files API if it is one of ours, else ``data:``/http(s) via aiohttp."""
        self.input_fetches.append(url)
        own = f"{self.base_url}/files/"
        if url.startswith(own):
            fid = url.removeprefix(own).split("?")[0].removesuffix("/download")
            if (stored := self.files.get(fid)) is None:
                raise FetchError(f"fake: fetching {url} failed: HTTP 404")
            return InputFile(url, stored.content, stored.content_type)
        return await fetch_url(self._http, url)

    async def _run_model(self, pred: Prediction, duplicates: int = 0) -> tuple[Any, str] | None:
        """Fetch the file inputs and run the model in a thread: (output, logs), or None when it failed (the
        prediction is then failed, if nothing else ended it meanwhile)."""
        pred.running = True
        try:
            inp = await resolve_inputs(pred.model, dict(pred.input), self._fetch)
            return await asyncio.to_thread(pred.model.run, inp)
        except FetchError as exc:
            if pred.status == "processing":
                pred.logs = f"{exc}\n"
                self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
            return None
        except ModelError as exc:
            if pred.status == "processing":
                pred.logs = f"{exc.logs}{exc.exc_type}: {exc}\n"
                self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
            return None
        finally:
            pred.running = False

    async def _succeed(self, pred: Prediction, duplicates: int = 0) -> None:
        """Fetch file inputs, run the model in a thread, publish the output (or fail by the model's rules).

        If the prediction is canceled or failed meanwhile, the result is dropped.
        """
        if pred.status == "starting":
            self._begin(pred)
        self._require(pred, "processing")
        if pred.running:
            raise RuntimeError(f"prediction {pred.id} is already running")
        result = await self._run_model(pred, duplicates)
        if result is None or pred.status != "processing":
            return
        output, logs = result
        # The model's own lines come first; a bar a test printed (``progress``) follows them, ended.
        pred.logs = logs + (pred.logs + "\n" if pred.logs else "")
        self._complete(pred, output, duplicates)

    def _complete(self, pred: Prediction, output: Any, duplicates: int = 0) -> None:
        files: dict[str, OutputFile] = {}
        pred.output = self._publish(pred.id, output, files)
        self._outputs[pred.id] = files
        self._finish(pred, "succeeded", duplicates=duplicates)

    # ------------------------------------------------------------ predictions that run by themselves

    def _drive(self, pred: Prediction, plan: RunPlan) -> None:
        task = asyncio.create_task(self._run_timed(pred, plan), name=f"fake-run:{pred.id}")
        self._drivers.add(task)
        task.add_done_callback(self._drivers.discard)

    async def _run_timed(self, pred: Prediction, plan: RunPlan) -> None:
        """starting for ``queue_s``; processing: set up (the model runs meanwhile), the bar, the time after it;
        then succeeded. Stops as soon as something else ends the prediction (a cancel, a deadline)."""
        loop = asyncio.get_running_loop()
        await asyncio.sleep(plan.queue_s)
        if pred.status != "starting":
            return
        self._begin(pred)
        began = loop.time()
        result = await self._run_model(pred)
        if result is None or pred.status != "processing":
            return
        output, prelude = result
        await asyncio.sleep(max(0.0, plan.setup_s - (loop.time() - began)))
        if pred.status != "processing":
            return
        pred.logs = prelude
        self._log_updated(pred)
        meter = Meter(plan.steps, plan.timing.smoothing)
        pred.logs += "\r" + meter.line()
        for seconds, steps in updates(plan):
            before = loop.time()
            await asyncio.sleep(seconds)
            if pred.status != "processing":
                return
            meter.advance(steps, loop.time() - before)  # the time it really took, as tqdm measures it
            pred.logs += "\r" + meter.line()
            self._log_updated(pred)
        pred.logs += "\n"
        self._log_updated(pred)
        await asyncio.sleep(plan.after_bar_s)
        if pred.status == "processing":
            self._complete(pred, output)

    def _log_updated(self, pred: Prediction) -> None:
        """The prediction's logs grew: wake waiters, and send a ``logs`` webhook if it asked for them (at most
        one every 500 ms, carrying the newest logs, as Replicate does)."""
        self._notify()
        if pred.webhook is None or "logs" not in (pred.events_filter or ()) or pred.logs_webhook_due is not None:
            return
        wait = pred.logs_webhook_at + self.logs_webhook_every_s - time.monotonic()
        if wait <= 0:
            pred.logs_webhook_at = time.monotonic()
            self._emit(pred, "logs")
            return
        pred.logs_webhook_due = asyncio.get_running_loop().create_task(self._logs_webhook_later(pred, wait))
        self._webhook_tasks.add(pred.logs_webhook_due)
        pred.logs_webhook_due.add_done_callback(self._webhook_tasks.discard)

    async def _logs_webhook_later(self, pred: Prediction, wait: float) -> None:
        await asyncio.sleep(wait)
        pred.logs_webhook_due = None
        if not pred.terminal:
            pred.logs_webhook_at = time.monotonic()
            self._emit(pred, "logs")

    def _publish(self, pid: str, value: Any, files: dict[str, OutputFile]) -> Any:
        """Replace OutputFile values (at any depth) with their download URLs."""
        if isinstance(value, OutputFile):
            if self._output_swap is not None:
                value = self._output_swap(value)
            files[value.name] = value
            return f"{self.root_url}/delivery/{pid}/{value.name}"
        if isinstance(value, dict):
            return {k: self._publish(pid, v, files) for k, v in value.items()}
        if isinstance(value, list):
            return [self._publish(pid, v, files) for v in value]
        return value

    def _finish(self, pred: Prediction, status: str, *, error: str | None = None, duplicates: int = 0) -> None:
        if pred.status not in TERMINAL:
            self.in_flight -= 1
        pred.status, pred.error, pred.completed_at = status, error, _now()
        pred.ended_perf = time.perf_counter()
        if pred.logs_webhook_due is not None:
            pred.logs_webhook_due.cancel()  # nothing after the final webhook
            pred.logs_webhook_due = None
        pred.done.set()
        self._emit(pred, "completed", duplicates=duplicates)
        for msg in pred.held_webhooks:
            self._schedule(msg)
        pred.held_webhooks.clear()
        self._notify()

    # ------------------------------------------------------------ driving predictions from tests

    async def begin(self, prediction_id: str) -> None:
        """starting -> processing; sends the ``start`` webhook if the filter asks for it."""
        self._begin(self.prediction(prediction_id))

    async def succeed(self, prediction_id: str, *, duplicate_webhook: int = 0) -> None:
        """Run the model (beginning first if needed): succeeded with output, or failed by the model's rules.

        File inputs are fetched first; a fetch failure fails the prediction. RuntimeError if already running.

        ``duplicate_webhook`` re-sends the ``completed`` webhook that many extra times with the same id.
        """
        await self._succeed(self.prediction(prediction_id), duplicate_webhook)

    async def progress(
        self, prediction_id: str, n: int, total: int, *, elapsed_s: float | None = None, rate: float | None = None
    ) -> None:
        """The model prints a tqdm update (``\\r`` then the line, as tqdm does) into the logs of a processing
        prediction; a ``logs`` webhook follows if it asked for them. ``rate`` (steps a second) defaults to what
        ``elapsed_s`` gives; without either, the bar shows ``?`` as tqdm's first update does."""
        pred = self.prediction(prediction_id)
        self._require(pred, "processing")
        if rate is None and elapsed_s and n:
            rate = n / elapsed_s
        if elapsed_s is None:
            elapsed_s = n / rate if rate else 0.0
        pred.logs += "\r" + tqdm_line(n, total, elapsed_s, rate)
        self._log_updated(pred)

    def write_logs(self, prediction_id: str, text: str) -> None:
        """The model prints ``text`` (anything: other output, ANSI colours, junk) into a prediction's logs."""
        pred = self.prediction(prediction_id)
        pred.logs += text
        self._log_updated(pred)

    async def fail(self, prediction_id: str, error: str = "fake: prediction failed") -> None:
        pred = self.prediction(prediction_id)
        self._require(pred, "starting", "processing")
        self._finish(pred, "failed", error=error)

    async def abort(self, prediction_id: str) -> None:
        """starting -> aborted (ended before it started)."""
        pred = self.prediction(prediction_id)
        self._require(pred, "starting")
        self._finish(pred, "aborted")

    async def hit_deadline(self, prediction_id: str) -> None:
        """The ``Cancel-After`` deadline passed: aborted if still starting, else canceled."""
        pred = self.prediction(prediction_id)
        self._require(pred, "starting", "processing")
        self._finish(pred, "aborted" if pred.status == "starting" else "canceled")

    def expire_outputs(self, prediction_id: str) -> None:
        """Simulate the ~1 h data removal: input/output/logs cleared, data_removed, files 404."""
        pred = self.prediction(prediction_id)
        pred.input, pred.output, pred.logs, pred.data_removed = {}, None, "", True
        self._outputs.pop(prediction_id, None)

    def swap_outputs(self, swap: Callable[[OutputFile], OutputFile] | None) -> None:
        """Serve ``swap(file)`` in place of each output file the models make from now on (None: stop):
        its name is the URL's last segment, its content type the ``Content-Type`` it is served with."""
        self._output_swap = swap

    # ------------------------------------------------------------ awaitable hooks

    async def wait_for_prediction(self, timeout: float = 5.0) -> str:
        """The id of the next prediction created (each is returned once, in creation order)."""
        return await self._next(self._new_predictions, timeout, "new prediction")

    async def wait_for_status(self, prediction_id: str, *statuses: str, timeout: float = 5.0) -> Prediction:
        """Wait until the prediction is in one of ``statuses`` (default: any terminal status)."""
        wanted = statuses or tuple(TERMINAL)
        pred = self.prediction(prediction_id)
        return await self._wait(lambda: pred if pred.status in wanted else None, timeout, f"status {wanted}")
