"""A person's own defaults (``bot.preferences``), filled into a request where they left an option out.

Filling comes before the gate (``bot.jobs.gate``), so every check there (the server's models and lengths, the
quotas and the budget) applies to what will really be made. Where the server's rules narrow a preference, the
request takes what the server allows and says so in a note for the person, never more than is allowed:

- model: the preferred one if the server allows it, else the server's default model;
- length: the preferred one, cut to the server's longest track and to what the model makes here;
- format: the model's format setting that makes that kind of file, if the model makes it;
- variations: the preferred count (the quotas then count all of them; a batch over a quota is refused).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.catalog import ModelSpec, duration_range, get_model
from bot.config import Settings
from bot.errors import BotError
from bot.guild_settings import GuildSettings
from bot.locales import Said
from bot.preferences import OUTPUT_FORMAT, Preferences, checked, format_setting, formats_of, server_default
from bot.records import JobOrigin, JobRequest
from bot.storage.prefs_repo import PreferencesRepo


class Default(StrEnum):
    """What an entry point was not given, so a person's defaults may fill it."""

    MODEL = "model"
    LENGTH = "length"
    FORMAT = "format"
    COUNT = "count"


@dataclass(frozen=True)
class Filled:
    request: JobRequest
    notes: tuple[str, ...] = ()  # where the server narrowed the person's defaults, for them alone


class Defaults:
    def __init__(
        self,
        *,
        repo: PreferencesRepo | None,
        rules: Callable[[int | None], Awaitable[GuildSettings]],
        settings: Callable[[], Settings],
        configured_format: Callable[[ModelSpec], str | None] = lambda spec: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``rules(guild_id)``: a server's own rules (none outside a server); ``configured_format(spec)``: the
        format the model's provider makes when a request names none (a setting of its own), if it has one."""
        self._repo = repo
        self._rules = rules
        self._settings = settings
        self._configured_format = configured_format
        self._clock = clock

    async def of(self, user_id: int) -> Preferences:
        return await self._repo.get(user_id) if self._repo is not None else Preferences()

    async def save(self, user_id: int, prefs: Preferences) -> Preferences:
        """Store ``prefs`` (checked first: InvalidRequestError says what doesn't fit) as the person's."""
        if self._repo is None:
            raise BotError.keyed("refusals.prefs_unavailable")
        checked(prefs, self._settings())
        if prefs.empty:
            await self._repo.clear(user_id)
        else:
            await self._repo.save(user_id, prefs, now=self._clock())
        return prefs

    async def clear(self, user_id: int) -> bool:
        return await self._repo.clear(user_id) if self._repo is not None else False

    async def fill(self, request: JobRequest, origin: JobOrigin, unset: Collection[Default]) -> Filled:
        """``request`` with the requester's defaults in what ``unset`` names, as the server where they ask
        allows. With ``Default.MODEL`` unset the request's model is a placeholder: the person's, else the
        server's default model, is used."""
        if not unset:
            return Filled(request)
        prefs = await self.of(origin.user_id)
        if prefs.empty and Default.MODEL not in unset:
            return Filled(request)
        rules = await self._rules(origin.guild_id)
        settings = self._settings()
        notes: list[str] = []
        update: dict[str, Any] = {}
        if Default.MODEL in unset:
            update["model"] = _model(prefs, rules, notes)
        spec = get_model(update.get("model", request.model))
        if Default.LENGTH in unset and prefs.duration_s is not None and spec.fixed_duration_s is None:
            update["duration_s"] = _length(prefs.duration_s, spec, rules, settings, notes)
        if Default.FORMAT in unset and prefs.format is not None:
            value = _format(prefs.format, spec, self._configured_format(spec), notes)
            if value is not None:
                update["params"] = {**request.params, OUTPUT_FORMAT: value}
        if Default.COUNT in unset and prefs.count is not None:
            update["count"] = prefs.count
        return Filled(request.model_copy(update=update), tuple(notes))


def _model(prefs: Preferences, rules: GuildSettings, notes: list[str]) -> str:
    fallback = server_default(rules)
    if prefs.model is None:
        return fallback
    if rules.allowed_models is not None and prefs.model not in rules.allowed_models:
        model, instead = get_model(prefs.model).display_name, get_model(fallback).display_name
        notes.append(Said("notes.model_not_enabled", model=model, instead=instead))
        return fallback
    return prefs.model


def _length(preferred: int, spec: ModelSpec, rules: GuildSettings, settings: Settings, notes: list[str]) -> int:
    low, high = duration_range(spec, settings)
    length = preferred
    if rules.max_duration_s is not None and length > rules.max_duration_s:
        length = rules.max_duration_s
        notes.append(Said("notes.length_over_server", preferred=preferred, length=length))
    if length > high:
        length = high
        notes.append(Said("notes.length_over_model", preferred=preferred, model=spec.display_name, high=high))
    if length < low:  # a longer track than asked, never one over a limit (the gate still checks the server's)
        length = low
        notes.append(Said("notes.length_under_model", model=spec.display_name, low=low, preferred=preferred))
    return length


def _format(kind: str, spec: ModelSpec, configured: str | None, notes: list[str]) -> str | None:
    if kind not in formats_of(spec):
        kinds = ", ".join(formats_of(spec))
        notes.append(Said("notes.format_not_made", model=spec.display_name, kind=kind, kinds=kinds))
        return None
    return format_setting(spec, kind, configured)  # the bot's own default if it makes that kind
