"""``POST /replays`` and ``GET /replays/{replay_id}``: re-deliver archived events to one destination, and follow it.

Always IAM-authorised, whatever ``API_AUTH`` says: an operator's action, not a client's. The route records the
replay and queues it; ``retry_deliveries`` does the work (see :mod:`chalicelib.archive_replay`).
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import Blueprint, IAMAuthorizer, Response

from chalicelib.dependencies import archive_replays
from chalicelib.errors import RelayError
from chalicelib.handlers.http import error_response, json_body, json_response
from chalicelib.observability import logger

replays_api = Blueprint(__name__)


@replays_api.route("/replays", methods=["POST"], authorizer=IAMAuthorizer())
def start_replay() -> Response:
    """Start a replay: 202 with its id and state; 400, 404 (destination), 409 (no usable archive), 503."""
    # Imported on first use: the API function does not load the archive and the relay to wake.
    from chalicelib.archive_replay import (  # noqa: PLC0415
        ReplayArchiveUnavailableError,
        ReplayDestinationUnknownError,
        parse_request,
    )

    try:
        request = parse_request(json_body(replays_api.current_request.raw_body, required=True))
        state = archive_replays().start(request)
    except ReplayDestinationUnknownError:
        return json_response(404, {"error": "DestinationNotFound", "message": "no destination has this name"})
    except ReplayArchiveUnavailableError as exc:
        return json_response(409, {"error": "ArchiveUnavailable", "message": str(exc)})
    except RelayError as exc:
        return error_response(exc)
    except (BotoCoreError, ClientError) as exc:
        return _unavailable(exc)
    location = f"/replays/{state.replay_id}"
    return json_response(202, state.as_dict(), {"Location": location})


@replays_api.route("/replays/{replay_id}", methods=["GET"], authorizer=IAMAuthorizer())
def replay_status(replay_id: str) -> Response:
    """A replay's progress (found, sent, delivered, retrying, parked, failed, skipped) and its outcome."""
    from chalicelib.archive_replay import ReplayNotFoundError  # noqa: PLC0415

    try:
        state = archive_replays().status(replay_id)
    except ReplayNotFoundError as exc:
        return json_response(404, {"error": "ReplayNotFound", "message": str(exc)})
    except RelayError as exc:
        return error_response(exc)
    except (BotoCoreError, ClientError) as exc:
        return _unavailable(exc)
    return json_response(200, state.as_dict())


def _unavailable(exc: BotoCoreError | ClientError) -> Response:
    logger.error("replay state unavailable", extra={"error": type(exc).__name__})
    return json_response(
        503,
        {"error": "ReplayUnavailable", "message": "the replay's table or queue failed; try again"},
        {"Retry-After": "1"},
    )
