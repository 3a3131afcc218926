"""Errors that carry a short, user-safe message.

Every expected failure is a :class:`BotError` subclass. ``user_message`` is safe to show in Discord
(no secrets, no raw provider text, no tracebacks); ``str(exc)`` may hold more detail for logs, but
never a secret either.
"""

from __future__ import annotations

import errno
from typing import Any, Self

from bot.locales import english


class BotError(Exception):
    """Base of every expected failure.

    An error people see in Discord in their own language carries a catalogue ``key`` and its ``params``
    (:meth:`keyed`; ``bot.locales``): ``user_message`` is then its English text, and the Discord edge renders
    the key in the reader's locale. A class whose ``default_key`` is set says its default message that way.
    """

    default_key: str | None = "errors.generic"
    default_message = english("errors.generic")
    # Whether trying the same thing again later may succeed (a network blip, not a bad input).
    retryable = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "default_key" in vars(cls) and cls.default_key is not None:
            cls.default_message = english(cls.default_key)
        elif "default_message" in vars(cls):  # its own text, in English only
            cls.default_key = None

    def __init__(
        self,
        user_message: str | None = None,
        *,
        detail: str | None = None,
        retryable: bool | None = None,
        key: str | None = None,
        params: dict[str, Any] | None = None,
    ) -> None:
        if user_message is None and key is None:
            key = self.default_key
        self.key = key
        self.params: dict[str, Any] = dict(params or {})
        self.user_message = user_message or (english(key, **self.params) if key else self.default_message)
        if retryable is not None:
            self.retryable = retryable
        super().__init__(detail or self.user_message)

    @classmethod
    def keyed(cls, key: str, **params: Any) -> Self:
        """This error with the catalogue text ``key`` (English in ``user_message``) and its placeholders."""
        return cls(key=key, params=params)


class ConfigError(BotError):
    """Configuration is invalid; startup stops with this message."""

    default_message = "The configuration is invalid."


class StartupError(BotError):
    """Encore can't start (Discord refused or can't be reached, the database can't be used); the message says
    what to do about it, in one line."""

    default_message = "Encore couldn't start."


class InvalidRequestError(BotError):
    """A user's input was refused before anything was submitted or charged."""

    default_key = "errors.invalid_request"


class JobNotFoundError(BotError):
    default_key = "errors.job_not_found"


class NotAllowedError(BotError):
    default_key = "errors.not_allowed"


class JobStateError(BotError):
    """The job has moved on (e.g. canceling a finished job)."""

    default_key = "errors.job_state"


class ProviderError(BotError):
    """A provider call failed. Subclasses say whether retrying may help."""

    default_key = "errors.provider"


class ProviderAuthError(ProviderError):
    default_key = "errors.provider_auth"


class ProviderRateLimitError(ProviderError):
    default_key = "errors.provider_rate_limit"
    retryable = True

    def __init__(
        self,
        user_message: str | None = None,
        *,
        detail: str | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.retry_after_s = retry_after_s


class ProviderUnavailableError(ProviderError):
    default_key = "errors.provider_unavailable"
    retryable = True


class ProviderInputError(ProviderError):
    """The provider refused the input (422)."""

    default_key = "errors.provider_input"


class ProviderNotFoundError(ProviderError):
    default_key = "errors.provider_not_found"


class SubmissionUncertainError(ProviderError):
    """A create request may or may not have reached the provider (timeout, dropped connection)."""

    default_key = "errors.submission_uncertain"
    retryable = True


class ProviderBusyError(ProviderError):
    """The provider made nothing because it is busy (a model server running all it can, or still setting up): the
    job keeps its place and is tried again after ``retry_after_s``. Never a failure."""

    default_key = "errors.provider_busy"
    retryable = True

    def __init__(
        self, user_message: str | None = None, *, detail: str | None = None, retry_after_s: float = 5.0
    ) -> None:
        super().__init__(user_message, detail=detail)
        self.retry_after_s = retry_after_s


class PredictionLostError(ProviderNotFoundError):
    """A provider's prediction is gone without a word (its server restarted, say): the job may run again.
    Raised by a provider's ``get`` when it can tell the prediction was lost rather than never known."""

    default_key = "errors.prediction_lost"


class PromptRefusedError(ProviderInputError):
    """ElevenLabs refused the prompt or plan (artist names, copyrighted lyrics); it may suggest another."""

    def __init__(self, user_message: str, *, detail: str | None = None, suggestion: Any = None) -> None:
        super().__init__(user_message, detail=detail)
        self.suggestion = suggestion


class ProviderCreditsError(ProviderError):
    """The provider account's credits or quota are used up (ElevenLabs 402, ``quota_exceeded``)."""

    default_key = "errors.provider_credits"


class OutputError(BotError):
    """The output could not be fetched or stored. ``retryable`` when the network may be to blame."""

    default_key = "errors.output"


class TooLargeError(OutputError):
    """A download was over its size limit (cut off while streaming)."""


# A Cog output that is not a file uploaded to Encore: the server was started without --upload-url.
NO_UPLOAD_TARGET = (
    "The self-hosted model server isn't set up to send files back to Encore. An operator needs to start it "
    "with --upload-url pointing at Encore (see the README)."
)


class DeliveryError(BotError):
    """The finished audio could not be delivered to Discord. Retried from the stored file unless
    ``retryable=False`` (e.g. a missing permission: trying again cannot help)."""

    default_key = "errors.delivery"
    retryable = True


class StorageError(BotError):
    """Encore's own storage refused a write: the database stayed locked by another program past the busy
    timeout, or the disk is full or failing. Nothing was half-written; unfinished jobs wait and try again."""

    default_key = "errors.storage"
    retryable = True
    kind = "failing"  # what /healthz reports


class StorageBusyError(StorageError):
    default_key = "errors.storage_busy"
    kind = "locked"


class StorageFullError(StorageError):
    default_key = "errors.storage_full"
    kind = "full"


class StorageCorruptError(StorageError):
    """The database file is damaged ("database disk image is malformed", "file is not a database"): it won't
    heal by waiting; an operator restores it from a backup."""

    default_key = "errors.storage_corrupt"
    kind = "corrupt"


def cause(exc: BaseException) -> str:
    """An exception as a short cause for logs: its type and, when it has one, its text (e.g. which host could
    not be reached). Only for exceptions that carry no secrets (network errors, timeouts)."""
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# A full disk, a full quota, or a file size limit (RLIMIT_FSIZE): a write can't grow the file.
_OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)})


def out_of_space(exc: OSError) -> bool:
    """Whether a failed file write means there is no room left for it."""
    return exc.errno in _OUT_OF_SPACE
