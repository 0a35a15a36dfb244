"""HTTP of the push phase: the device's https-simple listener and its form-B client requests.

Sans-I/O parts (``SimpleRequestParser``, ``ResponseReader``, the ``build_*`` functions) follow
W 2.3-2.5 byte for byte; the small helpers at the bottom do the I/O on blocking sockets with deadlines.

Listener rules (W 2.5): request line ``GET|POST <uri> HTTP/d.d`` (URI <= 80 characters, else an
ARMS generic error 202 in a 200 answer), header lines <= 1024 bytes (else 400), Basic
credentials ``<distribution-id>:<RS-SA key>`` (else 401), a chunked body is answered 400 with
``Transfer-Encoding: chunked`` in the head like 5.33 (vectors simple/13-14), the body ends at
``</arms-message>`` (Content-Length is only used to stop reading early).
"""

from __future__ import annotations

import base64
import binascii
import re
import socket
import ssl
import time

from .._record import Record
from ..errors import ProtocolError
from ..protocol.push import Url
from .tls import recv_until

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional, Sequence

XML_DECL = b'<?xml version="1.0" encoding="US-ASCII" ?>\r'
MAX_HEADER_LINE = 1024
MAX_URI = 80
END_TAG = b"</arms-message>"


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


# -- requests the device sends (W 2.3) ----------------------------------------------------------

def host_header(url: Url) -> str:
    """``Host`` as libarms writes it: always with the port, IPv6 without brackets (quirk)."""
    return f"{url.host}:{url.port}"


def build_form_a(url: Url, user: str, password: str, body: bytes) -> bytes:
    """HTTP/1.0 POST with Content-Length (pull and method query)."""
    return (f"POST {url.path} HTTP/1.0\r\nContent-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\nAuthorization: Basic {basic_auth(user, password)}"
            f"\r\n\r\n").encode("ascii") + body


def build_form_b(url: Url, user: str, password: str, pieces: Sequence[bytes]) -> bytes:
    """HTTP/1.1 chunked POST, one chunk per builder piece (event loop requests)."""
    head = (f"POST {url.path} HTTP/1.1\r\nHost: {host_header(url)}\r\nConnection: close\r\n"
            f"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Basic {basic_auth(user, password)}\r\n\r\n").encode("ascii")
    body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces if p)
    return head + body + b"0\r\n\r\n"


def build_tunnel_head(url: Url, user: str, password: str) -> bytes:
    """The tunnel's request head (W 5.1 step 3): form B without body."""
    return (f"POST {url.path} HTTP/1.1\r\nHost: {host_header(url)}\r\nConnection: close\r\n"
            f"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\n"
            f"Authorization: Basic {basic_auth(user, password)}\r\n\r\n").encode("ascii")


# -- answers the device writes as https-simple server (W 2.5) ------------------------------------

def build_sa_response(pieces: Iterable[bytes]) -> bytes:
    return (b"HTTP/1.0 200 OK\r\nServer: armsd\r\nConnection: close\r\nContent-Type: text/xml\r\n\r\n"
            + XML_DECL + b"".join(pieces))


def build_sa_error(status: int, chunked: bool = False) -> bytes:
    line = b"HTTP/1.0 401 Authorization Required" if status == 401 else b"HTTP/1.0 400 Bad Request"
    te = b"Transfer-Encoding: chunked\r\n" if chunked else b""
    return (line + b'\r\nWWW-Authenticate: Basic realm=""\r\nServer: armsd\r\nConnection: close\r\n'
            b"Content-Type: text/xml\r\n" + te + b"\r\n" + XML_DECL)


class SimpleRequest(Record):
    """Outcome of reading one request on the listener."""

    status: int                  # 200: body holds the ARMS message; 202: bad request line;
    body: bytes = b""            # 400 / 401: HTTP error, answer with build_sa_error
    chunked: bool = False
    reason: str = ""


class SimpleRequestParser:
    """Incremental parser of one request to the https-simple listener."""

    def __init__(self, distribution_id: str, rs_key: str, max_body: int):
        self._creds = f"{distribution_id}:{rs_key}".encode()
        self._max_body = max_body
        self._buf = bytearray()
        self._state = "line"
        self._auth = False
        self._chunked = False
        self._length: Optional[int] = None
        self.result: Optional[SimpleRequest] = None

    def feed(self, data: bytes) -> Optional[SimpleRequest]:
        """Feed bytes; returns the result once decided (then stays decided)."""
        if self.result is not None:
            return self.result
        self._buf += data
        while self.result is None:
            if self._state in ("line", "headers"):
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_LINE:
                        self._decide(400, "header line longer than 1024 bytes")
                    break
                line = bytes(self._buf[:end + 1])
                del self._buf[:end + 1]
                if len(line) > MAX_HEADER_LINE:
                    self._decide(400, "header line longer than 1024 bytes")
                    break
                self._line(line.rstrip(b"\r\n"))
            else:
                self._body_progress()
                break
        return self.result

    def feed_eof(self) -> SimpleRequest:
        if self.result is None:
            if self._state == "body":
                self._decide(200, body=bytes(self._buf))
            else:
                self._decide(400, "connection closed inside the request head")
        return self.result  # type: ignore[return-value]

    def _decide(self, status: int, reason: str = "", body: bytes = b""):
        self.result = SimpleRequest(status, body, self._chunked, reason)

    def _line(self, line: bytes):
        if self._state == "line":
            m = re.fullmatch(rb"([A-Za-z]{1,7}) (\S+) HTTP/\d\.\d", line)
            if not m or m.group(1).upper() not in (b"GET", b"POST") or len(m.group(2)) > MAX_URI:
                self._decide(202, f"bad request line {line[:60]!r}")
                return
            self._state = "headers"
            return
        if line == b"":
            if self._chunked:
                self._decide(400, "chunked request bodies are refused (like libarms 5.33)")
            elif not self._auth:
                self._decide(401, "missing or wrong Basic credentials")
            else:
                self._state = "body"
                self._body_progress()
            return
        if line.startswith(b"Transfer-Encoding") and b"chunked" in line[17:]:
            self._chunked = True
        elif line.startswith(b"Authorization: Basic "):
            try:
                self._auth = base64.b64decode(line[21:].strip(), validate=True) == self._creds
            except (binascii.Error, ValueError):
                self._auth = False
        elif line.lower().startswith(b"content-length:"):
            try:
                self._length = int(line.split(b":", 1)[1].strip())
            except ValueError:
                self._length = None

    def _body_progress(self):
        if len(self._buf) > self._max_body:
            self._decide(200, body=bytes(self._buf[: self._max_body + 1]))
            return
        if self._length is not None and len(self._buf) >= self._length:
            self._decide(200, body=bytes(self._buf[: self._length]))
            return
        end = self._buf.find(END_TAG)
        if end >= 0:
            self._decide(200, body=bytes(self._buf[: end + len(END_TAG)]))


# -- reading a server's HTTP answer (W 2.4) --------------------------------------------------------

class HttpAnswer(Record):
    status: int
    body: bytes


class ResponseReader:
    """Incremental reader of a server answer: status line, headers (one checked), body up to
    ``</arms-message>`` or the end of the connection; chunked bodies decoded."""

    def __init__(self, max_body: int = 1024 * 1024):
        self._buf = bytearray()
        self._max = max_body
        self._status: Optional[int] = None
        self._in_body = False
        self._chunked = False
        self._body = bytearray()
        self.done = False

    def feed(self, data: bytes) -> bool:
        self._buf += data
        if not self._in_body:
            while True:
                end = self._buf.find(b"\n")
                if end < 0:
                    if len(self._buf) > MAX_HEADER_LINE:
                        raise ProtocolError("server header line longer than 1024 bytes")
                    return False
                line = bytes(self._buf[:end]).rstrip(b"\r")
                del self._buf[:end + 1]
                if self._status is None:
                    m = re.match(rb"HTTP/\d\.\d (\d{3})", line)
                    if not m:
                        raise ProtocolError(f"bad HTTP status line {line[:60]!r}")
                    self._status = int(m.group(1))
                elif line == b"":
                    self._in_body = True
                    break
                elif line.startswith(b"Transfer-Encoding") and b"chunked" in line:
                    self._chunked = True
        if self._chunked:
            self._dechunk()
        else:
            self._body += self._buf
            del self._buf[:]
        if len(self._body) > self._max:
            raise ProtocolError(f"server answer larger than {self._max} bytes")
        if END_TAG in self._body:
            self.done = True
        return self.done

    def _dechunk(self):
        while True:
            end = self._buf.find(b"\r\n")
            if end < 0:
                return
            line = bytes(self._buf[:end])
            if line == b"":
                del self._buf[:2]
                continue
            try:
                size = int(line.split(b";")[0], 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size line {line[:40]!r}") from None
            if size == 0:
                del self._buf[:]
                self.done = True
                return
            if len(self._buf) < end + 2 + size + 2:
                return
            self._body += self._buf[end + 2:end + 2 + size]
            del self._buf[:end + 2 + size + 2]

    def answer(self) -> HttpAnswer:
        if self._status is None:
            raise ProtocolError("connection closed before an HTTP status line")
        return HttpAnswer(self._status, bytes(self._body))


# -- I/O helpers (blocking sockets with deadlines) -------------------------------------------------

def connect_tls(url: Url, ctx: Optional[ssl.SSLContext], timeout: float, *, policy=None,
                proxy: Optional[str] = None, note=None) -> ssl.SSLSocket:
    """TCP (through the HTTP CONNECT ``proxy`` when given, W 2.6) + TLS to a numeric URL, no
    SNI, bounded by ``timeout``; the socket comes back blocking, with ``timeout`` set. With a
    :class:`~libarms.transport.tls.TlsPolicy` (the agent's connections always have one) this is
    :func:`libarms.transport.https.open_tls`: the peer is checked after the handshake
    (``tls.verify_peer``) and ``ctx`` is the policy's cached context anyway."""
    if policy is not None:
        from .https import open_tls as _open
        kw = {"note": note} if note is not None else {}
        sock = _open(url, policy, proxy=proxy, timeout=timeout, **kw)
    else:
        if proxy:
            raise ValueError("a proxy needs a TLS policy")
        assert ctx is not None
        host = url.host.encode("ascii") if url.host.isascii() else url.host
        raw = socket.create_connection((host, url.port), timeout=timeout)
        try:
            sock = ctx.wrap_socket(raw, server_hostname=None)
        except BaseException:
            raw.close()
            raise
    sock.settimeout(timeout)
    return sock


def close_tls(sock: ssl.SSLSocket, wait: float = 2.0) -> None:
    """Normal TLS close: close_notify, then the peer's awaited at most ``wait`` seconds (which
    also drains what it still sends: closing on unread bytes would reset the connection and
    could cut our last answer short). ``wait=0``: close_notify only, for a client that has
    read the whole answer."""
    try:
        if wait > 0:
            sock.settimeout(wait)
        else:
            sock.setblocking(False)
        sock.unwrap()
    except (OSError, ValueError):
        pass
    finally:
        sock.close()


def request(sock: ssl.SSLSocket, data: bytes, timeout: float, max_body: int = 1024 * 1024) -> HttpAnswer:
    """Write ``data`` and read one answer on ``sock``, the whole exchange within ``timeout``."""
    deadline = time.monotonic() + timeout
    sock.settimeout(timeout)
    sock.sendall(data)
    rr = ResponseReader(max_body)
    recv_until(sock, deadline, rr.feed, lambda: rr.done, what="waiting for the server's answer")
    return rr.answer()


def exchange(url: Url, req: bytes, ctx: Optional[ssl.SSLContext], timeout: float = 30.0,
             max_body: int = 1024 * 1024, **tls) -> HttpAnswer:
    """Send one request on a new TLS connection and read the answer (30 s each, W 2.7).
    ``tls``: ``policy``/``proxy``/``note`` for :func:`connect_tls`."""
    sock = connect_tls(url, ctx, timeout, **tls)
    try:
        return request(sock, req, timeout, max_body)
    finally:
        close_tls(sock, 0)


# -- asyncio client for the test server's proxy (never called on the device) -----------------------

async def open_tls(url: Url, ctx: ssl.SSLContext, timeout: float, *, policy=None,
                   proxy: Optional[str] = None, note=None):
    """asyncio flavour of :func:`connect_tls` (streams), for ``libarms.testserver.proxy``;
    asyncio is imported here only, so the device never loads it."""
    import asyncio

    async def connect():
        if not proxy:
            # "" and not None: asyncio replaces None by the host (SNI, and the "idna" codec
            # loaded for good); "" sends no name, as libarms (arms-wire.md: SNI not sent).
            return await asyncio.open_connection(url.host, url.port, ssl=ctx, server_hostname="")
        from ..protocol.push import parse_url
        via = parse_url(proxy)
        reader, writer = await asyncio.open_connection(via.host, via.port)
        target = f"[{url.host}]:{url.port}" if ":" in url.host else f"{url.host}:{url.port}"
        writer.write(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode("ascii"))
        await writer.drain()
        head = await reader.readuntil(b"\r\n\r\n")
        m = re.match(rb"HTTP/\d\.\d (\d{3})", head)
        if not m or not 200 <= int(m.group(1)) <= 299:
            writer.close()
            raise ConnectionRefusedError(f"proxy {via.netloc} refused CONNECT {target}: {head[:60]!r}")
        await writer.start_tls(ctx, server_hostname=None)
        return reader, writer

    reader, writer = await asyncio.wait_for(connect(), timeout)
    if policy is not None:
        from .tls import verify_peer
        try:
            kw = {"note": note} if note is not None else {}
            verify_peer(writer.get_extra_info("ssl_object"), policy, url.host, **kw)
        except BaseException:
            writer.transport.abort()
            raise
    return reader, writer
