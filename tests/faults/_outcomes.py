"""Reading how the jobs of a fault scenario ended, as users see it in the simulator.

Every command's prompt carries its index (``#042``), and every delivered file's name carries its job id, so
what Discord holds can be matched to the commands and the job rows without asking the bot.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from tests.e2e.conftest import card_status, job_id_of
from tests.fakes.audio import audio_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.discord.handles import InteractionHandle
from tests.fakes.discord.models import SimMessage

PROMPT_INDEX = re.compile(r"#(\d{3}) ")
TERMINAL = frozenset({"delivered", "failed", "canceled"})


def prompt_index(prompt: str) -> int:
    match = PROMPT_INDEX.search(prompt)
    assert match is not None, prompt
    return int(match.group(1))


def is_audio(filename: str) -> bool:
    return filename.endswith((".wav", ".ogg", ".opus", ".mp3"))


def audio_messages(sim: DiscordSimulator, job_ids: list[str]) -> dict[str, list[SimMessage]]:
    """The bot's messages carrying each job's audio (the job id is in every delivered file's name)."""
    found: dict[str, list[SimMessage]] = defaultdict(list)
    for message in sim.messages:
        if message.author_id != sim.bot_id:
            continue
        names = [a.filename for a in message.attachments if is_audio(a.filename)]
        for job_id in job_ids:
            if any(job_id in name for name in names):
                found[job_id].append(message)
    return found


def answer(handle: InteractionHandle) -> SimMessage | None:
    """What the person reads in answer to a command: its card (the original response), or a private line (a
    refusal: the first response, or a followup once the public "thinking…" was deleted). None: no answer yet."""
    for message in (handle.original, *handle.followups):
        if message is not None and not message.deleted and not message.is_loading:
            return message
    return None


@dataclass(frozen=True)
class Asked:
    """What one command asked for, to judge how its job ended."""

    index: int
    user_id: int
    user_name: str
    duration_s: int
    fails: bool  # its prediction fails at the model on purpose


def job_ended(
    asked: Asked, job: dict[str, Any], *, audio: list[SimMessage], card: SimMessage | None, interaction_id: int
) -> tuple[str | None, list[str]]:
    """How a command's stored job ended, and every rule it broke: delivered as exactly one audio message (of the
    length asked for, mentioning its requester, answering the command or replying to its card), or failed or
    canceled with its reason on its card and no audio. ``card``: the command's answer (None: it got none).
    Returns the outcome (None when there is none to count: lost, or posted twice) and the problems."""
    name = f"command #{asked.index} (job {job['id']}, {job['status']})"
    problems: list[str] = []
    if prompt_index(json.loads(job["request_json"])["prompt"]) != asked.index:
        problems.append(f"{name}: the job has another command's prompt")
    status, error = job["status"], job["error"]
    if status == "delivered":
        if len(audio) != 1:
            return None, [*problems, f"{name}: its audio was posted {len(audio)} times"]
        [attachment] = [a for a in audio[0].attachments if is_audio(a.filename)]
        seconds = audio_info(attachment.data).duration_s
        if round(seconds) != asked.duration_s:
            problems.append(f"{name}: {seconds:.2f} s of audio, asked for {asked.duration_s}")
        if asked.user_id not in audio[0].mentions:
            problems.append(f"{name}: the audio does not mention {asked.user_name}")
        if asked.fails:
            problems.append(f"{name}: its prediction failed, yet audio was posted")
    elif status in ("failed", "canceled"):
        if audio:
            problems.append(f"{name}: its audio was posted {len(audio)} times anyway")
        if not error:
            problems.append(f"{name}: it ended without a reason")
    else:
        return None, [*problems, f"{name}: never finished: lost"]
    if card is None:
        # Killed after storing the job, before answering: the person saw the command fail, and the job ran
        # anyway. It must still end once, like any other.
        return f"unanswered, yet {status} once: killed after storing the job", problems
    shown = card_status(card)
    if job_id_of(card) != job["id"]:
        problems.append(f"{name}: its card shows job {job_id_of(card)}")
    if job["card_message_id"] != card.id:
        problems.append(f"{name}: card {card.id} was never stored with the job ({job['card_message_id']})")
    if status == "delivered":
        if "Done" not in shown:
            problems.append(f"{name}: its card still shows {shown!r}")
        elif audio[0].interaction_id != interaction_id and audio[0].reply_to != card.id:
            problems.append(f"{name}: the audio neither answers the command nor replies to the card")
        return "delivered once", problems
    if status.capitalize() not in shown or error not in shown:
        problems.append(f"{name}: {error!r}, but its card shows {shown!r}")
    reason = "the model failed (on purpose)" if asked.fails else error
    return f"{status}, reason on its card: {reason}", problems
