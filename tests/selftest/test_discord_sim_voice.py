"""Self-tests of the Discord simulator: voice messages as Discord's API takes them and its phone apps play them.

Each request is built by hand and sent through discord.py's own HTTP client (its ``Route``), as a bot that
sends voice messages must: discord.py 2.7 has no helper for them.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import discord
import pytest
from discord.http import Route

from tests.fakes.audio import encode_pcm, make_mp3, tone_pcm
from tests.fakes.discord import (
    DEFAULT_BOT_PERMISSIONS,
    IS_VOICE_MESSAGE,
    MIB,
    DiscordSimulator,
    Permission,
    on_phone,
)

WAVEFORM = bytes(range(0, 256, 4))  # 64 points


def opus_ogg(seconds: float = 2.0) -> bytes:
    pcm = tone_pcm(int(seconds * 48000), sample_rate=48000, channels=1)
    return encode_pcm(pcm, sample_rate=48000, channels=1, container="ogg", codec="libopus", bit_rate=32_000)


def voice_payload(**attachment: Any) -> dict[str, Any]:
    meta = {
        "id": 0,
        "filename": "voice-message.ogg",
        "duration_secs": 2.0,
        "waveform": base64.b64encode(WAVEFORM).decode(),
        **attachment,
    }
    return {"flags": IS_VOICE_MESSAGE, "attachments": [{k: v for k, v in meta.items() if v is not None}]}


async def post(
    client: discord.Client, channel_id: int, payload: dict[str, Any], *files: tuple[str, bytes]
) -> dict[str, Any]:
    """POST /channels/{id}/messages as multipart (``payload_json`` and ``files[n]``), through discord.py."""
    uploads = [discord.File(io.BytesIO(data), name) for name, data in files]
    form: list[dict[str, Any]] = [{"name": "payload_json", "value": json.dumps(payload)}]
    form += [
        {"name": f"files[{i}]", "value": f.fp, "filename": f.filename, "content_type": "application/octet-stream"}
        for i, f in enumerate(uploads)
    ]
    route = Route("POST", "/channels/{channel_id}/messages", channel_id=channel_id)
    return await client.http.request(route, form=form, files=uploads)


@pytest.fixture
async def client(sim: DiscordSimulator) -> AsyncIterator[discord.Client]:
    bot = discord.Client(intents=discord.Intents.default(), **sim.client_kwargs())
    async with sim.running(bot):
        yield bot


async def refused(
    client: discord.Client, sim: DiscordSimulator, payload: dict[str, Any], *files: tuple[str, bytes]
) -> int:
    with pytest.raises(discord.HTTPException) as caught:
        await post(client, sim.default_channel_id, payload, *files)
    return caught.value.code


async def test_a_voice_message_plays_on_phones_with_its_waveform(sim: DiscordSimulator, client: discord.Client) -> None:
    data = await post(client, sim.default_channel_id, voice_payload(), ("voice-message.ogg", opus_ogg()))
    stored = sim.message(int(data["id"]))
    assert stored.flags & IS_VOICE_MESSAGE
    channel = client.get_channel(sim.default_channel_id)
    assert isinstance(channel, discord.TextChannel)
    message = await channel.fetch_message(stored.id)  # as discord.py reads it
    assert message.flags.voice
    attachment = message.attachments[0]
    assert attachment.is_voice_message()
    assert attachment.content_type == "audio/ogg"
    assert attachment.duration == 2.0
    assert attachment.waveform == WAVEFORM
    shown = on_phone(stored)
    assert shown.inline, shown.why
    assert (shown.duration_s, shown.waveform) == (2.0, WAVEFORM)

    ordinary = await channel.send(file=discord.File(io.BytesIO(opus_ogg()), "track.ogg"))
    assert not on_phone(sim.message(ordinary.id)).inline  # an attachment is a file to download on a phone


async def test_the_api_takes_any_audio_but_phones_play_only_opus_in_ogg(
    sim: DiscordSimulator, client: discord.Client
) -> None:
    data = await post(client, sim.default_channel_id, voice_payload(filename="clip.mp3"), ("clip.mp3", make_mp3(2)))
    shown = on_phone(sim.message(int(data["id"])))
    assert not shown.inline
    assert "mp3" in shown.why
    garbage = await post(client, sim.default_channel_id, voice_payload(), ("voice-message.ogg", b"OggS not really"))
    assert not on_phone(sim.message(int(garbage["id"]))).inline


async def test_what_a_voice_message_may_not_be(sim: DiscordSimulator, client: discord.Client) -> None:
    ogg = ("voice-message.ogg", opus_ogg())
    assert await refused(client, sim, {**voice_payload(), "content": "hi"}, ogg) == 50159
    assert await refused(client, sim, {**voice_payload(), "embeds": [{"title": "x"}]}, ogg) == 50159
    two = {**voice_payload(), "attachments": [voice_payload()["attachments"][0], {"id": 1, "filename": "b.ogg"}]}
    assert await refused(client, sim, two, ogg, ("b.ogg", opus_ogg())) == 50160
    assert await refused(client, sim, voice_payload(filename="notes.txt"), ("notes.txt", b"text")) == 50160
    assert await refused(client, sim, voice_payload(waveform=None), ogg) == 50161
    assert await refused(client, sim, voice_payload(duration_secs=None), ogg) == 50161
    assert await refused(client, sim, voice_payload(duration_secs=0), ogg) == 50161
    too_many = base64.b64encode(bytes(257)).decode()  # 344 characters: within the spec's 400, over 256 points
    assert await refused(client, sim, voice_payload(waveform=too_many), ogg) == 50035
    assert await refused(client, sim, voice_payload(waveform="not base64!"), ogg) == 50035
    over_spec = base64.b64encode(bytes(300)).decode()  # 400 characters is the spec's cap on the text
    assert await refused(client, sim, voice_payload(waveform=over_spec + "AAAA"), ogg) == 50035
    with pytest.raises(discord.HTTPException) as large:
        await post(client, sim.default_channel_id, voice_payload(), ("voice-message.ogg", bytes(10 * MIB + 1)))
    assert large.value.status == 413
    failures = sim.take_validation_failures()
    assert [f.code for f in failures] == [50159, 50159, 50160, 50160, 50161, 50161, 50161, 50035, 50035, 50035]
    assert "waveform" in str(failures[-3].errors)


async def test_voice_messages_need_their_own_permission_and_are_never_edited(
    sim: DiscordSimulator, client: discord.Client
) -> None:
    channel_id = sim.default_channel_id
    ogg = ("voice-message.ogg", opus_ogg())
    await sim.set_bot_permissions(channel_id, DEFAULT_BOT_PERMISSIONS & ~Permission.SEND_VOICE_MESSAGES)
    with pytest.raises(discord.Forbidden) as forbidden:
        await post(client, channel_id, voice_payload(), ogg)
    assert forbidden.value.code == 50173
    await sim.set_bot_permissions(channel_id, DEFAULT_BOT_PERMISSIONS & ~Permission.ATTACH_FILES)
    data = await post(client, channel_id, voice_payload(), ogg)  # no Attach Files needed
    channel = client.get_channel(channel_id)
    assert isinstance(channel, discord.TextChannel)
    with pytest.raises(discord.HTTPException) as edited:
        await channel.get_partial_message(int(data["id"])).edit(content="later")
    assert edited.value.code == 50162
    assert [f.code for f in sim.take_validation_failures()] == [50162]
