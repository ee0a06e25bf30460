"""Operator routes for destinations: re-enabling one (its parked events replayed in order).

Always IAM-authorised, whatever ``API_AUTH`` says: the contact routes may be opened to browsers with an API key or
Cognito, but only operators (SigV4 with ``execute-api:Invoke``) may re-enable a destination.
"""

from __future__ import annotations

import time

from chalice.app import Blueprint, IAMAuthorizer, Response

from chalicelib.dependencies import relay
from chalicelib.handlers.http import error_response, json_response
from chalicelib.observability import logger

destinations_api = Blueprint(__name__)
# Left for the last delivery of a page to time out and the answer to be written, beyond the destination's timeout.
ANSWER_MARGIN_SECONDS = 2.0


@destinations_api.route("/destinations/{name}/enable", methods=["POST"], authorizer=IAMAuthorizer())
def enable_destination(name: str) -> Response:
    """Re-enable a destination: replay its parked events in order, then enable it (202: call again to resume)."""
    # Imported here, with the relay on its first use: the API function does not load webhook delivery to wake.
    from chalicelib.health import HealthReplayBusyError, HealthStoreError  # noqa: PLC0415
    from chalicelib.relay import DestinationUnknownError  # noqa: PLC0415

    try:
        destination = relay().destination(name)
        context = destinations_api.lambda_context
        # Stop starting deliveries while one more could still time out inside the function's own time.
        reserve = (destination.timeout_seconds + ANSWER_MARGIN_SECONDS) * 1000
        started, budget_ms = time.monotonic(), context.get_remaining_time_in_millis() - reserve
        progress = relay().enable(name, time_left=lambda: budget_ms / 1000 - (time.monotonic() - started))
    except DestinationUnknownError:
        return json_response(404, {"error": "DestinationNotFound", "message": "no destination has that name"})
    except HealthReplayBusyError:
        return json_response(
            409, {"error": "ReplayInProgress", "message": "another caller is re-enabling this destination"}
        )
    except HealthStoreError as exc:
        logger.error("destination health unavailable", extra={"destination": name, "reason": str(exc)})
        return json_response(
            503, {"error": "HealthUnavailable", "message": "the health table is unavailable"}, {"Retry-After": "5"}
        )
    except Exception as exc:
        return error_response(exc)
    return json_response(
        200 if progress.done else 202,
        {
            "destination": name,
            "status": progress.status,
            "replayed": progress.replayed,
            "remaining": progress.remaining,
        },
    )
