"""The relay's OpenAPI document, served as checked in (no authorisation: it describes, it grants nothing)."""

from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Final

from chalice.app import Blueprint, Response

api_docs = Blueprint(__name__)

OPENAPI_FILE: Final = Path(__file__).parent.parent / "openapi.json"


@cache
def openapi_document() -> str:
    """The document's text, read once per container."""
    return OPENAPI_FILE.read_text(encoding="utf-8")


@api_docs.route("/openapi.json", methods=["GET"])
def openapi() -> Response:
    """GET /openapi.json: the OpenAPI 3.1 description of every route and of the webhook events."""
    return Response(
        body=openapi_document(),
        status_code=200,
        headers={"Content-Type": "application/json", "Cache-Control": "public, max-age=300"},
    )
