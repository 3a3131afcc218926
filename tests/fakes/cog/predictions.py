"""Running predictions: the model in a worker thread, logs, failure and completion, and how tests drive them."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.fakes.models import FetchError, InputFile, ModelError, fetch_url, resolve_inputs

from .outputs import CogOutputs, _UploadFailed
from .records import TERMINAL, CogPrediction, _now
from .webhooks import CogWebhooks

UPLOAD_ERROR = "Got error trying to upload output files"

_UNSET: Any = object()


class CogRunner(CogWebhooks, CogOutputs):
    """Runs predictions to their end (or failure) and reports each step by webhook."""

    # ------------------------------------------------------------ running predictions

    def _running_pred(self, key: str) -> CogPrediction:
        pred = self.running.get(key)
        if pred is None:
            raise RuntimeError(f"no running prediction {key!r} (running: {sorted(self.running)})")
        return pred

    async def _run(self, pred: CogPrediction, output: Any = _UNSET, logs: str | None = None) -> None:
        if pred.completing or pred.terminal:
            raise RuntimeError(f"prediction {pred.key} is already completing or {pred.status}")
        pred.completing = True
        if output is _UNSET:
            try:
                inp = await resolve_inputs(self.model, dict(pred.model_input), self._fetch)
                output, logs = await asyncio.to_thread(self.model.run, inp)
            except FetchError as exc:
                if not pred.terminal:
                    self._fail(pred, str(exc), "FileNotFoundError")
                return
            except ModelError as exc:
                if not pred.terminal:
                    pred.logs += exc.logs
                    self._fail(pred, str(exc), exc.exc_type)
                return
            except Exception as exc:  # any other predictor exception fails the prediction too, as in cog
                if not pred.terminal:
                    self._fail(pred, str(exc), type(exc).__name__)
                return
            if pred.terminal:  # canceled while the model ran
                return
        if logs:
            self._append_logs(pred, logs)
        pred.raw_output = output
        if pred.upload:
            try:
                rendered = await self._upload_output(pred, output)
            except _UploadFailed as exc:
                if not pred.terminal:
                    self._fail(pred, UPLOAD_ERROR, "cog.server.exceptions.FileUploadError", detail=str(exc))
                return
        else:
            rendered = self._local_output(pred, output)
        if pred.terminal:  # canceled while uploading
            return
        pred.output = rendered
        self._finish(pred, "succeeded")

    async def _fetch(self, url: str) -> InputFile:
        """A file input, fetched before ``run`` as cog downloads inputs before ``predict()``."""
        self.input_fetches.append(url)
        return await fetch_url(self._http, url)

    def _append_logs(self, pred: CogPrediction, text: str) -> None:
        pred.logs += text
        self._emit(pred, "logs")
        self._notify()

    def _fail(self, pred: CogPrediction, error: str, exc_name: str = "Exception", detail: str | None = None) -> None:
        pred.logs += (
            "Traceback (most recent call last):\n"
            '  File "/src/predict.py", line 1, in predict\n'
            f"{exc_name}: {detail or error}\n"
        )
        self._finish(pred, "failed", error=error)

    def _finish(self, pred: CogPrediction, status: str, *, error: str | None = None) -> None:
        pred.status, pred.completed_at = status, _now()
        if error is not None:
            pred.error = error
        if status == "succeeded":
            pred.metrics = {"predict_time": (pred.completed_at - pred.started_at).total_seconds()}
        if self.running.get(pred.key) is pred:
            del self.running[pred.key]  # cog forgets finished predictions
        pred.done.set()
        self._emit(pred, "completed")
        self._notify()

    # ------------------------------------------------------------ driving predictions from tests

    def prediction(self, key: str) -> CogPrediction:
        """The latest run with this key (running or finished); KeyError if none."""
        for pred in reversed(self.history):
            if pred.key == key:
                return pred
        raise KeyError(key)

    async def complete(self, key: str, *, output: Any = _UNSET, logs: str | None = None) -> CogPrediction:
        """Run the model now (or use ``output``/``logs`` instead) and finish; returns the final record.

        Async predictions with an ``upload_url`` upload their files first. The result may be ``failed`` (the
        model raised, or an upload failed) or ``canceled`` (canceled during the upload).
        """
        pred = self._running_pred(key)
        await self._run(pred, output, logs)
        return pred

    async def fail(self, key: str, error: str = "fake: prediction failed") -> CogPrediction:
        """The predictor raises: ``failed`` with ``error``, and a traceback appended to the logs."""
        pred = self._running_pred(key)
        if pred.completing:
            raise RuntimeError(f"prediction {key} is already completing")
        self._fail(pred, error)
        return pred

    async def log(self, key: str, text: str) -> None:
        """The predictor writes to stdout mid-run: logs grow and a ``logs`` webhook is sent (filter permitting)."""
        self._append_logs(self._running_pred(key), text)

    # ------------------------------------------------------------ awaitable hooks

    async def wait_for_prediction(self, timeout: float = 5.0) -> str:
        """The key of the next prediction started (each returned once, in order)."""
        return await self._next(self._new_predictions, timeout, "new prediction")

    async def wait_for_status(self, key: str, *statuses: str, timeout: float = 5.0) -> CogPrediction:
        """Wait until the latest run with ``key`` is in one of ``statuses`` (default: any terminal one)."""
        wanted = statuses or tuple(TERMINAL)

        def check() -> CogPrediction | None:
            pred = next((p for p in reversed(self.history) if p.key == key), None)
            return pred if pred is not None and pred.status in wanted else None

        return await self._wait(check, timeout, f"status {wanted} for {key}")
