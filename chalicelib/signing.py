"""Standard Webhooks signatures (``v1``: HMAC-SHA256 over ``{id}.{timestamp}.{body}``).

During a secret rotation a destination has two secrets and every request carries both signatures, so the
consumer can switch secrets at its own pace.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks import Webhook


def sign(webhook_id: str, timestamp: datetime, body: bytes | str, secrets: Sequence[str]) -> str:
    """The ``webhook-signature`` header value: ``v1,<base64>`` per secret, separated by spaces.

    ``timestamp`` must be timezone-aware (it is signed as integer Unix seconds); ``body`` is signed exactly as
    sent, and may be given already decoded to save decoding it again for every destination.
    """
    if not secrets:
        raise ValueError("no secret to sign with")
    if timestamp.tzinfo is None:
        raise ValueError("timestamp must be timezone-aware")
    # standardwebhooks replaces the zone with UTC rather than converting to it.
    at = timestamp.astimezone(UTC)
    data = body.decode("utf-8") if isinstance(body, bytes) else body
    return " ".join(_webhook(secret).sign(webhook_id, at, data) for secret in secrets)


@lru_cache(maxsize=128)
def _webhook(secret: str) -> Webhook:
    # Decoding the whsec_ base64 key once per secret, not once per request.
    return Webhook(secret)
