"""The https-tunnel connection (W 5): one long-lived chunked HTTPS request, both directions.

``MessageAssembler`` (sans-I/O) turns decoded chunks back into ARMS messages: chunks with the
same non-zero id continue one message, a message ends at ``</arms-message>`` (not at
``;trail``, W 5.2), an id-0 chunk continues the id-0 message in progress. Both the device and
the test server use it. ``TunnelConnection`` is the device's I/O end: it opens the tunnel
(head in one write, accepts ``HTTP/1.x 200`` and consumes the whole head, W App. D quirk 8),
writes messages as chunks with a fresh random id each, writes echo requests, and reads chunks.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from typing import Optional, Sequence

from ..errors import ProtocolError
from ..protocol.push import Url

try:  # the C-backed codec when built, else the pure-Python reference (same API)
    from ..chunkcodec import (ChunkDecoder, ChunkKind, Chunk, encode_chunk,  # type: ignore
                              split_message, ECHO_REQUEST_CHUNK, ECHO_RESPONSE_CHUNK, END_CHUNK)
except ImportError:  # pragma: no cover - depends on what is installed
    from ..protocol.chunks import (ChunkDecoder, ChunkKind, Chunk, encode_chunk,  # noqa: F401
                                   split_message, ECHO_REQUEST_CHUNK, ECHO_RESPONSE_CHUNK,
                                   END_CHUNK)
from .simple import build_tunnel_head, open_tls

END_TAG = b"</arms-message>"
#: Largest single chunk we accept from a peer, and largest reassembled message.
MAX_CHUNK = 65536
MAX_MESSAGE = 16 * 1024 * 1024
_rng = random.SystemRandom()


def new_chunk_id() -> int:
    """Fresh random id for one written message (0 .. 2^31-1, never 0)."""
    return _rng.randrange(1, 2**31)


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


class TunnelConnection:
    """Device end of one tunnel. Writes are serialised: a message's chunks are never
    interleaved with another message or an echo."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 leftover: bytes = b""):
        self._reader = reader
        self._writer = writer
        self._decoder = ChunkDecoder(MAX_CHUNK)
        self._pending = list(self._decoder.feed(leftover)) if leftover else []
        self._lock = asyncio.Lock()
        self.closed = False

    @classmethod
    async def open(cls, url: Url, ctx: ssl.SSLContext, user: str, password: str,
                   timeout: float = 30.0, **tls) -> "TunnelConnection":
        try:
            reader, writer = await open_tls(url, ctx, timeout, **tls)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            raise TunnelClosed(f"cannot connect to {url.netloc}: {e or type(e).__name__}") from None
        try:
            writer.write(build_tunnel_head(url, user, password))
            await asyncio.wait_for(writer.drain(), timeout)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, asyncio.IncompleteReadError,
                asyncio.LimitOverrunError) as e:
            writer.close()
            raise TunnelClosed(f"tunnel head to {url.netloc} failed: {e or type(e).__name__}") from None
        status = head.split(b"\r\n", 1)[0]
        if not (status.startswith(b"HTTP/1.") and status[8:12] == b" 200"):
            writer.close()
            raise TunnelClosed(f"tunnel server {url.netloc} answered {status[:60]!r}")
        return cls(reader, writer)

    async def send(self, pieces: Sequence[bytes], timeout: float = 30.0) -> None:
        await self._write(frame_message(pieces), timeout)

    async def send_echo(self, timeout: float = 10.0) -> None:
        await self._write(ECHO_REQUEST_CHUNK, timeout)

    async def _write(self, data: bytes, timeout: float) -> None:
        if self.closed:
            raise TunnelClosed("tunnel already closed")
        async with self._lock:
            try:
                self._writer.write(data)
                await asyncio.wait_for(self._writer.drain(), timeout)
            except (OSError, ssl.SSLError, asyncio.TimeoutError, RuntimeError) as e:
                self.abort()
                raise TunnelClosed(f"tunnel write failed: {e or type(e).__name__}") from None

    async def read_chunks(self) -> list["Chunk"]:
        """Next decoded chunks; raises TunnelClosed at EOF, on a zero chunk or bad framing."""
        if self._pending:
            out, self._pending = self._pending, []
            return out
        while True:
            try:
                data = await self._reader.read(65536)
            except (OSError, ssl.SSLError) as e:
                raise TunnelClosed(f"tunnel read failed: {e}") from None
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

    def abort(self) -> None:
        """Drop the connection without last-chunk or close_notify (W 5.9)."""
        self.closed = True
        transport = self._writer.transport
        if transport is not None:
            transport.abort()

    async def close(self) -> None:
        """Normal close: last-chunk, then TLS close."""
        if self.closed:
            return
        try:
            async with self._lock:
                self._writer.write(END_CHUNK)
                await asyncio.wait_for(self._writer.drain(), 5)
        except (OSError, ssl.SSLError, asyncio.TimeoutError, RuntimeError):
            pass
        self.closed = True
        self._writer.close()
        try:
            await asyncio.wait_for(self._writer.wait_closed(), 2)
        except (OSError, ssl.SSLError, asyncio.TimeoutError):
            pass
