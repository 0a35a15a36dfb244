"""The https-tunnel connection (W 5): one long-lived chunked HTTPS request, both directions.

``MessageAssembler`` (sans-I/O) turns decoded chunks back into ARMS messages: chunks with the
same non-zero id continue one message, a message ends at ``</arms-message>`` (not at
``;trail``, W 5.2), an id-0 chunk continues the id-0 message in progress. Both the device and
the test server use it. ``TunnelConnection`` is the device's I/O end: it opens the tunnel
(head in one write, accepts ``HTTP/1.x 200`` and consumes the whole head, W App. D quirk 8),
writes messages as chunks with a fresh random id each, writes echo requests, and reads chunks.

I/O model: the socket is non-blocking after the handshake; one thread reads (the tunnel's
worker, waiting in ``poll`` on the socket and a wake-up descriptor), any thread may write.
OpenSSL allows one call at a time on a connection: every SSL call is made under ``_io`` and
never blocks (waits for readiness happen outside it), so a reader never holds up a writer.
Whole messages are written under ``_wlock``: chunks of two messages never interleave.
"""

from __future__ import annotations

import os
import select
import socket
import ssl
import threading
import time

from ..errors import ProtocolError
from ..protocol.push import Url

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional, Sequence

try:  # the C-backed codec when built, else the pure-Python reference (same API)
    from ..chunkcodec import (ChunkDecoder, ChunkKind, Chunk, encode_chunk,  # type: ignore
                              split_message, ECHO_REQUEST_CHUNK, ECHO_RESPONSE_CHUNK, END_CHUNK)
except ImportError:  # pragma: no cover - depends on what is installed
    from ..protocol.chunks import (ChunkDecoder, ChunkKind, Chunk, encode_chunk,  # noqa: F401
                                   split_message, ECHO_REQUEST_CHUNK, ECHO_RESPONSE_CHUNK,
                                   END_CHUNK)
from .simple import build_tunnel_head, close_tls, connect_tls

END_TAG = b"</arms-message>"
#: Largest single chunk we accept from a peer, and largest reassembled message.
MAX_CHUNK = 65536
MAX_MESSAGE = 16 * 1024 * 1024
#: Largest tunnel answer head (status line and headers) we read.
MAX_HEAD = 8192


def new_chunk_id() -> int:
    """Fresh random id for one written message (1 .. 2^31-1)."""
    for _ in range(64):                       # bounded; 0 comes once in 2^31 draws
        v = int.from_bytes(os.urandom(4), "big") & 0x7FFFFFFF
        if v:
            return v
    return 1


def frame_message(pieces: Sequence[bytes], chunk_id: Optional[int] = None) -> bytes:
    """All chunks of one message: one chunk per builder piece, ``;trail`` on the last."""
    cid = new_chunk_id() if chunk_id is None else chunk_id
    pieces = [p for p in pieces if p]
    out = []
    for i, p in enumerate(pieces):
        for j in range(0, len(p), 8192):        # a piece never exceeds 8192 bytes per chunk
            part = p[j:j + 8192]
            last = i == len(pieces) - 1 and j + 8192 >= len(p)
            out.append(encode_chunk(part, cid, last))
    return b"".join(out)


class MessageAssembler:
    """Reassemble ARMS messages from message chunks (echo and end chunks are not fed here)."""

    #: messages that may be open (partly received) at once on one tunnel
    MAX_OPEN = 64

    def __init__(self, max_message: int = MAX_MESSAGE):
        self.max_message = max_message
        self._parts: dict[int, bytearray] = {}

    def feed(self, chunk: "Chunk") -> Optional[bytes]:
        if chunk.id not in self._parts and len(self._parts) >= self.MAX_OPEN:
            raise ProtocolError(f"more than {self.MAX_OPEN} tunnel messages open at once")
        if sum(len(b) for b in self._parts.values()) + len(chunk.data) > self.max_message:
            raise ProtocolError(f"partly received tunnel messages exceed {self.max_message} bytes")
        buf = self._parts.setdefault(chunk.id, bytearray())
        buf += chunk.data
        if len(buf) > self.max_message:
            del self._parts[chunk.id]
            raise ProtocolError(f"tunnel message with chunk id {chunk.id} exceeds "
                                f"{self.max_message} bytes")
        # only the end of the buffer needs searching, the tag may straddle two chunks
        start = max(0, len(buf) - len(chunk.data) - len(END_TAG))
        if buf.find(END_TAG, start) >= 0:
            del self._parts[chunk.id]
            return bytes(buf)
        return None

    def reset(self) -> None:
        self._parts.clear()


class TunnelClosed(Exception):
    """The tunnel is gone (peer closed, zero chunk, TLS error, timeout)."""


_WAIT_ERRORS = (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError, InterruptedError)


def _wait(fd: int, events: int, timeout: float, wake: Optional[int]) -> bool:
    """Wait until ``fd`` is ready for ``events`` (or in error) within ``timeout``; False when
    the time ran out or ``wake`` became readable first."""
    p = select.poll()
    p.register(fd, events)
    if wake is not None:
        if wake < 0:                  # the owner's wake-up pipe is gone: it gave up long ago
            return False
        p.register(wake, select.POLLIN)
    ready = p.poll(max(0, int(timeout * 1000) + 1))
    for rfd, ev in ready:
        if rfd == fd:
            return True
    return False


class TunnelConnection:
    """Device end of one tunnel. Writes are serialised: a message's chunks are never
    interleaved with another message or an echo. ``wake``: a descriptor that becomes readable
    when the owner wants blocked reads and writes to give up (the end of the push round)."""

    def __init__(self, sock: ssl.SSLSocket, leftover: bytes = b"", wake: Optional[int] = None):
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._decoder = ChunkDecoder(MAX_CHUNK)
        self._pending = list(self._decoder.feed(leftover)) if leftover else []
        self._io = threading.Lock()      # one SSL call at a time (never held while waiting)
        self._wlock = threading.Lock()   # one message at a time
        self._disposed = False
        self.wake = wake
        self.closed = False

    @classmethod
    def open(cls, url: Url, ctx: Optional[ssl.SSLContext], user: str, password: str,
             timeout: float = 30.0, wake: Optional[int] = None, **tls) -> "TunnelConnection":
        """Connect, write the head in one write, read the answer head (``HTTP/1.x 200``)."""
        try:
            sock = connect_tls(url, ctx, timeout, **tls)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise TunnelClosed(f"cannot connect to {url.netloc}: {e or type(e).__name__}") from None
        try:
            deadline = time.monotonic() + timeout
            sock.sendall(build_tunnel_head(url, user, password))
            buf = b""
            while b"\r\n\r\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("timed out")
                sock.settimeout(left)
                data = sock.recv(MAX_HEAD)
                if not data:
                    raise ConnectionError("closed before the answer head")
                buf += data
                if len(buf) > MAX_HEAD and b"\r\n\r\n" not in buf:
                    raise ConnectionError(f"answer head longer than {MAX_HEAD} bytes")
        except (OSError, ssl.SSLError) as e:
            sock.close()
            raise TunnelClosed(f"tunnel head to {url.netloc} failed: {e or type(e).__name__}") from None
        end = buf.index(b"\r\n\r\n") + 4
        status = buf.split(b"\r\n", 1)[0]
        if not (status.startswith(b"HTTP/1.") and status[8:12] == b" 200"):
            sock.close()
            raise TunnelClosed(f"tunnel server {url.netloc} answered {status[:60]!r}")
        try:
            return cls(sock, buf[end:], wake)
        except ProtocolError as e:
            sock.close()
            raise TunnelClosed(f"bad chunk from the tunnel server: {e}") from None

    def send(self, pieces: Sequence[bytes], timeout: float = 30.0) -> None:
        self._write(frame_message(pieces), timeout)

    def send_echo(self, timeout: float = 10.0) -> None:
        self._write(ECHO_REQUEST_CHUNK, timeout)

    def _write(self, data: bytes, timeout: float) -> None:
        if self.closed:
            raise TunnelClosed("tunnel already closed")
        deadline = time.monotonic() + timeout
        with self._wlock:
            view = memoryview(data)
            while view:
                events = select.POLLOUT
                with self._io:
                    if self.closed:
                        raise TunnelClosed("tunnel already closed")
                    try:
                        n = self._sock.send(view)
                    except ssl.SSLWantReadError:
                        n, events = 0, select.POLLIN
                    except _WAIT_ERRORS:
                        n = 0
                    except (OSError, ssl.SSLError, ValueError) as e:
                        self.abort()
                        raise TunnelClosed(f"tunnel write failed: {e or type(e).__name__}") from None
                view = view[n:]
                if not view:
                    return
                left = deadline - time.monotonic()
                if left <= 0 or not _wait(self._fd, events, left, self.wake):
                    # out of time, or woken: the owner gave up on this connection
                    self.abort()
                    raise TunnelClosed("tunnel write failed: timed out" if left <= 0 or
                                       deadline <= time.monotonic() else
                                       "tunnel write abandoned: push round over")

    def read_chunks(self, timeout: Optional[float] = None) -> list["Chunk"]:
        """Next decoded chunks; [] when ``timeout`` passed or ``wake`` fired first. Raises
        TunnelClosed at EOF, on a zero chunk or bad framing."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            events = select.POLLIN
            with self._io:
                if self.closed:
                    raise TunnelClosed("tunnel closed")
                try:
                    data: Optional[bytes] = self._sock.recv(65536)
                except ssl.SSLZeroReturnError:
                    data = b""
                except ssl.SSLWantWriteError:
                    data, events = None, select.POLLOUT
                except _WAIT_ERRORS:
                    data = None
                except (OSError, ssl.SSLError, ValueError) as e:
                    raise TunnelClosed(f"tunnel read failed: {e}") from None
            if data is not None:
                if not data:
                    raise TunnelClosed("tunnel server closed the connection")
                try:
                    chunks = self._decoder.feed(data)
                except ProtocolError as e:
                    raise TunnelClosed(f"bad chunk from the tunnel server: {e}") from None
                if chunks:
                    for c in chunks:
                        if c.kind is ChunkKind.END:
                            raise TunnelClosed("tunnel server sent the zero chunk")
                    return chunks
                continue            # OpenSSL may hold more records already: read again first
            left = 3600.0 if deadline is None else deadline - time.monotonic()
            if left <= 0 or not _wait(self._fd, events, left, self.wake):
                return []               # time is up, or woken

    def abort(self) -> None:
        """Drop the connection without last-chunk or close_notify (W 5.9). Any thread: the
        descriptor is shut down (waking a blocked reader); :meth:`dispose` frees it."""
        self.closed = True
        try:
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    def dispose(self) -> None:
        """Free the descriptor (after :meth:`abort` or :meth:`close`); idempotent."""
        self.closed = True
        with self._io:
            if not self._disposed:
                self._disposed = True
                self._sock.close()

    def close(self) -> None:
        """Normal close: last-chunk, then TLS close (close_notify, 2 s for the answer)."""
        if self.closed:
            self.dispose()
            return
        try:
            self._write(END_CHUNK, 5)
        except TunnelClosed:
            pass
        self.closed = True
        with self._io:
            if not self._disposed:
                self._disposed = True
                close_tls(self._sock)
