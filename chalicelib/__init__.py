"""connect-chat-relay: streams Amazon Connect chats and fans their items out to webhooks and storage."""

__version__ = "0.1.0"
