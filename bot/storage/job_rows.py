"""How a job is written to and read from a ``jobs`` row: the insert, the columns a transition may set, and the
row back as a :class:`Job`."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.records import Job, JobOrigin
from bot.storage.sql import Row

# Columns a transition may set besides status and its timestamp. Names are fixed here, never
# taken from callers' strings, so the SQL in jobs_repo stays free of injected identifiers.
_UPDATABLE = frozenset(
    {
        "prediction_id",
        "attempts",
        "error",
        "output_path",
        "output_size",
        "output_content_type",
        "delivery_message_id",
        "seed",
        "predict_time_s",
        "total_time_s",
        "card_message_id",
        "token_expires_at",
        "image_path",
        "callback_token",
        "result_json",
        "cost_usd",
    }
)

_INSERT = """
INSERT INTO jobs (id, user_id, guild_id, channel_id, interaction_id, token_expires_at, provider, model,
                  model_ref, request_json, input_json, status, created_at, updated_at,
                  batch_id, batch_index, batch_size, callback_token, input_files_json, card_message_id, cost_usd,
                  claimed_by)
VALUES """
_INSERT_ROW = "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?"


@dataclass(frozen=True)
class NewJob:
    """A job to insert (queued). ``batch`` is (batch id, index, size) for one of several variations;
    ``reserved_for``: the instance that alone may start it (a terminal run's own jobs), None for any."""

    job_id: str
    origin: JobOrigin
    provider: str
    model: str
    model_ref: str
    request: Mapping[str, Any]
    input: Mapping[str, Any]
    batch: tuple[str, int, int] | None = None
    callback_token: str | None = None
    input_files: Mapping[str, str] | None = None
    cost_usd: float = 0.0
    reserved_for: str | None = None

    def values(self, now: float) -> tuple[Any, ...]:
        origin = self.origin
        return (
            self.job_id,
            origin.user_id,
            origin.guild_id,
            origin.channel_id,
            origin.interaction_id,
            origin.token_expires_at,
            self.provider,
            self.model,
            self.model_ref,
            json.dumps(dict(self.request)),
            json.dumps(dict(self.input)),
            now,
            now,
            *(self.batch or (None, 0, 1)),
            self.callback_token,
            json.dumps(dict(self.input_files or {})),
            origin.card_message_id,
            self.cost_usd,
            self.reserved_for,
        )


def _row_to_job(row: Row) -> Job:
    data = dict(row)
    data["request"] = json.loads(data.pop("request_json"))
    data["input"] = json.loads(data.pop("input_json"))
    data["input_files"] = json.loads(data.pop("input_files_json"))
    data["result"] = json.loads(data.pop("result_json"))
    return Job.model_validate(data)
