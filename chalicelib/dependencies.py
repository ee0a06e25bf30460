"""The relay's collaborators, built once per container on first use from the settings and the AWS clients.

Handlers ask here; tests call :func:`reset` after changing the environment or the clients.
"""

from __future__ import annotations

from functools import cache

from chalicelib import clients
from chalicelib.adapters.connect import ConnectGateway
from chalicelib.adapters.streams_table import StreamsTable
from chalicelib.settings import get_settings
from chalicelib.streaming import StreamingStarter


@cache
def streaming_starter() -> StreamingStarter:
    """Starts and stops streams (event path and routes: Connect calls with the full retry budget)."""
    settings = get_settings()
    return StreamingStarter(
        connect_gateway(),
        StreamsTable(clients.dynamodb(), settings.streams_table_name, ttl_days=settings.streams_ttl_days),
        topic_arn=settings.streaming_topic_arn,
    )


@cache
def flow_streaming_starter() -> StreamingStarter:
    """The same, for the contact flow's synchronous call, which must answer within its few seconds."""
    settings = get_settings()
    return StreamingStarter(
        ConnectGateway(clients.connect_for_flow()),
        StreamsTable(clients.dynamodb(), settings.streams_table_name, ttl_days=settings.streams_ttl_days),
        topic_arn=settings.streaming_topic_arn,
    )


@cache
def connect_gateway() -> ConnectGateway:
    """Amazon Connect."""
    return ConnectGateway(clients.connect())


def reset() -> None:
    """Forget every collaborator, the settings and the clients."""
    for factory in (streaming_starter, flow_streaming_starter, connect_gateway):
        factory.cache_clear()
    get_settings.cache_clear()
    clients.reset()
