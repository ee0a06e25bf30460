"""Webhook HTTP: POSTs to addresses the SSRF policy has checked, many at once from one thread, each by its deadline.

The sender resolves a destination's host itself (at most once per ``dns_ttl_seconds``), refuses it if any of its
addresses is internal, and connects to the checked address, so no second lookup happens, while TLS verifies the
certificate against the host name (SNI and hostname check). Redirects are never followed and nothing is retried
here beyond one fresh connection when a connection is dropped before any answer: durable retries belong to the
retry queue.

There is one send path, ``send_all``. It moves every POST of a fan-out through its steps (connect, TLS handshake,
write the request, read the answer) on non-blocking sockets from the calling thread, each as far as it goes
without waiting, and waits for all of them at once with one selector. For fast receivers on kept-alive
connections this costs what sequential POSTs cost, while a slow one holds up nobody but itself. Only DNS lookups,
which the standard library cannot make without blocking, run on the caller's executor. Each POST has one
deadline, fixed when the fan-out starts: lookup, connect, handshake, write and read all end by it, so a receiver
trickling its answer a byte at a time is cut off like one that never answers. Connections are kept alive per
checked address for the container's life.

Only public, kept APIs: ``socket``, ``ssl`` and ``selectors`` from the standard library, urllib3's ``parse_url``.
HTTP/1.1 is spoken here because no public client API writes a request now and reads its answer later within an
overall deadline: requests are one fixed shape, and of an answer the relay needs only the status, ``Retry-After``
and where the answer ends (``Content-Length`` or chunked), to keep the connection for the next POST.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import selectors
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from functools import lru_cache

from urllib3.exceptions import LocationParseError
from urllib3.util import parse_url

from chalicelib.errors import RelayError
from chalicelib.ssrf import Resolver, WebhookAddressRefusedError, resolve_public

# The relay only needs the status and Retry-After; a receiver that answers more does not get its connection kept.
MAX_ANSWER_BYTES = 64 * 1024
# How much of a failed answer's body the attempt log keeps.
EXCERPT_CHARS = 200
MAX_HEAD_BYTES = 64 * 1024
# A connection attempt to one address gives up after this, so a second address still gets a chance.
MAX_CONNECT_SECONDS = 5.0
DEFAULT_PORTS = {"http": 80, "https": 443}
# RFC 9110 field names are tokens; values may not break the request's framing.
_FIELD_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_FIELD_VALUE_FORBIDDEN = re.compile(r"[\r\n\0]")


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
    excerpt: str | None = None  # the start of a failed answer's body, printable characters only


@dataclass(frozen=True, slots=True)
class WebhookPost:
    """One POST for ``WebhookSender.send_all``; ``timeout_seconds`` counts from the start of the fan-out."""

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


# (scheme, host, port, checked address): a kept-alive connection serves exactly one of these.
_ConnectionKey = tuple[str, str, int, str]
_READ, _WRITE = selectors.EVENT_READ, selectors.EVENT_WRITE
_ON = -1  # a step's answer: the flight moved to its next step, which can go on at once


class _Step:
    """Where a POST is: each step ends by the POST's deadline."""

    LOOKUP = "dns lookup"
    CONNECT = "connect"
    HANDSHAKE = "tls handshake"
    WRITE = "write"
    READ = "read"


@dataclass(frozen=True, slots=True)
class _Answer:
    """The head of an answer, and where the answer ends in the bytes read once all of it is there."""

    status: int
    retry_after: str | None
    end: int | None  # None: the body is not all read yet
    reusable: bool  # the connection may carry the next POST once the answer has ended exactly there


@dataclass(eq=False, slots=True)
class _Flight:
    """One POST on its way."""

    index: int
    endpoint: _Endpoint
    lookup_key: tuple[str, int, bool]
    request: bytes
    give_up_at: float
    step: str = _Step.LOOKUP
    wake_at: float = 0.0  # when the current step gives up: the deadline, or sooner for one connection attempt
    addresses: list[str] = field(default_factory=list)
    next_address: int = 0
    key: _ConnectionKey | None = None
    sock: socket.socket | None = None
    watched: int = 0  # the selector events registered for ``sock``
    written: int = 0
    answer: bytearray = field(default_factory=bytearray)
    resent: bool = False
    lookup: Future[list[str] | str] | None = None


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


class WebhookSender:
    """POSTs webhook bodies; safe to share between threads and kept for the container's life."""

    def __init__(
        self,
        *,
        dns_ttl_seconds: float = 60.0,
        max_idle_per_address: int = 10,
        max_addresses: int = 256,
        resolver: Resolver = socket.getaddrinfo,
        ca_certs: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._dns_ttl_seconds = dns_ttl_seconds
        self._max_idle_per_address = max_idle_per_address
        self._max_addresses = max_addresses
        self._resolver = resolver
        self._ca_certs = ca_certs
        self._clock = clock
        self._lock = threading.Lock()
        # (host, port, allow_private) -> (expires at, addresses or the refusal)
        self._addresses: dict[tuple[str, int, bool], tuple[float, list[str] | str]] = {}
        self._idle: OrderedDict[_ConnectionKey, list[socket.socket]] = OrderedDict()
        self._tls_context: ssl.SSLContext | None = None

    def send_all(
        self, posts: Sequence[WebhookPost], executor: Executor, *, deadline: float | None = None
    ) -> list[Sent]:
        """POST every one of ``posts`` concurrently; what each came to, in the posts' order.

        Each post ends within its ``timeout_seconds`` from now and, if given, by ``deadline`` (an absolute
        ``time.monotonic()`` value). Never raises for anything the network or the receivers do; an exception
        from a bug in the relay is reported for its post alone. ``executor`` runs the DNS lookups.
        """
        now = time.monotonic()
        sent: list[Sent | None] = [None] * len(posts)
        flights: list[_Flight] = []
        for index, post in enumerate(posts):
            give_up_at = now + post.timeout_seconds if deadline is None else min(now + post.timeout_seconds, deadline)
            try:
                prepared = self._prepare(index, post, give_up_at, now)
            except Exception as exc:
                sent[index] = (exc, time.perf_counter())
                continue
            if isinstance(prepared, WebhookOutcome):
                sent[index] = (prepared, time.perf_counter())
            else:
                flights.append(prepared)
        if flights:
            _SendAll(self, flights, executor, sent).run()
        return [item for item in sent if item is not None]  # all of them: every flight ends with its outcome

    def close(self) -> None:
        """Close every kept-alive connection."""
        with self._lock:
            idle = [sock for socks in self._idle.values() for sock in socks]
            self._idle.clear()
        for sock in idle:
            sock.close()

    def _prepare(self, index: int, post: WebhookPost, give_up_at: float, now: float) -> _Flight | WebhookOutcome:
        """``post`` ready to fly, or why it is not sent at all."""
        try:
            endpoint = _endpoint(post.url)
        except WebhookUrlInvalidError as exc:
            return WebhookOutcome(error=str(exc), refused=True)
        if endpoint.scheme == "http" and not post.allow_http:
            return WebhookOutcome(error="plain http refused: the destination does not allow http", refused=True)
        request = _request(endpoint, post.headers, post.body)
        if give_up_at <= now:
            return WebhookOutcome(error="not sent: no time left before the deadline")
        lookup_key = (endpoint.host, endpoint.port, post.allow_private_network)
        flight = _Flight(index, endpoint, lookup_key, request, give_up_at, wake_at=give_up_at)
        cached = self._addresses.get(lookup_key)
        if cached is not None and cached[0] > self._clock():
            if isinstance(cached[1], str):
                return WebhookOutcome(error=cached[1], refused=True)
            self._checked(flight, cached[1])
        return flight

    def _checked(self, flight: _Flight, addresses: list[str]) -> None:
        """Go on with ``flight`` on a kept-alive connection to one of ``addresses``, or connect to the first."""
        flight.addresses = addresses
        kept = self._take_idle(flight.endpoint, addresses)
        if kept is None:
            flight.step = _Step.CONNECT
        else:
            flight.key, flight.sock = kept
            flight.step = _Step.WRITE

    def _look_up(self, key: tuple[str, int, bool]) -> list[str] | str:
        host, port, allow_private = key
        answer: list[str] | str
        try:
            answer = resolve_public(host, port, allow_private=allow_private, resolver=self._resolver)
        except WebhookAddressRefusedError as exc:
            answer = str(exc)
        self._addresses[key] = (self._clock() + self._dns_ttl_seconds, answer)
        return answer

    def _take_idle(self, endpoint: _Endpoint, addresses: list[str]) -> tuple[_ConnectionKey, socket.socket] | None:
        with self._lock:
            for address in addresses:
                key = (endpoint.scheme, endpoint.host, endpoint.port, address)
                idle = self._idle.get(key)
                while idle:
                    sock = idle.pop()
                    if _closed_by_peer(sock):
                        sock.close()
                        continue
                    self._idle.move_to_end(key)
                    return key, sock
        return None

    def _keep(self, key: _ConnectionKey, sock: socket.socket) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            self._idle.move_to_end(key)
            kept = len(idle) < self._max_idle_per_address
            if kept:
                idle.append(sock)
            evicted = self._idle.popitem(last=False)[1] if len(self._idle) > self._max_addresses else []
        if not kept:
            sock.close()
        for other in evicted:
            other.close()

    def _tls(self) -> ssl.SSLContext:
        # Loading the trust store costs milliseconds; once per container, not once per connection.
        if self._tls_context is None:
            context = ssl.create_default_context(cafile=self._ca_certs)
            context.minimum_version = ssl.TLSVersion.TLSv1_2
            self._tls_context = context
        return self._tls_context


class _SendAll:
    """One ``send_all`` call: moves its flights on as their sockets (or lookups) get ready, each by its deadline."""

    def __init__(self, sender: WebhookSender, flights: list[_Flight], executor: Executor, sent: list[Sent | None]):
        self._sender = sender
        self._flights = flights
        self._flying = set(flights)
        self._executor = executor
        self._sent = sent
        # poll(2) keeps no kernel object between calls, unlike epoll: cheaper for one event's few sockets.
        self._selector = selectors.PollSelector()
        self._waker: tuple[socket.socket, socket.socket] | None = None
        self._lookups: dict[tuple[str, int, bool], Future[list[str] | str]] = {}
        self._steps: dict[str, Callable[[_Flight], int | None]] = {
            _Step.LOOKUP: self._lookup_step,
            _Step.CONNECT: self._connect_step,
            _Step.HANDSHAKE: self._handshake_step,
            _Step.WRITE: self._write_step,
            _Step.READ: self._read_step,
        }
        self._waker_lock = threading.Lock()

    def run(self) -> None:
        try:
            for flight in self._flights:  # in the posts' order: the first written is the first answered
                self._advance(flight)
            while self._flying:
                wait = min(flight.wake_at for flight in self._flying) - time.monotonic()
                for key, _ in self._selector.select(max(wait, 0.0)):
                    if key.data is None:
                        self._lookups_done()
                    elif key.data in self._flying:
                        self._advance(key.data)
                now = time.monotonic()
                for flight in [f for f in self._flying if f.wake_at <= now]:
                    self._expire(flight)
        finally:
            for flight in self._flying:  # only if the loop itself failed: nothing may stay half sent
                self._drop(flight)
            self._selector.close()
            with self._waker_lock:
                if self._waker is not None:
                    for end in self._waker:
                        end.close()
                    self._waker = None

    def _advance(self, flight: _Flight) -> None:
        try:
            waiting_for = self._step(flight)
        except Exception as exc:
            self._finish(flight, exc, keep=False)
            return
        if waiting_for is None:
            return
        if flight.sock is not None and waiting_for != flight.watched:
            if flight.watched:
                self._selector.modify(flight.sock, waiting_for, flight)
            else:
                self._selector.register(flight.sock, waiting_for, flight)
            flight.watched = waiting_for

    def _step(self, flight: _Flight) -> int | None:
        """Move ``flight`` on as far as it goes without waiting: the socket events it waits for, None once done."""
        while True:
            waiting_for = self._steps[flight.step](flight)
            if waiting_for != _ON:
                return waiting_for

    def _lookup_step(self, flight: _Flight) -> int | None:
        if flight.lookup is None:
            flight.lookup = self._look_up(flight.lookup_key)
        if not flight.lookup.done():
            return 0
        try:
            addresses = flight.lookup.result()
        except OSError as exc:
            error = f"dns lookup of {flight.endpoint.host} failed: {exc.strerror or exc}"
            self._finish(flight, WebhookOutcome(error=error))
            return None
        if isinstance(addresses, str):
            self._finish(flight, WebhookOutcome(error=addresses, refused=True))
            return None
        self._sender._checked(flight, addresses)
        return _ON

    def _connect_step(self, flight: _Flight) -> int | None:
        if flight.sock is None:
            started = self._connect_next(flight)
            if started is None:
                self._finish(flight, WebhookOutcome(error="connection timed out"))
                return None
            if started == errno.EINPROGRESS:
                return _WRITE
            failure = started
        else:  # writable: the attempt has ended, one way or the other
            failure = flight.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if failure:
            self._drop(flight)
            if flight.next_address < len(flight.addresses) and time.monotonic() < flight.give_up_at:
                return _ON  # refused or unreachable at once (an IPv6 address without IPv6 egress): try the next
            self._finish(flight, WebhookOutcome(error=f"connection failed: {os.strerror(failure)}"))
            return None
        flight.wake_at = flight.give_up_at
        if flight.endpoint.scheme == "http":
            flight.step = _Step.WRITE
            return _ON
        raw = _socket_of(flight)
        self._unwatch(flight)
        tls_name = flight.endpoint.host.rstrip(".")
        flight.sock = self._sender._tls().wrap_socket(raw, server_hostname=tls_name, do_handshake_on_connect=False)
        flight.step = _Step.HANDSHAKE
        return _ON

    def _handshake_step(self, flight: _Flight) -> int | None:
        sock = _socket_of(flight)
        if not isinstance(sock, ssl.SSLSocket):
            raise TypeError("a TLS handshake needs a TLS socket")
        try:
            sock.do_handshake()
        except ssl.SSLWantReadError:
            return _READ
        except ssl.SSLWantWriteError:
            return _WRITE
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self._finish(flight, WebhookOutcome(error=_tls_failure(exc)))
            return None
        except OSError as exc:
            self._finish(flight, WebhookOutcome(error=f"tls failed: {type(exc).__name__}"))
            return None
        flight.step = _Step.WRITE
        return _ON

    def _write_step(self, flight: _Flight) -> int | None:
        try:
            flight.written += _socket_of(flight).send(memoryview(flight.request)[flight.written :])
        except (BlockingIOError, ssl.SSLWantWriteError):
            return _WRITE
        except ssl.SSLWantReadError:
            return _READ
        except OSError:
            flight.step = _Step.READ  # the receiver may have answered before it hung up, which reading tells
            return _ON
        if flight.written < len(flight.request):
            return _ON
        flight.step = _Step.READ
        return _READ  # the answer cannot be there yet: wait rather than try a read that finds nothing

    def _read_step(self, flight: _Flight) -> int | None:
        sock = _socket_of(flight)
        try:
            chunk = sock.recv(65536)
        except (BlockingIOError, ssl.SSLWantReadError):
            return _READ
        except ssl.SSLWantWriteError:
            return _WRITE
        except OSError as exc:
            return self._dropped(flight, type(exc).__name__)
        if not chunk:
            if not flight.answer:
                return self._dropped(flight, "RemoteDisconnected")
            answer = self._head(flight)
            if answer is not None:
                self._answered(flight, answer, complete=False)
                return None
            return self._dropped(flight, "IncompleteRead") if flight in self._flying else None
        flight.answer += chunk
        answer = self._head(flight)
        if flight not in self._flying:
            return None  # not HTTP
        if answer is not None and (answer.end is not None or not answer.reusable):
            self._answered(flight, answer, complete=True)
            return None
        # TLS may hold decrypted bytes the socket no longer signals.
        return _ON if isinstance(sock, ssl.SSLSocket) and sock.pending() else _READ

    def _look_up(self, key: tuple[str, int, bool]) -> Future[list[str] | str]:
        if self._waker is None:
            self._waker = socket.socketpair()
            self._waker[0].setblocking(False)
            self._selector.register(self._waker[0], _READ, None)
        future = self._lookups.get(key)
        if future is None:  # destinations on one host share a lookup
            future = self._lookups[key] = self._executor.submit(self._sender._look_up, key)
            future.add_done_callback(self._wake)
        return future

    def _wake(self, _: object) -> None:
        # Lookups outlive a fan-out that stopped waiting for them: never write to a socket closed (and reused) since.
        with self._waker_lock:
            if self._waker is not None:
                self._waker[1].send(b"\0")

    def _lookups_done(self) -> None:
        if self._waker is not None:
            with contextlib.suppress(BlockingIOError):
                self._waker[0].recv(4096)
        for flight in [f for f in self._flying if f.step == _Step.LOOKUP and f.lookup and f.lookup.done()]:
            self._advance(flight)

    def _connect_next(self, flight: _Flight) -> int | None:
        """Start connecting to the next checked address: ``connect_ex``'s code, or None if the time is up."""
        now = time.monotonic()
        if flight.next_address >= len(flight.addresses) or now >= flight.give_up_at:
            return None
        address = flight.addresses[flight.next_address]
        flight.next_address += 1
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setblocking(False)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        flight.sock = sock
        flight.key = (flight.endpoint.scheme, flight.endpoint.host, flight.endpoint.port, address)
        flight.wake_at = min(flight.give_up_at, now + MAX_CONNECT_SECONDS)
        return sock.connect_ex((address, flight.endpoint.port))

    def _answered(self, flight: _Flight, answer: _Answer, *, complete: bool) -> None:
        keep = complete and answer.reusable and answer.end == len(flight.answer)
        excerpt = None if 200 <= answer.status < 300 else _excerpt(flight.answer)
        outcome = WebhookOutcome(status=answer.status, retry_after=answer.retry_after, excerpt=excerpt)
        self._finish(flight, outcome, keep=keep)

    def _head(self, flight: _Flight) -> _Answer | None:
        """The head of the answer read so far; an answer that is not HTTP finishes ``flight``."""
        try:
            return _parse_answer(flight.answer)
        except ValueError as exc:
            self._finish(flight, WebhookOutcome(error=f"connection dropped: {exc}"))
            return None

    def _dropped(self, flight: _Flight, reason: str) -> int | None:
        """A connection that closed before any answer: once more on a fresh one if time is left, else a failure."""
        if flight.answer or flight.resent or time.monotonic() >= flight.give_up_at:
            self._finish(flight, WebhookOutcome(error=f"connection dropped: {reason}"), keep=False)
            return None
        self._drop(flight)
        flight.resent = True
        flight.written = 0
        flight.next_address = 0
        flight.step = _Step.CONNECT
        return self._step(flight)

    def _expire(self, flight: _Flight) -> None:
        trying = flight.step == _Step.CONNECT and flight.next_address < len(flight.addresses)
        if trying and time.monotonic() < flight.give_up_at:
            self._drop(flight)  # this address did not answer in time; the next one may
            self._advance(flight)
            return
        if flight.step == _Step.LOOKUP:
            error = f"dns lookup of {flight.endpoint.host} timed out"
        elif flight.step in (_Step.CONNECT, _Step.HANDSHAKE):
            error = "connection timed out"
        elif flight.step == _Step.WRITE:
            error = "timed out sending the request"
        else:
            answer = self._head(flight) if flight.answer else None
            if flight not in self._flying:
                return  # not HTTP
            if answer is not None:
                self._answered(flight, answer, complete=False)
                return
            error = "timed out waiting for the answer"
        # An answer arriving later must not be read as the next POST's: the connection goes.
        self._finish(flight, WebhookOutcome(error=error), keep=False)

    def _finish(self, flight: _Flight, outcome: WebhookOutcome | Exception, *, keep: bool = False) -> None:
        if keep and flight.sock is not None and flight.key is not None:
            self._unwatch(flight)
            self._sender._keep(flight.key, flight.sock)
            flight.sock = None
        else:
            self._drop(flight)
        self._flying.discard(flight)
        self._sent[flight.index] = (outcome, time.perf_counter())

    def _unwatch(self, flight: _Flight) -> None:
        if flight.watched and flight.sock is not None:
            self._selector.unregister(flight.sock)
        flight.watched = 0

    def _drop(self, flight: _Flight) -> None:
        if flight.sock is not None:
            self._unwatch(flight)
            flight.sock.close()
            flight.sock = None


def _request(endpoint: _Endpoint, headers: Mapping[str, str], body: bytes) -> bytes:
    """The POST as bytes; raises ValueError for a header that would break the request's framing."""
    lines = [f"POST {endpoint.target} HTTP/1.1", f"Host: {endpoint.host_header}"]
    for name, value in headers.items():
        if not _FIELD_NAME.fullmatch(name) or _FIELD_VALUE_FORBIDDEN.search(value):
            raise ValueError(f"header {name!r} is not a valid HTTP field")
        lines.append(f"{name}: {value}")
    lines.append(f"Content-Length: {len(body)}")
    lines.append("\r\n")
    return "\r\n".join(lines).encode("latin-1") + body


def _excerpt(data: bytearray) -> str | None:
    """The first characters of an answer's body, for the attempt log: printable text only, never the headers."""
    head_end = data.find(b"\r\n\r\n")
    if head_end < 0:
        return None
    text = bytes(data[head_end + 4 : head_end + 4 + EXCERPT_CHARS * 4]).decode("utf-8", "replace")
    shown = "".join(c if c.isprintable() else " " for c in text).strip()[:EXCERPT_CHARS]
    return shown or None


def _parse_answer(data: bytearray) -> _Answer | None:
    """The answer's head, once all of it has arrived; raises ValueError (naming the fault) if it is not HTTP."""
    start = 0
    while True:
        head_end = data.find(b"\r\n\r\n", start)
        if head_end < 0:
            if len(data) - start > MAX_HEAD_BYTES:
                raise ValueError("LineTooLong")
            return None
        status_line, *lines = bytes(data[start:head_end]).decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not (len(code) == 3 and code.isascii() and code.isdigit()):
            raise ValueError("BadStatusLine")
        status = int(code)
        if status < 100:
            raise ValueError("BadStatusLine")
        start = head_end + 4
        if status >= 200:
            break
        # An interim answer (103 Early Hints): the final one follows.
    fields: dict[str, str] = {}
    for line in lines:
        name, _, value = line.partition(":")
        fields.setdefault(name.strip().lower(), value.strip())
    reusable = version == "HTTP/1.1" and fields.get("connection", "").lower() != "close"
    end, framed = _body_end(data, start, status, fields)
    if end is None and len(data) - start > MAX_ANSWER_BYTES:
        framed = False
    return _Answer(status, fields.get("retry-after"), end, reusable and framed)


def _body_end(data: bytearray, start: int, status: int, fields: Mapping[str, str]) -> tuple[int | None, bool]:
    """Where the body that starts at ``start`` ends (None: not all read yet), and whether its length is known."""
    if status in (204, 304):
        return start, True
    if "transfer-encoding" in fields:
        if fields["transfer-encoding"].lower() != "chunked":
            return None, False
        return _chunked_end(data, start), True
    if "content-length" not in fields:
        return None, False  # the body runs until the receiver closes: the status is all the relay needs
    text = fields["content-length"]
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_ANSWER_BYTES:
        return None, False
    end = start + int(text)
    return (end if len(data) >= end else None), True


def _socket_of(flight: _Flight) -> socket.socket:
    if flight.sock is None:
        raise RuntimeError("a POST past its connection step has a socket")
    return flight.sock


def _chunked_end(data: bytearray, position: int) -> int | None:
    """Where a chunked body that starts at ``position`` ends, or None while it is still arriving."""
    while True:
        line_end = data.find(b"\r\n", position)
        if line_end < 0:
            return None
        size_text = bytes(data[position:line_end]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise ValueError("BadChunkSize") from None
        if size == 0:
            trailers_end = data.find(b"\r\n\r\n", line_end)  # the empty line after any trailer fields
            return None if trailers_end < 0 else trailers_end + 4
        position = line_end + 2 + size + 2
        if position > len(data):
            return None


def _closed_by_peer(sock: socket.socket) -> bool:
    """Whether an idle kept-alive connection has something to read: the receiver closed it (or sent junk)."""
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    return bool(poller.poll(0))


def _tls_failure(exc: ssl.SSLError | ssl.CertificateError) -> str:
    reason = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or str(exc)
    return f"tls failed: {reason or type(exc).__name__}"[:300]
