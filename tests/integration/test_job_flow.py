"""A job's whole life through the real core and the fake Replicate: poll mode, webhook mode, failures."""

from __future__ import annotations

import logging

import pytest

from bot.errors import DeliveryError
from bot.jobs.phase import Phase
from bot.records import JobStatus
from tests.fakes.audio import wav_info
from tests.fakes.replicate import FakeReplicate
from tests.integration.conftest import Harness

# The job flows run on both storage backends (tests/conftest.py).
pytestmark = pytest.mark.both_backends


async def test_poll_mode_delivers_audio_of_the_requested_length(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit("dreamy synthwave", duration_s=5, seed=1234)
    pid = await fake.wait_for_prediction()
    created = fake.requests[0]
    assert created.path == "/v1/predictions"
    assert created.json is not None
    assert "webhook" not in created.json  # poll only
    assert created.json["input"] == {
        "prompt": "dreamy synthwave",
        "duration": 5,
        "model_version": "stereo-melody-large",
        "output_format": "wav",
        "normalization_strategy": "loudness",
        "seed": 1234,
    }
    assert created.headers["Cancel-After"] == "1200s"
    await fake.begin(pid)
    await harness.listener.wait_for_phase(job.id, Phase.GENERATING)
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE

    [delivered] = harness.listener.deliveries_of(job.id)
    info = wav_info(delivered.data)
    assert info.duration_s == pytest.approx(5.0, abs=0.01)
    assert info.channels == 2
    done = await harness.job(job.id)
    assert done.status == JobStatus.DELIVERED
    assert done.prediction_id == pid
    assert done.seed == 1234
    assert done.predict_time_s is not None
    assert done.delivery_message_id == 1001
    assert done.output_content_type in ("audio/wav", "audio/x-wav")
    phases = harness.listener.phases[job.id]
    for phase in (Phase.STARTING, Phase.GENERATING, Phase.UPLOADING, Phase.DONE):
        assert phase in phases
    assert phases.index(Phase.STARTING) < phases.index(Phase.GENERATING) < phases.index(Phase.DONE)


async def test_webhook_mode_needs_no_polling(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start(with_webhooks=True)  # grace 60 s: only a webhook can finish this job in time
    job = await harness.submit(model="musicgen", duration_s=3, params={"model_version": "large"})
    pid = await fake.wait_for_prediction()
    body = fake.requests[-1].json
    assert body is not None
    assert body["webhook"].endswith("/webhooks/replicate")
    assert body["webhook_events_filter"] == ["start", "logs", "completed"]
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert fake.count("GET", "/v1/predictions/") == 0
    [delivered] = harness.listener.deliveries_of(job.id)
    info = wav_info(delivered.data)
    assert (round(info.duration_s), info.channels) == (3, 1)
    seed = (await harness.job(job.id)).seed
    assert seed is not None  # parsed from the model's logs


async def test_duplicated_and_reordered_webhooks_deliver_once(harness: Harness, fake: FakeReplicate) -> None:
    fake.reorder_webhooks = True
    await harness.start(with_webhooks=True)
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid, duplicate_webhook=3)
    await fake.drain_webhooks()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(harness.listener.deliveries_of(job.id)) == 1
    assert all(d.status_code == 200 for d in fake.webhook_deliveries)
    assert (await harness.job(job.id)).status == JobStatus.DELIVERED


async def test_a_lost_webhook_is_caught_by_the_poller(harness: Harness, fake: FakeReplicate) -> None:
    fake.webhook_retries = 0
    await harness.start(with_webhooks=True, jobs={"webhook_grace_s": 0.2})
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    assert harness.core is not None
    assert harness.core.web is not None
    await harness.core.web.stop()  # the webhook endpoint is gone
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert fake.webhook_deliveries[-1].status_code is None  # never arrived
    assert fake.count("GET", f"/v1/predictions/{pid}") >= 1


async def test_model_failure_ends_the_job_with_a_clear_reason(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.fail(pid, "CUDA out of memory: secret internal detail")
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    failed = await harness.job(job.id)
    assert failed.status == JobStatus.FAILED
    assert failed.error is not None
    assert "model failed" in failed.error
    assert "CUDA" not in failed.error  # no raw provider text for users


async def test_aborted_prediction_fails_the_job(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.abort(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert "dropped the job before it started" in ((await harness.job(job.id)).error or "")


async def test_prediction_canceled_upstream_cancels_the_job(harness: Harness, fake: FakeReplicate) -> None:
    await harness.start()
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    await fake.hit_deadline(pid)  # running: Replicate cancels it
    assert await harness.listener.wait_for_phase(job.id) == Phase.CANCELED


@pytest.mark.parametrize(
    ("model_ref", "message"),
    [
        ("meta/musicgen:" + "f" * 64, "configured model version isn't available"),
        ("nobody/nothing", "doesn't know that model"),
    ],
)
async def test_bad_model_reference_fails_clearly(
    harness: Harness, fake: FakeReplicate, model_ref: str, message: str
) -> None:
    await harness.start(models={"musicgen": {"ref": model_ref}})
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert message in ((await harness.job(job.id)).error or "")
    assert fake.predictions == {}


async def test_wrong_token_fails_with_an_operator_message(harness: Harness, fake: FakeReplicate) -> None:
    harness.token = "r8_revoked_token"
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert "credentials" in ((await harness.job(job.id)).error or "")


async def test_rate_limited_create_is_retried(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="POST", path="^/v1/predictions$", status=429, headers={"Retry-After": "0"}, times=2)
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(fake.predictions) == 1


async def test_server_errors_while_polling_are_retried(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="GET", path="^/v1/predictions/", status=503, times=4)
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE


async def test_create_that_died_after_reaching_replicate_is_adopted_not_repeated(
    harness: Harness, fake: FakeReplicate
) -> None:
    fake.inject(method="POST", path="^/v1/predictions$", drop_after_create=True)
    await harness.start()
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert list(fake.predictions) == [pid]  # exactly one prediction: the lost answer was found by listing
    assert (await harness.job(job.id)).prediction_id == pid


async def test_create_that_never_reached_replicate_is_retried(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="POST", path="^/v1/predictions$", drop=True)
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert len(fake.predictions) == 1
    assert (await harness.job(job.id)).attempts == 2


async def test_discord_outage_retries_delivery_from_the_stored_file(harness: Harness, fake: FakeReplicate) -> None:
    harness.listener.delivery_failures = [DeliveryError(detail="503"), DeliveryError(detail="502")]
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert harness.listener.delivery_attempts == 3
    assert len(harness.listener.deliveries_of(job.id)) == 1
    assert (await harness.job(job.id)).delivery_attempts == 3


async def test_permanent_delivery_failure_keeps_the_reason(harness: Harness, fake: FakeReplicate) -> None:
    harness.listener.delivery_failures = [DeliveryError("No permission to attach files.", retryable=False)]
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    failed = await harness.job(job.id)
    assert failed.error == "No permission to attach files."
    assert failed.output_path is not None  # the file is kept


async def test_job_that_takes_too_long_times_out_and_is_canceled_upstream(
    harness: Harness, fake: FakeReplicate
) -> None:
    await harness.start(jobs={"timeout_s": 0.3})
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.begin(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert "took too long" in ((await harness.job(job.id)).error or "")
    assert (await fake.wait_for_status(pid)).status == "canceled"


async def test_oversized_output_is_refused(harness: Harness, fake: FakeReplicate) -> None:
    fake.auto_advance = True
    await harness.start(storage={"max_output_bytes": 4096})
    job = await harness.submit(duration_s=2)
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert (await harness.job(job.id)).error == "I couldn't fetch the finished audio."
    assert not list((harness.data_dir / "outputs").glob("*"))  # no partial file left behind


async def test_create_that_times_out_is_looked_up_not_repeated(harness: Harness, fake: FakeReplicate) -> None:
    # The create is slower than our read timeout: it reaches Replicate only after we gave up on it.
    fake.inject(method="POST", path="^/v1/predictions$", status=None, delay_s=0.3)
    await harness.start(replicate={"read_timeout_s": 0.1}, jobs={"retry_s": 2.0})
    job = await harness.submit()
    pid = await fake.wait_for_prediction()
    await fake.succeed(pid)
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert list(fake.predictions) == [pid]
    assert len([r for r in fake.requests if r.method == "POST"]) == 1  # found by listing, not created twice


async def test_slow_polls_time_out_and_are_retried(harness: Harness, fake: FakeReplicate) -> None:
    fake.inject(method="GET", path="^/v1/predictions/", status=None, delay_s=1.0, times=2)
    fake.auto_advance = True
    await harness.start(replicate={"read_timeout_s": 0.2})
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE


async def test_outcomes_are_counted_and_logs_name_the_job(
    harness: Harness, fake: FakeReplicate, caplog: pytest.LogCaptureFixture
) -> None:
    from bot import metrics
    from bot.logs import JobFilter

    caplog.set_level(logging.INFO, logger="bot")
    caplog.handler.addFilter(JobFilter())
    registry, succeeded = metrics.new_registry(), {"model": "musicgen", "outcome": "succeeded"}
    before = registry.get_sample_value("encore_jobs_finished_total", succeeded) or 0.0
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.DONE
    assert registry.get_sample_value("encore_jobs_finished_total", succeeded) == before + 1
    stored = [r for r in caplog.records if "output stored" in r.getMessage()]
    assert stored
    assert all(getattr(r, "job", None) == job.id for r in stored)  # bound by the service, not by the message


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data", "https://evil.example/out.wav", "file:///etc/passwd", "ftp://x/y.wav"],
)
async def test_outputs_only_come_from_the_providers_hosts(harness: Harness, fake: FakeReplicate, url: str) -> None:
    import dataclasses

    model = fake.models["meta/musicgen"]
    fake.add_model(dataclasses.replace(model, run=lambda _input: (url, "Using seed 1\n")))
    fake.auto_advance = True
    await harness.start()
    job = await harness.submit()
    assert await harness.listener.wait_for_phase(job.id) == Phase.FAILED
    assert (await harness.job(job.id)).error == "I couldn't fetch the finished audio."
    assert not list((harness.data_dir / "outputs").glob(f"{job.id}*"))
