"""EventBridge destinations: ``PutEvents`` to a named bus, up to 10 events a call, failures reported per entry."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from chalicelib.batches import EVENTBRIDGE_LIMITS, WriteFailure, entry_failures, tagged_record, write_in_batches

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

    from chalicelib.destination_kinds import BusTarget
    from chalicelib.events import RelayEvent

# Per-entry codes worth another try; anything else (a malformed entry) would fail the same way again.
RETRYABLE_ENTRY_CODES = frozenset({"InternalFailure", "ThrottlingException"})
# EventBridge counts the entry's Time as 14 bytes besides its source, detail-type and detail.
_TIME_BYTES = 14


class BusWriter:
    """Puts events on EventBridge buses: ``detail-type`` is the event type, ``detail`` the tagged envelope."""

    def __init__(self, client: EventBridgeClient) -> None:
        self._client = client

    def put(self, target: BusTarget, events: Sequence[RelayEvent]) -> list[WriteFailure | None]:
        """Put each event; None where EventBridge accepted it."""
        sized: list[tuple[PutEventsRequestEntryTypeDef, int]] = []
        for event in events:
            detail = tagged_record(event).decode("utf-8")
            entry: PutEventsRequestEntryTypeDef = {
                "Source": target.source,
                "DetailType": event.type,
                "Detail": detail,
                "EventBusName": target.bus.value,
            }
            sized.append((entry, _TIME_BYTES + len(target.source) + len(event.type) + len(detail.encode("utf-8"))))
        return write_in_batches(
            sized,
            EVENTBRIDGE_LIMITS,
            lambda entries: entry_failures(self._client.put_events(Entries=entries)["Entries"], RETRYABLE_ENTRY_CODES),
        )
