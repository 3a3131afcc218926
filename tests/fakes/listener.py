"""A job listener that records what a person would see: card phases and delivered files.

It stands where Discord delivery stands (the ``JobListener`` boundary) for tests of the core
without Discord. Deliveries can be made to fail, like a Discord outage.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from bot.errors import DeliveryError
from bot.jobs.phase import Phase, card_progress
from bot.jobs.progress import Progress
from bot.records import Job

FINAL = (Phase.DONE, Phase.FAILED, Phase.CANCELED)


@dataclass
class Delivered:
    job_id: str
    data: bytes
    content_type: str | None
    image: bytes | None = None
    message_id: int = 0


@dataclass
class RecordingListener:
    phases: dict[str, list[Phase]] = field(default_factory=lambda: defaultdict(list))
    delivered: list[Delivered] = field(default_factory=list)
    messages: list[list[str]] = field(default_factory=list)  # job ids posted together, per message
    places: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))  # queue places shown
    progress: dict[str, list[Progress]] = field(default_factory=lambda: defaultdict(list))  # progress shown, by card
    # Each entry is raised by one delivery attempt before deliveries succeed.
    delivery_failures: list[DeliveryError] = field(default_factory=list)
    delivery_attempts: int = 0
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        async with self._changed:
            self.phases[job.card_key].append(phase)
            for member in members:
                if member.result.get("queue_position"):
                    self.places[member.id].append(int(member.result["queue_position"]))
            if (shown := card_progress(members)) is not None:
                self.progress[job.card_key].append(shown)
            self._changed.notify_all()

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        async with self._changed:
            self.delivery_attempts += 1
            self._changed.notify_all()
        if self.delivery_failures:
            raise self.delivery_failures.pop(0)
        message_id = 1001 + len(self.messages)
        for job in jobs:
            assert job.output_path is not None
            data = await asyncio.to_thread(Path(job.output_path).read_bytes)
            image = await asyncio.to_thread(Path(job.image_path).read_bytes) if job.image_path else None
            self.delivered.append(Delivered(job.id, data, job.output_content_type, image, message_id))
        async with self._changed:
            self.messages.append([job.id for job in jobs])
            self._changed.notify_all()
        return message_id

    async def wait_for_phase(self, job_id: str, *phases: Phase, timeout: float = 10.0) -> Phase:
        """Wait until the job's card (``job.card_key``) has reached one of ``phases`` (default: any final one)."""
        wanted = phases or FINAL
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for phase in self.phases[job_id]:
                    if phase in wanted:
                        return phase
                await self._changed.wait()

    async def wait_for_progress(self, job_id: str, fraction: float, timeout: float = 10.0) -> Progress:
        """Wait until the job's card (``job.card_key``) has shown at least ``fraction`` of its bar."""
        async with asyncio.timeout(timeout), self._changed:
            while True:
                for shown in self.progress[job_id]:
                    if shown.fraction is not None and shown.fraction >= fraction:
                        return shown
                await self._changed.wait()

    async def wait_for_delivery_attempts(self, count: int, timeout: float = 10.0) -> None:
        async with asyncio.timeout(timeout), self._changed:
            await self._changed.wait_for(lambda: self.delivery_attempts >= count)

    def deliveries_of(self, job_id: str) -> list[Delivered]:
        return [d for d in self.delivered if d.job_id == job_id]
