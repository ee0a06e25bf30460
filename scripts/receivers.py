"""Real webhook receivers on 127.0.0.1 for the tests, the demo and the bench: they record every request.

A receiver is a ``ThreadingHTTPServer`` on an ephemeral port, speaking HTTP/1.1 keep-alive like a production
receiver, optionally over TLS with a throwaway certificate authority. Times are ``time.monotonic()`` readings, so
tests compare the order of events rather than wall-clock thresholds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from standardwebhooks import Webhook


@dataclass(frozen=True)
class ReceivedRequest:
    """One request as the receiver read it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int
    received_at: float
    answered_at: float


@dataclass
class Answer:
    """How a receiver answers a path: a status after ``delay`` seconds, or dropping the first requests unanswered.

    With ``trickle``, the answer goes out one byte at a time, that many seconds apart. ``raw`` is sent as it is,
    instead of an answer the receiver writes (chunked answers, interim answers, answers that are not HTTP).
    """

    status: int = 204
    delay: float = 0.0
    trickle: float = 0.0
    retry_after: str | None = None
    location: str | None = None
    body: bytes = b""
    drop_first: int = 0
    raw: bytes | None = None


@dataclass(frozen=True)
class TlsFiles:
    """A throwaway certificate authority and a server certificate it signed for ``hostname``."""

    hostname: str
    ca_cert: Path
    server_cert: Path
    server_key: Path


class Receiver:
    """A webhook receiver on 127.0.0.1; use as a context manager (or ``start``/``stop``)."""

    def __init__(self, tls: TlsFiles | None = None) -> None:
        self._lock = threading.Lock()
        self._requests: list[ReceivedRequest] = []
        self._answers: dict[str, Answer] = {}
        self._dropped: dict[str, int] = {}
        self._server = _Server(("127.0.0.1", 0), _handler_for(self))
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(tls.server_cert, tls.server_key)
            self._server.tls = context
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.01,), daemon=True)

    @property
    def port(self) -> int:
        """The ephemeral port the receiver listens on."""
        return int(self._server.server_address[1])

    def url(self, path: str = "/hook", *, host: str = "127.0.0.1", scheme: str = "http") -> str:
        """The url of ``path`` on this receiver."""
        return f"{scheme}://{host}:{self.port}{path}"

    def answer(self, path: str, answer: Answer) -> None:
        """Answer requests to ``path`` this way from now on (204 No Content otherwise)."""
        with self._lock:
            self._answers[path] = answer

    @property
    def requests(self) -> list[ReceivedRequest]:
        """Every request recorded so far, in the order they were read."""
        with self._lock:
            return list(self._requests)

    @staticmethod
    def verify(request: ReceivedRequest, secret: str) -> Any:
        """Check the request's Standard Webhooks signature as a consumer would; returns the parsed body."""
        return Webhook(secret).verify(request.body, request.headers)

    def start(self) -> Receiver:
        """Serve in a daemon thread."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (handler threads are daemons)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def _answer_for(self, path: str) -> Answer | None:
        """The answer to give, or None to drop this request unanswered."""
        with self._lock:
            answer = self._answers.get(path, Answer())
            dropped = self._dropped.get(path, 0)
            if dropped < answer.drop_first:
                self._dropped[path] = dropped + 1
                return None
            return answer

    def _record(self, request: ReceivedRequest) -> None:
        with self._lock:
            self._requests.append(request)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    tls: ssl.SSLContext | None = None

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens in the handler's thread, so a failing client never blocks the accept loop.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients that hang up or reject the certificate are part of the tests, not errors of the receiver."""


def _handler_for(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 10

        def setup(self) -> None:
            super().setup()
            if isinstance(self.connection, ssl.SSLSocket):
                self.connection.do_handshake()

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received_at = time.monotonic()
            answer = receiver._answer_for(self.path)
            if answer is None:
                self.close_connection = True
                receiver._record(self._request(body, received_at, time.monotonic()))
                return
            if answer.delay:
                time.sleep(answer.delay)
            receiver._record(self._request(body, received_at, time.monotonic()))
            if answer.raw is not None:
                self.wfile.write(answer.raw)
                return
            if answer.trickle:
                for byte in f"HTTP/1.1 {answer.status} Whatever\r\nContent-Length: 0\r\n\r\n".encode():
                    self.wfile.write(bytes([byte]))
                    time.sleep(answer.trickle)
                return
            self.send_response(answer.status)
            self.send_header("Content-Length", str(len(answer.body)))
            if answer.retry_after is not None:
                self.send_header("Retry-After", answer.retry_after)
            if answer.location is not None:
                self.send_header("Location", answer.location)
            self.end_headers()
            self.wfile.write(answer.body)

        def _request(self, body: bytes, received_at: float, answered_at: float) -> ReceivedRequest:
            return ReceivedRequest(
                method=self.command,
                path=self.path,
                headers={name.lower(): value for name, value in self.headers.items()},
                body=body,
                client_port=int(self.client_address[1]),
                received_at=received_at,
                answered_at=answered_at,
            )

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet: tests read the recorded requests instead."""

    return Handler


def make_tls_files(directory: Path, hostname: str) -> TlsFiles:
    """Write a throwaway CA and a server certificate for ``hostname`` (DNS name only) under ``directory``."""
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "relay test CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    files = TlsFiles(
        hostname=hostname,
        ca_cert=directory / "ca.pem",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    files.ca_cert.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    files.server_cert.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    files.server_key.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return files


async def _answer_quickly(reader: Any, writer: Any, delay: tuple[float, float]) -> None:
    """HTTP/1.1 keep-alive with the least parsing that is still correct for POSTs with a Content-Length."""
    import asyncio
    import random

    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            if delay[1]:
                await asyncio.sleep(random.uniform(*delay))
            writer.write(b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ValueError, asyncio.CancelledError):
        # A client that hangs up, or the bench ending while connections are kept alive.
        writer.close()


def serve(count: int, delay: tuple[float, float], lifetime: float) -> None:
    """Serve ``count`` lean receivers (asyncio, one process) answering 204 after ``delay`` s, for the bench.

    ``delay`` is a range: each answer waits a uniformly random time within it.

    They record nothing and parse only Content-Length, so the bench measures senders, not Python's http.server.
    Prints their urls as a JSON line; stops when standard input closes or after ``lifetime`` seconds.
    """
    import asyncio
    import json
    import sys

    async def main() -> None:
        servers = [
            await asyncio.start_server(lambda r, w: _answer_quickly(r, w, delay), "127.0.0.1", 0) for _ in range(count)
        ]
        urls = [f"http://127.0.0.1:{srv.sockets[0].getsockname()[1]}/hook" for srv in servers]
        print(json.dumps(urls), flush=True)
        loop = asyncio.get_running_loop()
        await asyncio.wait_for(loop.run_in_executor(None, sys.stdin.read), timeout=lifetime)

    with contextlib.suppress(TimeoutError):
        asyncio.run(main())


if __name__ == "__main__":
    import sys

    # The delay is seconds, or a range of them: "0.02:0.08".
    low, _, high = sys.argv[2].partition(":")
    serve(int(sys.argv[1]), (float(low), float(high or low)), float(sys.argv[3]) if len(sys.argv) > 3 else 600.0)
