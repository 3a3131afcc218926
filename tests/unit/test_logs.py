"""Log records carry the bound job id, never a secret; JSON lines parse."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from bot import logs

TOKENS = {
    "DISCORD_TOKEN": "MTIzNDU2Nzg5.discord-token-value",
    "REPLICATE_API_TOKEN": "r8_replicate_token_value_123",
    "REPLICATE_WEBHOOK_SECRET": "whsec_c2VjcmV0LXNpZ25pbmcta2V5",
    "ELEVENLABS_API_KEY": "sk_elevenlabs_key_value",
    "ENCORE_COG__UPLOAD_SECRET": "cog-upload-secret-0123456789",
}


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A logger of our own with Encore's handler on a string: the root logger (pytest's) is left alone."""
    out = io.StringIO()
    logger = logging.getLogger("encore.test.logs")
    handler = logs.make_handler(stream=out, masker=logs.SecretMasker.from_env(TOKENS))
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield out
    logger.removeHandler(handler)


log = logging.getLogger("encore.test.logs")


def test_a_token_logged_by_mistake_comes_out_masked(stream: io.StringIO) -> None:
    token = TOKENS["REPLICATE_API_TOKEN"]
    log.info("calling Replicate with headers %s", {"Authorization": f"Bearer {token}"})
    log.warning("discord token is " + TOKENS["DISCORD_TOKEN"])
    log.info(
        "%(key)s then %(secret)s", {"key": TOKENS["ELEVENLABS_API_KEY"], "secret": TOKENS["REPLICATE_WEBHOOK_SECRET"]}
    )
    log.info("uploads go to https://encore.example.com/cog/uploads/%s/", TOKENS["ENCORE_COG__UPLOAD_SECRET"])
    try:
        raise RuntimeError(f"request failed with token {token}")
    except RuntimeError:
        log.exception("it broke")
    log.info("extra fields", extra={"header": f"Bearer {token}", "headers": {"Authorization": token}})
    log.info("a broken format %d", token)  # logging's own error report must not show it either
    out = stream.getvalue()
    for value in TOKENS.values():
        assert value not in out
    assert "Bearer ***REPLICATE_API_TOKEN***" in out
    assert "discord token is ***DISCORD_TOKEN***" in out
    assert "***ELEVENLABS_API_KEY*** then ***REPLICATE_WEBHOOK_SECRET***" in out
    assert "/cog/uploads/***ENCORE_COG__UPLOAD_SECRET***/" in out
    assert "RuntimeError: request failed with token ***REPLICATE_API_TOKEN***" in out


def test_messages_without_secrets_keep_their_arguments() -> None:
    masker = logs.SecretMasker({"DISCORD_TOKEN": "abcdef-token", "SHORT": "abc"})
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "job %s took %d s", ("ab12", 3), None)
    masker.filter(record)
    assert (record.msg, record.args) == ("job %s took %d s", ("ab12", 3))
    # Values under MIN_SECRET_CHARS are not masked: they would mangle ordinary words.
    assert masker.mask("abc abcdef-token") == "abc ***DISCORD_TOKEN***"
    assert len(masker) == 1


def test_secrets_learned_later_are_masked_too(stream: io.StringIO) -> None:
    masker = logs.SecretMasker()
    masker.add("REPLICATE_WEBHOOK_SECRET", "whsec_fetched_at_startup")
    assert masker.mask("secret whsec_fetched_at_startup") == "secret ***REPLICATE_WEBHOOK_SECRET***"


def logger_and_job(line: str) -> str:
    """``<date> <time> <LEVEL, padded> <logger>[ job=<id>]: <message>`` -> ``<logger>[ job=<id>]``."""
    match = re.match(r"\S+ \S+ \S+\s+(.*?): ", line)
    assert match is not None, line
    return match.group(1)


def test_records_carry_the_bound_job_id(stream: io.StringIO) -> None:
    log.info("before")
    with logs.job_context("ab12cd34ef"):
        log.info("inside")
        with logs.job_context("zz99"):
            log.info("nested")
        log.info("back")
    log.info("after")
    assert [logger_and_job(line) for line in stream.getvalue().splitlines()] == [
        "encore.test.logs",
        "encore.test.logs job=ab12cd34ef",
        "encore.test.logs job=zz99",
        "encore.test.logs job=ab12cd34ef",
        "encore.test.logs",
    ]


async def test_job_ids_follow_tasks_and_never_leak_between_them(stream: io.StringIO) -> None:
    seen: dict[str, str | None] = {}

    async def work(name: str, bind: str | None = None) -> None:
        if bind is not None:
            logs.bind_job(bind)  # for the rest of this task only
        await asyncio.sleep(0)
        seen[name] = logs.current_job()
        log.info("working")

    with logs.job_context("parent"):
        inherited = asyncio.create_task(work("inherited"))  # a task copies the context it is made in
    binding = asyncio.create_task(work("binding", bind="job-a"))
    given = asyncio.create_task(work("given"), context=logs.job_task_context("job-given"))
    await asyncio.gather(inherited, binding, given)
    assert seen == {"inherited": "parent", "binding": "job-a", "given": "job-given"}
    assert logs.current_job() is None
    assert "job=job-given: working" in stream.getvalue()


def test_json_lines(stream: io.StringIO) -> None:
    out = io.StringIO()
    handler = logs.make_handler(json_lines=True, stream=out, masker=logs.SecretMasker.from_env(TOKENS))
    logger = logging.getLogger("encore.test.json")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with logs.job_context("ab12cd34ef"):
            try:
                raise ValueError("bad " + TOKENS["DISCORD_TOKEN"])
            except ValueError:
                logger.exception("failed for %s", "alice", extra={"attempt": 2})
        logger.warning("no job")
    finally:
        logger.removeHandler(handler)
    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["level"] == "ERROR"
    assert first["logger"] == "encore.test.json"
    assert first["message"] == "failed for alice"
    assert first["job"] == "ab12cd34ef"
    assert first["attempt"] == 2
    assert "ValueError: bad ***DISCORD_TOKEN***" in first["exception"]
    assert first["time"].endswith("+00:00")
    assert "job" not in second
    assert TOKENS["DISCORD_TOKEN"] not in out.getvalue()


def test_configure_sets_up_the_root_logger_from_the_environment() -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    out = io.StringIO()
    try:
        logs.configure("INFO", stream=out, environ={"DISCORD_TOKEN": "configured-discord-token"})
        logging.getLogger("encore.test.configure").info("token configured-discord-token")
    finally:  # give pytest its handlers back
        root.handlers[:] = handlers
        root.setLevel(level)
    assert out.getvalue().endswith("encore.test.configure: token ***DISCORD_TOKEN***\n")


def test_interaction_and_cog_webhook_tokens_are_masked_by_shape() -> None:
    masker = logs.SecretMasker()  # no secrets from the environment: these are recognised by their shape
    interaction = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnNlY3JldA.x-y_z"
    odd = "not-base64-but-still-a-token-1234567890"
    cog = logs.CALLBACK_TOKEN_PREFIX + "Zm9vYmFyLWJhei1xdXV4LTEyMzQ1Njc4"
    lines = [
        f"POST https://discord.com/api/v10/interactions/1234/{odd}/callback with None has returned 204",
        f"PATCH https://discord.com/api/v10/webhooks/5678/{odd}/messages/@original has returned 200",
        f"For Shard ID None: WebSocket Event: {{'t': 'INTERACTION_CREATE', 'd': {{'token': '{interaction}'}}}}",
        f"executing functools.partial(<execute>, 'INSERT INTO jobs ...', ('ab12', '{cog}', 1.0))",
        f"webhook to http://encore.example/cog/webhooks/ab12cd34ef/{odd[:20]} answered 200",
    ]
    masked = [masker.mask(line) for line in lines]
    for line in masked:
        for token in (interaction, odd, odd[:20], cog):
            assert token not in line
    assert "/interactions/1234/***INTERACTION_TOKEN***/callback" in masked[0]
    assert "/webhooks/5678/***INTERACTION_TOKEN***/messages/@original" in masked[1]
    assert "'token': '***" in masked[2]
    assert "('ab12', '***COG_WEBHOOK_TOKEN***', 1.0)" in masked[3]
    assert "/cog/webhooks/ab12cd34ef/***COG_WEBHOOK_TOKEN***" in masked[4]
    # Ordinary paths are left alone.
    assert masker.mask("POST /webhooks/replicate took 3 ms") == "POST /webhooks/replicate took 3 ms"
