"""Write the event schemas and the OpenAPI document from one source (``make openapi``).

Every event type's JSON Schema is built here from the fields its data shares with the others (a chat item's fields
are written once), written to ``chalicelib/schemas/<type>.schema.json``, and put into ``chalicelib/openapi.json``
twice: as ``components.schemas[<type>]`` and as a webhook whose body refers to it. The routes' part of the document
comes from ``scripts/openapi_base.json``, except the request bodies of :data:`REQUEST_TYPES`, whose schemas their
types write (:mod:`chalicelib.validation`). ``tests/unit/test_openapi_generated.py`` fails when a checked-in file
differs from what this script writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from chalicelib.archive_replay import ReplayBody
from chalicelib.contacts import ChatContactRequest, WebRTCContactRequest
from chalicelib.events import EVENT_TYPES, SCHEMA_DIR
from chalicelib.handlers.docs import OPENAPI_FILE
from chalicelib.handlers.redrive_api import RedriveRequest
from chalicelib.streaming import StartStreamingRequest
from chalicelib.two_way_chats import AttachmentBody, ChatEventRequest, OutgoingMessage
from chalicelib.validation import json_schema

BASE_FILE = Path(__file__).parent / "openapi_base.json"
# Request bodies whose schemas their types write (chalicelib.validation), by their name in components.schemas.
REQUEST_TYPES: dict[str, type] = {
    "WebRTCContactRequest": WebRTCContactRequest,
    "ChatContactRequest": ChatContactRequest,
    "ChatMessageRequest": OutgoingMessage,
    "ChatEventRequest": ChatEventRequest,
    "ChatAttachmentRequest": AttachmentBody,
    "RedriveRequest": RedriveRequest,
    "ArchiveReplayRequest": ReplayBody,
    "StartStreamingRequest": StartStreamingRequest,
}

Schema = dict[str, Any]

_TEXT_OR_NULL: Schema = {"type": ["string", "null"]}
_CONTACT_ID: Schema = {"type": "string", "minLength": 1, "maxLength": 256}
_COUNT: Schema = {"type": "integer", "minimum": 0}
_ITEM_TIME = "When the event happened (a chat item's AbsoluteTime): order on it."
_DATA_NOTE = "Later versions may add keys: ignore the ones you do not know."

# The data of every event made from one chat item (every type but the last three of the catalogue).
_ITEM_FIELDS: Schema = {
    "item_id": {
        **_CONTACT_ID,
        "description": "Connect's item Id; the webhook-id header is derived from it, so dedupe on either.",
    },
    "initial_contact_id": {
        **_CONTACT_ID,
        "description": "The chat's first contact id; it survives transfers, so key sessions on it.",
    },
    "contact_id": {**_CONTACT_ID, "description": "The contact this item belongs to; a new one after each transfer."},
    "related_contact_id": {
        "type": ["string", "null"],
        "maxLength": 256,
        "description": "The previous contact of a persistent chat, if any.",
    },
    "instance_id": {
        "type": ["string", "null"],
        "description": "The Amazon Connect instance id; null when its record did not say, and then no "
        "instance-filtered destination receives it.",
    },
    "participant": {
        "type": "object",
        "description": "The sender; every field is null on items without one (chat.ended).",
        "required": ["id", "role", "display_name"],
        "properties": {
            "id": _TEXT_OR_NULL,
            "role": {
                "type": ["string", "null"],
                "description": "AGENT, CUSTOMER, SYSTEM, CUSTOM_BOT or SUPERVISOR; more may come.",
            },
            "display_name": _TEXT_OR_NULL,
        },
        "additionalProperties": True,
    },
    "visibility": {
        "enum": ["AGENT", "CUSTOMER", "ALL", None],
        "description": "Who may see the item, as Connect states it; null when its record did not say, and then no "
        "audience-filtered destination receives it.",
    },
    "connect_type": {
        "type": "string",
        "minLength": 1,
        "description": "Connect's item Type (MESSAGE, EVENT, ATTACHMENT, ...).",
    },
    "content_type": {"type": ["string", "null"], "description": "Connect's ContentType."},
    "content": {"type": ["string", "null"], "maxLength": 16384, "description": "Connect's Content, as sent."},
}
_ITEM_EVENTS: dict[str, str] = {
    "chat.message": "A chat message (text/plain, text/markdown, application/json or an interactive message).",
    "chat.typing": "A participant is typing.",
    "chat.participant.joined": "A participant joined the chat.",
    "chat.participant.left": "A participant left the chat.",
    "chat.participant.idle": "A participant became idle.",
    "chat.participant.returned": "An idle participant returned.",
    "chat.participant.invited": "A participant was invited to the chat.",
    "chat.participant.auto_disconnected": "Connect disconnected an idle participant.",
    "chat.participant.display_name_updated": "A participant's display name changed.",
    "chat.transfer.succeeded": "The chat was transferred; later items carry a new contact_id.",
    "chat.transfer.failed": "A transfer of the chat failed.",
    "chat.ended": "The chat ended; the participant fields are null.",
    "chat.rehydrated": "A persistent chat was rehydrated from a previous contact.",
    "chat.receipt": "Read or delivery receipts for a message.",
    "chat.attachment": "A participant sent attachments. Connect streams metadata only; for a two-way chat (the relay "
    "holds its participant connection) each attachment also has `archive`: a pre-signed link to the relay's copy, or "
    "why there is none.",
    "chat.event": "A chat item of a Type or ContentType the catalogue does not name yet.",
}
_MESSAGE_FIELDS: Schema = {
    "interactive": {
        "type": ["object", "null"],
        "description": "Interactive content types only: Content parsed (templateType, data), null if it is not a "
        "JSON object.",
    },
    "json": {"description": "application/json only: Content parsed, null if it is not JSON."},
}
_MESSAGE_RULES: list[Schema] = [
    {
        "if": {
            "required": ["content_type"],
            "properties": {
                "content_type": {
                    "enum": [
                        "application/vnd.amazonaws.connect.message.interactive",
                        "application/vnd.amazonaws.connect.message.interactive.response",
                    ]
                }
            },
        },
        "then": {"required": ["interactive"]},
    },
    {
        "if": {"required": ["content_type"], "properties": {"content_type": {"const": "application/json"}}},
        "then": {"required": ["json"]},
    },
]
_ARCHIVED_COPY: Schema = {
    "type": "object",
    "description": "Two-way chats only: `copied` with a pre-signed GET link to the relay's copy (valid until "
    "expires_at); `rejected` (Connect's scan refused it), `pending` (not yet scanned), `failed` (the copy failed; the "
    "file stays in Connect) or `unavailable` (the chat ended before it could be copied).",
    "required": ["status"],
    "properties": {
        "status": {"enum": ["copied", "rejected", "pending", "failed", "unavailable"]},
        "url": {"type": "string", "minLength": 1},
        "expires_at": {"type": "string", "format": "date-time"},
        "size_bytes": _COUNT,
        "key": {"type": "string", "minLength": 1, "description": "The copy's key in the relay's bucket."},
    },
    "if": {"properties": {"status": {"const": "copied"}}},
    "then": {"required": ["url", "expires_at", "size_bytes", "key"]},
    "additionalProperties": False,
}
_ATTACHMENTS: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["attachment_id", "name", "content_type", "status"],
        "properties": {
            "attachment_id": {"type": "string", "minLength": 1},
            "name": _TEXT_OR_NULL,
            "content_type": _TEXT_OR_NULL,
            "status": {"type": ["string", "null"], "description": "APPROVED, REJECTED or IN_PROGRESS."},
            "archive": _ARCHIVED_COPY,
        },
        "additionalProperties": True,
    },
}
_RECEIPTS: Schema = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["message_id", "recipient_participant_id", "delivered_at", "read_at"],
        "properties": {
            "message_id": {"type": ["string", "null"], "description": "The item_id of the message receipted."},
            "recipient_participant_id": _TEXT_OR_NULL,
            "delivered_at": _TEXT_OR_NULL,
            "read_at": _TEXT_OR_NULL,
        },
        "additionalProperties": True,
    },
}
# Extra data fields, and Connect's item Type when the event type fixes it.
_ITEM_EXTRAS: dict[str, tuple[str | None, Schema]] = {
    "chat.message": ("MESSAGE", _MESSAGE_FIELDS),
    "chat.attachment": ("ATTACHMENT", {"attachments": _ATTACHMENTS}),
    "chat.receipt": (None, {"receipt_type": {"enum": ["read", "delivered", "metadata"]}, "receipts": _RECEIPTS}),
}

_SESSION_FIELDS: Schema = {
    "initial_contact_id": {**_CONTACT_ID, "description": "The session."},
    "instance_id": {"type": ["string", "null"], "description": "The Amazon Connect instance."},
}
_NULLABLE_TIME: Schema = {"type": ["string", "null"], "format": "date-time"}
_TRANSCRIPT_SUMMARY: Schema = {
    "type": "object",
    "required": [
        "participants",
        "message_counts",
        "items",
        "started_at",
        "ended_at",
        "duration_seconds",
        "transfers",
        "contact_ids",
    ],
    "properties": {
        "participants": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["id", "role", "display_name"],
                "properties": {"id": {"type": "string"}, "role": _TEXT_OR_NULL, "display_name": _TEXT_OR_NULL},
            },
        },
        "message_counts": {
            "type": "object",
            "additionalProperties": _COUNT,
            "description": "Messages by sender role.",
        },
        "items": {**_COUNT, "description": "Items in the transcript."},
        "started_at": _NULLABLE_TIME,
        "ended_at": _NULLABLE_TIME,
        "duration_seconds": {"type": ["number", "null"], "minimum": 0},
        "transfers": _COUNT,
        "contact_ids": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Every contact id of the session, in order.",
        },
    },
}
_TRANSCRIPT_COMPLETED: Schema = {
    **_SESSION_FIELDS,
    "version": {
        "type": "integer",
        "minimum": 1,
        "description": "The transcript's version: each later one replaces the earlier.",
    },
    "supersedes": {
        "type": ["integer", "null"],
        "minimum": 1,
        "description": "The version this one replaces (null for the first).",
    },
    "reason": {
        "enum": ["chat_ended", "late_items", "idle_sweep"],
        "description": "Why this version was made: the chat ended, items came after the previous version, or the "
        "session was idle for SESSION_IDLE_SECONDS without its chat.ended.",
    },
    "closed_by": {
        "enum": ["chat_ended", "sweep"],
        "description": "What closed the session: its chat.ended, or the sweep of idle sessions (no chat.ended came; "
        "a later one makes a new version closed by chat_ended).",
    },
    "transcript": {
        "type": "object",
        "required": ["url", "markdown_url", "expires_at"],
        "properties": {
            "url": {"type": "string", "description": "Pre-signed GET of the JSON transcript (Connect's shape)."},
            "markdown_url": {"type": "string", "description": "Pre-signed GET of the Markdown rendition."},
            "expires_at": {"type": "string", "format": "date-time", "description": "When both links stop working."},
        },
    },
    "summary": _TRANSCRIPT_SUMMARY,
}
_ITEM_IDS: Schema = {"type": "array", "items": _CONTACT_ID}
_TRANSCRIPT_RECONCILED: Schema = {
    "initial_contact_id": _SESSION_FIELDS["initial_contact_id"],
    "contact_ids": {
        **_ITEM_IDS,
        "description": "The contacts whose transcripts were compared (one per transfer segment).",
    },
    "instance_id": _SESSION_FIELDS["instance_id"],
    "counts": {
        "type": "object",
        "required": ["recorded", "streamed", "recovered", "only_in_stream", "unreadable"],
        "properties": {
            "recorded": {**_COUNT, "description": "Distinct items in Connect's transcripts."},
            "streamed": {**_COUNT, "description": "Distinct items the stream delivered to the archive."},
            "recovered": {
                **_COUNT,
                "description": "Items Connect recorded that the stream never delivered: delivered now.",
            },
            "only_in_stream": {
                **_COUNT,
                "description": "Items only the stream had (typing, receipts): normal, left alone.",
            },
            "unreadable": {
                **_COUNT,
                "description": "Transcript entries that are not usable chat items: the transcript object is kept "
                "for inspection.",
            },
        },
        "additionalProperties": True,
    },
    "recovered_item_ids": {**_ITEM_IDS, "description": "The recovered items' ids, in AbsoluteTime order."},
}
_CALL_STARTED: Schema = {
    "contact_id": _CONTACT_ID,
    "participant_id": _CONTACT_ID,
    "display_name": _CONTACT_ID,
    "instance_id": {"type": "string", "minLength": 1, "maxLength": 100},
    "allowed_capabilities": {
        "type": ["object", "null"],
        "description": "StartWebRTCContact's AllowedCapabilities ({Customer, Agent} of {Video, ScreenShare}), or null.",
    },
    "flow": {"type": "string", "minLength": 1, "description": "The name of the configured contact flow the call runs."},
}
_SESSION_EVENTS: dict[str, tuple[str, str, Schema]] = {
    "chat.transcript.completed": (
        "A chat session's transcript was assembled (or assembled again, as a new version, after late items; or "
        "closed by the sweep of idle sessions). Carries a pre-signed link and a summary, never the transcript itself.",
        "When this version was assembled.",
        _TRANSCRIPT_COMPLETED,
    ),
    "chat.transcript.reconciled": (
        "A chat session was compared with the transcripts Connect recorded of it; items Connect had and the relay "
        "had not delivered were delivered (as their own events, data.recovered true, the same webhook-id the stream "
        "would have given them) before this event.",
        "When the comparison ran.",
        _TRANSCRIPT_RECONCILED,
    ),
}


def _event(event_type: str, description: str, timestamp: str, data: Schema) -> Schema:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:connect-chat-relay:event:{event_type}:1",
        "title": event_type,
        "description": description,
        "type": "object",
        "required": ["type", "timestamp", "version", "data"],
        "properties": {
            "type": {"const": event_type},
            "timestamp": {"type": "string", "format": "date-time", "description": timestamp},
            "version": {"const": 1},
            "data": data,
        },
        "additionalProperties": False,
    }


def _data(fields: Schema, *, description: str = _DATA_NOTE, **rules: Any) -> Schema:
    data: Schema = {"type": "object", "description": description, "required": list(fields), "properties": fields}
    if "propertyNames" in rules:
        data["propertyNames"] = rules.pop("propertyNames")
    data["additionalProperties"] = True
    data.update(rules)
    return data


def _item_event(event_type: str) -> Schema:
    connect_type, extras = _ITEM_EXTRAS.get(event_type, (None, {}))
    fields = dict(_ITEM_FIELDS)
    if connect_type is not None:
        fields["connect_type"] = {"const": connect_type, "description": _ITEM_FIELDS["connect_type"]["description"]}
    data = _data({**fields, **extras})
    if event_type == "chat.message":
        data["required"] = list(_ITEM_FIELDS)  # interactive and json are required only by the rules below
        data["allOf"] = _MESSAGE_RULES
    return _event(event_type, _ITEM_EVENTS[event_type], _ITEM_TIME, data)


def event_schemas() -> dict[str, Schema]:
    """Every event type's JSON Schema, in the catalogue's order."""
    schemas: dict[str, Schema] = {}
    for event_type in EVENT_TYPES:
        if event_type in _ITEM_EVENTS:
            schemas[event_type] = _item_event(event_type)
        elif event_type in _SESSION_EVENTS:
            description, timestamp, fields = _SESSION_EVENTS[event_type]
            schemas[event_type] = _event(event_type, description, timestamp, _data(fields))
        elif event_type == "call.started":
            data = _data(
                _CALL_STARTED,
                description=_DATA_NOTE + " No participant or join token is ever sent.",
                propertyNames={"not": {"pattern": "[Tt][Oo][Kk][Ee][Nn]"}},
            )
            schemas[event_type] = _event(event_type, "A WebRTC call (StartWebRTCContact) started.", _ITEM_TIME, data)
        else:
            raise SystemExit(f"{event_type}: no schema source in scripts/openapi.py")
    return schemas


def _webhook(event_type: str, schema: Schema) -> Schema:
    return {
        "post": {
            "operationId": "event_" + event_type.replace(".", "_"),
            "summary": event_type,
            "description": schema["description"],
            "security": [],
            "parameters": [
                {"$ref": "#/components/parameters/WebhookId"},
                {"$ref": "#/components/parameters/WebhookTimestamp"},
                {"$ref": "#/components/parameters/WebhookSignature"},
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{event_type}"}}},
            },
            "responses": {
                "2XX": {"description": "Accepted. Anything else is retried with backoff, Retry-After respected."},
                "410": {"description": "Gone: the relay stops delivering to this endpoint."},
            },
        }
    }


def openapi_document(schemas: dict[str, Schema]) -> Schema:
    """The OpenAPI document: the routes' part from ``openapi_base.json``, the events from their schemas."""
    document: Schema = json.loads(BASE_FILE.read_text(encoding="utf-8"))
    components = document.pop("components")
    document["webhooks"] = {event_type: _webhook(event_type, schema) for event_type, schema in schemas.items()}
    bodies = {name: json_schema(body_type) for name, body_type in REQUEST_TYPES.items()}
    components["schemas"] = {**components["schemas"], **bodies, **schemas}
    document["components"] = components
    return document


def rendered() -> dict[Path, str]:
    """Every generated file and the text this script writes into it."""
    schemas = event_schemas()
    files = {
        SCHEMA_DIR / f"{event_type}.schema.json": json.dumps(schema, indent=2) + "\n"
        for event_type, schema in schemas.items()
    }
    files[OPENAPI_FILE] = json.dumps(openapi_document(schemas), indent=2, ensure_ascii=False) + "\n"
    return files


def main() -> int:
    files = rendered()
    changed = 0
    for stale in set(SCHEMA_DIR.glob("*.schema.json")) - set(files):
        stale.unlink()
        print(f"removed {stale}")
        changed += 1
    for path, text in files.items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
            changed += 1
    print(f"make openapi: {len(files)} files, {changed} changed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
