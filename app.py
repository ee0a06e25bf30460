"""connect-chat-relay: the Chalice app. Middleware and blueprints; the work lives in chalicelib/.

Lambda loads the event handlers (contact events, the flow function, the chat stream) from their blueprints'
modules, not from here: whatever they need is on the handlers themselves.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from chalice.app import Chalice

from chalicelib.handlers.chat_stream import chat_stream
from chalicelib.handlers.chats_api import chats_api
from chalicelib.handlers.contact_events import contact_events
from chalicelib.handlers.contacts_api import contacts_api
from chalicelib.handlers.destinations_api import destinations_api
from chalicelib.handlers.docs import api_docs
from chalicelib.handlers.flow import flow
from chalicelib.handlers.reconciliation import reconciliation
from chalicelib.handlers.redrive_api import redrive_api
from chalicelib.handlers.replays_api import replays_api
from chalicelib.handlers.retries import retries
from chalicelib.handlers.streaming_api import streaming_api
from chalicelib.handlers.transcripts import transcripts
from chalicelib.observability import observed

app = Chalice(app_name="connect-chat-relay", configure_logs=False)


@app.middleware("http")
def observe(event: Any, get_response: Callable[[Any], Any]) -> Any:
    """Routes get what every event handler has on itself (see ``observed``)."""
    return observed(get_response)(event)


app.register_blueprint(contact_events)
app.register_blueprint(chat_stream)
app.register_blueprint(flow)
app.register_blueprint(retries)
app.register_blueprint(streaming_api)
app.register_blueprint(contacts_api)
app.register_blueprint(chats_api)
app.register_blueprint(destinations_api)
app.register_blueprint(redrive_api)
app.register_blueprint(replays_api)
app.register_blueprint(api_docs)
app.register_blueprint(transcripts)
app.register_blueprint(reconciliation)
