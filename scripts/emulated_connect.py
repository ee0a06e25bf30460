"""An emulated Amazon Connect for the demo and the integration tests: a real HTTP server on 127.0.0.1.

moto implements none of Connect's streaming calls, so this speaks Connect's REST-JSON protocol for the four the
relay makes (StartContactStreaming, StopContactStreaming, StartChatContact, StartWebRTCContact). boto3 reaches it
through ``AWS_ENDPOINT_URL_CONNECT``, exactly as the relay's code runs in Lambda. Like Connect, it publishes a
chat's items to the streaming topic only once streaming has started for the chat, and at most to two topics.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import boto3

MAX_STREAMING_ENDPOINTS = 2


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
        self._tokens: dict[str, tuple[str, dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- the chat's life, driven by the demo ---------------------------------------------------------------
    def open_chat(self, instance_id: str, contact_id: str | None = None) -> str:
        """A customer starts a chat (the hosted widget, say): Connect creates its contact."""
        contact_id = contact_id or str(uuid.uuid4())
        with self._lock:
            self.chats[contact_id] = Chat(initial_contact_id=contact_id, instance_id=instance_id)
        return contact_id

    def end_chat(self, initial_contact_id: str) -> None:
        """The chat ends: its streams stop by themselves."""
        with self._lock:
            self.chats[initial_contact_id].ended = True

    def publish(self, item: dict[str, Any], *, visibility: str = "ALL") -> bool:
        """Publish a chat item to every topic the chat streams to, with Connect's message attributes.

        Returns False when no stream is on yet: Connect never publishes items sent before streaming started.
        """
        chat = self.chats[item["InitialContactId"]]
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

    # -- the API ---------------------------------------------------------------------------------------------
    def call(self, operation: str, body: dict[str, Any]) -> dict[str, Any]:
        """Answer one API call (or raise ConnectError)."""
        with self._lock:
            self.calls.append((operation, body))
            token = body.get("ClientToken")
            kept = self._tokens.get(token) if token else None
            if kept is not None and kept[0] == operation:
                return kept[1]  # Connect answers a repeated ClientToken with its first answer.
            answer: dict[str, Any] = getattr(self, "_" + operation)(body)
            if token:
                self._tokens[token] = (operation, answer)
            return answer

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

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                operation = routes.get((self.command, self.path.split("?")[0]))
                try:
                    if operation is None:
                        raise ConnectError("UnknownOperationException", 404, f"{self.command} {self.path}")
                    status, answer, headers = 200, emulated.call(operation, body), {}
                except ConnectError as exc:
                    status, answer = exc.status, {"Message": exc.args[0]}
                    headers = {"x-amzn-ErrorType": exc.code}
                payload = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)

            do_POST = do_PUT = _answer

            def log_message(self, format: str, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True, name="emulated-connect").start()
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        """Stop serving."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


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
        "AbsoluteTime": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{int(time.time() * 1000) % 1000:03d}Z",
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
