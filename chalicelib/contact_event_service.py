"""Contact events: every new chat Connect announces starts streaming to the relay's topic, once per session.

The EventBridge function (``chalicelib.handlers.contact_events``) hands each event to :class:`ContactEventService`,
which decides (``chalicelib.contact_event_reader``), starts the stream, and says what happened in logs and metrics.
It returns when the event needs nothing more, and raises when Lambda should try it again.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from chalicelib.contact_event_reader import SkipReason, decide
from chalicelib.errors import (
    ConnectContactNotFoundError,
    ConnectError,
    ConnectRequestRejectedError,
    ConnectStreamingLimitError,
    StreamingStartInProgressError,
    StreamingStoppedError,
)
from chalicelib.observability import contact_keys, count, count_streaming_start, logger

if TYPE_CHECKING:
    from chalicelib.contact_event_reader import ContactEvent
    from chalicelib.streaming import StreamingStart

# Connect's answers that mean "this chat cannot stream" rather than "try again".
_FINAL = (ConnectContactNotFoundError, ConnectRequestRejectedError, ConnectStreamingLimitError)
# Skips that are not the rule's ordinary filtering, logged as warnings.
_NOTABLE_SKIPS = frozenset({SkipReason.MALFORMED, SkipReason.INSTANCE_NOT_ALLOWED})


class StreamStarter(Protocol):
    """Starts a chat session's stream, once (``chalicelib.streaming.StreamingStarter``)."""

    def start(self, *, instance_id: str, initial_contact_id: str, started_by: str) -> StreamingStart:
        """Start streaming the session, unless the relay already did."""
        ...


class Keeper(Protocol):
    """The quarantine: where what cannot be read is kept."""

    def keep_invalid(self, *, source: str, record_id: str | None, reason: str, record: Any) -> str:
        """Keep ``record`` with ``reason``; returns its key."""
        ...


class ContactEventService:
    """Starts streaming for the chats contact events announce, and skips everything else, counted."""

    def __init__(
        self,
        allowed_instance_ids: frozenset[str],
        *,
        streams: Callable[[], StreamStarter],
        quarantine: Callable[[], Keeper],
    ) -> None:
        self._allowed_instance_ids = allowed_instance_ids
        self._streams = streams
        self._quarantine = quarantine

    def handle(self, event: Mapping[str, Any], *, event_id: str) -> None:
        """Start streaming the chat ``event`` announces, or skip it; raises what Lambda should retry (another start
        in progress, throttling, Connect's own failures)."""
        decision = decide(event, allowed_instance_ids=self._allowed_instance_ids)
        contact = decision.event
        with contact_keys(
            initial_contact_id=contact.initial_contact_id if contact else None,
            contact_id=contact.contact_id if contact else None,
        ):
            if contact is None or decision.skip is not None:
                self._skip(event, event_id, decision.skip or "Unknown", decision.detail)
            else:
                self._start(contact, event_id)

    def _skip(self, event: Mapping[str, Any], event_id: str, reason: str, detail: str) -> None:
        log = logger.warning if reason in _NOTABLE_SKIPS else logger.debug
        log("contact event skipped", extra={"reason": reason, "detail": detail, "event_id": event_id})
        count("StreamingSkipped", reason=str(reason))
        if reason == SkipReason.MALFORMED:
            # Lambda would not retry it, and nothing is dropped silently: keep it, as it came, with the reason.
            self._quarantine().keep_invalid(source="contact-events", record_id=event_id, reason=detail, record=event)

    def _start(self, contact: ContactEvent, event_id: str) -> None:
        try:
            outcome = self._streams().start(
                instance_id=contact.instance_id, initial_contact_id=contact.initial_contact_id, started_by="event"
            )
        except StreamingStartInProgressError:
            # Another path (the flow, a route) holds the chat's claim and is calling Connect. Lambda's retry, a
            # minute on, finds the stream kept, or the claim lapsed (its holder failed) and starts it then.
            logger.warning("another start of the chat is in progress; Lambda will retry", extra={"event_id": event_id})
            count("StreamingStartDeferred", reason="StartInProgress")
            raise
        except StreamingStoppedError:
            logger.info("streaming was stopped for the chat; the event does not restart it")
            count("StreamingSkipped", reason="Stopped")
            return
        except _FINAL as exc:
            logger.warning(
                "Connect refused to stream the chat",
                extra={"code": exc.code, "reason": exc.reason, "event_id": event_id},
            )
            count("StreamingStartFailed", reason=exc.code)
            return
        except ConnectError as exc:
            # Throttling and Connect's own failures after botocore's retries: Lambda's asynchronous retries and the
            # on-failure destination take over.
            logger.error("streaming start failed", extra={"code": exc.code, "reason": exc.reason, "event_id": event_id})
            count("StreamingStartFailed", reason=exc.code)
            raise
        logger.info(
            "chat already streaming" if outcome.already_streaming else "streaming started",
            extra={"streaming_id": outcome.streaming_id},
        )
        count_streaming_start(already_streaming=outcome.already_streaming)
