"""Webhook HTTP: POSTs over pooled keep-alive connections to an address the SSRF policy has checked.

The sender resolves a destination's host itself (at most once per ``dns_ttl_seconds``), refuses it if any of its
addresses is internal, and connects to the checked address: the connection pool's host IS that address, so no
second lookup happens, while TLS still verifies the certificate against the host name (SNI and hostname check).
Redirects are never followed and nothing is retried here beyond one fresh connection when a kept-alive one turns
out dead: durable retries belong to the retry queue.

``send_all`` POSTs to many destinations at once without a thread per POST where it can: every request that can
go over a kept-alive connection is written from the calling thread, then the answers are read as their sockets
become readable, each before its own deadline. For fast receivers this costs what sequential POSTs cost, while a
slow one still holds up nobody but itself. Whatever may block (a DNS lookup, opening a connection, a TLS
handshake, replacing a dropped connection) runs on the caller's executor instead.
"""

from __future__ import annotations

import errno
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from functools import lru_cache
from http.client import HTTPException

from urllib3 import HTTPConnectionPool, HTTPSConnectionPool, Timeout
from urllib3.connection import HTTPConnection
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


@dataclass(frozen=True, slots=True)
class WebhookPost:
    """One POST for ``WebhookSender.send_all``: what ``WebhookSender.send`` takes as arguments."""

    url: str
    body: bytes
    headers: Mapping[str, str]
    timeout_seconds: float
    allow_http: bool = False
    allow_private_network: bool = False


# What ``send_all`` reports per post: the outcome, or the exception a bug in the relay raised, and the
# ``time.perf_counter()`` reading when it was known.
Sent = tuple[WebhookOutcome | Exception, float]


class WebhookUrlInvalidError(RelayError):
    """A destination url the sender cannot use; the message never repeats the url (it may hold a token)."""


@dataclass(frozen=True, slots=True)
class _Endpoint:
    scheme: str
    host: str  # as resolved: no IPv6 brackets
    port: int
    target: str  # path and query
    host_header: str


@dataclass(eq=False, slots=True)
class _InFlight:
    """A POST written on a kept-alive connection whose answer is still to be read."""

    index: int
    endpoint: _Endpoint
    addresses: list[str]
    body: bytes
    headers: dict[str, str]
    give_up_at: float
    pool: HTTPConnectionPool
    conn: HTTPConnection
    sock: socket.socket
    written: bool = False


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
        return self._send(WebhookPost(url, body, headers, timeout_seconds, allow_http, allow_private_network))

    def send_all(self, posts: Sequence[WebhookPost], executor: Executor) -> list[Sent]:
        """POST every one of ``posts`` concurrently; what each came to, in the posts' order.

        Never raises for anything the network or the receivers do; an exception from a bug in the relay is
        reported for its post alone. ``executor`` runs what may block: lookups, new connections, handshakes.
        """
        sent: list[Sent | None] = [None] * len(posts)
        later: dict[int, Future[Sent]] = {}
        in_flight: list[_InFlight] = []
        for index, post in enumerate(posts):
            try:
                started = self._start(index, post)
            except Exception as exc:
                sent[index] = (exc, time.perf_counter())
                continue
            if started is None:
                later[index] = executor.submit(self._send_timed, post)
            elif isinstance(started, _InFlight):
                if started.written:
                    in_flight.append(started)
                else:
                    later[index] = executor.submit(self._resend, started)
            else:
                sent[index] = (started, time.perf_counter())
        if in_flight:
            self._await_answers(in_flight, executor, sent, later)
        for index, future in later.items():
            sent[index] = future.result()
        return [item for item in sent if item is not None]

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()

    def _send(self, post: WebhookPost) -> WebhookOutcome:
        endpoint = self._endpoint_of(post)
        if isinstance(endpoint, WebhookOutcome):
            return endpoint
        key = (endpoint.host, endpoint.port, post.allow_private_network)
        addresses = self._cached_addresses(key)
        if addresses is None:
            try:
                addresses = self._look_up(key)
            except OSError as exc:
                return WebhookOutcome(error=f"dns lookup of {endpoint.host} failed: {exc.strerror or exc}")
        if isinstance(addresses, str):
            return WebhookOutcome(error=addresses, refused=True)
        headers = {**post.headers, "Host": endpoint.host_header}
        give_up_at = time.monotonic() + post.timeout_seconds
        try:
            return self._post_first_reachable(endpoint, addresses, post.body, headers, give_up_at)
        except HTTPError as exc:
            return WebhookOutcome(error=_describe(exc))

    def _send_timed(self, post: WebhookPost) -> Sent:
        try:
            outcome: WebhookOutcome | Exception = self._send(post)
        except Exception as exc:
            outcome = exc
        return outcome, time.perf_counter()

    def _start(self, index: int, post: WebhookPost) -> _InFlight | WebhookOutcome | None:
        """Write ``post`` on a kept-alive connection; None if it needs a lookup or a new connection first."""
        endpoint = self._endpoint_of(post)
        if isinstance(endpoint, WebhookOutcome):
            return endpoint
        addresses = self._cached_addresses((endpoint.host, endpoint.port, post.allow_private_network))
        if addresses is None:
            return None
        if isinstance(addresses, str):
            return WebhookOutcome(error=addresses, refused=True)
        pool = self._pool(endpoint, addresses[0])
        # urllib3 has no public way to write a request now and read its answer later, so connections come from
        # the pool's own checkout and return, as urlopen uses them; each one taken is put back exactly once.
        conn = pool._get_conn()
        if not isinstance(conn, HTTPConnection) or conn.sock is None:
            # Not connected: connecting (and a TLS handshake) may block for seconds, so the executor does it.
            pool._put_conn(conn)
            return None
        headers = {**post.headers, "Host": endpoint.host_header}
        give_up_at = time.monotonic() + post.timeout_seconds
        flight = _InFlight(index, endpoint, addresses, post.body, headers, give_up_at, pool, conn, conn.sock)
        conn.timeout = post.timeout_seconds
        try:
            conn.request(
                "POST", endpoint.target, body=post.body, headers=headers, preload_content=False, decode_content=False
            )
        except (BrokenPipeError, ConnectionResetError):
            pass  # As urlopen: the receiver may have answered before it hung up, which reading the answer tells.
        except (OSError, HTTPException) as exc:
            conn.close()
            pool._put_conn(None)
            # A dropped kept-alive connection comes back unwritten, for the executor to resend it on a fresh one.
            return self._failed(flight, _as_urllib3_error(exc, pool, reading=False)) or flight
        except Exception:
            conn.close()  # half a request is on it
            pool._put_conn(None)
            raise
        flight.written = True
        return flight

    def _await_answers(
        self, in_flight: list[_InFlight], executor: Executor, sent: list[Sent | None], later: dict[int, Future[Sent]]
    ) -> None:
        """Read each answer as soon as its socket is readable and before its own deadline."""
        if len(in_flight) == 1:
            # Nothing else to wait for: a read bounded by the deadline does what polling first would, in fewer calls.
            self._settle(in_flight[0], self._read_answer, executor, sent, later)
            return
        waiting = set(in_flight)
        # poll(2) keeps no kernel object between calls, unlike epoll: cheaper for one event's few sockets.
        with selectors.PollSelector() as selector:
            for flight in in_flight:
                selector.register(flight.sock, selectors.EVENT_READ, flight)
            while waiting:
                # Bytes TLS has already decrypted and buffered do not make the socket readable.
                ready = {f for f in waiting if isinstance(f.sock, ssl.SSLSocket) and f.sock.pending()}
                if not ready:
                    wait = min(f.give_up_at for f in waiting) - time.monotonic()
                    ready = {key.data for key, _ in selector.select(max(wait, 0.0))}
                now = time.monotonic()
                for flight in ready | {f for f in waiting if f.give_up_at <= now}:
                    waiting.discard(flight)
                    selector.unregister(flight.sock)
                    finish = self._read_answer if flight in ready else self._time_out
                    self._settle(flight, finish, executor, sent, later)

    def _settle(
        self,
        flight: _InFlight,
        finish: Callable[[_InFlight], WebhookOutcome | None],
        executor: Executor,
        sent: list[Sent | None],
        later: dict[int, Future[Sent]],
    ) -> None:
        """Record what ``flight`` came to, or hand it to ``executor`` to be sent again."""
        try:
            outcome = finish(flight)
        except Exception as exc:
            flight.conn.close()
            sent[flight.index] = (exc, time.perf_counter())
            return
        if outcome is None:
            later[flight.index] = executor.submit(self._resend, flight)
        else:
            sent[flight.index] = (outcome, time.perf_counter())

    def _read_answer(self, flight: _InFlight) -> WebhookOutcome | None:
        """The answer to ``flight``; None if its connection turned out dropped and the POST is to be sent again."""
        conn, pool = flight.conn, flight.pool
        remaining = flight.give_up_at - time.monotonic()
        if remaining <= 0:
            return self._time_out(flight)
        conn.timeout = remaining  # getresponse applies it to the socket; it bounds reading the body too
        try:
            response = conn.getresponse()
        except (OSError, HTTPException) as exc:
            conn.close()
            pool._put_conn(None)
            return self._failed(flight, _as_urllib3_error(exc, pool, reading=True))
        try:
            response.read(MAX_ANSWER_BYTES, decode_content=False)
            whole = response.closed
        except (HTTPError, OSError):
            whole = False  # the status is what counts; the broken connection is not reused
        if not whole:
            response.close()
            conn.close()  # more than we read is left on the connection: do not reuse it
        pool._put_conn(conn)
        return WebhookOutcome(status=response.status, retry_after=response.headers.get("Retry-After"))

    @staticmethod
    def _time_out(flight: _InFlight) -> WebhookOutcome:
        # An answer arriving later must not be read as the next POST's: the connection goes.
        flight.conn.close()
        flight.pool._put_conn(None)
        return WebhookOutcome(error=_describe(ReadTimeoutError(flight.pool, None, "Read timed out.")))

    @staticmethod
    def _failed(flight: _InFlight, error: HTTPError) -> WebhookOutcome | None:
        """What a failed POST came to; None if its kept-alive connection was dropped and time is left to resend."""
        if isinstance(error, ProtocolError) and time.monotonic() < flight.give_up_at:
            return None
        return WebhookOutcome(error=_describe(error))

    def _resend(self, flight: _InFlight) -> Sent:
        """``flight`` once more, on a fresh connection, within what is left of its deadline; never again after."""
        outcome: WebhookOutcome | Exception
        try:
            outcome = self._post_first_reachable(
                flight.endpoint, flight.addresses, flight.body, flight.headers, flight.give_up_at, reconnect=False
            )
        except HTTPError as exc:
            outcome = WebhookOutcome(error=_describe(exc))
        except Exception as exc:
            outcome = exc
        return outcome, time.perf_counter()

    @staticmethod
    def _endpoint_of(post: WebhookPost) -> _Endpoint | WebhookOutcome:
        """Where ``post`` goes, or why the relay refuses to send it."""
        try:
            endpoint = _endpoint(post.url)
        except WebhookUrlInvalidError as exc:
            return WebhookOutcome(error=str(exc), refused=True)
        if endpoint.scheme == "http" and not post.allow_http:
            return WebhookOutcome(error="plain http refused: the destination does not allow http", refused=True)
        return endpoint

    def _cached_addresses(self, key: tuple[str, int, bool]) -> list[str] | str | None:
        cached = self._addresses.get(key)
        return cached[1] if cached is not None and cached[0] > self._clock() else None

    def _look_up(self, key: tuple[str, int, bool]) -> list[str] | str:
        host, port, allow_private = key
        now = self._clock()
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
        self,
        endpoint: _Endpoint,
        addresses: list[str],
        body: bytes,
        headers: dict[str, str],
        give_up_at: float,
        *,
        reconnect: bool = True,
    ) -> WebhookOutcome:
        # One deadline for the whole delivery: a second address or a second connection gets only what is left.
        *others, last = addresses
        for address in others:
            try:
                return self._post_reconnecting(
                    self._pool(endpoint, address), endpoint.target, body, headers, give_up_at, reconnect=reconnect
                )
            except NewConnectionError:
                # Refused or unreachable at once (an IPv6 address without IPv6 egress): the next address may answer.
                if time.monotonic() >= give_up_at:
                    raise
        return self._post_reconnecting(
            self._pool(endpoint, last), endpoint.target, body, headers, give_up_at, reconnect=reconnect
        )

    @classmethod
    def _post_reconnecting(
        cls,
        pool: HTTPConnectionPool,
        target: str,
        body: bytes,
        headers: dict[str, str],
        give_up_at: float,
        *,
        reconnect: bool,
    ) -> WebhookOutcome:
        try:
            return cls._post(pool, target, body, headers, _timeout(give_up_at - time.monotonic()))
        except ProtocolError:
            # A kept-alive connection the receiver (or a NAT) had already dropped: once more, on a fresh one.
            remaining = give_up_at - time.monotonic()
            if remaining <= 0 or not reconnect:
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


def _as_urllib3_error(exc: OSError | HTTPException, pool: HTTPConnectionPool, *, reading: bool) -> HTTPError:
    """What urlopen raises for ``exc``, so a POST's outcome reads the same whichever way it was sent."""
    timed_out = isinstance(exc, TimeoutError) or (
        isinstance(exc, OSError) and exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK)
    )
    if reading and timed_out:
        return ReadTimeoutError(pool, None, "Read timed out.")
    if isinstance(exc, ssl.SSLError | ssl.CertificateError):
        return SSLError(exc)
    return ProtocolError("Connection aborted.", exc)


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
