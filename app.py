"""connect-chat-relay: the Chalice app. Middleware and blueprints; the work lives in chalicelib/."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Chalice

from chalicelib.handlers.chat_stream import chat_stream, tolerate_partial_records
from chalicelib.handlers.contact_events import contact_events
from chalicelib.handlers.contacts_api import contacts_api
from chalicelib.handlers.docs import api_docs
from chalicelib.handlers.flow import flow
from chalicelib.handlers.streaming_api import streaming_api
from chalicelib.observability import flush, logger

app = Chalice(app_name="connect-chat-relay", configure_logs=False)
app.experimental_feature_flags.update(["BLUEPRINTS"])


@app.middleware("all")
def observe(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Fresh log keys for each invocation, and its metrics published however it ends."""
    logger.clear_state()
    context = getattr(event, "lambda_context", None) or getattr(event, "context", None)
    request_id = getattr(context, "aws_request_id", None)
    if request_id:
        logger.append_keys(request_id=request_id)
    try:
        return get_response(event)
    finally:
        flush()


app.register_blueprint(contact_events)
app.register_blueprint(chat_stream)
tolerate_partial_records(app)
app.register_blueprint(flow)
app.register_blueprint(streaming_api)
app.register_blueprint(contacts_api)
app.register_blueprint(api_docs)
