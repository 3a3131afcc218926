"""``python -m bot``: run the bot, generate one track from the terminal, or check the config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
from pathlib import Path
from typing import TextIO

from bot.app import Core, run_bot
from bot.catalog import MODELS
from bot.config import Secrets, Settings, describe, load_settings
from bot.errors import BotError, ConfigError, DeliveryError, InvalidRequestError
from bot.jobs.models import Job, JobOrigin, JobRequest
from bot.jobs.service import Phase

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CLI_USER_ID = 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Encore: music from words, in Discord.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config", type=Path, default=None, help="TOML config file (default: ./config.toml when it exists)"
        )
        return sub

    with_config(commands.add_parser("run", help="run the Discord bot"))
    with_config(commands.add_parser("check-config", help="validate the config and print it, secrets masked"))
    generate = with_config(commands.add_parser("generate", help="make one track without Discord"))
    generate.add_argument("prompt", help="describe the music")
    generate.add_argument("--model", default="musicgen", choices=sorted(MODELS))
    generate.add_argument("--duration", type=int, default=None, help="seconds")
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--model-version", default=None, help="e.g. stereo-large")
    generate.add_argument("--out", type=Path, default=None, help="output file (default: <prompt>-<job>.<ext>)")
    generate.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser


class CliListener:
    """Reports progress on stderr and writes the finished file."""

    def __init__(self, out: Path | None, stream: TextIO) -> None:
        self.out = out
        self.stream = stream
        self.job_id: str | None = None
        self.finished = asyncio.Event()
        self.final: Job | None = None
        self.written: Path | None = None
        self._last: Phase | None = None

    async def job_updated(self, job: Job, phase: Phase) -> None:
        if job.id != self.job_id:
            return
        if phase != self._last:
            self._last = phase
            line = f"[{job.id}] {phase.value}"
            if phase in (Phase.FAILED, Phase.CANCELED) and job.error:
                line += f": {job.error}"
            print(line, file=self.stream, flush=True)
        if phase in (Phase.DONE, Phase.FAILED, Phase.CANCELED):
            self.final = job
            self.finished.set()

    async def deliver(self, job: Job) -> int | None:
        if job.id != self.job_id or not job.output_path:
            raise DeliveryError(detail="not this CLI's job")
        source = Path(job.output_path)
        target = self.out or Path(_default_name(job, source.suffix))
        await asyncio.to_thread(_copy, source, target)
        self.written = target
        return None


def _copy(source: Path, target: Path) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _default_name(job: Job, suffix: str) -> str:
    from bot.delivery import audio_filename

    return audio_filename(job) if suffix else f"{job.id}.wav"


async def _generate(args: argparse.Namespace, settings: Settings, secrets: Secrets, stream: TextIO) -> int:
    listener = CliListener(args.out, stream)
    params = {"model_version": args.model_version} if args.model_version else {}
    request = JobRequest(model=args.model, prompt=args.prompt, duration_s=args.duration, seed=args.seed, params=params)
    async with Core(settings, secrets) as core:
        # Only this job: other unfinished jobs in the same database belong to the bot.
        service = await core.start_service(listener, resume=False)
        job = await service.create(request, JobOrigin(user_id=CLI_USER_ID))
        listener.job_id = job.id
        print(f"[{job.id}] Queued: {job.prompt!r} on {job.model}", file=stream, flush=True)
        try:
            async with asyncio.timeout(args.timeout):
                await listener.finished.wait()
        except (TimeoutError, asyncio.CancelledError) as exc:
            await asyncio.shield(_cancel_quietly(core, job.id))
            if isinstance(exc, asyncio.CancelledError):
                raise
            print(f"[{job.id}] gave up after {args.timeout:g} s; the job was canceled", file=stream)
            return EXIT_JOB_FAILED
    final = listener.final
    if final is None or listener.written is None:
        return EXIT_JOB_FAILED
    size = listener.written.stat().st_size
    print(f"[{final.id}] wrote {listener.written} ({size} bytes)", file=stream, flush=True)
    return EXIT_OK


async def _cancel_quietly(core: Core, job_id: str) -> None:
    if core.service is None:
        return
    with contextlib.suppress(BotError):
        await core.service.cancel(job_id, user_id=CLI_USER_ID)


def configure_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except ConfigError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    secrets = Secrets.from_env()
    if args.command == "check-config":
        print(describe(settings, secrets))
        return EXIT_OK
    configure_logging(settings.logging.level if args.command == "run" else "WARNING")
    try:
        if args.command == "run":
            asyncio.run(run_bot(settings, secrets))
            return EXIT_OK
        return asyncio.run(_generate(args, settings, secrets, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BotError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        if str(exc) != exc.user_message:
            log.debug("detail: %s", exc)
        return EXIT_USAGE if isinstance(exc, ConfigError | InvalidRequestError) else EXIT_JOB_FAILED
