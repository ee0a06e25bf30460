"""Routes to start and stop a chat's stream by hand (IAM-authorised by default)."""

from __future__ import annotations

from chalice.app import Blueprint, Response

from chalicelib.dependencies import streaming_starter
from chalicelib.errors import FieldProblem, RelayError, RequestValidationError
from chalicelib.handlers.http import error_response, json_body, json_response, route_auth
from chalicelib.observability import contact_keys, count, count_streaming_start, logger
from chalicelib.settings import get_settings
from chalicelib.streaming import CONTACT_ID, CONTACT_ID_PROBLEM, StartStreamingRequest, start_request_problems
from chalicelib.validation import read

streaming_api = Blueprint(__name__)


@streaming_api.route("/contacts/{contact_id}/streaming", methods=["PUT"], **route_auth())
def start_streaming(contact_id: str) -> Response:
    """Start streaming a chat (its initial contact id) to the relay's topic."""
    with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
        try:
            return _start(contact_id)
        except RelayError as exc:
            return error_response(exc)


def _start(contact_id: str) -> Response:
    settings = get_settings()
    body, problems = read(StartStreamingRequest, json_body(streaming_api.current_request.raw_body, required=False))
    problems += start_request_problems(
        contact_id=contact_id, topic_arn=settings.streaming_topic_arn, region=settings.region
    )
    allowed = settings.allowed_instance_ids
    if body is not None and body.instance_id is None and len(allowed) != 1:
        problems.append(FieldProblem("instance_id", "required: the relay serves several instances"))
    if body is None or problems:
        raise RequestValidationError(problems)
    instance_id = body.instance_id or next(iter(allowed))
    if instance_id not in allowed:
        raise RequestValidationError([FieldProblem("instance_id", "is not an instance this relay serves")])
    outcome = streaming_starter().start(
        instance_id=instance_id,
        initial_contact_id=contact_id,
        started_by="route",
        client_token=body.client_token,
        restart=True,
    )
    count_streaming_start(already_streaming=outcome.already_streaming)
    logger.info("streaming started by hand", extra={"streaming_id": outcome.streaming_id})
    return json_response(
        200 if outcome.already_streaming else 201,
        {
            "contact_id": contact_id,
            "instance_id": outcome.instance_id,
            "streaming_id": outcome.streaming_id,
            "topic_arn": outcome.topic_arn,
            "status": "already_streaming" if outcome.already_streaming else "started",
        },
    )


@streaming_api.route("/contacts/{contact_id}/streaming", methods=["DELETE"], **route_auth())
def stop_streaming(contact_id: str) -> Response:
    """Stop a chat's stream with the StreamingId the relay kept."""
    with contact_keys(initial_contact_id=contact_id, contact_id=contact_id):
        try:
            if not CONTACT_ID.fullmatch(contact_id):
                raise RequestValidationError([FieldProblem("contact_id", CONTACT_ID_PROBLEM)])
            stopped = streaming_starter().stop(contact_id)
        except RelayError as exc:
            return error_response(exc)
        count("StreamingStopped")
        logger.info("streaming stopped", extra={"streaming_id": stopped.streaming_id})
        return json_response(200, {"contact_id": contact_id, "streaming_id": stopped.streaming_id, "status": "stopped"})
