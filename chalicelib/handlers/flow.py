"""The contact flow's "Invoke AWS Lambda function" block: start streaming before the flow's first message.

The block waits at most 8 seconds. The function answers within that, or within Lambda's remaining time if it is
shorter, less a margin: the DynamoDB and Connect calls get only what is left of that budget, and when it runs
out the answer is ``{"streaming": "failed", "reason": "timeout"}``. A stream Connect started after the answer
keeps no record here; the EventBridge path starts it again with the same ClientToken and records it.
"""

from __future__ import annotations

from typing import Any

from chalice.app import Blueprint

from chalicelib.budget import Budget, BudgetExhaustedError, run_within
from chalicelib.contact_event_reader import instance_id_from_arn
from chalicelib.dependencies import flow_streaming_starter
from chalicelib.errors import ConnectError, SettingsError, StreamingStartInProgressError, StreamingStoppedError
from chalicelib.observability import contact_keys, count, count_streaming_start, logger, observed
from chalicelib.settings import get_settings
from chalicelib.streaming import CONTACT_ID, STREAMING_AT_START, STREAMING_AT_START_ATTRIBUTE

flow = Blueprint(__name__)

# The contact flow block's longest timeout, and what is kept back to answer (log, metrics, the JSON reply).
FLOW_LIMIT_SECONDS = 8.0
ANSWER_MARGIN_SECONDS = 0.5
TIMEOUT_REASON = "timeout"


def _failed(reason: str) -> dict[str, str]:
    return {"streaming": "failed", "reason": reason}


@flow.lambda_function(name="start_streaming_from_flow")
@observed
def start_streaming_from_flow(event: dict[str, Any], context: Any) -> dict[str, str]:
    """Answer the flow with a flat map of strings, in time; never raise into it (the flow would take its error
    branch)."""
    budget = Budget.of_invocation(context, limit_seconds=FLOW_LIMIT_SECONDS, margin_seconds=ANSWER_MARGIN_SECONDS)
    details = event.get("Details") if isinstance(event, dict) else None
    contact = details.get("ContactData") if isinstance(details, dict) else None
    if not isinstance(contact, dict):
        logger.warning("flow event without Details.ContactData")
        count("StreamingStartFailed", reason="Malformed")
        return _failed("the event has no Details.ContactData")
    contact_id = contact.get("ContactId")
    initial = contact.get("InitialContactId") or contact_id
    with contact_keys(initial_contact_id=initial if isinstance(initial, str) else None, contact_id=str(contact_id)):
        return _start(contact, initial, budget)


def _start(contact: dict[str, Any], initial: object, budget: Budget) -> dict[str, str]:
    # An id, nothing else: the streams table also keeps the relay's other records, under keys no contact id can take.
    if not isinstance(initial, str) or not CONTACT_ID.fullmatch(initial):
        count("StreamingStartFailed", reason="Malformed")
        return _failed("ContactId is missing or invalid")
    channel = str(contact.get("Channel") or "").upper()
    if channel != "CHAT":
        count("StreamingSkipped", reason="NotChat")
        return {"streaming": "skipped", "reason": f"channel {channel or 'unknown'} does not stream"}
    parsed = instance_id_from_arn(str(contact.get("InstanceARN") or contact.get("InstanceArn") or ""))
    if parsed is None:
        count("StreamingStartFailed", reason="Malformed")
        return _failed("InstanceARN is missing or invalid")
    attributes = contact.get("Attributes")
    if isinstance(attributes, dict) and attributes.get(STREAMING_AT_START_ATTRIBUTE) == STREAMING_AT_START:
        # POST /chat-contacts started this chat with its stream; its StreamingId may not be kept yet.
        count_streaming_start(already_streaming=True)
        return {"streaming": "started", "alreadyStreaming": "true"}
    try:
        if parsed[0] not in get_settings().allowed_instance_ids:
            count("StreamingSkipped", reason="InstanceNotAllowed")
            return {"streaming": "skipped", "reason": "instance not allowed"}
        starter = flow_streaming_starter()
        outcome = run_within(
            budget, lambda: starter.start(instance_id=parsed[0], initial_contact_id=initial, started_by="flow")
        )
    except BudgetExhaustedError:
        logger.warning("flow streaming start ran out of time", extra={"seconds_over": round(-budget.remaining(), 3)})
        count("StreamingStartFailed", reason="Timeout")
        return _failed(TIMEOUT_REASON)
    except StreamingStartInProgressError:
        count("StreamingSkipped", reason="StartInProgress")
        return {"streaming": "skipped", "reason": "another start of this chat is in progress"}
    except StreamingStoppedError:
        count("StreamingSkipped", reason="Stopped")
        return {"streaming": "skipped", "reason": "streaming was stopped for this chat"}
    except ConnectError as exc:
        logger.warning("flow streaming start failed", extra={"code": exc.code, "reason": exc.reason})
        count("StreamingStartFailed", reason=exc.code)
        return _failed(exc.code)
    except SettingsError as exc:
        logger.error("relay settings are invalid", extra={"reason": str(exc)})
        count("StreamingStartFailed", reason="Settings")
        return _failed("relay misconfigured")
    except Exception:
        logger.exception("flow streaming start failed unexpectedly")
        count("StreamingStartFailed", reason="Unexpected")
        return _failed("unexpected error")
    count_streaming_start(already_streaming=outcome.already_streaming)
    logger.info("streaming started from the flow", extra={"streaming_id": outcome.streaming_id})
    return {
        "streaming": "started",
        "streamingId": outcome.streaming_id,
        "alreadyStreaming": "true" if outcome.already_streaming else "false",
    }
