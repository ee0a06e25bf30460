"""``POST /destinations/{name}/redrive``: put a destination's dead letters and undelivered copies back on the retry
queue. Always IAM-authorised, whatever ``API_AUTH`` says: it is an operator's action, not a client's."""

from __future__ import annotations

from typing import Final

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import Blueprint, IAMAuthorizer, Response

from chalicelib.dependencies import destinations, redrive
from chalicelib.errors import FieldProblem, RelayError, RequestValidationError
from chalicelib.handlers.http import error_response, json_body, json_response
from chalicelib.observability import logger
from chalicelib.redrive import KINDS

redrive_api = Blueprint(__name__)

# What one call re-queues at most: well within API Gateway's 29 s. Call again while "complete" is false.
MAX_PER_CALL: Final = 500
_FIELDS = frozenset({"kinds", "limit"})


@redrive_api.route("/destinations/{name}/redrive", methods=["POST"], authorizer=IAMAuthorizer())
def redrive_destination(name: str) -> Response:
    """Re-queue up to ``limit`` (default and most 500) of the destination's kept deliveries; resumable."""
    try:
        kinds, limit = _request(redrive_api.current_request.raw_body)
        if name not in {destination.name for destination in destinations().destinations}:
            return json_response(404, {"error": "DestinationNotFound", "message": "no destination has this name"})
        summary = redrive().run(name, kinds=kinds, limit=limit)
    except RelayError as exc:
        return error_response(exc)
    except (BotoCoreError, ClientError) as exc:
        # What was re-queued before the failure is done and deleted; calling again resumes after it.
        logger.error("redrive interrupted", extra={"destination": name, "error": type(exc).__name__})
        return json_response(
            502, {"error": "RedriveInterrupted", "message": "S3 or SQS failed; call again to resume the redrive"}
        )
    logger.info("destination redriven", extra={"destination": name, **summary.as_dict()})
    return json_response(200, {"destination": name, **summary.as_dict()})


def _request(raw: str | bytes | None) -> tuple[tuple[str, ...], int]:
    body = json_body(raw, required=False)
    problems = [FieldProblem(key, "unknown field") for key in sorted(set(body) - _FIELDS)]
    kinds = body.get("kinds", list(KINDS))
    if not isinstance(kinds, list) or not kinds or not set(kinds) <= set(KINDS) or len(set(kinds)) != len(kinds):
        problems.append(FieldProblem("kinds", f"must be a non-empty list of {', '.join(KINDS)}"))
    limit = body.get("limit", MAX_PER_CALL)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PER_CALL:
        problems.append(FieldProblem("limit", f"must be a whole number from 1 to {MAX_PER_CALL}"))
    if problems:
        raise RequestValidationError(problems)
    return tuple(kinds), limit
