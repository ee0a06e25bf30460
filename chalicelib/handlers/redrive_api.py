"""``POST /destinations/{name}/redrive``: put a destination's dead letters and undelivered copies back on the retry
queue. Always IAM-authorised, whatever ``API_AUTH`` says: it is an operator's action, not a client's."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Final, Literal

from botocore.exceptions import BotoCoreError, ClientError
from chalice.app import Blueprint, IAMAuthorizer, Response

from chalicelib.dependencies import destinations, redrive
from chalicelib.errors import RelayError
from chalicelib.handlers.http import error_response, json_body, json_response
from chalicelib.observability import logger
from chalicelib.redrive import KINDS
from chalicelib.validation import Rule, parse

redrive_api = Blueprint(__name__)

# What one call re-queues at most: well within API Gateway's 29 s. Call again while "complete" is false.
MAX_PER_CALL: Final = 500


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


@dataclass(frozen=True)
class RedriveRequest:
    """The body of ``POST /destinations/{name}/redrive``; every field is optional."""

    kinds: Annotated[
        tuple[Literal["dead-letters", "undelivered"], ...],
        Rule(
            min_length=1,
            unique=True,
            description="What to re-queue; default both.",
            problem=f"must be a non-empty list of {', '.join(KINDS)}",
        ),
    ] = KINDS
    limit: Annotated[
        int,
        Rule(
            minimum=1,
            maximum=MAX_PER_CALL,
            description="At most this many per call.",
            problem=f"must be a whole number from 1 to {MAX_PER_CALL}",
        ),
    ] = MAX_PER_CALL


def _request(raw: str | bytes | None) -> tuple[tuple[str, ...], int]:
    body = parse(RedriveRequest, json_body(raw, required=False))
    return body.kinds, body.limit
