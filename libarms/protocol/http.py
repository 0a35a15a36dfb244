"""HTTP framing for ARMS, sans-I/O (``spec/arms-wire.md`` §2.1, §2.3, §2.4).

* :func:`parse_url` - ARMS URLs: https/http, numeric host only, libarms' length limits.
* :func:`build_post` - form A (HTTP/1.0 with Content-Length), used by the pull and the method
  query; byte-identical to the libarms capture.
* :func:`build_post_chunked` - form B (HTTP/1.1 chunked, one chunk per piece), used by the
  push side for confirmation-start and done requests.
* :class:`ResponseParser` - incremental parser for a server's answer: feed bytes, then read
  ``.response`` once ``.complete``. Honours Content-Length and chunked bodies, and like libarms
  also ends an unframed body at ``</arms-message>`` so the device never waits for a close.
* :func:`build_response` - a server's answer in the layout of the capture (test servers).
"""

from __future__ import annotations

import base64
import ipaddress
import re

from .._record import Record
from ..errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional

MAX_HEADER_LINE = 1024
MAX_HEADERS = 64
#: Default limit for one response body (an RS answer with big module configs stays far below).
MAX_BODY = 1024 * 1024
_END_TAG = b"</arms-message>"


class Url(Record):
    scheme: str          # "https" or "http", lower case
    host: str            # numeric address, without brackets
    port: int
    path: str            # "/..." as sent in the request line

    @property
    def family(self) -> int:
        return ipaddress.ip_address(self.host).version

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return f"{self.scheme}://{self.netloc}{self.path}"


_URL_RE = re.compile(r"(?i)(https?)://(\[[^\]]*\]|[^/:\[\]]*)(?::([^/]*))?(/.*)?\Z")


def parse_url(url: str) -> Url:
    """Parse an ARMS URL. ValueError (with the reason) when libarms would refuse it: not
    http/https, a host name instead of a numeric address, or over the length limits."""
    if not isinstance(url, str):
        raise ValueError(f"URL must be a string, got {type(url).__name__}")
    m = _URL_RE.match(url)
    if not m:
        raise ValueError(f"not an http(s) URL: {url!r}")
    scheme, host, port, path = m.group(1).lower(), m.group(2), m.group(3), m.group(4) or "/"
    if host.startswith("["):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ValueError(f"bracketed host is not an IPv6 address: {url!r}") from None
    else:
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise ValueError(f"host must be a numeric IPv4 address or a bracketed IPv6 address "
                             f"(names are never resolved): {url!r}") from None
    if len(host) > 79:
        raise ValueError(f"URL host longer than 79 characters: {url!r}")
    if port is not None:
        if not port.isdigit() or len(port) > 7 or not 0 < int(port) < 65536:
            raise ValueError(f"bad port in URL: {url!r}")
        portn = int(port)
    else:
        portn = 443 if scheme == "https" else 80
    if len(path) - 1 > 79:
        raise ValueError(f"URL path longer than 79 characters: {url!r}")
    return Url(scheme, host, portn, path)


def basic_auth(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode("latin-1")).decode("ascii")


def build_post(path: str, user: str, password: str, body: bytes) -> bytes:
    """Form A: the exact pull-phase request libarms writes (HTTP/1.0, no Host)."""
    head = (f"POST {path} HTTP/1.0\r\n"
            "Content-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            f"Authorization: Basic {basic_auth(user, password)}\r\n"
            "\r\n")
    return head.encode("ascii") + body


def build_post_chunked(url: Url, user: str, password: str, pieces: Iterable[bytes]) -> bytes:
    """Form B: HTTP/1.1 chunked, one chunk per piece (lowercase hex), then the last chunk.
    The Host header carries the port and, as libarms writes it, no brackets for IPv6."""
    head = (f"POST {url.path} HTTP/1.1\r\n"
            f"Host: {url.host}:{url.port}\r\n"
            "Connection: close\r\n"
            "Content-Type: text/xml\r\n"
            "Transfer-Encoding: chunked\r\n"
            f"Authorization: Basic {basic_auth(user, password)}\r\n"
            "\r\n").encode("ascii")
    out = [head]
    for p in pieces:
        if p:
            out.append(b"%x\r\n%s\r\n" % (len(p), p))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def build_response(body: bytes, status: int = 200, reason: str = "OK") -> bytes:
    """A server answer as in the capture (vector tunnel/02): HTTP/1.0, Content-Length, close."""
    return (f"HTTP/1.0 {status} {reason}\r\n"
            "Content-Type: text/xml\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
            "\r\n").encode("ascii") + body


class HttpResponse(Record):
    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> Optional[str]:
        name = name.lower()
        for k, v in self.headers:
            if k.lower() == name:
                return v
        return None


class ResponseParser:
    """Incremental HTTP response parser (client side). ``feed(data)`` as bytes arrive,
    ``feed_eof()`` when the peer closed; ``complete`` then ``response``. Raises ProtocolError on
    anything malformed or over ``max_body``."""

    def __init__(self, max_body: int = MAX_BODY):
        self.max_body = max_body
        self._buf = bytearray()
        self._state = "status"
        self._status = None
        self._headers: list[tuple[str, str]] = []
        self._body = bytearray()
        self._length: Optional[int] = None
        self._chunked = False
        self._chunk_left = 0
        self.complete = False

    # -- public --------------------------------------------------------------------------
    def feed(self, data: bytes) -> bool:
        """Consume bytes; returns ``complete``. Bytes after a complete response are ignored."""
        if self.complete or not data:
            return self.complete
        self._buf += data
        self._run()
        return self.complete

    def feed_eof(self) -> bool:
        if self.complete:
            return True
        if self._state == "body" and self._length is None and not self._chunked:
            self._body += self._buf
            self._buf.clear()
            self._finish()
            return True
        where = {"status": "before the status line", "headers": "inside the headers"}.get(
            self._state, "before the end of the body")
        raise ProtocolError(f"connection closed {where}")

    @property
    def response(self) -> HttpResponse:
        if not self.complete:
            raise ProtocolError("HTTP response is not complete")
        v, code, reason = self._status
        return HttpResponse(v, code, reason, tuple(self._headers), bytes(self._body))

    # -- internals ----------------------------------------------------------------------
    def _line(self) -> Optional[bytes]:
        i = self._buf.find(b"\n")
        if i < 0:
            if len(self._buf) > MAX_HEADER_LINE:
                raise ProtocolError(f"HTTP line longer than {MAX_HEADER_LINE} bytes")
            return None
        if i + 1 > MAX_HEADER_LINE:
            raise ProtocolError(f"HTTP line longer than {MAX_HEADER_LINE} bytes")
        line = bytes(self._buf[:i + 1])
        del self._buf[:i + 1]
        return line.rstrip(b"\r\n")

    def _finish(self):
        self.complete = True
        self._state = "done"

    def _check_size(self, n: int):
        if n > self.max_body:
            raise ProtocolError(f"HTTP body larger than {self.max_body} bytes")

    def _run(self):
        while not self.complete:
            if self._state == "status":
                line = self._line()
                if line is None:
                    return
                m = re.match(rb"HTTP/(\d)\.(\d) (\d{3})(?: (.*))?\Z", line)
                if not m:
                    raise ProtocolError(f"bad HTTP status line: {line[:80]!r}")
                self._status = (f"{m.group(1).decode()}.{m.group(2).decode()}", int(m.group(3)),
                                (m.group(4) or b"").decode("latin-1"))
                self._state = "headers"
            elif self._state == "headers":
                line = self._line()
                if line is None:
                    return
                if line == b"":
                    self._start_body()
                    continue
                if b":" not in line:
                    raise ProtocolError(f"bad HTTP header line: {line[:80]!r}")
                if len(self._headers) >= MAX_HEADERS:
                    raise ProtocolError(f"more than {MAX_HEADERS} HTTP headers")
                k, v = line.split(b":", 1)
                self._headers.append((k.decode("latin-1").strip(), v.decode("latin-1").strip()))
            elif self._state == "body":
                if self._length is not None:
                    need = self._length - len(self._body)
                    self._body += self._buf[:need]
                    del self._buf[:need]
                    if len(self._body) == self._length:
                        self._finish()
                    return
                self._body += self._buf
                self._buf.clear()
                self._check_size(len(self._body))
                if self._body.rstrip().endswith(_END_TAG):
                    self._finish()
                return
            elif self._state == "chunk-size":
                line = self._line()
                if line is None:
                    return
                if line.strip() == b"":
                    continue
                m = re.match(rb"([0-9a-fA-F]+)(;.*)?\Z", line.strip())
                if not m:
                    raise ProtocolError(f"bad chunk-size line: {line[:40]!r}")
                size = int(m.group(1), 16)
                if size == 0:
                    self._state = "trailer"
                    continue
                self._check_size(len(self._body) + size)
                self._chunk_left = size
                self._state = "chunk-data"
            elif self._state == "chunk-data":
                take = min(self._chunk_left, len(self._buf))
                self._body += self._buf[:take]
                del self._buf[:take]
                self._chunk_left -= take
                if self._chunk_left:
                    return
                self._state = "chunk-end"
            elif self._state == "chunk-end":
                if len(self._buf) < 2:
                    return
                if bytes(self._buf[:2]) != b"\r\n":
                    raise ProtocolError("chunk data not followed by CR LF")
                del self._buf[:2]
                self._state = "chunk-size"
            elif self._state == "trailer":
                line = self._line()
                if line is None:
                    return
                if line == b"":
                    self._finish()

    def _start_body(self):
        te = None
        cl = None
        for k, v in self._headers:
            if k.lower() == "transfer-encoding":
                te = v.lower()
            elif k.lower() == "content-length":
                if not v.isdigit():
                    raise ProtocolError(f"bad Content-Length: {v!r}")
                cl = int(v)
        if te is not None and "chunked" in te:
            self._chunked = True
            self._state = "chunk-size"
            return
        if cl is not None:
            self._check_size(cl)
            self._length = cl
            self._state = "body"
            if cl == 0:
                self._finish()
            return
        self._state = "body"


def parse_response(data: bytes, *, max_body: int = MAX_BODY) -> HttpResponse:
    """Parse a complete response held in ``data`` (as if the peer then closed)."""
    p = ResponseParser(max_body=max_body)
    if not p.feed(data):
        p.feed_eof()
    return p.response
