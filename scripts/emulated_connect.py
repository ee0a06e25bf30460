"""An emulated Amazon Connect for the demo and the integration tests: a real HTTP server on 127.0.0.1.

moto implements none of Connect's streaming calls, so this speaks Connect's REST-JSON protocol for the four the
relay makes (StartContactStreaming, StopContactStreaming, StartChatContact, StartWebRTCContact). boto3 reaches it
through ``AWS_ENDPOINT_URL_CONNECT``, exactly as the relay's code runs in Lambda. Like Connect, it publishes a
chat's items to the streaming topic only once streaming has started for the chat, and at most to two topics. Like
Connect, it answers a repeated ClientToken with its first answer, even when that stream has been stopped since.

The same server is the Participant Service (``AWS_ENDPOINT_URL_CONNECTPARTICIPANT``): CreateParticipantConnection
with a chat's participant token, then SendMessage, SendEvent, StartAttachmentUpload (its pre-signed URL is this
server's ``/upload/<id>``), CompleteAttachmentUpload, GetAttachment (``/download/<id>``), GetTranscript and
DisconnectParticipant with the connection token, as ``X-Amz-Bearer``. What the customer sends becomes a chat item,
in the transcript and on the stream, like every other item. Errors carry Connect's codes and statuses.

Tests can make it fail calls (:meth:`EmulatedConnect.fail`) and act while a call is in flight
(:meth:`EmulatedConnect.during`), to race another path of the relay against it.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

MAX_STREAMING_ENDPOINTS = 2
MAX_MESSAGE_BYTES = 16_384
MAX_ATTACHMENT_BYTES = 20 * 1024 * 1024
CONNECTION_SECONDS = 3_600
MESSAGE_TYPES = (
    "text/plain",
    "text/markdown",
    "application/json",
    "application/vnd.amazonaws.connect.message.interactive.response",
)
EVENT_PREFIX = "application/vnd.amazonaws.connect.event."
EVENT_TYPES = tuple(
    EVENT_PREFIX + suffix for suffix in ("typing", "message.read", "message.delivered", "connection.acknowledged")
)
PARTICIPANT_ROUTES = {
    "/participant/connection": "create_participant_connection",
    "/participant/message": "send_message",
    "/participant/event": "send_event",
    "/participant/start-attachment-upload": "start_attachment_upload",
    "/participant/complete-attachment-upload": "complete_attachment_upload",
    "/participant/attachment": "get_attachment",
    "/participant/transcript": "get_transcript",
    "/participant/disconnect": "disconnect_participant",
}


@dataclass
class Participant:
    """The customer of a chat, as the Participant Service knows them by their participant token."""

    contact_id: str
    participant_id: str
    display_name: str
    connected: bool = False
    left: bool = False


@dataclass
class Upload:
    """An attachment between StartAttachmentUpload and GetAttachment."""

    attachment_id: str
    contact_id: str
    name: str
    content_type: str
    size: int
    data: bytes | None = None
    status: str = "IN_PROGRESS"


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch)) + f".{int(epoch * 1000) % 1000:03d}Z"


@dataclass
class Chat:
    """One chat session as Connect holds it."""

    initial_contact_id: str
    instance_id: str
    topics: dict[str, str] = field(default_factory=dict)  # topic ARN -> StreamingId
    tokens: dict[str, str] = field(default_factory=dict)  # ClientToken -> StreamingId
    ended: bool = False


class ConnectError(Exception):
    """An error answer: Connect's code, HTTP status and message."""

    def __init__(self, code: str, status: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class EmulatedConnect:
    """Connect's state, its four calls, and the stream publisher."""

    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.chats: dict[str, Chat] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.dropped: list[dict[str, Any]] = []
        self._tokens: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._during: dict[str, Callable[[dict[str, Any], dict[str, Any]], None]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self.url = ""
        self.participants: dict[str, Participant] = {}  # participant token -> participant
        self.connections: dict[str, tuple[str, float]] = {}  # connection token -> (participant token, expiry)
        self.transcripts: dict[str, list[dict[str, Any]]] = {}  # initial contact id -> items, oldest first
        self.uploads: dict[str, Upload] = {}
        # Connect's attachment scan (a Lambda the instance may configure): APPROVED or REJECTED.
        self.scan: Callable[[str, bytes], str] = lambda name, data: "APPROVED"
        self._failures: dict[str, list[ConnectError]] = {}
        # The instance's CHAT_TRANSCRIPTS storage, (bucket, prefix): where a chat's transcripts go when it ends.
        self.transcript_storage: tuple[str, str] | None = None

    # -- the chat's life, driven by the demo ---------------------------------------------------------------
    def open_chat(self, instance_id: str, contact_id: str | None = None) -> str:
        """A customer starts a chat (the hosted widget, say): Connect creates its contact."""
        contact_id = contact_id or str(uuid.uuid4())
        with self._lock:
            self.chats[contact_id] = Chat(initial_contact_id=contact_id, instance_id=instance_id)
        return contact_id

    def end_chat(self, initial_contact_id: str) -> list[str]:
        """The chat ends: its streams stop by themselves, and with transcript storage configured Connect writes one
        transcript per contact of the chat to S3. Returns the keys written."""
        with self._lock:
            chat = self.chats[initial_contact_id]
            chat.ended = True
            items = list(self.transcripts.get(initial_contact_id, []))
        if self.transcript_storage is None:
            return []
        return self._write_transcripts(chat, items, *self.transcript_storage)

    def _write_transcripts(self, chat: Chat, items: list[dict[str, Any]], bucket: str, prefix: str) -> list[str]:
        """Connect's transcript objects: typing and receipts left out, contact ids named once per document."""
        by_contact: dict[str, list[dict[str, Any]]] = {}
        for item in items:
            if item.get("ContentType") not in EVENT_TYPES:
                by_contact.setdefault(item["ContactId"], []).append(item)
        s3 = boto3.client("s3", region_name=self.region)
        now = time.gmtime()
        keys = []
        for contact_id, contact_items in by_contact.items():
            participants = dict.fromkeys(i["ParticipantId"] for i in contact_items if i.get("ParticipantId"))
            document = {
                "Version": "2019-08-26",
                "AWSAccountId": "111122223333",
                "InstanceId": chat.instance_id,
                "InitialContactId": chat.initial_contact_id,
                "ContactId": contact_id,
                "Participants": [{"ParticipantId": participant} for participant in participants],
                "Transcript": [
                    {k: v for k, v in i.items() if k not in {"InitialContactId", "ContactId"}} for i in contact_items
                ],
            }
            key = f"{prefix}{time.strftime('%Y/%m/%d', now)}/{contact_id}_{time.strftime('%Y%m%dT%H:%M', now)}_UTC.json"
            s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(document).encode())
            keys.append(key)
        return keys

    def publish(self, item: dict[str, Any], *, visibility: str = "ALL") -> bool:
        """Publish a chat item to every topic the chat streams to, with Connect's message attributes.

        Returns False when no stream is on yet: Connect never publishes items sent before streaming started.
        """
        chat = self.chats[item["InitialContactId"]]
        self.transcripts.setdefault(chat.initial_contact_id, []).append(item)
        if not chat.topics:
            self.dropped.append(item)
            return False
        attributes = {
            "InitialContactId": item["InitialContactId"],
            "ContactId": item["ContactId"],
            "InstanceId": chat.instance_id,
            "AccountId": "111122223333",
            "Type": item["Type"],
            "ContentType": item.get("ContentType", ""),
            "MessageVisibility": visibility,
        }
        if item.get("ParticipantRole"):
            attributes["ParticipantRole"] = item["ParticipantRole"]
        sns = boto3.client("sns", region_name=self.region)
        for topic in chat.topics:
            sns.publish(
                TopicArn=topic,
                Message=json.dumps(item, separators=(",", ":")),
                MessageAttributes={k: {"DataType": "String", "StringValue": v} for k, v in attributes.items() if v},
            )
        return True

    # -- what tests make happen -----------------------------------------------------------------------------
    def during(self, operation: str, action: Callable[[dict[str, Any], dict[str, Any]], None]) -> None:
        """Once, when ``operation`` has acted and before it answers, run ``action(request, answer)``: what happens
        elsewhere while the caller still waits for Connect."""
        with self._lock:
            self._during[operation] = action

    # -- the API ---------------------------------------------------------------------------------------------
    def call(self, operation: str, body: dict[str, Any], bearer: str | None = None) -> dict[str, Any]:
        """Answer one API call (or raise ConnectError); ``bearer`` is the Participant Service's X-Amz-Bearer."""
        with self._lock:
            self.calls.append((operation, body))
            if self._failures.get(operation):
                raise self._failures[operation].pop(0)
            token = body.get("ClientToken")
            # A participant's ClientTokens are theirs: the same token from another chat is another request.
            scope = self._scope(bearer)
            answer: dict[str, Any] | None = self._tokens.get((operation, scope, token)) if token else None
            if answer is None:  # else Connect answers a repeated ClientToken with its first answer
                handler = getattr(self, "_" + operation)
                answer = handler(body, bearer) if operation in PARTICIPANT_ROUTES.values() else handler(body)
                if token:
                    self._tokens[(operation, scope, token)] = answer
            action = self._during.pop(operation, None)
        if action is not None:
            action(body, answer)
        return answer

    def fail(self, operation: str, code: str, status: int, message: str, *, times: int = 1) -> None:
        """The next ``times`` calls of an operation answer this error, as Connect would."""
        with self._lock:
            self._failures.setdefault(operation, []).extend(ConnectError(code, status, message) for _ in range(times))

    def expire_connections(self, contact_id: str) -> None:
        """Every connection token of the chat's customer expires now (they can be renewed with the participant's)."""
        with self._lock:
            for connection, (participant_token, _expiry) in list(self.connections.items()):
                if self.participants[participant_token].contact_id == contact_id:
                    self.connections[connection] = (participant_token, 0.0)

    def upload(self, attachment_id: str, data: bytes, content_type: str) -> int:
        """Connect's storage receiving a PUT to an upload URL; returns the HTTP status."""
        with self._lock:
            upload = self.uploads.get(attachment_id)
            if upload is None or upload.data is not None:
                return 403
            if content_type != upload.content_type or len(data) != upload.size:
                return 400  # the pre-signed URL signed the content type; Connect checks the size at completion
            upload.data = data
            return 200

    def download(self, attachment_id: str) -> bytes | None:
        """Connect's storage answering a GET of a download URL."""
        upload = self.uploads.get(attachment_id)
        return upload.data if upload is not None and upload.status == "APPROVED" else None

    def _chat(self, body: dict[str, Any]) -> Chat:
        chat = self.chats.get(body.get("ContactId", ""))
        if chat is None or chat.instance_id != body.get("InstanceId"):
            raise ConnectError("ResourceNotFoundException", 404, "Contact not found")
        if chat.ended:
            raise ConnectError("InvalidRequestException", 400, "The contact has already ended")
        return chat

    def _start_contact_streaming(self, body: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(body)
        topic = body["ChatStreamingConfiguration"]["StreamingEndpointArn"]
        if topic in chat.topics:
            return {"StreamingId": chat.topics[topic]}
        if len(chat.topics) >= MAX_STREAMING_ENDPOINTS:
            raise ConnectError("LimitExceededException", 429, "The contact already has 2 streaming endpoints")
        chat.topics[topic] = str(uuid.uuid4())
        return {"StreamingId": chat.topics[topic]}

    def _stop_contact_streaming(self, body: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(body)
        for topic, streaming_id in list(chat.topics.items()):
            if streaming_id == body.get("StreamingId"):
                del chat.topics[topic]
                return {}
        raise ConnectError("ResourceNotFoundException", 404, "Streaming not found")

    def _start_chat_contact(self, body: dict[str, Any]) -> dict[str, Any]:
        contact_id = str(uuid.uuid4())
        chat = Chat(initial_contact_id=contact_id, instance_id=body["InstanceId"])
        self.chats[contact_id] = chat
        answer: dict[str, Any] = {
            "ContactId": contact_id,
            "ParticipantId": str(uuid.uuid4()),
            "ParticipantToken": "emulated-participant-token-" + uuid.uuid4().hex,
        }
        streaming = body.get("ChatStreamingConfiguration")
        if streaming:
            chat.topics[streaming["StreamingEndpointArn"]] = answer["StreamingId"] = str(uuid.uuid4())
        self.participants[answer["ParticipantToken"]] = Participant(
            contact_id=contact_id,
            participant_id=answer["ParticipantId"],
            display_name=body.get("ParticipantDetails", {}).get("DisplayName", "Customer"),
        )
        return answer

    def _start_web_rtc_contact(self, body: dict[str, Any]) -> dict[str, Any]:
        meeting_id = str(uuid.uuid4())
        media = f"https://emulated.chime.{self.region}.example"
        return {
            "ConnectionData": {
                "Attendee": {"AttendeeId": str(uuid.uuid4()), "JoinToken": "emulated-join-token-" + uuid.uuid4().hex},
                "Meeting": {
                    "MediaRegion": self.region,
                    "MediaPlacement": {
                        "AudioHostUrl": f"{media}/audio",
                        "AudioFallbackUrl": f"{media}/fallback",
                        "SignalingUrl": f"{media}/signal",
                        "TurnControlUrl": f"{media}/turn",
                        "EventIngestionUrl": f"{media}/events",
                    },
                    "MeetingFeatures": {"Audio": {"EchoReduction": "AVAILABLE"}},
                    "MeetingId": meeting_id,
                },
            },
            "ContactId": str(uuid.uuid4()),
            "ParticipantId": str(uuid.uuid4()),
            "ParticipantToken": "emulated-participant-token-" + uuid.uuid4().hex,
        }

    # -- the Participant Service -------------------------------------------------------------------------------
    def _scope(self, bearer: str | None) -> str:
        if bearer is None:
            return ""
        connection = self.connections.get(bearer)
        return connection[0] if connection is not None else bearer

    def _customer(self, bearer: str | None) -> tuple[Participant, Chat]:
        """The participant a connection token belongs to; AccessDenied when it expired, or the chat is over."""
        connection = self.connections.get(bearer or "")
        if connection is None or connection[1] <= time.time():
            raise ConnectError(
                "AccessDeniedException", 403, "You do not have sufficient access to perform this action."
            )
        participant = self.participants[connection[0]]
        chat = self.chats[participant.contact_id]
        if participant.left or chat.ended:
            raise ConnectError(
                "AccessDeniedException", 403, "You do not have sufficient access to perform this action."
            )
        return participant, chat

    def _customer_item(self, participant: Participant, **fields: Any) -> dict[str, Any]:
        item = chat_item(
            participant.contact_id,
            participant=(participant.participant_id, "CUSTOMER", participant.display_name),
            **fields,
        )
        self.publish(item)
        return item

    def _create_participant_connection(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant = self.participants.get(bearer or "")
        if participant is None or participant.left or self.chats[participant.contact_id].ended:
            raise ConnectError(
                "AccessDeniedException", 403, "You do not have sufficient access to perform this action."
            )
        if "CONNECTION_CREDENTIALS" not in (body.get("Type") or []):
            raise ConnectError("ValidationException", 400, "Type must include CONNECTION_CREDENTIALS here")
        participant.connected = participant.connected or bool(body.get("ConnectParticipant"))
        token = "emulated-connection-token-" + uuid.uuid4().hex
        expiry = time.time() + CONNECTION_SECONDS
        self.connections[token] = (bearer or "", expiry)
        return {"ConnectionCredentials": {"ConnectionToken": token, "Expiry": _iso(expiry)}}

    def _send_message(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        content_type, content = body.get("ContentType"), body.get("Content") or ""
        if content_type not in MESSAGE_TYPES:
            raise ConnectError("ValidationException", 400, f"Unsupported content type {content_type}")
        if not content or len(content.encode()) > MAX_MESSAGE_BYTES:
            raise ConnectError("ValidationException", 400, "Content is empty or too long")
        item = self._customer_item(participant, type_="MESSAGE", content_type=content_type, content=content)
        return {"Id": item["Id"], "AbsoluteTime": item["AbsoluteTime"]}

    def _send_event(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        content_type = body.get("ContentType")
        if content_type not in EVENT_TYPES:
            raise ConnectError("ValidationException", 400, f"Unsupported content type {content_type}")
        extra: dict[str, Any] = {}
        if content_type in (EVENT_PREFIX + "message.read", EVENT_PREFIX + "message.delivered"):
            try:
                message_id = json.loads(body.get("Content") or "")["messageId"]
            except (ValueError, KeyError, TypeError):
                raise ConnectError("ValidationException", 400, "Content must name the messageId") from None
            moment = "ReadTimestamp" if content_type.endswith("read") else "DeliveredTimestamp"
            extra["MessageMetadata"] = {
                "MessageId": message_id,
                "Receipts": [{moment: _iso(time.time()), "RecipientParticipantId": participant.participant_id}],
            }
        item = self._customer_item(participant, type_="EVENT", content_type=content_type, **extra)
        return {"Id": item["Id"], "AbsoluteTime": item["AbsoluteTime"]}

    def _start_attachment_upload(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        size = int(body.get("AttachmentSizeInBytes") or 0)
        if not 0 < size <= MAX_ATTACHMENT_BYTES:
            raise ConnectError("ValidationException", 400, "Attachment size is out of bounds")
        upload = Upload(
            attachment_id=str(uuid.uuid4()),
            contact_id=participant.contact_id,
            name=body["AttachmentName"],
            content_type=body["ContentType"],
            size=size,
        )
        self.uploads[upload.attachment_id] = upload
        return {
            "AttachmentId": upload.attachment_id,
            "UploadMetadata": {
                "Url": f"{self.url}/upload/{upload.attachment_id}",
                "UrlExpiry": _iso(time.time() + 300),
                "HeadersToInclude": {"Content-Type": upload.content_type},
            },
        }

    def _complete_attachment_upload(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        for attachment_id in body.get("AttachmentIds") or []:
            upload = self.uploads.get(attachment_id)
            if upload is None or upload.contact_id != participant.contact_id or upload.data is None:
                raise ConnectError("ValidationException", 400, "The attachment was not uploaded")
            if upload.status != "IN_PROGRESS":
                raise ConnectError("ConflictException", 409, "The attachment upload is already complete")
            upload.status = self.scan(upload.name, upload.data)
            attachment = {
                "AttachmentId": upload.attachment_id,
                "AttachmentName": upload.name,
                "ContentType": upload.content_type,
                "Status": upload.status,
            }
            self._customer_item(
                participant, type_="ATTACHMENT", content_type=upload.content_type, Attachments=[attachment]
            )
        return {}

    def _get_attachment(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        upload = self.uploads.get(body.get("AttachmentId", ""))
        if upload is None or upload.contact_id != participant.contact_id:
            raise ConnectError("ValidationException", 400, "No such attachment")
        if upload.status != "APPROVED":
            raise ConnectError("ValidationException", 400, "The attachment is not available")
        return {
            "Url": f"{self.url}/download/{upload.attachment_id}",
            "UrlExpiry": _iso(time.time() + int(body.get("UrlExpiryInSeconds") or 300)),
            "AttachmentSizeInBytes": upload.size,
        }

    def _get_transcript(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        _participant, chat = self._customer(bearer)
        items = list(self.transcripts.get(chat.initial_contact_id, []))
        if body.get("SortOrder") == "DESCENDING":
            items.reverse()
        start = int(body.get("NextToken") or 0)
        size = int(body.get("MaxResults") or 15)
        answer: dict[str, Any] = {
            "InitialContactId": chat.initial_contact_id,
            "Transcript": items[start : start + size],
        }
        if start + size < len(items):
            answer["NextToken"] = str(start + size)
        return answer

    def _disconnect_participant(self, body: dict[str, Any], bearer: str | None) -> dict[str, Any]:
        participant, _chat = self._customer(bearer)
        self._customer_item(participant, type_="EVENT", content_type=EVENT_PREFIX + "participant.left")
        participant.left = True
        return {}

    # -- the HTTP server -------------------------------------------------------------------------------------
    def start(self) -> str:
        """Serve on an ephemeral port of 127.0.0.1; returns the endpoint URL."""
        emulated = self
        routes = {
            ("POST", "/contact/start-streaming"): "start_contact_streaming",
            ("POST", "/contact/stop-streaming"): "stop_contact_streaming",
            ("PUT", "/contact/chat"): "start_chat_contact",
            ("PUT", "/contact/webrtc"): "start_web_rtc_contact",
        }

        routes.update({("POST", path): operation for path, operation in PARTICIPANT_ROUTES.items()})

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                path = self.path.split("?")[0]
                if path.startswith("/upload/") and self.command == "PUT":
                    status = emulated.upload(path.removeprefix("/upload/"), raw, self.headers.get("Content-Type", ""))
                    self._send(status, b"", "application/xml", {})
                    return
                if path.startswith("/download/") and self.command == "GET":
                    data = emulated.download(path.removeprefix("/download/"))
                    self._send(200 if data is not None else 403, data or b"", "application/octet-stream", {})
                    return
                operation = routes.get((self.command, path))
                try:
                    if operation is None:
                        raise ConnectError("UnknownOperationException", 404, f"{self.command} {self.path}")
                    body = json.loads(raw or b"{}")
                    answer = emulated.call(operation, body, self.headers.get("X-Amz-Bearer"))
                    status, headers = 200, {}
                except ConnectError as exc:
                    status, answer = exc.status, {"Message": exc.args[0]}
                    headers = {"x-amzn-ErrorType": exc.code}
                self._send(status, json.dumps(answer).encode(), "application/json", headers)

            def _send(self, status: int, payload: bytes, content_type: str, headers: dict[str, str]) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = do_GET = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="emulated-connect").start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self.url

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


def absolute_time(moment: float) -> str:
    """Connect's AbsoluteTime for ``moment`` (seconds since the epoch), to the millisecond.

    One reading of the clock for both the seconds and the milliseconds: two readings straddling a second's end
    wrote an item nearly a second before the one streamed just ahead of it.
    """
    millis = int(moment * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(millis // 1000)) + f".{millis % 1000:03d}Z"


def chat_item(
    initial_contact_id: str,
    *,
    type_: str,
    content_type: str,
    contact_id: str | None = None,
    content: str | None = None,
    participant: tuple[str, str, str] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A chat item in Connect's shape; ``participant`` is (id, role, display name)."""
    item: dict[str, Any] = {
        "AbsoluteTime": absolute_time(time.time()),
        "ContentType": content_type,
        "Id": str(uuid.uuid4()),
        "Type": type_,
        "InitialContactId": initial_contact_id,
        "ContactId": contact_id or initial_contact_id,
        **extra,
    }
    if content is not None:
        item["Content"] = content
    if participant:
        item["ParticipantId"], item["ParticipantRole"], item["DisplayName"] = participant
    return item
