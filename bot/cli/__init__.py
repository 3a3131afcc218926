"""``python -m bot``: run the bot, generate one track from the terminal, check the config, back up the database.

The commands that don't talk to Discord (``generate``, ``models``, ``check-config``, ``db``) never load
discord.py: ``run`` and ``sync-commands`` import the Discord edge (``bot.discord.run``) when they start.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from bot import logs
from bot.audio.loop import BAR_CHOICES
from bot.catalog import MODELS
from bot.cli.db import backup_command, migrate_command, stats_command
from bot.cli.generate import CONTINUE_S, flag_params, generate_command, settings_for
from bot.cli.render import EXIT_INTERRUPTED, EXIT_JOB_FAILED, EXIT_OK, EXIT_USAGE, terminal_message
from bot.config import describe
from bot.errors import BotError, ConfigError, InvalidRequestError
from bot.jobs.recipes import MAX_EXTEND_S
from bot.providers import registry

log = logging.getLogger(__name__)


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
        "--loop",
        type=int,
        choices=BAR_CHOICES,
        default=None,
        metavar="BARS",
        help="also write a seamless loop of the track, BARS bars long (1, 2, 4, 8 or 16), cut on the beat, as "
        "<name>_loop_<tempo>bpm_<bars>bars.wav with loop points",
    )
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
    for param in flag_params():
        model_params.add_argument(
            "--" + param.name.replace("_", "-"),
            dest=f"param_{param.name}",
            default=None,
            metavar="VALUE",
            help=f"{param.description} ({param.range_text()})",
        )
    generate.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="any model parameter")
    generate.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    db = commands.add_parser("db", help="back up the database, show what is in it, or migrate it")
    db_commands = db.add_subparsers(dest="db_command", required=True)
    db_backup = with_config(db_commands.add_parser("backup", help="copy the database to PATH; safe while the bot runs"))
    db_backup.add_argument("path", type=Path, help="the backup file to write")
    db_backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    db_stats = with_config(
        db_commands.add_parser("stats", help="jobs by status and model, the oldest unfinished job, disk use")
    )
    db_stats.add_argument("--json", action="store_true", help="print the stats as JSON")
    with_config(
        db_commands.add_parser("migrate", help="bring the database's schema up to date (Encore does it at startup)")
    )
    return parser


def configure_logging(level: str, *, json_lines: bool = False) -> None:
    """Log to stderr with job ids, secrets from the environment masked; text, or JSON lines."""
    logs.configure(level, json_lines=json_lines)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    secrets = registry.secrets_from_env()
    try:
        settings = registry.load_settings(args.config)
        if args.command == "generate":
            settings = settings_for(args, settings, secrets)
    except ConfigError as exc:
        print(f"error: {exc.user_message}", file=sys.stderr)
        return EXIT_USAGE
    if args.command == "models":
        helps = (spec.help_text(settings, host=registry.PROVIDERS.host(spec, settings)) for spec in MODELS.values())
        print("\n\n".join(text.replace("**", "") for text in helps))
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
            command = {"backup": backup_command, "stats": stats_command, "migrate": migrate_command}[args.db_command]
            return asyncio.run(command(args, settings, secrets))
        return asyncio.run(generate_command(args, settings, secrets, sys.stderr))
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BotError as exc:
        print(f"error: {terminal_message(exc)}", file=sys.stderr)
        if str(exc) != exc.user_message:
            log.debug("detail: %s", exc)
        return EXIT_USAGE if isinstance(exc, ConfigError | InvalidRequestError) else EXIT_JOB_FAILED
