"""Standard Webhooks signatures: one valid signed request verifies; breaking exactly one thing fails it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from chalicelib.signing import sign

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OLD_SECRET = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD"
OTHER_SECRET = "whsec_dGhpcyBpcyBub3QgdGhlIHNlY3JldCB5b3Ugd2FudA=="
WEBHOOK_ID = "msg_2b0f1bbd6dc4a8c4cbc0d7a7e5b1e2f0"
BODY = '{"type":"chat.message","timestamp":"2024-05-01T10:00:00.000Z","version":1,"data":{"content":"Olá 👋"}}'.encode()


def signed_headers(secrets: list[str], at: datetime | None = None) -> dict[str, str]:
    """The headers a consumer receives for BODY, signed now (or ``at``) with ``secrets``."""
    at = at or datetime.now(UTC)
    return {
        "webhook-id": WEBHOOK_ID,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": sign(WEBHOOK_ID, at, BODY, secrets),
    }


def test_a_signed_request_verifies_with_the_reference_library() -> None:
    """Given a body signed with a destination's secret, then standardwebhooks verifies it and returns the body."""
    headers = signed_headers([SECRET])

    assert headers["webhook-signature"].startswith("v1,")
    assert Webhook(SECRET).verify(BODY, headers)["data"]["content"] == "Olá 👋"


def test_rotation_sends_one_signature_per_secret_each_verifying_on_its_own() -> None:
    """Given two secrets during a rotation, then two signatures are sent and either secret alone verifies."""
    headers = signed_headers([SECRET, OLD_SECRET])

    signatures = headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    assert all(signature.startswith("v1,") for signature in signatures)
    assert signatures[0] == sign(
        WEBHOOK_ID, datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC), BODY, [SECRET]
    )
    Webhook(SECRET).verify(BODY, headers)
    Webhook(OLD_SECRET).verify(BODY, headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(BODY, headers)


def test_a_changed_body_fails() -> None:
    """Given a valid request, when one byte of the body changes, then verification fails."""
    headers = signed_headers([SECRET])

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"10:00", b"10:01"), headers)


def test_a_changed_id_fails() -> None:
    """Given a valid request, when the webhook id changes, then verification fails."""
    headers = signed_headers([SECRET]) | {"webhook-id": WEBHOOK_ID + "0"}

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_a_changed_timestamp_fails() -> None:
    """Given a valid request, when its timestamp moves by one second, then verification fails."""
    headers = signed_headers([SECRET])
    headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) + 1)

    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY, headers)


def test_another_secret_fails() -> None:
    """Given a valid request, when the consumer holds a different secret, then verification fails."""
    headers = signed_headers([SECRET])

    with pytest.raises(WebhookVerificationError):
        Webhook(OTHER_SECRET).verify(BODY, headers)


def test_the_timestamp_is_signed_in_utc_whatever_its_zone() -> None:
    """Given the same instant in another zone, then the signature is the UTC one (the library would not convert)."""
    at_utc = datetime.now(UTC).replace(microsecond=0)
    at_paris = at_utc.astimezone(timezone(timedelta(hours=2)))

    assert sign(WEBHOOK_ID, at_paris, BODY, [SECRET]) == sign(WEBHOOK_ID, at_utc, BODY, [SECRET])
    Webhook(SECRET).verify(BODY, signed_headers([SECRET], at_paris))


def test_a_decoded_body_signs_the_same_as_its_bytes() -> None:
    """Given the body already decoded (fan-out decodes it once), then the signature is the same as for the bytes."""
    at = datetime.now(UTC)

    assert sign(WEBHOOK_ID, at, BODY.decode("utf-8"), [SECRET]) == sign(WEBHOOK_ID, at, BODY, [SECRET])


def test_a_naive_timestamp_is_rejected() -> None:
    """Given a timestamp without a zone, then signing refuses rather than guessing which instant it is."""
    with pytest.raises(ValueError, match="timezone-aware"):
        sign(WEBHOOK_ID, datetime(2024, 5, 1, 10, 0), BODY, [SECRET])


def test_no_secret_is_rejected() -> None:
    """Given no secret, then signing refuses rather than sending an empty signature header."""
    with pytest.raises(ValueError, match="no secret"):
        sign(WEBHOOK_ID, datetime.now(UTC), BODY, [])
