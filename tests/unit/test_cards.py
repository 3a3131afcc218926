"""What the job card and the delivered file look like."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from types import SimpleNamespace
from typing import Any

import pytest

from bot.config import LimitsSettings, Settings
from bot.discord.cards import Cards
from bot.discord.render import build_card
from bot.discord.send import delivery_nonce
from bot.jobs.phase import Phase
from bot.naming import audio_filename
from bot.providers.registry import PROVIDERS
from bot.records import Job, JobStatus
from cogs.views import card_view, info_embed


def make_job(**fields: object) -> Job:
    base: dict[str, object] = {
        "id": "abc234defg",
        "user_id": 42,
        "guild_id": 1,
        "channel_id": 2,
        "interaction_id": 3,
        "token_expires_at": 900.0,
        "card_message_id": 4,
        "provider": "replicate",
        "model": "musicgen",
        "model_ref": "meta/musicgen",
        "request": {
            "prompt": "Warm lo-fi beat, with rain!",
            "duration_s": 8,
            "params": {"model_version": "stereo-large"},
        },
        "input": {"model_version": "stereo-large"},
        "prediction_id": "p1",
        "status": JobStatus.RUNNING,
        "created_at": 100.0,
        "updated_at": 100.0,
        "running_at": 1700000000.0,
        "output_path": "/data/outputs/abc234defg.wav",
    }
    base.update(fields)
    return Job.model_validate(base)


def fields_of(embed: object) -> dict[str, str]:
    return {field.name or "": field.value or "" for field in embed.fields}  # type: ignore[attr-defined]


def test_queued_card_shows_prompt_model_duration_and_status() -> None:
    embed = build_card(make_job(status=JobStatus.QUEUED), Phase.QUEUED)
    assert embed.title == "Warm lo-fi beat, with rain!"
    fields = fields_of(embed)
    assert fields["Model"] == "MusicGen (stereo-large)"
    assert fields["Duration"] == "8 s"
    assert "Queued" in fields["Status"]
    assert embed.footer.text == "Job abc234defg"


def test_generating_card_shows_a_live_elapsed_time() -> None:
    assert "started <t:1700000000:R>" in fields_of(build_card(make_job(), Phase.GENERATING))["Status"]


def test_done_card_shows_seed_and_generation_time() -> None:
    job = make_job(status=JobStatus.DELIVERED, seed=1234, predict_time_s=12.34)
    fields = fields_of(build_card(job, Phase.DONE))
    assert (fields["Seed"], fields["Generation time"]) == ("1234", "12.3 s")
    assert "Done" in fields["Status"]


@pytest.mark.parametrize("phase", [Phase.FAILED, Phase.CANCELED])
def test_failed_and_canceled_cards_give_the_reason(phase: Phase) -> None:
    job = make_job(status=JobStatus.FAILED, error="The model failed to make this track.")
    assert "The model failed to make this track." in fields_of(build_card(job, phase))["Status"]


def test_long_prompts_fit_discord_limits() -> None:
    embed = build_card(make_job(request={"prompt": "x" * 1000}), Phase.QUEUED)
    assert embed.title is not None
    assert len(embed.title) == 256
    assert len(embed) <= 6000


def test_filename_is_readable_safe_and_unique() -> None:
    assert audio_filename(make_job()) == "warm-lo-fi-beat-with-rain-abc234defg.wav"
    assert audio_filename(make_job(request={"prompt": "🎵🎶"})) == "encore-abc234defg.wav"
    assert audio_filename(make_job(request={"prompt": "../../etc/passwd"})) == "etc-passwd-abc234defg.wav"
    assert len(audio_filename(make_job(request={"prompt": "a" * 500}))) < 80


def test_nonce_fits_discord() -> None:
    assert len(delivery_nonce(make_job())) <= 25


async def test_cancel_button_only_while_the_job_can_be_canceled() -> None:
    def custom_ids(phase: Phase, **fields: object) -> list[str]:
        return [getattr(item, "custom_id", "") for item in card_view(make_job(**fields), phase).children]

    for phase in (Phase.QUEUED, Phase.STARTING, Phase.GENERATING):
        assert custom_ids(phase) == ["encore:cancel:abc234defg"]
    for phase in (Phase.UPLOADING, Phase.CANCELED):
        assert custom_ids(phase) == []
    assert custom_ids(Phase.FAILED) == ["encore:retry:abc234defg"]
    assert custom_ids(Phase.DONE, status=JobStatus.DELIVERED) == [
        f"encore:{a}:abc234defg"
        for a in ("regen", "vary", "extend", "info", "delete", "full", "stems", "phone", "loop")
    ]
    stems = {"model": "stems", "result": {"files": [{"name": "vocals", "path": "/data/v.wav"}]}}
    assert custom_ids(Phase.DONE, status=JobStatus.DELIVERED, **stems) == [
        f"encore:{a}:abc234defg" for a in ("info", "delete")
    ]


def test_a_waiting_card_shows_its_place_and_wait() -> None:
    job = make_job(status=JobStatus.QUEUED, result={"queue_position": 3, "eta_s": 95})
    assert "#3 in line · about 1:35 to start" in fields_of(build_card(job, Phase.QUEUED))["Status"]


@pytest.mark.parametrize(
    ("fields", "shown"),
    [
        ({"succeeded_at": 130.0, "predict_time_s": 1.5, "cost_usd": 0.0021}, "$0.0021 (actual)"),
        ({"succeeded_at": 130.0, "cost_usd": 0.023}, "about $0.023 (estimated)"),  # Replicate gave no time
        ({"cost_usd": 0.023}, "about $0.023 (estimated)"),  # it hasn't run
        ({"provider": "cog", "succeeded_at": 130.0, "cost_usd": 0.0}, "$0.0000 (actual)"),  # own GPUs
        ({"provider": "elevenlabs", "model": "song", "succeeded_at": 130.0, "cost_usd": 0.06}, "$0.0600 (actual)"),
        (
            {"provider": "elevenlabs", "model": "stems", "succeeded_at": 130.0, "cost_usd": 0.05},
            "about $0.050 (estimated)",
        ),
    ],
    ids=["replicate-ran", "replicate-no-figure", "not-run", "cog", "song", "elevenlabs-stems"],
)
def test_info_says_whether_the_cost_is_actual_or_estimated(fields: dict[str, object], shown: str) -> None:
    job = make_job(status=JobStatus.DELIVERED, **fields)
    assert fields_of(info_embed(job, LimitsSettings(), PROVIDERS))["Cost"] == shown


def test_info_shows_peoples_text_inertly() -> None:
    job = make_job(
        request={"prompt": "[x](https://evil.example)", "params": {"prompt_b": "**b**"}},
        input={"prompt_b": "[y](https://evil.example)"},
    )
    embed = info_embed(job, LimitsSettings(), PROVIDERS)
    assert embed.description == r"\[x\](https://evil.example)"
    assert fields_of(embed)["Settings"] == r"`prompt_b` = \[y\](https://evil.example)"


@pytest.mark.parametrize(
    ("locale", "expected"),
    [
        ("en-US", "🎛️ Generating ▓▓▓▓▓░░░░░ 52% · about 14 s left"),
        ("de", "▓▓▓▓▓░░░░░ 52% · noch etwa 14 s"),
        ("ja", "▓▓▓▓▓░░░░░ 52% · 残り約 14 秒"),
    ],
)
def test_a_running_card_shows_its_bar_and_time_left_in_the_servers_language(locale: str, expected: str) -> None:
    job = make_job(result={"progress": {"fraction": 780 / 1503, "left_s": 14.2}})
    [status] = [value for value in fields_of(build_card(job, Phase.GENERATING, locale=locale)).values() if "▓" in value]
    assert expected in status
    assert "<t:" not in status  # the bar says more than the time since it started


class _Discord:
    """One card in Discord, edited by two processes: each edit lands (is shown) when its call returns."""

    def __init__(self) -> None:
        self.shown: list[str] = []
        self.edited = asyncio.Event()
        self.started = asyncio.Event()

    def client(self, gate: asyncio.Event | None = None) -> Any:
        discord_ = self

        class Message:
            async def edit(self, **kwargs: Any) -> None:
                discord_.started.set()
                if gate is not None:
                    await gate.wait()
                discord_.shown.append(fields_of(kwargs["embed"])["Status"].split(" ")[1])
                discord_.edited.set()

        class Client:
            user = None

            def get_guild(self, _guild_id: int) -> None:
                return None

            def get_partial_messageable(self, _channel_id: int, *, guild_id: int | None = None) -> Any:
                return self

            def get_partial_message(self, _message_id: int) -> Message:
                return Message()

        return Client()

    async def shows(self, count: int) -> list[str]:
        async with asyncio.timeout(5):
            while len(self.shown) < count:
                self.edited.clear()
                await self.edited.wait()
        return self.shown


class _Database:
    """The job as every process reads it (the job service's side of the cards)."""

    def __init__(self, job: Job) -> None:
        self.job = job

    async def card_moved_on(self, members: Sequence[Job]) -> bool:
        return {m.id: m.status for m in members} != {self.job.id: self.job.status}

    async def card(self, _job_id: str) -> tuple[Job, Phase, list[Job]]:
        phase = Phase.DONE if self.job.status == JobStatus.DELIVERED else Phase.QUEUED
        return self.job, phase, [self.job]

    async def card_final(self, _members: Sequence[Job]) -> None:
        return None


async def test_an_edit_that_lands_after_another_process_s_final_edit_is_made_good() -> None:
    """The process that took the command edits the card (Queued, its place in line) slowly; meanwhile another
    process delivers the job and edits the card to Done. The slow edit lands last: the card must not stay Queued."""
    queued = make_job(status=JobStatus.QUEUED, updated_at=100.0, output_path=None)
    database, card = _Database(queued), _Discord()
    settings = Settings()
    settings = settings.model_copy(update={"discord": settings.discord.model_copy(update={"card_edit_interval_s": 0})})
    service: Any = database
    gate = asyncio.Event()
    slow = Cards(card.client(gate), settings, lambda: service)
    fast = Cards(card.client(), settings, lambda: service)

    await slow.job_updated(queued, Phase.QUEUED, [queued])
    await card.started.wait()  # the Queued edit is on its way
    delivered = queued.model_copy(update={"status": JobStatus.DELIVERED, "updated_at": 101.0})
    database.job = delivered
    await fast.job_updated(delivered, Phase.DONE, [delivered])
    assert await card.shows(1) == ["Done"]
    gate.set()  # the Queued edit lands after Done
    try:
        assert await card.shows(3) == ["Done", "Queued", "Done"]
    finally:
        await slow.close()
        await fast.close()


async def test_a_card_another_process_posted_and_never_stored_is_found_when_the_job_ends_here() -> None:
    """The process that took the command posted the card and died before storing it; the job was taken over and
    delivered by a process that was running all along (no restart would look the card up): it finds the card."""
    bot_user, interaction_id, card_id = 1, 3, 77
    edited: list[tuple[int, str]] = []
    stored: list[tuple[str, int]] = []
    done = asyncio.Event()

    class Message:
        def __init__(self, message_id: int) -> None:
            self.id = message_id
            self.author = SimpleNamespace(id=bot_user)
            self.interaction_metadata = SimpleNamespace(id=interaction_id)

        async def edit(self, **kwargs: Any) -> None:
            edited.append((self.id, fields_of(kwargs["embed"])["Status"].split(" ")[1]))
            done.set()

    class Client:
        user = SimpleNamespace(id=bot_user)

        def get_guild(self, _guild_id: int) -> None:
            return None

        def get_partial_messageable(self, _channel_id: int, *, guild_id: int | None = None) -> Any:
            return self

        def get_partial_message(self, message_id: int) -> Message:
            return Message(message_id)

        async def history(self, **_kwargs: Any) -> AsyncIterator[Message]:
            for message_id in (card_id - 1, card_id):
                message = Message(message_id)
                if message_id != card_id:
                    message.interaction_metadata = SimpleNamespace(id=interaction_id + 1)
                yield message

    class Service:
        async def set_card(self, job_id: str, message_id: int) -> None:
            stored.append((job_id, message_id))

        async def card_final(self, _members: Sequence[Job]) -> None:
            return None

    delivered = make_job(
        status=JobStatus.DELIVERED,
        interaction_id=interaction_id,
        card_message_id=None,
        output_path=None,
        created_at=time.time() + 60,  # after this process started
    )
    service: Any = Service()
    client: Any = Client()
    cards = Cards(client, Settings(), lambda: service)
    try:
        await cards.job_updated(delivered, Phase.DONE, [delivered])
        async with asyncio.timeout(5):
            await done.wait()
    finally:
        await cards.close()
    assert edited == [(card_id, "Done")]
    assert stored == [(delivered.id, card_id)]
