"""``python -m bot``: run the bot, generate one track from the terminal, check the config, back up the database.

The commands that don't talk to Discord (``generate``, ``models``, ``check-config``, ``db``) never load
discord.py: ``run`` and ``sync-commands`` import the Discord edge (``bot.discord.run``) when they start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import shutil
import sqlite3
import stat
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from secrets import token_hex
from typing import Any, TextIO

from bot import logs
from bot.app import Core
from bot.audio import off_loop
from bot.audio.fit import tag_copy
from bot.catalog import MODELS, MUSICGEN, Param, all_params, get_model, parse_options
from bot.config import Secrets, Settings, describe, load_settings
from bot.errors import BotError, ConfigError, DeliveryError, InvalidRequestError
from bot.jobs.access import Person
from bot.jobs.limits import LimitError
from bot.jobs.models import Job, JobOrigin, JobRequest, JobStatus
from bot.jobs.phase import Phase
from bot.jobs.service import MAX_EXTEND_S, JobService
from bot.naming import audio_filename, output_files, track_tags
from bot.provider_health import provider_health
from bot.storage.db import Database, backup, files_size
from bot.storage.jobs_repo import JobsRepo

log = logging.getLogger(__name__)

EXIT_OK = 0
EXIT_JOB_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
CLI_USER_ID = 0
CONTINUE_S = 10  # seconds --continue adds when not told (as Discord's "Continue this track")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Encore: music from words, in Discord.")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(sub: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sub.add_argument(
            "--config", type=Path, default=None, help="TOML config file (default: ./config.toml when it exists)"
        )
        return sub

    with_config(commands.add_parser("run", help="run the Discord bot"))
    with_config(
        commands.add_parser(
            "sync-commands", help="sync the slash commands with Discord now (run does it only when they changed)"
        )
    )
    with_config(commands.add_parser("check-config", help="validate the config and print it, secrets masked"))
    with_config(commands.add_parser("models", help="list the models and every parameter they take"))
    generate = with_config(
        commands.add_parser(
            "generate",
            help="make one track without Discord",
            description="Make music from the terminal: from a prompt; with --audio, following a clip's melody, "
            "continuing it (--continue) or splitting it into stems (--model stems or demucs).",
        )
    )
    generate.add_argument("prompt", nargs="?", default="", help="describe the music (optional with --continue)")
    generate.add_argument("--model", default="musicgen", choices=sorted(MODELS))
    generate.add_argument("--duration", type=int, default=None, help="seconds")
    generate.add_argument("--seed", type=int, default=None)
    generate.add_argument("--count", type=int, default=1, help="variations to make at once (1-4)")
    generate.add_argument("--out", type=Path, default=None, help="output file (default: <prompt>-<job>.<ext>)")
    generate.add_argument(
        "--audio",
        type=Path,
        default=None,
        metavar="PATH",
        help="a clip: MusicGen follows its melody (or continues it, with --continue); stems and demucs split it",
    )
    generate.add_argument(
        "--continue",
        dest="continue_s",
        type=int,
        nargs="?",
        const=CONTINUE_S,
        default=None,
        metavar="SECONDS",
        help=f"continue the --audio track by SECONDS (default {CONTINUE_S}, at most {MAX_EXTEND_S}); "
        "the result is the whole track, longer",
    )
    generate.add_argument(
        "--verbose", action="store_true", help="log what happens, with the cause of any failure, on stderr"
    )
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
    db = commands.add_parser("db", help="back up the database, or show what is in it")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_backup = with_config(db_commands.add_parser("backup", help="copy the database to PATH; safe while the bot runs"))
    db_backup.add_argument("path", type=Path, help="the backup file to write")
    db_backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    db_stats = with_config(
        db_commands.add_parser("stats", help="jobs by status and model, the oldest unfinished job, disk use")
    )
    db_stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    return parser


class CliListener:
    """Reports progress on stderr and writes the finished files, tagged as delivered files are."""

    def __init__(self, out: Path | None, stream: TextIO, *, verbose: bool = False) -> None:
        self.out = out
        self.stream = stream
        self.verbose = verbose
        self.card: str | None = None  # the card key (job id, or batch id) this CLI run waits for
        self.finished = asyncio.Event()
        self.final: list[Job] = []
        self.written: list[Path] = []
        self._last: Phase | None = Phase.QUEUED  # the "Queued: ..." line says so already

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
            if phase == Phase.FAILED and (hint := _failure_hint(members, verbose=self.verbose)):
                print(f"error: {hint}", file=self.stream, flush=True)
        if phase in (Phase.DONE, Phase.FAILED, Phase.CANCELED):
            self.final = list(members)
            self.finished.set()

    async def deliver(self, jobs: Sequence[Job]) -> int | None:
        if not jobs or jobs[0].card_key != self.card:
            raise DeliveryError(detail="not this CLI's job")
        for job in jobs:
            target = self._target(job)
            tags = track_tags(job)
            for name, source in output_files(job):
                path = target.with_name(f"{target.stem}-{name}{source.suffix}") if name else target
                await off_loop("fit", _write_tagged, source, path, tags)
                self.written.append(path)
            if job.image_path:
                image = Path(job.image_path)
                image_target = target.with_name(target.stem + "-spectrogram" + image.suffix)
                await asyncio.to_thread(_copy, image, image_target)
                self.written.append(image_target)
        return None

    def _target(self, job: Job) -> Path:
        """``--out`` (a variation adds ``-v<n>-seed<seed>``), else the name Discord gives the file."""
        if self.out is None:
            return Path(audio_filename(job))
        if job.batch_size > 1:
            return self.out.with_name(f"{self.out.stem}-v{job.batch_index + 1}-seed{job.seed}{self.out.suffix}")
        return self.out


def _copy(source: Path, target: Path) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, target)


def _write_tagged(source: Path, target: Path, tags: Mapping[str, str]) -> None:
    if target.parent != Path():
        target.parent.mkdir(parents=True, exist_ok=True)
    tag_copy(source, target, tags)


# What the operator sets for each provider, and what it is called in messages.
_KEYS = {"replicate": "REPLICATE_API_TOKEN", "elevenlabs": "ELEVENLABS_API_KEY"}
_SERVICES = {"replicate": "Replicate", "elevenlabs": "ElevenLabs", "cog": "the Cog server ([cog] base_url)"}
_OUTAGES = frozenset({"unavailable", "connection", "timeout", "uncertain", "rate_limited", "error"})


def _failure_hint(members: Sequence[Job], *, verbose: bool) -> str | None:
    """In a terminal the user is the operator: name what to fix when a provider refused or failed us."""
    for provider in sorted({m.provider for m in members if m.status == JobStatus.FAILED}):
        health = provider_health(provider)
        if health.last_error_at is None or (health.last_ok_at or 0) > health.last_error_at:
            continue  # the provider answered fine: the job itself was the problem, and its reason says so
        service = _SERVICES.get(provider, provider)
        if health.last_error == "auth" and provider in _KEYS:
            return f"{_KEYS[provider]} was refused by {service}: set it to a valid key and try again"
        if health.last_error in _OUTAGES and not verbose:
            return f"no good answer from {service} ({health.last_error}); run again with --verbose to see why"
    return None


# Flags of the CLI itself: a model parameter with one of these names is set with --set NAME=VALUE.
_RESERVED = {"model", "duration", "seed", "count", "out", "timeout", "config", "set", "prompt", "audio", "verbose"}
_STEM_MODELS = {"stems": "elevenlabs", "demucs": "replicate"}  # the [stems] provider each one means


def _flag_params() -> list[Param]:
    return [param for name, param in all_params().items() if name not in _RESERVED]


def _params_from(args: argparse.Namespace) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in (param.name for param in _flag_params()):
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
    )


def _settings_for(args: argparse.Namespace, settings: Settings, secrets: Secrets) -> Settings:
    """The settings for this run: ``--model stems`` / ``demucs`` pick who splits stems ([stems] provider),
    and a model whose provider has no key set is refused here, naming the key."""
    if args.command != "generate":
        return settings
    stems_provider = _STEM_MODELS.get(args.model)
    if stems_provider is not None:
        settings = settings.model_copy(update={"stems": settings.stems.model_copy(update={"provider": stems_provider})})
    spec = get_model(args.model)
    if spec.route(settings).provider == "elevenlabs" and secrets.elevenlabs_api_key is None:
        raise ConfigError(
            f"{spec.display_name} runs on ElevenLabs: set ELEVENLABS_API_KEY in the environment "
            "(a paid ElevenLabs plan)" + (", or use --model demucs" if stems_provider else "")
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
        raise InvalidRequestError(f"That file is {_size(info.st_size)}; the limit is {_size(limit)}.")
    clip = settings.storage.inputs_dir / f"{token_hex(8)}{path.suffix.lower()[:10] or '.bin'}"

    def copy() -> None:
        clip.parent.mkdir(parents=True, exist_ok=True)
        with path.open("rb") as source, clip.open("wb") as target:
            data = source.read(limit + 1)  # the file may have grown since: never more than the limit
            if len(data) > limit:
                raise InvalidRequestError(f"That file is over the limit of {_size(limit)}.")
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


async def _generate(args: argparse.Namespace, settings: Settings, secrets: Secrets, stream: TextIO) -> int:
    listener = CliListener(args.out, stream, verbose=args.verbose)
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
        await core.service.cancel(job_id, Person(CLI_USER_ID))


# -- db backup / db stats ----------------------------------------------------------------------------


async def _db_backup(args: argparse.Namespace, settings: Settings) -> int:
    source = settings.storage.database_path
    try:
        result = await backup(source, args.path, force=args.force, busy_timeout_ms=settings.storage.busy_timeout_ms)
    except FileExistsError:
        print(f"error: {args.path} exists; pass --force to replace it", file=sys.stderr)
        return EXIT_USAGE
    except (OSError, sqlite3.Error) as exc:
        print(f"error: the backup failed: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    print(f"backed up {source} to {result.path} ({_size(result.size)}, schema version {result.user_version})")
    return EXIT_OK


def _dir_usage(path: Path) -> tuple[int, int]:
    """(files, bytes) under ``path``; (0, 0) if it does not exist."""
    files = size = 0
    for root, _dirs, names in os.walk(path):
        for name in names:
            with contextlib.suppress(FileNotFoundError):
                size += (Path(root) / name).stat().st_size
                files += 1
    return files, size


def _size(size: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def _age(seconds: float) -> str:
    minutes, _ = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d {hours}h"
    return f"{hours}h {minutes}m" if hours else f"{minutes}m"


async def _db_stats(args: argparse.Namespace, settings: Settings) -> int:
    storage = settings.storage
    path = storage.database_path
    if not await asyncio.to_thread(path.is_file):
        print(f"error: there is no database at {path}", file=sys.stderr)
        return EXIT_JOB_FAILED
    db = Database(path, busy_timeout_ms=storage.busy_timeout_ms)
    try:
        await db.open(migrate=False)  # the bot may be running: read, never change the schema under it
        repo = JobsRepo(db)
        version = await db.user_version()
        counts = await repo.counts_by_model_and_status()
        oldest = await repo.oldest_active()
    except sqlite3.Error as exc:
        print(f"error: can't read the database at {path}: {exc}", file=sys.stderr)
        return EXIT_JOB_FAILED
    finally:
        await db.close()
    by_status: dict[str, int] = {}
    by_model: dict[str, int] = {}
    for model, status, count in counts:
        by_status[status.value] = by_status.get(status.value, 0) + count
        by_model[model] = by_model.get(model, 0) + count
    db_bytes = await asyncio.to_thread(files_size, path)
    dirs = {name: storage.dir / name for name in ("outputs", "inputs", "uploads")}
    usage = {name: await asyncio.to_thread(_dir_usage, where) for name, where in dirs.items()}
    stats: dict[str, Any] = {
        "database": {"path": str(path), "bytes": db_bytes, "schema_version": version},
        "jobs": {"total": sum(by_status.values()), "by_status": by_status, "by_model": by_model},
        "oldest_active_job": None,
        "directories": {
            name: {"path": str(dirs[name]), "files": files, "bytes": size} for name, (files, size) in usage.items()
        },
    }
    if oldest is not None:
        stats["oldest_active_job"] = {
            "id": oldest.id,
            "model": oldest.model,
            "status": oldest.status.value,
            "created_at": oldest.created_at,
            "age_s": round(time.time() - oldest.created_at, 1),
        }
    if args.json:
        print(json.dumps(stats, indent=2))
        return EXIT_OK

    def listing(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(counts.items())) or "none"

    lines = [
        f"database   {path} ({_size(db_bytes)}, schema version {version})",
        f"jobs       {stats['jobs']['total']}",
        f"  by status: {listing(by_status)}",
        f"  by model:  {listing(by_model)}",
    ]
    if oldest is None:
        lines.append("oldest unfinished job: none")
    else:
        lines.append(
            f"oldest unfinished job: {oldest.id} ({oldest.model}, {oldest.status.value}), "
            f"queued {_age(time.time() - oldest.created_at)} ago"
        )
    for name, (files, size) in usage.items():
        lines.append(f"{name:<10} {dirs[name]}: {files} file(s), {_size(size)}")
    print("\n".join(lines))
    return EXIT_OK


def configure_logging(level: str, *, json_lines: bool = False) -> None:
    """Log to stderr with job ids, secrets from the environment masked; text, or JSON lines."""
    logs.configure(level, json_lines=json_lines)


def _terminal_moment(moment: datetime) -> str:
    """When a limit lifts, for a terminal: "in 5h 12m (at 00:00 UTC)"."""
    left = max(0.0, (moment - datetime.now(UTC)).total_seconds())
    return f"in {_age(left)} (at {moment.astimezone(UTC):%H:%M} UTC)"


def terminal_message(exc: BotError) -> str:
    """An error's message as a terminal shows it (times in plain text, no Discord markup)."""
    return exc.render(_terminal_moment) if isinstance(exc, LimitError) else exc.user_message


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    secrets = Secrets.from_env()
    try:
        settings = load_settings(args.config)
        if args.command == "generate":
            settings = _settings_for(args, settings, secrets)
    except ConfigError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "models":
        print("\n\n".join(spec.help_text(settings).replace("**", "") for spec in MODELS.values()))
        return EXIT_OK
    if args.command == "check-config":
        print(describe(settings, secrets))
        return EXIT_OK
    json_lines = settings.logging.format == "json"
    if args.command == "run":
        level = settings.logging.level
    elif getattr(args, "verbose", False):
        level = "DEBUG" if settings.logging.level == "DEBUG" else "INFO"
    else:
        level = "WARNING"
    configure_logging(level, json_lines=json_lines)
    try:
        if args.command == "run":
            from bot.discord.run import run_bot  # discord.py only for the commands that use it

            asyncio.run(run_bot(settings, secrets, config_path=args.config))
            return EXIT_OK
        if args.command == "sync-commands":
            from bot.discord.run import sync_commands_now

            count = asyncio.run(sync_commands_now(settings, secrets))
            guilds = ", ".join(map(str, settings.discord.dev_guild_ids))
            print(f"Synced {count} command(s) " + (f"to server(s) {guilds}." if guilds else "globally."))
            return EXIT_OK
        if args.command == "db":
            command = _db_backup if args.db_command == "backup" else _db_stats
            return asyncio.run(command(args, settings))
        return asyncio.run(_generate(args, settings, secrets, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BotError as exc:
        print(f"error: {terminal_message(exc)}", file=sys.stderr)
        if str(exc) != exc.user_message:
            log.debug("detail: %s", exc)
        return EXIT_USAGE if isinstance(exc, ConfigError | InvalidRequestError) else EXIT_JOB_FAILED
