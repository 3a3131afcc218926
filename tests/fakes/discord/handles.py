"""What a test holds after a simulated user interacts: a way to await the bot's answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import SimulatorError
from .interactions import CallbackRecord, InteractionRecord, InteractionService
from .models import MessageEvent, SimAttachment, SimMessage
from .router import RestCall, Router
from .state import SimState

MessagePredicate = Callable[[SimMessage], bool]

DEFAULT_TIMEOUT_S = 5.0


class InteractionHandle:
    """One interaction sent to the bot. All ``wait_*`` methods also return what already happened."""

    def __init__(self, record: InteractionRecord, state: SimState, service: InteractionService, router: Router) -> None:
        self.record = record
        self._state = state
        self._service = service
        self._router = router

    def __repr__(self) -> str:
        return f"<InteractionHandle id={self.id} type={self.record.type} response={self.response_type}>"

    @property
    def id(self) -> int:
        return self.record.id

    @property
    def token(self) -> str:
        return self.record.token

    @property
    def response_type(self) -> int | None:
        """Callback type the bot answered with (4, 5, 6, 7, 8, 9), or None so far."""
        return self.record.response_type

    @property
    def original(self) -> SimMessage | None:
        """Current version of the original response message (None if there is none yet)."""
        return self._state.messages.get(self.record.original_id or 0)

    @property
    def followups(self) -> list[SimMessage]:
        """Current versions of the followup messages, in order."""
        return [self._state.messages[i] for i in self.record.followup_ids]

    @property
    def calls(self) -> list[RestCall]:
        """Every callback/webhook request the bot made for this interaction."""
        return [c for c in self._router.calls.items if self._mine(c)]

    def _mine(self, call: RestCall) -> bool:
        return call.params.get("interaction_id") == str(self.id) or call.params.get("webhook_token") == self.token

    async def wait_response(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> CallbackRecord:
        """The accepted initial response (callback type, data, and message for types 4, 5, 7)."""
        return await self._service.callbacks.wait(
            lambda c: c.interaction_id == self.id,
            timeout_s=timeout_s,
            looking_for=f"a response to interaction {self.id}",
        )

    async def _wait_message(
        self, matches: Callable[[SimMessage], bool], timeout_s: float, looking_for: str
    ) -> SimMessage:
        # A deferred response's "is thinking…" placeholder is nobody's answer: skip it (wait_response has it).
        def pred(ev: MessageEvent) -> bool:
            return ev.kind != "delete" and not ev.message.is_loading and matches(ev.message)

        event = await self._state.message_events.wait(
            pred, timeout_s=timeout_s, since=self.record.event_cursor, looking_for=looking_for
        )
        return event.message

    async def wait_original(
        self, predicate: MessagePredicate | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SimMessage:
        """The original response once it satisfies ``predicate`` (returns at once if it already does).

        After a type-6/7 update the original is the clicked message. The loading message of a defer is not
        a response yet: this waits for what replaces it.
        """
        current = self.original
        if (
            current is not None
            and not current.deleted
            and not current.is_loading
            and (predicate is None or predicate(current))
        ):
            return current
        rec = self.record

        def matches(m: SimMessage) -> bool:
            return m.id == rec.original_id and (predicate is None or predicate(m))

        return await self._wait_message(matches, timeout_s, f"the original response of interaction {self.id}")

    async def wait_followup(
        self,
        predicate: MessagePredicate | None = None,
        *,
        index: int | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
    ) -> SimMessage:
        """A followup (the ``index``-th, or any) satisfying ``predicate``."""
        rec = self.record

        def matches(m: SimMessage) -> bool:
            if m.id not in rec.followup_ids:
                return False
            if index is not None and rec.followup_ids.index(m.id) != index:
                return False
            return predicate is None or predicate(m)

        return await self._wait_message(matches, timeout_s, f"followup {index} of interaction {self.id}")

    async def wait_message(
        self, predicate: MessagePredicate | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SimMessage:
        """Any version of the original or a followup satisfying ``predicate`` (never a loading message)."""
        rec = self.record

        def matches(m: SimMessage) -> bool:
            mine = m.id == rec.original_id or m.id in rec.followup_ids
            return mine and (predicate is None or predicate(m))

        return await self._wait_message(matches, timeout_s, f"a message answering interaction {self.id}")

    async def wait_file(
        self, predicate: Callable[[SimAttachment], bool] | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> SimAttachment:
        """The first file the bot attached to the original response or a followup."""

        def has_file(m: SimMessage) -> bool:
            return any(predicate is None or predicate(a) for a in m.attachments)

        msg = await self.wait_message(has_file, timeout_s=timeout_s)
        return next(a for a in msg.attachments if predicate is None or predicate(a))

    async def wait_modal(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> dict[str, Any]:
        """The modal (type 9 ``data``) the bot opened."""
        response = await self.wait_response(timeout_s=timeout_s)
        if response.type != 9:
            raise SimulatorError(f"interaction {self.id} was answered with type {response.type}, not a modal")
        return response.data

    async def wait_choices(self, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]]:
        """Autocomplete choices (type 8)."""
        response = await self.wait_response(timeout_s=timeout_s)
        if response.type != 8:
            raise SimulatorError(f"interaction {self.id} was answered with type {response.type}, not choices")
        return list(response.data.get("choices") or [])

    async def wait_error(self, code: int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> RestCall:
        """The first failed request for this interaction (optionally with Discord error ``code``)."""

        def pred(c: RestCall) -> bool:
            return self._mine(c) and not c.ok and (code is None or c.error_code == code)

        return await self._router.calls.wait(pred, timeout_s=timeout_s, looking_for=f"error {code} on {self.id}")
