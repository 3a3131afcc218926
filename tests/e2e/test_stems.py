"""Stems through Discord, from ElevenLabs and from Demucs on Replicate: command, message menu and card button."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import Encore, card_field, job_id_of, status_is
from tests.fakes.audio import audio_info, make_wav
from tests.fakes.discord import DiscordSimulator, SimFile
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.models import DEMUCS
from tests.fakes.replicate import FakeReplicate

TRACK = SimFile("band.wav", make_wav(4, sample_rate=44100, channels=2), "audio/wav")
SIX = {"vocals", "drums", "bass", "guitar", "piano", "other"}


def stem_names(message) -> set[str]:
    return {a.filename.rsplit("-", 1)[-1].rsplit(".", 1)[0] for a in message.attachments}


async def test_stems_command_with_elevenlabs(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music stems", audio=TRACK)
    message = await handle.wait_message(lambda m: len(m.attachments) == 6)
    assert stem_names(message) == SIX
    assert all(round(audio_info(a.data).duration_s) == 4 for a in message.attachments)
    [separation] = eleven.separations
    assert separation.stem_variation_id == "six_stems_v1"
    card = await handle.wait_original(status_is("Done"))
    assert set((card_field(card, "Stems") or "").split(", ")) == SIX
    assert card.custom_ids() == [f"encore:{a}:{job_id_of(card)}" for a in ("info", "delete")]


async def test_two_stems_from_the_message_menu(encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs) -> None:
    await encore.start()
    alice = sim.user("alice")
    posted = await alice.send_message("our demo", files=[TRACK])
    handle = await alice.message_command("Split stems", posted)
    message = await handle.wait_message(lambda m: len(m.attachments) == 6)
    assert stem_names(message) == SIX
    two = await alice.slash("music stems", audio=TRACK, stems="two")
    pair = await two.wait_message(lambda m: len(m.attachments) == 2)
    assert stem_names(pair) == {"vocals", "accompaniment"}


async def test_stems_button_on_a_finished_card(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, eleven: FakeElevenLabs
) -> None:
    fake.auto_advance = True
    await encore.start()
    alice = sim.user("alice")
    made = await alice.slash("music generate", prompt="full band", duration=3)
    await made.wait_file()
    card = await made.wait_original(status_is("Done"))
    split = await alice.click(card, f"encore:stems:{job_id_of(card)}")
    message = await split.wait_message(lambda m: len(m.attachments) == 6)
    assert all(round(audio_info(a.data).duration_s) == 3 for a in message.attachments)


@pytest.mark.parametrize("stems", ["six", "two"])
async def test_stems_with_demucs_on_replicate(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate, stems: str
) -> None:
    fake.auto_advance = True
    encore.configure(stems={"provider": "replicate", "demucs_ref": f"{DEMUCS.ref}:{DEMUCS.versions[0]}"})
    await encore.start()
    handle = await sim.user("alice").slash("music stems", audio=TRACK, stems=stems)
    expected = {"vocals", "drums", "bass", "other"} | ({"guitar", "piano"} if stems == "six" else set())
    message = await handle.wait_message(lambda m: len(m.attachments) == len(expected))
    assert stem_names(message) == expected
    assert all(round(audio_info(a.data).duration_s) == 4 for a in message.attachments)
    [prediction] = fake.predictions.values()
    assert prediction.input["model"] == ("htdemucs_6s" if stems == "six" else "htdemucs")
    assert not prediction.input["audio"].startswith("http://127.0.0.1") or "/files/" in prediction.input["audio"]


@pytest.mark.parametrize(
    ("elevenlabs", "expected"),
    [
        ({"output_format": "mp3_48000_192"}, "mp3_44100_128"),  # a songs-only format: stems keep their own
        ({"output_format": "auto", "stems_output_format": "opus_48000_128"}, "opus_48000_128"),
    ],
)
async def test_stems_use_their_own_format(
    encore: Encore, sim: DiscordSimulator, eleven: FakeElevenLabs, elevenlabs: dict[str, str], expected: str
) -> None:
    encore.configure(elevenlabs=elevenlabs)
    await encore.start()
    handle = await sim.user("alice").slash("music stems", audio=TRACK, stems="two")
    message = await handle.wait_message(lambda m: len(m.attachments) == 2)
    assert stem_names(message) == {"vocals", "accompaniment"}
    assert all(round(audio_info(a.data).duration_s) == 4 for a in message.attachments)
    [separation] = eleven.separations
    assert separation.output_format == expected
