"""`/music generate` from a click in Discord to an audio attachment, through the real discord.py client."""

from __future__ import annotations

import io
import itertools

import av
import pytest

from bot.records import JobStatus
from tests.e2e.conftest import Encore, card_field, card_status, job_id_of, status_is
from tests.fakes.audio import image_info, wav_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate

# A key job flow: it runs on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def test_generate_posts_a_card_then_the_audio(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    alice = sim.user("alice")
    handle = await alice.slash("music generate", prompt="calm piano with rain", duration=6, seed=4242)

    response = await handle.wait_response()
    assert response.type == 5  # "thinking…" at once (admission waits on the database); the card replaces it
    assert response.message is not None
    card = await handle.wait_original()
    assert card.id == response.message.id  # the same message: the card took the place of "thinking…"
    assert card.embeds[0]["title"] == "calm piano with rain"
    assert card_field(card, "Duration") == "6 s"
    assert card_field(card, "Model") == "MusicGen (stereo-melody-large)"
    assert "Queued" in card_status(card)
    job_id = job_id_of(card)
    assert card.custom_ids() == [f"encore:cancel:{job_id}"]

    pid = await fake.wait_for_prediction()
    assert fake.prediction(pid).input["seed"] == 4242
    await fake.begin(pid)
    await handle.wait_original(status_is("Generating"))
    await fake.succeed(pid)

    audio = await handle.wait_file(lambda a: a.filename.endswith(".wav"))
    assert audio.filename == f"calm-piano-with-rain-{job_id}.wav"
    assert audio.content_type.startswith("audio/")
    info = wav_info(audio.data)
    assert info.duration_s == pytest.approx(6.0, abs=0.01)
    with av.open(io.BytesIO(audio.data), mode="r") as container:  # tagged: title, model, seed, job id
        tags = dict(container.metadata)
    assert tags["title"] == "calm piano with rain"
    assert "seed 4242" in tags["comment"]
    assert job_id in tags["comment"]
    delivery = next(m for m in handle.followups if m.attachments)
    assert delivery.mentions == [alice.id]
    assert alice.mention in delivery.content

    done = await handle.wait_original(status_is("Done"))
    [waveform] = done.attachments  # the card shows the track's shape
    info = image_info(waveform.data)
    assert (info.codec, info.width, info.height) == ("png", 800, 160)
    assert done.embeds[0]["image"]["url"] == f"attachment://{waveform.filename}"
    assert card_field(done, "Seed") == "4242"
    assert card_field(done, "Generation time") is not None
    assert done.custom_ids() == [
        f"encore:{a}:{job_id}" for a in ("regen", "vary", "extend", "info", "delete", "full", "stems", "phone", "loop")
    ]
    assert encore.bot is not None
    job = await encore.bot.service.get(job_id)
    assert (job.status, job.delivery_message_id) == (JobStatus.DELIVERED, delivery.id)


async def test_card_follows_every_phase(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="lofi")
    pid = await fake.wait_for_prediction()
    await handle.wait_original(status_is("Starting"))
    await fake.begin(pid)
    await handle.wait_original(status_is("Generating"))
    await fake.succeed(pid)
    await handle.wait_original(status_is("Done"))
    card_id = (await handle.wait_original()).id
    seen = [card_status(e.message) for e in sim.state.message_events.items if e.message.id == card_id]
    order = ["Queued", "Starting", "Generating", "Done"]
    positions = [next(i for i, status in enumerate(seen) if word in status) for word in order]
    assert positions == sorted(positions)


async def test_generate_in_a_dm(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    encore.configure(discord={"dev_guild_ids": []})  # global commands: the only kind DMs have
    await encore.start()
    handle = await sim.user("alice").slash("music generate", dm=True, prompt="tiny jingle", duration=2)
    audio = await handle.wait_file()
    assert round(wav_info(audio.data).duration_s) == 2


async def test_webhook_mode_end_to_end(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    encore.configure(with_webhooks=True)
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="drum and bass", duration=3)
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)
    audio = await handle.wait_file()
    assert round(wav_info(audio.data).duration_s) == 3
    assert fake.count("GET", "/v1/predictions/") == 0


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"prompt": "   "}, "the prompt is empty"),
        ({"prompt": "x" * 600}, "the limit is 500"),
        ({"prompt": "ok", "duration": 31}, "`duration` must be between 1 and 30"),
    ],
)
async def test_bad_input_gets_a_private_explanation_and_nothing_runs(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, options: dict[str, object], message: str
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", **options)  # type: ignore[arg-type]
    reply = await handle.wait_message()
    assert reply.is_ephemeral
    assert message in reply.content
    assert fake.predictions == {}
    assert encore.bot is not None
    assert await encore.bot.service.repo.list_active() == []


async def test_card_is_edited_at_most_once_per_interval(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    interval = 0.3
    encore.configure(discord={"card_edit_interval_s": interval})
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="burst of news")
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await fake.succeed(pid)  # Starting, Generating, Uploading and Done arrive within milliseconds
    await handle.wait_original(status_is("Done"))
    # The first edit posts the card over the defer's "thinking…"; the ones after it are the card's news.
    edits = [c for c in handle.calls if c.method == "PATCH" and c.path.endswith("/messages/@original")][1:]
    gaps = [later.wall_s - earlier.wall_s for earlier, later in itertools.pairwise(edits)]
    assert edits
    assert all(gap >= interval * 0.95 for gap in gaps), gaps
    assert "Done" in card_status(await handle.wait_original())  # the last news is never lost


async def test_posting_the_card_counts_as_its_first_edit(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    """The card that replaces "thinking…" is an edit too: the job's news waits out the interval after it, so
    a job that ends within the interval costs one edit (Done) instead of one for each phase it went through."""
    interval = 0.5
    encore.configure(discord={"card_edit_interval_s": interval})
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="quick one")
    pid = await fake.wait_for_prediction()  # Starting, as soon as the prediction exists
    await fake.succeed(pid)
    await handle.wait_file()
    await handle.wait_original(status_is("Done"))
    edits = [c for c in handle.calls if c.method == "PATCH" and c.path.endswith("/messages/@original")]
    gaps = [later.wall_s - earlier.wall_s for earlier, later in itertools.pairwise(edits)]
    assert len(edits) >= 2  # the card posted, then its news
    assert all(gap >= interval * 0.95 for gap in gaps), gaps
