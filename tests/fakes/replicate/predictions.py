"""The prediction state machine (starting -> processing -> succeeded/failed/canceled/aborted) and how tests drive it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tests.fakes.models import FetchError, InputFile, ModelError, OutputFile, fetch_url, resolve_inputs

from .records import TERMINAL, Prediction, _now
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

    async def _succeed(self, pred: Prediction, duplicates: int = 0) -> None:
        """Fetch file inputs, run the model in a thread, publish the output (or fail by the model's rules).

        If the prediction is canceled or failed meanwhile, the result is dropped.
        """
        if pred.status == "starting":
            self._begin(pred)
        self._require(pred, "processing")
        if pred.running:
            raise RuntimeError(f"prediction {pred.id} is already running")
        pred.running = True
        try:
            try:
                inp = await resolve_inputs(pred.model, dict(pred.input), self._fetch)
                output, logs = await asyncio.to_thread(pred.model.run, inp)
            except FetchError as exc:
                if pred.status == "processing":
                    pred.logs = f"{exc}\n"
                    self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
                return
            except ModelError as exc:
                if pred.status == "processing":
                    pred.logs = f"{exc.logs}{exc.exc_type}: {exc}\n"
                    self._finish(pred, "failed", error=str(exc), duplicates=duplicates)
                return
        finally:
            pred.running = False
        if pred.status != "processing":
            return
        files: dict[str, OutputFile] = {}
        pred.logs = logs
        pred.output = self._publish(pred.id, output, files)
        self._outputs[pred.id] = files
        self._finish(pred, "succeeded", duplicates=duplicates)

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
        pred.status, pred.error, pred.completed_at = status, error, _now()
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
