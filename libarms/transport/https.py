"""One-shot HTTPS client for ARMS (I/O edge; framing is in ``libarms.protocol.http``).

:func:`open_tls` connects (directly or through an HTTP CONNECT proxy), sets TCP_NODELAY, does
the TLS handshake under one deadline and verifies the server (``transport.tls``). :func:`post`
writes a prepared request in one ``sendall`` and reads the answer with
:class:`~libarms.protocol.http.ResponseParser` under the 30 s receive limit. The push side
reuses both (method query, confirmation-start, done requests, tunnels).
"""

from __future__ import annotations

import logging
import socket
import ssl
import time

from ..errors import ProtocolError
from ..protocol.http import HttpResponse, ResponseParser, Url, parse_url
from .tls import TlsPolicy, client_context, recv_until, verify_peer

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Callable, Optional

log = logging.getLogger("libarms.https")

CONNECT_TIMEOUT = 30.0
RESPONSE_TIMEOUT = 30.0
MAX_PROXY_ANSWER = 8191


class TransportError(OSError):
    """A connection-level failure with a message that says which step failed."""


class HttpStatusError(TransportError):
    def __init__(self, status: int, message: str):
        self.status = status
        super().__init__(message)


def _remaining(deadline: float, what: str) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TransportError(f"timed out {what}")
    return left


def _proxy_connect(sock: socket.socket, target: Url, deadline: float) -> None:
    hostport = target.netloc
    sock.sendall(f"CONNECT {hostport} HTTP/1.1\r\nHost: {hostport}\r\n\r\n".encode("ascii"))
    buf = b""
    while b"\r\n\r\n" not in buf:
        sock.settimeout(_remaining(deadline, "waiting for the proxy's CONNECT answer"))
        data = sock.recv(MAX_PROXY_ANSWER)
        if not data:
            raise TransportError("proxy closed the connection before answering CONNECT")
        buf += data
        if len(buf) > MAX_PROXY_ANSWER:
            raise TransportError("proxy CONNECT answer longer than 8191 bytes")
    first = buf.split(b"\r\n", 1)[0]
    parts = first.split(b" ")
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit() \
            or not 200 <= int(parts[1]) <= 299:
        raise TransportError(f"proxy refused CONNECT {hostport}: {first[:80]!r}")
    if buf.index(b"\r\n\r\n") + 4 != len(buf):
        raise TransportError("proxy sent data after its CONNECT answer")


def open_tls(url: "Url | str", policy: TlsPolicy, *, proxy: Optional[str] = None,
             timeout: float = CONNECT_TIMEOUT, note: Callable[[str], None] = log.info) -> ssl.SSLSocket:
    """Connect to ``url`` and complete a verified TLS handshake; the socket is returned
    blocking with no timeout set. Raises OSError / ssl.SSLError / TransportError."""
    if isinstance(url, str):
        url = parse_url(url)
    if url.scheme != "https":
        raise TransportError(f"{url}: ARMS connections need https")
    deadline = time.monotonic() + timeout
    via = parse_url(proxy) if proxy else None
    ctx = client_context(policy)
    addr = (via or url).host, (via or url).port
    # An ASCII host goes to getaddrinfo as bytes: a str one loads the "idna" codec (with
    # unicodedata and stringprep, ~0.5 MiB kept for the daemon's life) for nothing.
    host = addr[0].encode("ascii") if addr[0].isascii() else addr[0]
    sock = socket.create_connection((host, addr[1]),
                                    timeout=_remaining(deadline, f"connecting to {addr[0]}"))
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if via is not None:
            _proxy_connect(sock, url, deadline)
            note(f"proxy {via.netloc} connected to {url.netloc}")
        sock.settimeout(_remaining(deadline, "before the TLS handshake"))
        tls = ctx.wrap_socket(sock, server_hostname=None)
    except BaseException:
        sock.close()
        raise
    try:
        verify_peer(tls, policy, url.host, note=note)
        tls.settimeout(None)
        return tls
    except BaseException:
        tls.close()
        raise


#: One-shot work for the next exchange to run while its answer is on the way (while_waiting).
_WAITING: list = []


def while_waiting(fn: Callable[[], None]) -> None:
    """Have ``fn`` run once, on the thread of a later :func:`exchange` (of any agent), after
    its request is sent and before its answer is read: CPU work that is not needed before the
    answer (armsd imports the push phase there) overlaps the server's time to answer instead
    of delaying the request, and without a second thread there is no GIL hand-over delaying
    the exchange either. Each exchange runs the oldest queued ``fn`` only, so that work queued
    in pieces spreads over the waits of consecutive exchanges. Queuing the same ``fn`` twice
    runs it once. An exception from ``fn`` is logged (debug) and ignored; the answer's timeout
    starts after it."""
    if fn not in _WAITING:
        _WAITING.append(fn)


def _run_waiting() -> None:
    try:
        fn = _WAITING.pop(0)                   # atomic: another exchange may take its own
    except IndexError:
        return
    try:
        fn()
    except Exception as e:
        log.debug("work queued for the wait failed: %s", e)


def exchange(tls: ssl.SSLSocket, request: bytes, *, timeout: float = RESPONSE_TIMEOUT,
             max_body: int = 4 * 1024 * 1024) -> HttpResponse:
    """Write ``request`` in one go and read one response (whole answer within ``timeout``)."""
    tls.settimeout(timeout)
    tls.sendall(request)
    if _WAITING:
        _run_waiting()
    deadline = time.monotonic() + timeout
    parser = ResponseParser(max_body=max_body)
    complete = [False]

    def feed(data: bytes) -> None:
        complete[0] = bool(parser.feed(data))

    recv_until(tls, deadline, feed, lambda: complete[0], parser.feed_eof, TransportError,
               "waiting for the server's answer")
    return parser.response


def post(url: "Url | str", request: bytes, policy: TlsPolicy, *, proxy: Optional[str] = None,
         connect_timeout: float = CONNECT_TIMEOUT, response_timeout: float = RESPONSE_TIMEOUT,
         max_body: int = 4 * 1024 * 1024, note: Callable[[str], None] = log.info) -> HttpResponse:
    """One request, one answer, connection closed. HttpStatusError for a status >= 400 (a
    failed attempt for libarms); ProtocolError for a malformed answer."""
    tls = open_tls(url, policy, proxy=proxy, timeout=connect_timeout, note=note)
    try:
        resp = exchange(tls, request, timeout=response_timeout, max_body=max_body)
    finally:
        tls.close()
    if resp.status >= 400:
        raise HttpStatusError(resp.status, f"{url}: HTTP {resp.status} {resp.reason}")
    return resp


__all__ = ["TransportError", "HttpStatusError", "open_tls", "exchange", "post", "ProtocolError",
           "while_waiting"]
