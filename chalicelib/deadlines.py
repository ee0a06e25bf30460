"""An invocation's own clock: how long Lambda still gives it, less what making its failures durable needs."""

from __future__ import annotations

import time
from typing import Any

# Kept back from the fan-out for handing failed deliveries to the retry queue (and to S3 if SQS fails): a
# quarter of what is left, at most 2 s (SQS answers in tens of milliseconds; the rest covers its retries).
MAX_MARGIN_SECONDS = 2.0
MARGIN_SHARE = 0.25


def deadline_of(context: Any) -> float | None:
    """The ``time.monotonic()`` reading by which deliveries must end; None without a Lambda context."""
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    if remaining is None:
        return None
    left = float(remaining()) / 1000
    return time.monotonic() + left - min(MAX_MARGIN_SECONDS, left * MARGIN_SHARE)
