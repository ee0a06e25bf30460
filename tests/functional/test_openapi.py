"""The checked-in OpenAPI 3.1 document: valid, complete, in step with the event schemas, and true to the answers.

:class:`OpenAPIContract` checks a real answer of the test client against the document; the contact routes' tests
run every answer through it too.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from functools import cache
from typing import Any

import pytest
from botocore.stub import Stubber
from chalice.test import Client
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate as validate_openapi
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from app import app
from chalicelib import dependencies
from chalicelib.events import EVENT_TYPES, SCHEMA_DIR
from chalicelib.handlers.docs import OPENAPI_FILE
from chalicelib.streaming import client_token_for
from tests.conftest import INSTANCE_ID, PROJECT, TOPIC_ARN, load_event
from tests.fakes import RecordingRelay

DOCUMENT_URI = "urn:connect-chat-relay:openapi"
FIRST = "a1b2c3d4-0000-4000-8000-000000000001"
HTTP_METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@cache
def document() -> dict[str, Any]:
    """The checked-in document (callers must not change it)."""
    loaded: dict[str, Any] = json.loads(OPENAPI_FILE.read_text(encoding="utf-8"))
    return loaded


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1")


class OpenAPIContract:
    """Checks an answer (status, required headers, JSON body) against the document's description of it."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        self.registry: Registry[Any] = Registry().with_resource(DOCUMENT_URI, DRAFT202012.create_resource(spec))
        self.templates: list[tuple[re.Pattern[str], str]] = [
            (re.compile("^" + re.sub(r"\{[^}]+\}", "[^/]+", path) + "$"), path) for path in spec["paths"]
        ]

    def template(self, path: str) -> str:
        """The document's path template for a concrete path."""
        bare = path.split("?", 1)[0]
        matches = [template for pattern, template in self.templates if pattern.match(bare)]
        assert matches, f"{path} is not in the OpenAPI document"
        return matches[0]

    def check(self, method: str, path: str, response: Any) -> None:
        """Fail unless the document describes this answer exactly enough to validate it."""
        template = self.template(path)
        operation = self.spec["paths"][template].get(method.lower())
        assert operation is not None, f"{method} {template} is not in the OpenAPI document"
        status = str(response.status_code)
        assert status in operation["responses"], f"{method} {template} does not document {status}"
        pointer = f"/paths/{_escape(template)}/{method.lower()}/responses/{status}"
        described = operation["responses"][status]
        if "$ref" in described:
            pointer = described["$ref"].removeprefix("#")
            described = self.resolve(pointer)
        headers = {name.lower(): value for name, value in response.headers.items()}
        for name, header in described.get("headers", {}).items():
            header_spec = self.resolve(header["$ref"].removeprefix("#")) if "$ref" in header else header
            value = headers.get(name.lower())
            if header_spec.get("required"):
                assert value is not None, f"{method} {template} {status} lacks the {name} header"
            if value is not None:
                self.validate(value, header_spec["schema"])
        content = described.get("content")
        if content is None:
            assert not response.body, f"{method} {template} {status} has an undocumented body"
            return
        schema_pointer = f"{pointer}/content/application~1json/schema"
        self.validate(json.loads(response.body), {"$ref": f"{DOCUMENT_URI}#{schema_pointer}"})

    def resolve(self, pointer: str) -> Any:
        """The document's node at a JSON pointer."""
        node: Any = self.spec
        for segment in pointer.lstrip("/").split("/"):
            node = node[segment.replace("~1", "/").replace("~0", "~")]
        return node

    def validate(self, instance: Any, schema: Mapping[str, Any]) -> None:
        """Validate against a schema whose references point into the document."""
        Draft202012Validator(schema, registry=self.registry).validate(instance)

    def component_schema(self, name: str) -> dict[str, Any]:
        """A schema of ``components.schemas`` as a reference into the document."""
        return {"$ref": f"{DOCUMENT_URI}#/components/schemas/{_escape(name)}"}


@cache
def contract() -> OpenAPIContract:
    """The contract built from the checked-in document."""
    return OpenAPIContract(document())


class CheckedHTTP:
    """The test client's HTTP side, checking every answer against the OpenAPI document."""

    def __init__(self, http: Any) -> None:
        self._http = http

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        contract().check(method, path, response)
        return response

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)

    def options(self, path: str, **kwargs: Any) -> Any:
        return self.request("OPTIONS", path, **kwargs)


@pytest.fixture
def http(aws: None) -> Iterator[CheckedHTTP]:
    with Client(app, stage_name="dev", project_dir=str(PROJECT)) as test_client:
        yield CheckedHTTP(test_client.http)


class TestTheDocument:
    def test_it_is_valid_openapi_3_1(self) -> None:
        assert document()["openapi"].startswith("3.1.")
        validate_openapi(document())

    def test_every_component_schema_is_a_valid_json_schema(self) -> None:
        for name, schema in document()["components"]["schemas"].items():
            try:
                Draft202012Validator.check_schema(schema)
            except Exception as exc:  # pragma: no cover - the message names the schema at fault
                pytest.fail(f"components.schemas.{name}: {exc}")

    def test_every_route_of_the_app_is_documented_and_nothing_else(self) -> None:
        # Given the routes Chalice registered and the operations the document describes
        routed = {(path, method.lower()) for path, methods in app.routes.items() for method in methods}
        documented = {
            (path, method) for path, item in document()["paths"].items() for method in item if method in HTTP_METHODS
        }
        # Then they are the same set
        assert routed - documented == set(), "routes missing from chalicelib/openapi.json"
        assert documented - routed == set(), "documented operations the app does not have"

    def test_every_event_schema_file_is_in_the_document_as_it_is(self) -> None:
        schemas = document()["components"]["schemas"]
        files = sorted(SCHEMA_DIR.glob("*.schema.json"))
        assert files
        for file in files:
            event_type = file.name.removesuffix(".schema.json")
            assert event_type in EVENT_TYPES, f"{file.name} is not an event type of the catalogue"
            on_disk = json.loads(file.read_text(encoding="utf-8"))
            assert schemas.get(event_type) == on_disk, (
                f"components.schemas[{event_type!r}] differs from {file.name}: run make openapi"
            )

    def test_every_event_type_is_a_webhook_with_its_schema(self) -> None:
        webhooks = document()["webhooks"]
        assert set(webhooks) == set(EVENT_TYPES)
        for event_type, item in webhooks.items():
            schema = item["post"]["requestBody"]["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{event_type}"}

    def test_the_429_answer_documents_retry_after(self) -> None:
        too_many = document()["components"]["responses"]["TooManyRequests"]
        assert "Retry-After" in too_many["headers"]
        for path, item in document()["paths"].items():
            if path.startswith(("/destinations/", "/replays")):
                continue  # operator routes call no Connect API: nothing to throttle, reject or fail upstream
            for method, operation in item.items():
                if method in {"put", "post", "delete"}:
                    assert {"400", "429", "502"} <= set(operation["responses"])


class TestServedDocument:
    def test_get_openapi_json_serves_the_checked_in_document(self, http: CheckedHTTP) -> None:
        response = http.get("/openapi.json")
        assert response.status_code == 200
        assert response.headers["Content-Type"] == "application/json"
        assert response.body.decode("utf-8") == OPENAPI_FILE.read_text(encoding="utf-8")

    def test_it_needs_no_authorisation(self) -> None:
        entry = app.routes["/openapi.json"]["GET"]
        assert entry.authorizer is None
        assert not entry.api_key_required


def expect_start(stub: Stubber) -> None:
    stub.add_response(
        "start_contact_streaming",
        {"StreamingId": "stream-1"},
        {
            "InstanceId": INSTANCE_ID,
            "ContactId": FIRST,
            "ChatStreamingConfiguration": {"StreamingEndpointArn": TOPIC_ARN},
            "ClientToken": client_token_for(FIRST, TOPIC_ARN),
        },
    )


class TestStreamingAnswersMatchTheDocument:
    """Every answer of the streaming routes, driven through the test client, validates against the document."""

    def test_put_started_and_already_streaming(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        assert http.put(f"/contacts/{FIRST}/streaming").status_code == 201
        assert http.put(f"/contacts/{FIRST}/streaming").status_code == 200

    def test_put_invalid(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        response = http.put(
            f"/contacts/{'c' * 257}/streaming", body='{"extra": 1}', headers={"Content-Type": "application/json"}
        )
        assert response.status_code == 400

    @pytest.mark.parametrize(
        ("code", "http_status", "message", "status"),
        [
            ("ResourceNotFoundException", 404, "gone", 404),
            ("LimitExceededException", 429, "The contact already has 2 streaming endpoints", 409),
            ("ThrottlingException", 429, "Rate exceeded", 429),
            ("InternalServiceException", 500, "oops", 502),
            ("InvalidRequestException", 400, "bad", 400),
        ],
    )
    def test_put_connect_errors(
        self, http: CheckedHTTP, connect_stub: Stubber, code: str, http_status: int, message: str, status: int
    ) -> None:
        connect_stub.add_client_error(
            "start_contact_streaming", service_error_code=code, service_message=message, http_status_code=http_status
        )
        assert http.put(f"/contacts/{FIRST}/streaming").status_code == status

    def test_delete_stopped_and_unknown(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        expect_start(connect_stub)
        http.put(f"/contacts/{FIRST}/streaming")
        connect_stub.add_response("stop_contact_streaming", {})
        assert http.delete(f"/contacts/{FIRST}/streaming").status_code == 200
        assert http.delete(f"/contacts/{FIRST}/streaming").status_code == 404
        assert http.delete(f"/contacts/{'c' * 257}/streaming").status_code == 400


class TestContactAnswersMatchTheDocument:
    """A sample of the contact routes' answers (their own tests check every answer the same way)."""

    def test_a_web_call(self, http: CheckedHTTP, connect_stub: Stubber, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(dependencies, "relay", cache(RecordingRelay))
        connect_stub.add_response("start_web_rtc_contact", load_event("connect/start-webrtc-contact.json"))
        response = http.post(
            "/webrtc-contacts",
            body='{"display_name": "Ana"}',
            headers={"Content-Type": "application/json", "Origin": "http://localhost:8000"},
        )
        assert response.status_code == 201

    def test_a_chat(self, http: CheckedHTTP, connect_stub: Stubber) -> None:
        connect_stub.add_response("start_chat_contact", load_event("connect/start-chat-contact.json"))
        response = http.post("/chat-contacts", body='{"display_name": "Ana"}')
        assert response.status_code == 201

    @pytest.mark.parametrize("origin", ["http://localhost:8000", "https://evil.example", None])
    @pytest.mark.parametrize("path", ["/webrtc-contacts", "/chat-contacts"])
    def test_preflights(self, http: CheckedHTTP, path: str, origin: str | None) -> None:
        response = http.options(path, headers={"Origin": origin} if origin else {})
        assert response.status_code == (403 if origin == "https://evil.example" else 204)
