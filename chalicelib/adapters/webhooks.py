"""Webhook HTTP: one POST over pooled keep-alive connections to an address the SSRF policy has checked.

The sender resolves a destination's host itself (at most once per ``dns_ttl_seconds``), refuses it if any of its
addresses is internal, and connects to the checked address: the connection pool's host IS that address, so no
second lookup happens, while TLS still verifies the certificate against the host name (SNI and hostname check).
Redirects are never followed and nothing is retried here beyond one fresh connection when a kept-alive one turns
out dead: durable retries belong to the retry queue.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)
from urllib3.util import create_urllib3_context, parse_url

from chalicelib.errors import RelayError
from chalicelib.ssrf import Resolver, WebhookAddressRefusedError, resolve_public

# The relay only needs the status and Retry-After; a receiver that answers more does not get its connection kept.
MAX_ANSWER_BYTES = 64 * 1024
MAX_CONNECT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True, slots=True)
class WebhookOutcome:
    """What one POST came to: the receiver's status and Retry-After, or why there was no answer.

    ``refused`` marks requests the relay would not send (plain http, an internal address, an invalid url):
    retrying cannot help until the destination's configuration changes.
    """

    status: int | None = None
    retry_after: str | None = None
    error: str | None = None
    refused: bool = False


class WebhookUrlInvalidError(RelayError):
    """A destination url the sender cannot use; the message never repeats the url (it may hold a token)."""


@dataclass(frozen=True, slots=True)
class _Endpoint:
    scheme: str
    host: str  # as resolved: no IPv6 brackets
    port: int
    target: str  # path and query
    host_header: str


@lru_cache(maxsize=1024)
def _endpoint(url: str) -> _Endpoint:
    try:
        parsed = parse_url(url)
    except LocationParseError:
        raise WebhookUrlInvalidError("url is not a valid URL") from None
    if parsed.scheme not in DEFAULT_PORTS:
        raise WebhookUrlInvalidError("url must be https:// (or http:// where allowed)")
    if not parsed.host:
        raise WebhookUrlInvalidError("url has no host")
    if parsed.auth:
        raise WebhookUrlInvalidError("url carries credentials, which the relay does not send")
    default_port = DEFAULT_PORTS[parsed.scheme]
    port = parsed.port or default_port
    return _Endpoint(
        scheme=parsed.scheme,
        host=parsed.host.strip("[]"),
        port=port,
        target=parsed.request_uri,
        host_header=parsed.host if port == default_port else f"{parsed.host}:{port}",
    )


@lru_cache(maxsize=64)
def _timeout(seconds: float) -> Timeout:
    # total caps connect + wait for the answer together; urllib3 clones it per request, so sharing is safe.
    return Timeout(connect=min(MAX_CONNECT_SECONDS, seconds), read=seconds, total=seconds)


class WebhookSender:
    """POSTs webhook bodies; safe to share between threads and kept for the container's life."""

    def __init__(
        self,
        *,
        dns_ttl_seconds: float = 60.0,
        pool_maxsize: int = 10,
        max_pools: int = 256,
        resolver: Resolver = socket.getaddrinfo,
        ca_certs: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dns_ttl_seconds = dns_ttl_seconds
        self._pool_maxsize = pool_maxsize
        self._max_pools = max_pools
        self._resolver = resolver
        self._ca_certs = ca_certs
        self._clock = clock
        self._lock = threading.Lock()
        # (host, port, allow_private) -> (expires at, addresses or the refusal)
        self._addresses: dict[tuple[str, int, bool], tuple[float, list[str] | str]] = {}
        self._pools: OrderedDict[tuple[str, str, int, str], HTTPConnectionPool] = OrderedDict()
        self._tls_context: ssl.SSLContext | None = None

    def send(
        self,
        url: str,
        body: bytes,
        headers: Mapping[str, str],
        *,
        timeout_seconds: float,
        allow_http: bool = False,
        allow_private_network: bool = False,
    ) -> WebhookOutcome:
        """POST ``body`` to ``url``; never raises for anything the network or the receiver does."""
        try:
            endpoint = _endpoint(url)
        except WebhookUrlInvalidError as exc:
            return WebhookOutcome(error=str(exc), refused=True)
        if endpoint.scheme == "http" and not allow_http:
            return WebhookOutcome(error="plain http refused: the destination does not allow http", refused=True)
        try:
            addresses = self._addresses_of(endpoint.host, endpoint.port, allow_private_network)
        except OSError as exc:
            return WebhookOutcome(error=f"dns lookup of {endpoint.host} failed: {exc.strerror or exc}")
        if isinstance(addresses, str):
            return WebhookOutcome(error=addresses, refused=True)

        request_headers = {**headers, "Host": endpoint.host_header}
        try:
            return self._post_first_reachable(endpoint, addresses, body, request_headers, timeout_seconds)
        except HTTPError as exc:
            return WebhookOutcome(error=_describe(exc))

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def _addresses_of(self, host: str, port: int, allow_private: bool) -> list[str] | str:
        key = (host, port, allow_private)
        now = self._clock()
        cached = self._addresses.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        answer: list[str] | str
        try:
            answer = resolve_public(host, port, allow_private=allow_private, resolver=self._resolver)
        except WebhookAddressRefusedError as exc:
            answer = str(exc)
        self._addresses[key] = (now + self._dns_ttl_seconds, answer)
        return answer

    def _pool(self, endpoint: _Endpoint, address: str) -> HTTPConnectionPool:
        key = (endpoint.scheme, endpoint.host, endpoint.port, address)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            pool = self._new_pool(endpoint, address)
            self._pools[key] = pool
            evicted = self._pools.popitem(last=False)[1] if len(self._pools) > self._max_pools else None
        if evicted is not None:
            evicted.close()
        return pool

    def _new_pool(self, endpoint: _Endpoint, address: str) -> HTTPConnectionPool:
        if endpoint.scheme == "http":
            return HTTPConnectionPool(address, endpoint.port, maxsize=self._pool_maxsize, block=False, retries=False)
        tls_name = endpoint.host.rstrip(".")
        return HTTPSConnectionPool(
            address,
            endpoint.port,
            maxsize=self._pool_maxsize,
            block=False,
            retries=False,
            ssl_context=self._shared_tls_context(),
            server_hostname=tls_name,
            assert_hostname=tls_name,
        )

    def _shared_tls_context(self) -> ssl.SSLContext:
        # Loading the trust store costs milliseconds; once per container, not once per connection.
        if self._tls_context is None:
            context = create_urllib3_context()
            if self._ca_certs:
                context.load_verify_locations(self._ca_certs)
            else:
                context.load_default_certs()
            self._tls_context = context
        return self._tls_context

    def _post_first_reachable(
        self, endpoint: _Endpoint, addresses: list[str], body: bytes, headers: dict[str, str], timeout_seconds: float
    ) -> WebhookOutcome:
        # One deadline for the whole delivery: a second address or a second connection gets only what is left.
        give_up_at = time.monotonic() + timeout_seconds
        *others, last = addresses
        for address in others:
            try:
                return self._post_reconnecting(
                    self._pool(endpoint, address), endpoint.target, body, headers, give_up_at
                )
            except NewConnectionError:
                # Refused or unreachable at once (an IPv6 address without IPv6 egress): the next address may answer.
                if time.monotonic() >= give_up_at:
                    raise
        return self._post_reconnecting(self._pool(endpoint, last), endpoint.target, body, headers, give_up_at)

    @classmethod
    def _post_reconnecting(
        cls, pool: HTTPConnectionPool, target: str, body: bytes, headers: dict[str, str], give_up_at: float
    ) -> WebhookOutcome:
        try:
            return cls._post(pool, target, body, headers, _timeout(give_up_at - time.monotonic()))
        except ProtocolError:
            # A kept-alive connection the receiver (or a NAT) had already dropped: once more, on a fresh one.
            remaining = give_up_at - time.monotonic()
            if remaining <= 0:
                raise
            return cls._post(pool, target, body, headers, _timeout(remaining))

    @staticmethod
    def _post(
        pool: HTTPConnectionPool, target: str, body: bytes, headers: dict[str, str], timeout: Timeout
    ) -> WebhookOutcome:
        response = pool.urlopen(
            "POST",
            target,
            body=body,
            headers=headers,
            retries=False,
            redirect=False,
            timeout=timeout,
            preload_content=False,
            decode_content=False,
            assert_same_host=False,
        )
        try:
            response.read(MAX_ANSWER_BYTES, decode_content=False)
            if not response.closed:
                response.close()  # more than we read is left on the connection: do not reuse it
        except (HTTPError, OSError):
            response.close()  # the status is what counts; the broken connection is not reused
        finally:
            response.release_conn()
        return WebhookOutcome(status=response.status, retry_after=response.headers.get("Retry-After"))


def _describe(exc: HTTPError) -> str:
    """A short reason without the url (which may carry a token)."""
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, NewConnectionError):
        reason = cause.strerror if isinstance(cause, OSError) and cause.strerror else type(cause).__name__
        return f"connection failed: {reason}"
    if isinstance(exc, ConnectTimeoutError):
        return "connection timed out"
    if isinstance(exc, ReadTimeoutError):
        return "timed out waiting for the answer"
    if isinstance(exc, SSLError):
        detail = exc.args[0] if exc.args else cause
        reason = getattr(detail, "verify_message", None) or getattr(detail, "reason", None) or str(detail)
        return f"tls failed: {reason or type(detail).__name__}"[:300]
    if isinstance(exc, ProtocolError):
        detail = exc.args[1] if len(exc.args) > 1 else cause
        return f"connection dropped: {type(detail).__name__}"
    return f"request failed: {type(exc).__name__}"
