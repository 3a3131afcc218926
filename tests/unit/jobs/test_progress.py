"""Reading tqdm bars out of a prediction's logs, and foreseeing when the prediction ends."""

from __future__ import annotations

import pytest

from bot.jobs.phase import start_eta_s
from bot.jobs.progress import TAIL_CHARS, Forecast, Progress, Throttle, progress_text, read_bar
from tests.fakes.replicate import tqdm_line

MUSICGEN_AT_52 = " 52%|█████▏    | 780/1503 [00:15<00:14, 50.6it/s]"


def test_a_musicgen_bar_is_read_with_its_time_left_from_its_rate() -> None:
    reading = read_bar(f"Using seed 7\n\r{MUSICGEN_AT_52}")
    assert reading is not None
    assert (reading.n, reading.total, reading.elapsed_s) == (780, 1503, 15.0)
    assert reading.left_s == pytest.approx((1503 - 780) / 50.6)  # finer than the bar's whole seconds
    assert reading.fraction == pytest.approx(0.519, abs=1e-3)


def test_the_newest_update_counts_and_a_line_cut_off_mid_write_is_skipped() -> None:
    logs = "\r" + tqdm_line(100, 1503, 2.0, 50.0) + "\r" + tqdm_line(780, 1503, 15.6, 50.0) + "\r 53%|█████▎    | 79"
    reading = read_bar(logs)
    assert reading is not None
    assert reading.n == 780


@pytest.mark.parametrize(
    ("logs", "n"),
    [
        ("\x1b[32m" + MUSICGEN_AT_52 + "\x1b[0m\n", 780),  # ANSI colours
        ("Generating: " + MUSICGEN_AT_52 + "\n", 780),  # a description before the bar
        (" 52%|█████▏    | 780/1503 [00:15<00:14, 50.6it/s, loss=0.12]", 780),  # a postfix
        ("  3%|▎         | 3/100 [00:05<02:41,  1.67s/it]", 3),  # slower than a step a second
        (" 52%|#####2    | 780/1503 [1:00:15<00:00, 1.2kit/s]", 780),  # ascii bar, hours, a k suffix
        ("100%|██████████| 1503/1503 [00:29<00:00, 50.60it/s]\n", 1503),
        ("  0%|          | 0/1503 [00:00<?, ?it/s]", 0),  # the first update: no rate yet
    ],
)
def test_bars_as_tqdm_prints_them(logs: str, n: int) -> None:
    reading = read_bar(logs)
    assert reading is not None
    assert reading.n == n


@pytest.mark.parametrize(
    "logs",
    [
        None,
        "",
        "Using seed 7\nLoading model...\n",
        " 99%|xx| 780/15 [00:15<00:14, 50.6it/s]",  # the total cut short: 780 of 15
        " 5%|x| 78/150 [00:15<00:14, 50.6it/s]",  # percent and counts disagree
        " 52%|█████▏    | 780/1503 [00:15<00:14, 50.6it/s",  # the last line, unfinished
        " 52%|█████▏    | 780/0 [00:15<00:14, 50.6it/s]",
        "999%|x| 9/9 [00:01<00:00, 9it/s]",
        "%|" * 5000 + "|/" * 5000,
        "\x1b[" * 3000 + "1" * 3000,
    ],
)
def test_garbage_is_no_bar(logs: str | None) -> None:
    assert read_bar(logs) is None


def test_only_the_tail_of_hostile_logs_is_read() -> None:
    bar = tqdm_line(780, 1503, 15.6, 50.0)
    assert read_bar("x" * 50_000_000 + "\r" + bar) is not None  # 50 MB of junk before it: only the tail is read
    assert read_bar(bar + "\n" + "y" * TAIL_CHARS) is None  # a bar further back than the tail is not looked for


def test_progress_reads_as_on_the_card() -> None:
    assert progress_text(Progress(fraction=780 / 1503, left_s=14.3)) == "▓▓▓▓▓░░░░░ 52% · about 14 s left"
    assert progress_text(Progress(fraction=1.0, left_s=0.4)) == "▓▓▓▓▓▓▓▓▓▓ 100% · almost done"
    assert progress_text(Progress(left_s=95)) == "about 1:35 left"
    song = Progress(received_bytes=3 * 1024 * 1024 // 2, elapsed_s=83)
    assert progress_text(song, elapsed=True) == "1.5 MiB received · 1:23 elapsed"


def test_a_bar_foretells_the_end_and_the_model_teaches_its_time_after_the_bar() -> None:
    forecast = Forecast()
    model = "musicgen"
    low, high = forecast.after_bar(model)  # nothing learned yet: a prior
    outlook = forecast.observe(
        "job1", model, processing=True, logs=tqdm_line(750, 1500, 15.0, 50.0), now=100.0, submitted_at=80.0
    )
    assert outlook.window is not None
    assert outlook.window.earliest == pytest.approx(100.0 + 15.0 - 1.5 + low)
    assert outlook.window.latest == pytest.approx(100.0 + 15.0 + 1.5 + high)
    assert outlook.window.look_at == pytest.approx(113.5)  # the bar's end is known to ±1.5 s: look again before
    assert outlook.progress is not None
    assert outlook.progress.fraction == 0.5
    # A look just before the bar is full narrows it to its floor of ±0.2 s, and nothing more to look at.
    near = forecast.observe("job1", model, processing=True, logs=tqdm_line(1475, 1500, 29.5, 50.0), now=114.5)
    assert near.window is not None
    assert near.window.look_at is None
    assert near.window.latest - near.window.earliest == pytest.approx(0.4 + high - low)
    # Jobs seen just short of a full bar (its end: in 0.5 s, give or take 0.2), then full and still running
    # 0.8 s later, then done 0.2 s after that: each ended between 0.1 and 0.7 s after its bar.
    forecast.ended("job1", now=115.5, succeeded=True)
    for i in range(3):
        job, start = f"job{i + 2}", 200.0 + 10 * i
        forecast.observe(job, model, processing=True, logs=tqdm_line(1475, 1500, 29.5, 50.0), now=start)
        forecast.observe(job, model, processing=True, logs=tqdm_line(1500, 1500, 30.0, 50.0), now=start + 0.8)
        forecast.ended(job, now=start + 1.0, succeeded=True)
    # (job1 ended within 1.4 s of a look, which teaches it about 0 s)
    assert forecast.after_bar(model) == pytest.approx((-0.1, 0.5))  # with a margin; narrower than the prior


def test_a_bar_that_has_hardly_started_is_only_a_rough_guess() -> None:
    outlook = Forecast().observe("j", "musicgen", processing=True, logs=tqdm_line(20, 1503, 1.0, 20.0), now=0.0)
    assert outlook.window is not None
    assert outlook.window.rough  # warm-up: its rate says little about the rest


def test_without_a_bar_the_models_recent_run_times_give_a_rough_window() -> None:
    forecast = Forecast()
    outlook = forecast.observe("j", "musicgen", processing=False, logs=None, now=101.0, submitted_at=100.0)
    assert outlook.window is None  # nothing known: backoff as usual
    outlook = forecast.observe(
        "j", "musicgen", processing=False, logs=None, now=101.0, submitted_at=100.0, typical_run_s=10.0
    )
    assert outlook.window is not None
    assert (outlook.window.earliest, outlook.window.latest, outlook.window.rough) == (102.5, 117.5, True)
    assert outlook.progress == Progress(left_s=9.0)


def test_queue_wait_from_the_running_jobs_and_the_usual_run_time() -> None:
    assert start_eta_s(1, 1, [12.0], 30.0) == 12.0  # the one slot frees in 12 s
    assert start_eta_s(2, 1, [12.0], 30.0) == 42.0  # then one run more
    assert start_eta_s(2, 2, [12.0, 20.0], 30.0) == 20.0
    assert start_eta_s(3, 2, [12.0, 20.0], 30.0) == 42.0
    assert start_eta_s(1, 1, [None], 30.0) == 15.0  # an unknown running job: half a run left, on average
    assert start_eta_s(1, 1, [None], None) is None
    assert start_eta_s(2, 1, [12.0], None) is None  # nothing known of runs after this one
    assert start_eta_s(1, 1, [5.0, 12.0], 30.0) == 12.0  # the cap was lowered: the first end frees no slot


def test_throttle_lets_one_through_per_key_and_period_and_stays_bounded() -> None:
    throttle = Throttle(1.0, max_keys=3)
    assert throttle.allow("a", 0.0)
    assert not throttle.allow("a", 0.5)
    assert throttle.allow("a", 1.0)
    assert throttle.allow("b", 1.0)
    assert throttle.allow("c", 1.0)
    assert not throttle.allow("d", 1.5)  # full of live keys: a flood of new ones is dropped
    assert throttle.allow("d", 2.6)  # once they are old, they make room
