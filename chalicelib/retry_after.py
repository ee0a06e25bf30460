"""``Retry-After`` values (seconds, or an HTTP date), as Connect and webhook receivers send them."""

from __future__ import annotations

import math
import time
from datetime import UTC
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 24 * 60 * 60


def retry_after_seconds(value: str | None, *, now: float | None = None) -> int | None:
    """A ``Retry-After`` header as whole seconds from ``now`` (at most a day); None if absent or invalid."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        seconds = int(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = math.ceil(when.timestamp() - (time.time() if now is None else now))
    return min(max(seconds, 0), MAX_RETRY_AFTER_SECONDS)
