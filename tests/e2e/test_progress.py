"""Live progress on the card: the place in line while waiting, the model's bar while it runs (from polls and
from ``logs`` webhooks), coalesced under Discord's rate limits, and hostile logs read safely."""

from __future__ import annotations

import re
import time

from tests.e2e.conftest import Encore, card_status, status_is
from tests.fakes.audio import audio_info
from tests.fakes.discord import DiscordSimulator
from tests.fakes.replicate import FakeReplicate, tqdm_line

CARD_EDIT = "PATCH /webhooks/{webhook_id}/{webhook_token}/messages/@original"


def shows(text: str):
    return lambda message: text in card_status(message)


async def test_a_waiting_card_shows_its_place_in_line_and_when_it_should_start(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(limits={"replicate_jobs_in_flight": 1})
    await encore.start()
    first = await sim.user("alice").slash("music generate", prompt="first in line", duration=30)
    running = await fake.wait_for_prediction()
    await fake.begin(running)
    await fake.progress(running, 1400, 1503, rate=50.0)  # 2 s left, says its bar
    await first.wait_original(shows("93%"))
    second = await sim.user("bob").slash("music generate", prompt="second in line", duration=30)
    card = await second.wait_original(shows("#1 in line"))
    status = card_status(card)
    wait = re.search(r"#1 in line · about (\d+):(\d\d) to start", status)
    assert wait is not None, status
    assert int(wait[1]) * 60 + int(wait[2]) <= 4  # when the running job's bar says it ends, give or take
    assert fake.count("POST", "/v1/predictions") == 1  # it waits its turn
    await fake.succeed(running)
    await second.wait_original(status_is("Starting"))  # its turn came
    await first.wait_file()


async def test_the_card_shows_the_models_progress_bar_from_polls(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="a bar to watch", duration=30)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    # " 52%|█████▏    | 780/1503 [00:01<00:01, 500.00it/s]": a fast model, 1.4 s left
    await fake.progress(pid, 780, 1503, rate=500.0)
    card = await handle.wait_original(shows("52%"))
    status = card_status(card)
    assert status.startswith("🎛️ Generating ▓▓▓▓▓░░░░░ 52% · about "), status
    left = re.search(r"about (\d+) s left", status)
    assert left is not None, status
    assert int(left[1]) <= 3  # its bar's 1.4 s, and a little for what comes after the bar
    await fake.progress(pid, 1503, 1503, rate=500.0)  # before the poller looks again (when the bar should end)
    assert "▓▓▓▓▓▓▓▓▓▓ 100%" in card_status(await handle.wait_original(shows("100%")))
    await fake.succeed(pid)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 30
    assert "Done" in card_status(await handle.wait_original(status_is("Done")))


async def test_logs_webhooks_bring_the_progress_without_polling(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    encore.configure(with_webhooks=True)  # the poller waits 60 s before its first look: only webhooks can tell
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="told by webhooks", duration=30)
    pid = await fake.wait_for_prediction()
    assert fake.prediction(pid).events_filter == ["start", "logs", "completed"]
    await fake.begin(pid)
    await fake.progress(pid, 780, 1503, elapsed_s=15.4)
    card = await handle.wait_original(shows("52%"))
    assert "Generating ▓▓▓▓▓░░░░░ 52% · about" in card_status(card)
    assert [d.event for d in fake.webhook_deliveries] == ["start", "logs"]
    await fake.succeed(pid)
    await handle.wait_file()
    assert fake.count("GET", "/v1/predictions/") == 0


async def test_a_flood_of_progress_is_coalesced_under_discords_rate_limit(
    encore: Encore, sim: DiscordSimulator, fake: FakeReplicate
) -> None:
    # Discord's bucket for editing a message through its interaction: modelled as 5 edits in any 5 s; more get 429.
    edits: list[float] = []

    def over_the_limit(_call: object) -> bool:
        now = time.monotonic()
        if sum(now - t < 5.0 for t in edits) >= 5:
            return True
        edits.append(now)
        return False

    limit = sim.inject_rate_limit(CARD_EDIT, times=None, when=over_the_limit, retry_after_s=1.0)
    encore.configure(with_webhooks=True, discord={"card_edit_interval_s": 1.5})
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="a flood of progress", duration=30)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    assert encore.bot is not None
    db = encore.bot.core.db
    rows_before = await db.read("SELECT webhook_id FROM webhook_events")
    mark = sim.mark()
    # A misbehaving sender: 60 logs webhooks at once, each a little further along, none of them throttled.
    for n in range(25, 1503, 25):
        fake.write_logs(pid, "\r" + tqdm_line(n, 1503, n / 50.0, 50.0))
        assert await fake.send_webhook(pid, event="logs") == 200  # all taken: nothing to retry
    await handle.wait_original(shows("99%"))  # the newest, 1500 of 1503 (not shown full before it is)
    flood_edits = [c for c in sim.requests[mark.requests :] if c.route == CARD_EDIT]
    assert len(flood_edits) <= 4, [card_status_of(c.body) for c in flood_edits]  # coalesced, not 60
    assert limit.hits == 0  # and never over Discord's limit
    assert len(await db.read("SELECT webhook_id FROM webhook_events")) == len(rows_before)  # no rows behind
    await fake.succeed(pid)
    await handle.wait_file()
    assert limit.hits == 0


def card_status_of(body: object) -> str:
    if isinstance(body, dict):
        for embed in body.get("embeds") or []:
            for field in embed.get("fields", []):
                if field.get("name") == "Status":
                    return str(field.get("value"))
    return ""


async def test_hostile_logs_are_read_safely(encore: Encore, sim: DiscordSimulator, fake: FakeReplicate) -> None:
    await encore.start()
    handle = await sim.user("alice").slash("music generate", prompt="noisy model", duration=30)
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    junk = "\x1b[31m 99%|xx| 780/15 [00:15<00:14, 50.6it/s]\x1b[0m\r" + "100%|" * 2000 + "\n"
    fake.write_logs(pid, junk * 1000)  # 10 MB of colours, broken bars and noise
    await fake.progress(pid, 780, 1503, rate=500.0)
    await handle.wait_original(shows("52%"))
    fake.write_logs(pid, "\x1b[2K" + " 60%|██████    | 9" + "x" * 8000)  # a line that never ends
    await fake.succeed(pid)
    audio = await handle.wait_file()
    assert round(audio_info(audio.data).duration_s) == 30
    done = card_status(await handle.wait_original(status_is("Done")))
    assert "%" not in done
