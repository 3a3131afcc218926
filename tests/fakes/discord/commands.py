"""Application commands: bulk-overwrite sync, the rules Discord enforces on it, and lookups for invocations."""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .errors import field_error, merge_errors
from .validation import schema
from .waiting import Journal

CHAT_INPUT, USER, MESSAGE = 1, 2, 3
SUB_COMMAND, SUB_COMMAND_GROUP = 1, 2
STRING, INTEGER, BOOLEAN, USER_OPTION, CHANNEL, ROLE, MENTIONABLE, NUMBER, ATTACHMENT = 3, 4, 5, 6, 7, 8, 9, 10, 11
_PER_TYPE_LIMIT = {CHAT_INPUT: 100, USER: 15, MESSAGE: 15}
_NAME = re.compile(r"^[-_'\w]{1,32}$")
# Scripts Discord's name rule names besides letters and numbers (``\p{sc=Deva}``, ``\p{sc=Thai}``): their
# vowel signs and viramas are marks, not letters. Devanagari, Devanagari Extended, Devanagari Extended-A; Thai.
_NAME_SCRIPTS = ((0x0900, 0x097F), (0xA8E0, 0xA8FF), (0x11B00, 0x11B5F), (0x0E00, 0x0E7F))


def _name_char(char: str) -> bool:
    code = ord(char)
    return (
        char in "-_" or unicodedata.category(char)[0] in "LN" or any(low <= code <= high for low, high in _NAME_SCRIPTS)
    )


def localized_name_ok(name: str) -> bool:
    r"""Discord's rule for a slash command's or option's (localized) name: ``^[-_\p{L}\p{N}\p{sc=Deva}\p{sc=Thai}]
    {1,32}$``, in lowercase wherever a letter has a lowercase form."""
    return 1 <= len(name) <= 32 and all(_name_char(c) for c in name) and name == name.lower()


@functools.cache
def discord_locales() -> frozenset[str]:
    """The locales Discord takes as keys of ``*_localizations`` (the official spec's ``AvailableLocalesEnum``)."""
    enum = schema("AvailableLocalesEnum")["oneOf"]
    return frozenset(item["const"] for item in enum)


def _localization_rules(item: dict[str, Any], path: list[str | int], *, slash: bool) -> dict[str, Any]:
    """What Discord enforces on ``name_localizations`` / ``description_localizations`` beyond the spec's
    lengths: keys are Discord locales; a slash command's or option's localized names follow its name rule."""
    problems: dict[str, Any] = {}
    for what in ("name_localizations", "description_localizations"):
        table = item.get(what)
        if not isinstance(table, dict):
            continue
        for locale, value in table.items():
            here = [*path, what, locale]
            if locale not in discord_locales():
                merge_errors(
                    problems,
                    field_error(here, "BASE_TYPE_CHOICES", f"Value must be one of {sorted(discord_locales())}."),
                )
            elif what == "name_localizations" and slash and not localized_name_ok(str(value)):
                merge_errors(problems, field_error(here, "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"))
    return problems


def _localized_clashes(options: list[Any], path: list[str | int]) -> dict[str, Any]:
    """Two options (or subcommands) of one command with the same name in some locale (a localized name, or the
    default name where a locale has none)."""
    problems: dict[str, Any] = {}
    items = [o for o in options if isinstance(o, dict)]
    locales = {loc for o in items for loc in (o.get("name_localizations") or {})}
    for locale in sorted(locales):
        seen: set[str] = set()
        for i, opt in enumerate(items):
            name = str((opt.get("name_localizations") or {}).get(locale) or opt.get("name", ""))
            if name in seen:
                merge_errors(
                    problems,
                    field_error(
                        [*path, i, "name_localizations", locale],
                        "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS",
                        "Option name exists",
                    ),
                )
            seen.add(name)
    return problems


@dataclass(frozen=True)
class SyncedCommand:
    """A command as Discord stored it after ``tree.sync()``. ``guild_id`` None means global."""

    id: int
    name: str
    type: int
    description: str
    guild_id: int | None
    version: int
    options: list[dict[str, Any]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def default_member_permissions(self) -> int | None:
        """The permissions a member needs to be offered the command in a guild, as the bot registered them."""
        value = self.payload.get("default_member_permissions")
        return None if value is None else int(value)

    def find_path(self, path: list[str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """``(subcommand chain, leaf option definitions)`` for words after the command name."""
        chain: list[dict[str, Any]] = []
        options = self.options
        for word in path:
            sub = next(
                (o for o in options if o["name"] == word and o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)), None
            )
            if sub is None:
                names = [o["name"] for o in options if o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP)]
                raise errors.SimulatorError(f"/{self.name}: no subcommand {word!r} here (have {names})")
            chain.append(sub)
            options = sub.get("options") or []
        if any(o["type"] in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options):
            names = [o["name"] for o in options]
            raise errors.SimulatorError(f"/{self.name} {' '.join(path)}: pick a subcommand from {names}")
        return chain, options


@dataclass(frozen=True)
class SyncRecord:
    guild_id: int | None
    commands: list[SyncedCommand]


class CommandStore:
    """Synced commands per scope (``None`` = global), keeping ids stable across re-syncs like Discord."""

    def __init__(self) -> None:
        self.scopes: dict[int | None, list[SyncedCommand]] = {}
        self.syncs: Journal[SyncRecord] = Journal(
            "command syncs", lambda r: f"scope={r.guild_id} {[c.name for c in r.commands]}"
        )
        #: commands created (new name/type in a scope); Discord allows 200 per guild per day
        self.creates = 0

    def list(self, guild_id: int | None = None) -> list[SyncedCommand]:
        return list(self.scopes.get(guild_id, []))

    def find(self, name: str, type_: int, guild_id: int | None) -> SyncedCommand | None:
        """The command a user in ``guild_id`` would pick: guild commands first, then global ones."""
        scopes = [guild_id, None] if guild_id is not None else [None]
        for scope in scopes:
            for cmd in self.scopes.get(scope, []):
                if cmd.name == name and cmd.type == type_:
                    return cmd
        return None

    def bulk_overwrite(
        self, body: list[dict[str, Any]], guild_id: int | None, application_id: int, new_id: Any
    ) -> list[SyncedCommand]:
        old = {(c.name, c.type): c for c in self.scopes.get(guild_id, [])}
        result: list[SyncedCommand] = []
        for item in body:
            type_ = int(item.get("type") or CHAT_INPUT)
            previous = old.get((item["name"], type_))
            if previous is None:
                self.creates += 1
            cmd_id = previous.id if previous is not None else new_id()
            version = new_id()
            description = (item.get("description") or "") if type_ == CHAT_INPUT else ""
            payload: dict[str, Any] = {
                "id": str(cmd_id),
                "application_id": str(application_id),
                "version": str(version),
                "type": type_,
                "name": item["name"],
                "name_localizations": item.get("name_localizations"),
                "description": description,
                "description_localizations": item.get("description_localizations"),
                "default_member_permissions": item.get("default_member_permissions"),
                "dm_permission": item.get("dm_permission", True),
                "contexts": item.get("contexts"),
                "integration_types": item.get("integration_types") or [0],
                "nsfw": bool(item.get("nsfw", False)),
            }
            if item.get("options"):
                payload["options"] = item["options"]
            if guild_id is not None:
                payload["guild_id"] = str(guild_id)
            result.append(
                SyncedCommand(
                    cmd_id,
                    item["name"],
                    type_,
                    description,
                    guild_id,
                    version,
                    list(item.get("options") or []),
                    payload,
                )
            )
        self.scopes[guild_id] = result
        self.syncs.append(SyncRecord(guild_id, result))
        return result


def _option_rules(options: list[Any], path: list[str | int], depth: int) -> dict[str, Any]:
    problems: dict[str, Any] = {}
    seen_optional = False
    kinds = {o.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP) for o in options if isinstance(o, dict)}
    if len(kinds) > 1:
        merge_errors(
            problems,
            field_error([*path], "APPLICATION_COMMAND_OPTIONS_TYPE_INVALID", "Subcommands cannot mix with options"),
        )
    names: set[str] = set()
    merge_errors(problems, _localized_clashes(options, path))
    for i, opt in enumerate(options):
        if not isinstance(opt, dict):
            continue
        here = [*path, i]
        name = str(opt.get("name", ""))
        if not _NAME.match(name) or name != name.lower():
            merge_errors(
                problems,
                field_error([*here, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid"),
            )
        if name in names:
            merge_errors(
                problems,
                field_error([*here, "name"], "APPLICATION_COMMAND_OPTION_NAME_ALREADY_EXISTS", "Option name exists"),
            )
        names.add(name)
        merge_errors(problems, _localization_rules(opt, here, slash=True))
        for c, choice in enumerate(opt.get("choices") or []):
            if isinstance(choice, dict):
                merge_errors(problems, _localization_rules(choice, [*here, "choices", c], slash=False))
        if opt.get("type") in (SUB_COMMAND, SUB_COMMAND_GROUP):
            if depth >= 2 or (opt.get("type") == SUB_COMMAND_GROUP and depth >= 1):
                merge_errors(
                    problems,
                    field_error([*here, "type"], "APPLICATION_COMMAND_OPTIONS_TOO_DEEP", "Subcommands nested too deep"),
                )
            merge_errors(problems, _option_rules(opt.get("options") or [], [*here, "options"], depth + 1))
        elif opt.get("required"):
            if seen_optional:
                merge_errors(
                    problems,
                    field_error(
                        [*here, "required"],
                        "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                        "Required options must be placed before non-required options",
                    ),
                )
        else:
            seen_optional = True
    return problems


def command_rules(body: Any, file_count: int = 0) -> dict[str, Any]:
    """What Discord enforces beyond the spec: per-type counts, name format, option order and nesting."""
    problems: dict[str, Any] = {}
    if not isinstance(body, list):
        return problems
    counts: dict[int, int] = {}
    seen: set[tuple[str, int]] = set()
    for i, item in enumerate(body):
        if not isinstance(item, dict):
            continue
        type_ = int(item.get("type") or CHAT_INPUT)
        counts[type_] = counts.get(type_, 0) + 1
        name = str(item.get("name", ""))
        if (name, type_) in seen:
            merge_errors(
                problems,
                field_error(
                    [i, "name"],
                    "APPLICATION_COMMANDS_DUPLICATE_NAME",
                    f"Application command names must be unique: {name}",
                ),
            )
        seen.add((name, type_))
        if type_ == CHAT_INPUT:
            if not _NAME.match(name) or name != name.lower():
                merge_errors(
                    problems, field_error([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
                )
            if not 1 <= len(item.get("description") or "") <= 100:
                merge_errors(
                    problems,
                    field_error([i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length."),
                )
            merge_errors(problems, _localization_rules(item, [i], slash=True))
            merge_errors(problems, _option_rules(item.get("options") or [], [i, "options"], 0))
        elif item.get("options"):
            merge_errors(
                problems,
                field_error([i, "options"], "APPLICATION_COMMAND_OPTIONS_INVALID", "Context menus take no options"),
            )
        else:  # a context menu: its localized names may have spaces and capitals (1-32, the spec's lengths)
            merge_errors(problems, _localization_rules(item, [i], slash=False))
    for type_, limit in _PER_TYPE_LIMIT.items():
        if counts.get(type_, 0) > limit:
            merge_errors(
                problems,
                field_error([], "APPLICATION_COMMANDS_TOO_MANY", f"Maximum number of type {type_} commands is {limit}"),
            )
    return problems
