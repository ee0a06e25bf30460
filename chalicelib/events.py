"""The events the relay publishes: a versioned envelope in the Standard Webhooks convention.

``{"type": "chat.message", "timestamp": "<the item's AbsoluteTime>", "version": 1, "data": {...}}``
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cached_property
from typing import Any

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class RelayEvent:
    """One event for consumers; ``webhook_id`` is the same on every redelivery and retry."""

    type: str
    timestamp: str
    data: dict[str, Any]
    webhook_id: str

    def envelope(self) -> dict[str, Any]:
        """The JSON object consumers receive."""
        return {"type": self.type, "timestamp": self.timestamp, "version": ENVELOPE_VERSION, "data": self.data}

    @cached_property
    def body(self) -> bytes:
        """The body, serialised once and sent byte for byte to every destination (signatures cover it)."""
        return json.dumps(self.envelope(), separators=(",", ":"), ensure_ascii=False).encode("utf-8")
