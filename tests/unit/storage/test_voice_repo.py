"""The voice message of a track is claimed by one caller at a time, and once posted never again (voice_repo)."""

from __future__ import annotations

import asyncio

import pytest

from bot.storage.backend import Backend
from bot.storage.jobs_repo import JobsRepo
from bot.storage.voice_repo import VoiceRepo
from tests.unit.storage.test_storage_errors import new_job

STALE_S = 600.0
pytestmark = pytest.mark.both_backends  # a claim is a conditional upsert: it must hold on both databases


async def test_one_claim_wins_and_a_posted_track_is_never_claimed_again(db: Backend, repo: JobsRepo) -> None:
    await repo.insert_many([new_job("job1")])
    voice = VoiceRepo(db)
    won = await asyncio.gather(*(voice.claim("job1", now=100.0, stale_before=100.0 - STALE_S) for _ in range(5)))
    assert sorted(won) == [False] * 4 + [True]
    assert not await voice.posted("job1", claimed_at=99.0, channel_id=7, message_id=8, now=101.0)  # not its claim
    assert await voice.posted("job1", claimed_at=100.0, channel_id=7, message_id=8, now=101.0)
    record = await voice.get("job1")
    assert record is not None
    assert (record.channel_id, record.message_id) == (7, 8)
    assert not await voice.claim("job1", now=10_000.0, stale_before=10_000.0 - STALE_S)  # however old
    await voice.release("job1", claimed_at=100.0)  # a release can't undo a post
    assert await voice.get("job1") == record
    await voice.forget("job1", message_id=8)  # deleted on Discord: it may be posted again
    assert await voice.claim("job1", now=10_001.0, stale_before=10_001.0 - STALE_S)


async def test_a_released_or_abandoned_claim_can_be_taken_again(db: Backend, repo: JobsRepo) -> None:
    await repo.insert_many([new_job("job1")])
    voice = VoiceRepo(db)
    assert await voice.claim("job1", now=100.0, stale_before=100.0 - STALE_S)
    await voice.release("job1", claimed_at=100.0)  # the post failed
    assert await voice.claim("job1", now=200.0, stale_before=200.0 - STALE_S)
    assert not await voice.claim("job1", now=300.0, stale_before=300.0 - STALE_S)  # in progress
    assert await voice.claim("job1", now=900.0, stale_before=900.0 - STALE_S)  # its process died
    assert not await voice.posted("job1", claimed_at=200.0, channel_id=7, message_id=8, now=901.0)  # overtaken
