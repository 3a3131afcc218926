"""The rules on who may ask for what: prompt safety, daily quotas, cooldowns and budgets.

Every refusal names the limit and what to do, and nothing is stored or charged when one applies.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, Self

from bot.config import LimitsSettings, SafetySettings
from bot.errors import BotError, InvalidRequestError
from bot.locales import ENGLISH
from bot.locales import text as say
from bot.providers.plugins import Registry
from bot.records import Job
from bot.storage.jobs_repo import Usage
from bot.text import normalise


def plain_moment(moment: datetime) -> str:
    """A moment in plain text, for any front end: "from 00:00 UTC"."""
    return f"from {moment.astimezone(UTC):%H:%M} UTC"


class LimitError(BotError):
    """A quota, cooldown or budget applies.

    ``resets_at`` is when it lifts (daily quotas and budgets): the catalogue text's ``{resets}``. Each front end
    shows it its own way through :meth:`render` (Discord a live relative timestamp, a terminal the time and how
    long until then), and ``user_message`` has it as :func:`plain_moment`.
    """

    default_key = "limits.generic"

    def __init__(
        self,
        user_message: str | None = None,
        *,
        resets_at: datetime | None = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        self.resets_at = resets_at
        if resets_at is not None:
            params = {**(params or {}), "resets": plain_moment(resets_at)}
        super().__init__(user_message, key=key, params=params)

    @classmethod
    def keyed(cls, key: str, *, resets_at: datetime | None = None, **params: Any) -> Self:
        return cls(key=key, params=params, resets_at=resets_at)

    def render(self, moment: Callable[[datetime], str], locale: object = ENGLISH) -> str:
        """The message in ``locale`` with the reset moment written by ``moment``."""
        if self.key is None:
            return self.user_message
        params = dict(self.params)
        if self.resets_at is not None:
            params["resets"] = moment(self.resets_at)
        return say(locale, self.key, **params)


def day_start(now: float | None = None) -> float:
    """The start of the current UTC day, when daily quotas and budgets reset."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()


def _next_day(now: float) -> datetime:
    return datetime.fromtimestamp(day_start(now) + 86_400, UTC)


def _whole_words(words: Iterable[str]) -> re.Pattern[str] | None:
    """One pattern matching any of ``words`` (normalised) as a whole word in normalised text."""
    alternatives = sorted({plain for word in words if (plain := normalise(word))}, key=len, reverse=True)
    if not alternatives:
        return None
    return re.compile("|".join(rf"(?<!\w){re.escape(plain)}(?!\w)" for plain in alternatives))


def check_texts(texts: Iterable[tuple[str, str]], safety: SafetySettings, extra_words: Sequence[str] = ()) -> None:
    """Refuse blocked words and patterns (and, if set, artist names) in any text a person gave.

    ``texts`` are (what it is, the text) pairs: every text of one request that reaches a provider or a
    card (the prompt, ``prompt_b`` and other options, a plan's styles, section names and lyrics).
    Words and names match whole words after :func:`~bot.text.normalise`, so zero-width characters,
    full-width letters, case and accents don't hide them; patterns are tried on the text as given and
    normalised, case-insensitively. ``extra_words`` are the server's own (``/musicadmin settings``).
    """
    words = _whole_words([*safety.blocked_words, *extra_words])
    artists = _whole_words(safety.artist_names) if safety.refuse_artist_names else None
    patterns = [re.compile(pattern, re.IGNORECASE) for pattern in safety.blocked_patterns]
    for what, text in texts:
        plain = normalise(text)
        if words is not None and words.search(plain):
            raise InvalidRequestError.keyed("safety.blocked_word", what=what)
        if any(pattern.search(text) or pattern.search(plain) for pattern in patterns):
            raise InvalidRequestError.keyed("safety.blocked_pattern", what=what)
        if artists is not None and artists.search(plain):
            raise InvalidRequestError.keyed("safety.artist_name")


def check_usage(
    usage: Usage,
    limits: LimitsSettings,
    *,
    in_guild: bool,
    count: int,
    audio_s: float,
    cost_usd: float,
    now: float,
) -> None:
    """Raise LimitError if these ``count`` jobs (``audio_s`` seconds, ``cost_usd``) would break a limit."""
    if limits.user_jobs_in_flight and usage.user_in_flight >= limits.user_jobs_in_flight:
        raise LimitError.keyed("limits.in_flight", count=usage.user_in_flight, limit=limits.user_jobs_in_flight)
    if limits.user_cooldown_s and usage.user_last_at is not None:
        wait = usage.user_last_at + limits.user_cooldown_s - now
        if wait > 0:
            raise LimitError.keyed("limits.cooldown", seconds=f"{wait:.0f}")
    if limits.user_daily_jobs and usage.user_jobs + count > limits.user_daily_jobs:
        raise LimitError.keyed(
            "limits.user_daily_jobs", made=usage.user_jobs, limit=limits.user_daily_jobs, resets_at=_next_day(now)
        )
    if limits.user_daily_audio_s and usage.user_audio_s + audio_s > limits.user_daily_audio_s:
        left = max(0, limits.user_daily_audio_s - usage.user_audio_s)
        raise LimitError.keyed("limits.user_daily_audio", seconds=f"{left:.0f}", resets_at=_next_day(now))
    if in_guild:
        if limits.guild_daily_jobs and usage.guild_jobs + count > limits.guild_daily_jobs:
            raise LimitError.keyed("limits.guild_daily_jobs", limit=limits.guild_daily_jobs, resets_at=_next_day(now))
        if limits.guild_daily_audio_s and usage.guild_audio_s + audio_s > limits.guild_daily_audio_s:
            raise LimitError.keyed("limits.guild_daily_audio", resets_at=_next_day(now))
        if limits.guild_daily_budget_usd and usage.guild_cost_usd + cost_usd > limits.guild_daily_budget_usd:
            raise LimitError.keyed("limits.guild_budget", resets_at=_next_day(now))
    if limits.daily_budget_usd and usage.total_cost_usd + cost_usd > limits.daily_budget_usd:
        raise LimitError.keyed("limits.budget", resets_at=_next_day(now))


def cost_is_actual(job: Job, limits: LimitsSettings, registry: Registry) -> bool:
    """Whether ``job.cost_usd`` is what the job cost (it ran and its provider's declared rule gave a figure:
    GPU seconds, a song's length, nothing on your own GPUs), not the estimate."""
    return job.succeeded_at is not None and registry.cost_usd(job, job.predict_time_s, limits) is not None
