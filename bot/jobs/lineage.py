"""Chains of continuations: which job a message's track is, the track kept on disk, the newest whole track.

Each continuation holds everything before it, so the newest finished part of a chain is the whole track.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from bot.errors import JobStateError
from bot.jobs.access import Action, Actor, allowed
from bot.records import Job, JobStatus
from bot.storage.jobs_repo import JobsRepo


class Lineage:
    def __init__(self, repo: JobsRepo) -> None:
        self._repo = repo

    async def track_of_message(self, message_id: int, *, channel_id: int, filename: str | None = None) -> Job | None:
        """The job whose track Encore delivered as message ``message_id`` in ``channel_id``, or whose card that is.

        A batch delivers its variations in one message: ``filename`` (the attachment taken from it) names
        the one meant; its card names none. Stems are not a track to continue. None: not one of Encore's
        tracks, or not one track.
        """
        jobs = [j for j in await self._repo.for_message(message_id, channel_id=channel_id) if not j.result.get("files")]
        named = [j for j in jobs if filename is not None and j.id in filename]
        if named:
            return named[0]
        return jobs[0] if len(jobs) == 1 and jobs[0].batch_size == 1 else None

    @staticmethod
    async def kept_track(job: Job) -> Path | None:
        """``job``'s whole track on our disk, to continue it from (None: no longer kept)."""
        if job.status not in (JobStatus.SUCCEEDED, JobStatus.DELIVERED) or not job.output_path:
            raise JobStateError.keyed("refusals.unfinished_continue")
        path = Path(job.output_path)
        return path if await asyncio.to_thread(path.is_file) else None

    async def full_track(self, job: Job, actor: Actor) -> Job:
        """The newest finished part of ``job``'s chain that ``actor`` may see (a continuation made in another
        server stays there)."""
        while True:
            finished = [
                c
                for c in await self._repo.children(job.id)
                if c.status == JobStatus.DELIVERED and c.output_path and await allowed(c, actor, Action.FULL)
            ]
            if not finished:
                break
            job = finished[-1]
        if job.status != JobStatus.DELIVERED or not job.output_path:
            raise JobStateError.keyed("refusals.unfinished")
        return job
