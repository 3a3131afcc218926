"""SQL for the ``plans`` table: composition plans people edit before composing."""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

from bot.storage.backend import Backend
from bot.storage.sql import Row


class PlanRecord(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    user_id: int
    guild_id: int | None
    channel_id: int | None
    model_id: str
    prompt: str
    plan: dict[str, Any]
    message_id: int | None
    created_at: float
    updated_at: float


def _row(row: Row) -> PlanRecord:
    data = dict(row)
    data["plan"] = json.loads(data.pop("plan_json"))
    return PlanRecord.model_validate(data)


class PlansRepo:
    def __init__(self, db: Backend) -> None:
        self._db = db

    async def insert(
        self,
        *,
        plan_id: str,
        user_id: int,
        guild_id: int | None,
        channel_id: int | None,
        model_id: str,
        prompt: str,
        plan: dict[str, Any],
    ) -> PlanRecord:
        now = time.time()
        await self._db.write(
            "INSERT INTO plans (id, user_id, guild_id, channel_id, model_id, prompt, plan_json, created_at, updated_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (plan_id, user_id, guild_id, channel_id, model_id, prompt, json.dumps(plan), now, now),
        )
        record = await self.get(plan_id)
        assert record is not None
        return record

    async def get(self, plan_id: str) -> PlanRecord | None:
        row = await self._db.read_one("SELECT * FROM plans WHERE id = ?", (plan_id,))
        return _row(row) if row else None

    async def update_plan(self, plan_id: str, plan: dict[str, Any], *, expected_updated_at: float) -> bool:
        """Replace the plan if nobody changed it since ``expected_updated_at`` (a conditional update)."""
        changed = await self._db.write(
            "UPDATE plans SET plan_json = ?, updated_at = ? WHERE id = ? AND updated_at = ?",
            (json.dumps(plan), max(time.time(), expected_updated_at + 1e-6), plan_id, expected_updated_at),
        )
        return changed == 1

    async def set_message(self, plan_id: str, message_id: int) -> None:
        await self._db.write("UPDATE plans SET message_id = ? WHERE id = ?", (message_id, plan_id))
