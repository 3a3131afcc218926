"""The sections of ``config.toml`` about Discord, the web server, jobs, audio, limits, safety, storage and logs."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from bot.config.database import url_problem


class Section(BaseModel):
    """A table of ``config.toml``: unknown keys refused, values frozen. A provider's own section (``[<name>]``)
    is one too, declared in its module (``ProviderSpec.settings``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DiscordSettings(Section):
    # Guild ids to sync commands to instantly on startup (empty: global sync only).
    dev_guild_ids: list[int] = Field(default_factory=list)
    # Sync at startup when the commands changed since the last sync (their hash is kept in the database).
    sync_commands: bool = True
    # The job card is edited at most this often per job.
    card_edit_interval_s: float = Field(default=2.0, ge=0.0, le=60.0)
    # The longest track Encore posts as a voice message (Play on phone, a server's voice_messages setting).
    voice_message_max_s: float = Field(default=600.0, gt=0, le=3600)
    # Gateway shards across all processes (0: as many as Discord recommends), and the ones this process
    # connects (empty: all of them). shard_ids needs shard_count.
    shard_count: int = Field(default=0, ge=0, le=100_000)
    shard_ids: list[int] = Field(default_factory=list)

    @field_validator("shard_ids")
    @classmethod
    def _shard_ids_fit_the_count(cls, value: list[int], info: ValidationInfo) -> list[int]:
        if not value or "shard_count" not in info.data:
            return value  # all shards; or shard_count itself is invalid, and that error is the one to read
        count: int = info.data["shard_count"]
        if count == 0:
            raise ValueError(
                "needs shard_count too (the number of shards across all processes); "
                "or leave both out to connect every shard Discord recommends"
            )
        for shard_id in value:
            if not 0 <= shard_id < count:
                raise ValueError(f"shard {shard_id} is not one of the {count} shards (ids run from 0 to {count - 1})")
        twice = sorted({shard_id for shard_id in value if value.count(shard_id) > 1})
        if twice:
            raise ValueError(f"lists shard {', '.join(map(str, twice))} more than once")
        return sorted(value)


class WebhookSettings(Section):
    # Public HTTPS base URL that reaches the webhook server; empty disables webhooks (poll only).
    public_url: AnyHttpUrl | None = None
    host: str = "0.0.0.0"  # noqa: S104 - the server is meant to be reachable behind a proxy
    port: int = Field(default=8080, ge=0, le=65535)
    path: str = "/webhooks/replicate"
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    # A client must send a request's headers within header_timeout_s (also how long an idle keep-alive
    # connection stays open) and its body within body_timeout_s (a Cog upload too), else it is cut off.
    header_timeout_s: float = Field(default=60.0, gt=0, le=3600)
    body_timeout_s: float = Field(default=120.0, gt=0, le=3600)

    @field_validator("public_url", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("path")
    @classmethod
    def _path_starts_with_slash(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value


class JobSettings(Section):
    # Poll backoff: first poll after poll_initial_s, growing by poll_factor up to poll_max_s.
    poll_initial_s: float = Field(default=1.0, gt=0, le=60)
    poll_max_s: float = Field(default=15.0, gt=0, le=300)
    poll_factor: float = Field(default=1.5, ge=1.0, le=4.0)
    # With webhooks on, a job is polled only after this grace period.
    webhook_grace_s: float = Field(default=30.0, ge=0, le=600)
    # A job that has not finished after this long is failed as timed out (and canceled upstream).
    timeout_s: float = Field(default=1800.0, gt=0, le=86_400)
    # Delivery to Discord is retried this many times before the job is failed.
    delivery_attempts: int = Field(default=5, ge=1, le=50)
    retry_s: float = Field(default=5.0, gt=0, le=600)
    max_prompt_chars: int = Field(default=500, ge=1, le=4000)
    # Bounds on every model's own length range (the catalog's); the defaults leave each model its full range.
    min_duration_s: int = Field(default=1, ge=1)
    max_duration_s: int = Field(default=600, ge=1, le=600)
    # The length made when a command gives none, on every model (within its range); 0: each model's own
    # default (MusicGen and Stable Audio 8 s, songs 30 s; `python -m bot models` lists them).
    default_duration_s: int = Field(default=0, ge=0, le=600)
    # Several processes sharing PostgreSQL: a process holds what it does to a job (polling it, fetching its
    # output, delivering its card, making its long call) for this long and renews it while it works; if it
    # dies, another process takes the job over once this much time has passed.
    lease_s: float = Field(default=30.0, gt=0, le=3600)
    # Several processes on one database: each looks at the queue this often for jobs another process admitted or
    # made room for (and says it is alive); one not heard from for process_timeout_s is taken as gone, and the
    # jobs it was starting are started by another. process_timeout_s is at least three looks.
    queue_check_s: float = Field(default=1.0, gt=0, le=60)
    process_timeout_s: float = Field(default=15.0, gt=0, le=3600)

    @field_validator("process_timeout_s")
    @classmethod
    def _several_looks(cls, value: float, info: ValidationInfo) -> float:
        check = info.data.get("queue_check_s")
        if check is not None and value < 3 * check - 1e-9:
            raise ValueError(
                f"must be at least three times queue_check_s ({3 * check:g} s), or a live process "
                "looks gone between two of its looks"
            )
        return value


class AudioSettings(Section):
    """Limits on audio people hand in (a melody to follow, a clip to continue)."""

    max_input_bytes: int = Field(default=25 * 1024 * 1024, ge=1024)
    # Hosts attachments may be downloaded from (Discord's CDN), only over https on port 443, no redirects.
    input_hosts: list[str] = Field(default_factory=lambda: ["cdn.discordapp.com", "media.discordapp.net"])
    # For tests against a Discord simulator only: one more origin (scheme://host:port, exactly) attachments
    # may be downloaded from, e.g. "http://127.0.0.1:8123". Leave it empty.
    test_cdn_origin: AnyHttpUrl | None = None
    max_input_s: float = Field(default=300.0, gt=0, le=3600)
    download_timeout_s: float = Field(default=60.0, gt=0, le=600)
    # Threads that decode people's files, apart from the rest of Encore's work: a hostile file keeps at
    # most these busy.
    decode_threads: int = Field(default=2, ge=1, le=16)

    @field_validator("test_cdn_origin", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("test_cdn_origin")
    @classmethod
    def _only_an_origin(cls, value: AnyHttpUrl | None) -> AnyHttpUrl | None:
        if value is not None and (value.path not in (None, "", "/") or value.query or value.username):
            raise ValueError("must be an origin only: scheme://host:port")
        return value


class LimitsSettings(Section):
    """Fairness and cost. 0 turns a limit off. Days are UTC days. Failed and canceled jobs don't count."""

    user_jobs_in_flight: int = Field(default=3, ge=0, le=1000)
    user_cooldown_s: float = Field(default=0.0, ge=0, le=86_400)
    user_daily_jobs: int = Field(default=50, ge=0)
    user_daily_audio_s: int = Field(default=1800, ge=0)
    guild_daily_jobs: int = Field(default=500, ge=0)
    guild_daily_audio_s: int = Field(default=18_000, ge=0)
    guild_daily_budget_usd: float = Field(default=5.0, ge=0)
    daily_budget_usd: float = Field(default=50.0, ge=0)
    # Loops (Make it loop) a person may have made in the last hour; each is made here, on this machine's CPU.
    user_loops_per_hour: int = Field(default=20, ge=0, le=10_000)
    # Jobs at each provider at once; more wait their turn, taken round-robin between people. 0: no cap.
    replicate_jobs_in_flight: int = Field(default=20, ge=0, le=1000)
    elevenlabs_jobs_in_flight: int = Field(default=2, ge=0, le=100)
    # What providers charge, for the actual cost of each job: Replicate GPU seconds, ElevenLabs audio seconds.
    replicate_usd_per_s: float = Field(default=0.0014, ge=0)
    elevenlabs_usd_per_s: float = Field(default=0.0075, ge=0)


class SafetySettings(Section):
    """Prompt rules for every guild (admins can add their own words)."""

    blocked_words: list[str] = Field(default_factory=list)
    # Regular expressions, matched case-insensitively anywhere in the prompt.
    blocked_patterns: list[str] = Field(default_factory=list)
    # Refuse prompts naming these artists (models shouldn't imitate real artists).
    refuse_artist_names: bool = False
    artist_names: list[str] = Field(default_factory=list)
    allow_dms: bool = True

    @field_validator("blocked_patterns")
    @classmethod
    def _patterns_compile(cls, value: list[str]) -> list[str]:
        for pattern in value:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"{pattern!r} is not a valid regular expression: {exc}") from None
        return value


class StorageSettings(Section):
    dir: Path = Path("data")
    # Where the audio lives (finished tracks, clips people handed in, Cog uploads): empty for `dir`. Several
    # processes share it: a volume every one of them mounts at the same path.
    files_dir: Path | None = None
    # The database: empty for SQLite in `dir` (the default), or a PostgreSQL URL without a password (see
    # bot/config/database.py: the password, or the whole URL, comes from the environment).
    url: str = ""
    # PostgreSQL only: how many connections this process keeps to it at most.
    pool_size: int = Field(default=10, ge=1, le=1000)
    # Output downloads are capped in size (a file fetched, a song as it streams in, a ZIP of stems) and time.
    max_output_bytes: int = Field(default=200 * 1024 * 1024, ge=1024)
    download_timeout_s: float = Field(default=120.0, gt=0, le=3600)
    busy_timeout_ms: int = Field(default=5000, ge=0, le=600_000)
    # Retention: audio files (finished tracks, clips people handed in, stems) are deleted this many days
    # after their job was made; Extend, Full track, Stems and Retry need them until then. 0 keeps them forever.
    keep_files_days: float = Field(default=30.0, ge=0, le=36_500)
    # Ids of handled webhooks are kept this long to drop redeliveries (Replicate signs a 5-minute window).
    keep_webhook_ids_hours: float = Field(default=24.0, ge=1, le=24 * 365)
    # How often the clean-up runs.
    cleanup_interval_s: float = Field(default=3600.0, ge=1, le=7 * 86_400)
    # SQLite's quick integrity check of the database file: at startup, then at most this often (0: never).
    integrity_check_s: float = Field(default=3600.0, ge=0, le=86_400 * 7)
    # PostgreSQL: a pause, a server's settings and a reload reach the other processes at once (LISTEN/NOTIFY);
    # each also reads them again this often, in case a notice was lost.
    recheck_s: float = Field(default=30.0, gt=0, le=3600)

    @field_validator("files_dir", mode="before")
    @classmethod
    def _empty_is_dir(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        value = value.strip()
        problem = url_problem(value, password_allowed=False) if value else None
        if problem:
            raise ValueError(problem)
        return value

    @property
    def database_path(self) -> Path:
        return self.dir / "encore.sqlite3"

    @property
    def files_root(self) -> Path:
        """Where the audio lives: ``files_dir``, else ``dir``."""
        return self.files_dir if self.files_dir is not None else self.dir

    @property
    def outputs_dir(self) -> Path:
        return self.files_root / "outputs"

    @property
    def inputs_dir(self) -> Path:
        return self.files_root / "inputs"

    @property
    def uploads_dir(self) -> Path:
        """Files a Cog server uploaded (by prediction id)."""
        return self.files_root / "uploads"


class LoggingSettings(Section):
    level: str = "INFO"
    # "text" for people, "json" (one object per line) for log collectors. Either way lines carry job=<id>.
    format: Literal["text", "json"] = "text"

    @field_validator("level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return upper
