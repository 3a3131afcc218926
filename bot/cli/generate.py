"""``python -m bot generate``: one job from the terminal, through the same core calls and checks as Discord."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import stat
from pathlib import Path
from secrets import token_hex
from typing import Any, TextIO

from bot.app import Core
from bot.catalog import MUSICGEN, Param, all_params, get_model, parse_options
from bot.cli.listener import QUIET_S, CliListener
from bot.cli.render import EXIT_JOB_FAILED, EXIT_OK, human_size
from bot.config import Secrets, Settings
from bot.errors import BotError, ConfigError, InvalidRequestError
from bot.jobs.access import Person
from bot.jobs.service import JobService
from bot.providers import registry
from bot.records import Job, JobOrigin, JobRequest

CLI_USER_ID = 0
CONTINUE_S = 10  # seconds --continue adds when not told (as Discord's "Continue this track")


# Flags of the CLI itself: a model parameter with one of these names is set with --set NAME=VALUE.
_RESERVED = {
    "model",
    "duration",
    "seed",
    "count",
    "out",
    "timeout",
    "config",
    "set",
    "prompt",
    "audio",
    "verbose",
    "loop",
}
_STEM_MODELS = {"stems": "elevenlabs", "demucs": "replicate"}  # the [stems] provider each one means


def flag_params() -> list[Param]:
    return [param for name, param in all_params().items() if name not in _RESERVED]


def _params_from(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in (param.name for param in flag_params()):
        value = getattr(args, f"param_{name}")
        if value is not None:
            params[name] = value
    for item in args.set:
        params.update(parse_options(item))
    return params


def _request_from(args: argparse.Namespace) -> JobRequest:
    return JobRequest(
        model=args.model,
        prompt=args.prompt,
        duration_s=args.duration,
        seed=args.seed,
        params=_params_from(args),
        count=args.count,
        context={"loop_bars": args.loop} if args.loop else {},
    )


def settings_for(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> Settings:
    """The settings for this run: ``--model stems`` / ``demucs`` pick who splits stems ([stems] provider),
    and a model whose provider's key is not set is refused here, naming the key."""
    if args.command != "generate":
        return settings
    stems_provider = _STEM_MODELS.get(args.model)
    if stems_provider is not None:
        settings = settings.model_copy(update={"stems": settings.stems.model_copy(update={"provider": stems_provider})})
    spec = get_model(args.model)
    provider = registry.spec(spec.route(settings).provider)
    if provider.key_env is not None and secrets.get(provider.key_env) is None:
        key = provider.key_env
        raise ConfigError(
            f"{key} is not set: {spec.display_name} runs on {provider.title}; set {key} in the environment"
            + (", or use --model demucs" if stems_provider else "")
        )
    return settings


async def _take_clip(path: Path, settings: Settings) -> Path:
    """A copy of the user's clip in the inputs directory, as Discord attachments are saved: the job keeps
    its own file, and the user's is never changed. Refused like an attachment when it is too large."""
    limit = settings.audio.max_input_bytes
    try:
        info = await asyncio.to_thread(path.stat)
    except OSError as exc:
        raise InvalidRequestError(f"can't read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidRequestError(f"{path} isn't a file.")
    if info.st_size > limit:
        raise InvalidRequestError(f"That file is {human_size(info.st_size)}; the limit is {human_size(limit)}.")
    clip = settings.storage.inputs_dir / f"{token_hex(8)}{path.suffix.lower()[:10] or '.bin'}"

    def copy() -> None:
        clip.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as source, clip.open("wb") as target:
            data = source.read(limit + 1)  # the file may have grown since: never more than the limit
            if len(data) > limit:
                raise InvalidRequestError(f"That file is over the limit of {human_size(limit)}.")
            target.write(data)

    try:
        await asyncio.to_thread(copy)
    except OSError as exc:
        await asyncio.to_thread(clip.unlink, missing_ok=True)
        raise InvalidRequestError(f"can't read {path}: {exc.strerror}") from None
    except BaseException:
        await asyncio.to_thread(clip.unlink, missing_ok=True)
        raise
    return clip


def _refuse(args: argparse.Namespace, what: str, *, allowed: set[str]) -> None:
    """Refuse the flags ``what`` doesn't take, rather than ignore them."""
    given = {
        "--seed": args.seed is not None,
        "--duration": args.duration is not None,
        "--count": args.count != 1,
        "--loop": args.loop is not None,
        **{f"--{name.replace('_', '-')}": True for name in _params_from(args)},
    }
    extra = sorted(flag for flag, present in given.items() if present and flag not in allowed)
    if extra:
        raise InvalidRequestError(f"{what} doesn't take {', '.join(extra)}.")


async def _start(service: JobService, args: argparse.Namespace, settings: Settings) -> list[Job]:
    """Create the job(s) through the same core calls as the Discord commands, with the same checks: everything
    but the clip first, then the clip is copied in (as an attachment is downloaded) and read."""
    origin = JobOrigin(user_id=CLI_USER_ID)
    spec = get_model(args.model)
    if args.audio is None:
        if args.continue_s is not None:
            raise InvalidRequestError("`--continue` needs the track to continue: give it with --audio PATH.")
        if spec.key in _STEM_MODELS:
            raise InvalidRequestError(f"{spec.display_name} needs the track to split: give it with --audio PATH.")
        return await service.create(_request_from(args), origin)
    if spec.key in _STEM_MODELS:
        _refuse(args, spec.display_name, allowed={"--stems"})
    elif spec.key != MUSICGEN.key:
        raise InvalidRequestError(
            f"{spec.display_name} doesn't take a clip: --audio works with musicgen (melody, --continue), "
            "stems and demucs."
        )
    elif args.continue_s is not None:
        _refuse(args, "`--continue`", allowed={"--model-version"})
    else:
        _refuse(args, "Following a melody", allowed={"--seed", "--duration", *_musicgen_flags()})
    copies: list[Path] = []

    async def take() -> Path:
        copies.append(await _take_clip(args.audio, settings))
        return copies[-1]

    try:
        if spec.key in _STEM_MODELS:
            stems = str(_params_from(args).get("stems", "six"))
            return [await service.split_stems(take, origin, stems=stems, name=args.audio.name)]
        if args.continue_s is not None:
            job = await service.continue_track(
                take,
                origin,
                prompt=args.prompt or None,
                extra_s=args.continue_s,
                model_version=_params_from(args).get("model_version"),
            )
            return [job]
        jobs = await service.follow_melody(
            take, origin, prompt=args.prompt, duration_s=args.duration, params=_params_from(args), seed=args.seed
        )
    except BaseException:
        for copy in copies:
            await asyncio.to_thread(copy.unlink, missing_ok=True)
        raise
    for copy in copies:  # the job prepared its own clip from it
        await asyncio.to_thread(copy.unlink, missing_ok=True)
    return jobs


def _musicgen_flags() -> set[str]:
    return {f"--{param.name.replace('_', '-')}" for param in MUSICGEN.params}


async def generate_command(args: argparse.Namespace, settings: Settings, secrets: Secrets, stream: TextIO) -> int:
    listener = CliListener(args.out, stream, verbose=args.verbose, max_input_s=settings.audio.max_input_s)
    async with Core(settings, secrets) as core:
        # Only this job: other unfinished jobs in the same database belong to the bot.
        service = await core.start_service(listener, resume=False)
        jobs = await _start(service, args, settings)
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
                while not listener.finished.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(QUIET_S):
                            await listener.finished.wait()
                    listener.tick()
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
        await core.service.cancel(job_id, Person(CLI_USER_ID))
