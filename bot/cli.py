"""``python -m bot``: run the bot, generate one track from the terminal, or check the config."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from bot.app import Core, run_bot
from bot.catalog import MODELS, Param, all_params, parse_options
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
    with_config(commands.add_parser("models", help="list the models and every parameter they take"))
    generate = with_config(commands.add_parser("generate", help="make one track without Discord"))
    generate.add_argument("prompt", help="describe the music")
    generate.add_argument("--model", default="musicgen", choices=sorted(MODELS))
    generate.add_argument("--duration", type=int, default=None, help="seconds")
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--count", type=int, default=1, help="variations to make at once (1-4)")
    generate.add_argument("--out", type=Path, default=None, help="output file (default: <prompt>-<job>.<ext>)")
    model_params = generate.add_argument_group("model parameters (see `python -m bot models`)")
    for param in _flag_params():
        model_params.add_argument(
            "--" + param.name.replace("_", "-"),
            dest=f"param_{param.name}",
            default=None,
            metavar="VALUE",
            help=f"{param.description} ({param.range_text()})",
        )
    generate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any model parameter")
    generate.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    return parser


class CliListener:
    """Reports progress on stderr and writes the finished files."""

    def __init__(self, out: Path | None, stream: TextIO) -> None:
        self.out = out
        self.stream = stream
        self.card: str | None = None  # the card key (job id, or batch id) this CLI run waits for
        self.finished = asyncio.Event()
        self.final: list[Job] = []
        self.written: list[Path] = []
        self._last: Phase | None = None

    async def job_updated(self, job: Job, phase: Phase, members: Sequence[Job]) -> None:
        if job.card_key != self.card:
            return
        if phase != self._last:
            self._last = phase
            line = f"[{job.card_key}] {phase.value}"
            errors = {m.error for m in members if m.error}
            if phase in (Phase.FAILED, Phase.CANCELED) and errors:
                line += ": " + "; ".join(sorted(errors))
            print(line, file=self.stream, flush=True)
        if phase in (Phase.DONE, Phase.FAILED, Phase.CANCELED):
            self.final = list(members)
            self.finished.set()

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        if not jobs or jobs[0].card_key != self.card:
            raise DeliveryError(detail="not this CLI's job")
        for job in jobs:
            assert job.output_path is not None
            source = Path(job.output_path)
            target = self.out or Path(_default_name(job, source.suffix))
            if len(jobs) > 1 or job.batch_size > 1:
                target = target.with_name(f"{target.stem}-v{job.batch_index + 1}-seed{job.seed}{target.suffix}")
            await asyncio.to_thread(_copy, source, target)
            self.written.append(target)
            if job.image_path:
                image = Path(job.image_path)
                image_target = target.with_name(target.stem + "-spectrogram" + image.suffix)
                await asyncio.to_thread(_copy, image, image_target)
                self.written.append(image_target)
        return None


def _copy(source: Path, target: Path) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _default_name(job: Job, suffix: str) -> str:
    from bot.delivery import audio_filename

    return audio_filename(job) if suffix else f"{job.id}.wav"


# Flags of the CLI itself: a model parameter with one of these names is set with --set NAME=VALUE.
_RESERVED = {"model", "duration", "seed", "count", "out", "timeout", "config", "set", "prompt"}


def _flag_params() -> list[Param]:
    return [param for name, param in all_params().items() if name not in _RESERVED]


def _request_from(args: argparse.Namespace) -> JobRequest:
    params: dict[str, Any] = {}
    for name in (param.name for param in _flag_params()):
        value = getattr(args, f"param_{name}")
        if value is not None:
            params[name] = value
    for item in args.set:
        params.update(parse_options(item))
    return JobRequest(
        model=args.model, prompt=args.prompt, duration_s=args.duration, seed=args.seed, params=params, count=args.count
    )


async def _generate(args: argparse.Namespace, settings: Settings, secrets: Secrets, stream: TextIO) -> int:
    listener = CliListener(args.out, stream)
    request = _request_from(args)
    async with Core(settings, secrets) as core:
        # Only this job: other unfinished jobs in the same database belong to the bot.
        service = await core.start_service(listener, resume=False)
        jobs = await service.create(request, JobOrigin(user_id=CLI_USER_ID))
        lead = jobs[0]
        listener.card = lead.card_key
        seeds = ", ".join(str(job.request.get("seed")) for job in jobs if job.request.get("seed") is not None)
        print(
            f"[{lead.card_key}] Queued: {lead.prompt!r} on {lead.model}" + (f" (seed {seeds})" if seeds else ""),
            file=stream,
            flush=True,
        )
        try:
            async with asyncio.timeout(args.timeout):
                await listener.finished.wait()
        except (TimeoutError, asyncio.CancelledError) as exc:
            await asyncio.shield(_cancel_quietly(core, lead.id))
            if isinstance(exc, asyncio.CancelledError):
                raise
            print(f"[{lead.card_key}] gave up after {args.timeout:g} s; the job was canceled", file=stream)
            return EXIT_JOB_FAILED
    if not listener.written:
        return EXIT_JOB_FAILED
    for path in listener.written:
        print(f"[{lead.card_key}] wrote {path} ({path.stat().st_size} bytes)", file=stream, flush=True)
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
    if args.command == "models":
        print("\n\n".join(spec.help_text().replace("**", "") for spec in MODELS.values()))
        return EXIT_OK
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
