"""Tunnel chunk framing (``arms-wire.md`` 5.2, 5.4, 5.6, 7.4), sans-I/O, pure Python.

This is the reference codec; :mod:`libarms.chunkcodec` offers the same API backed by the C core
and both must decode every input to the same chunks (the tests check that).

Wire form::

    chunk      = size *( ";" extension ) CRLF data CRLF
    size       = 1*HEXDIG                       (either case, leading zeros allowed)
    extension  = "id=" 1*DIGIT | "trail" | "echo-request" | "echo" | "echo-response" | other
    last-chunk = 1*"0" *( ";" extension ) CRLF CRLF

What the decoder accepts, and why it is stricter or looser than libarms 5.33:

* the header line (without its CR LF) must be shorter than 256 bytes (5.33 buffer size);
  unlike 5.33 a header split across reads is buffered, not lost (quirk 7 in W App. D);
* ``id=`` must be 1-10 decimal digits with a value below 2**32 (ids are 31-bit on the device
  side); ``id`` absent means 0; unknown or empty extensions are ignored;
* an extension list holding ``echo`` or ``echo-response`` makes an ECHO_RESPONSE chunk,
  ``echo-request`` an ECHO_REQUEST chunk (answer with :data:`ECHO_RESPONSE_CHUNK`);
* a data size above ``max_chunk`` is refused before any of its data is buffered;
* data must be followed by CR LF, the zero chunk by CR LF CR LF (no trailer headers);
* after the zero chunk the stream is over: more bytes are a protocol error.

Every malformed input raises :class:`~libarms.errors.ProtocolError`; once raised, the decoder
stays failed (the tunnel must be dropped).
"""

from __future__ import annotations

import enum
import re

from libarms._record import Record
from libarms.errors import ProtocolError

__all__ = [
    "ChunkKind", "Chunk", "ChunkDecoder", "encode_chunk", "split_message",
    "ECHO_REQUEST_CHUNK", "ECHO_RESPONSE_CHUNK", "END_CHUNK",
    "MAX_HEADER", "MAX_WRITE_DATA", "DEFAULT_PIECE",
]

#: Header lines must be shorter than this (bytes, CR LF excluded); libarms 5.33 tunnel_chunk.c.
MAX_HEADER = 256
#: Largest data a written chunk may carry (the size field the device writes is at most 0xffff).
MAX_WRITE_DATA = 65535
#: Data per chunk the device writes in practice (its tunnel write buffer).
DEFAULT_PIECE = 8192
_MAX_ID = 2**32 - 1

ECHO_REQUEST_CHUNK = b"4;echo-request;trail\r\necho\r\n"
#: The echo answer proven against libarms 5.33 (vector ``tunnel/24``).
ECHO_RESPONSE_CHUNK = b"4;echo-response;trail\r\necho\r\n"
END_CHUNK = b"0\r\n\r\n"


class ChunkKind(enum.Enum):
    DATA = "data"
    ECHO_REQUEST = "echo-request"
    ECHO_RESPONSE = "echo-response"
    END = "end"


class Chunk(Record):
    """One decoded chunk. ``id`` is 0 when the header has no ``id=``; END chunks carry no data."""

    kind: ChunkKind
    id: int
    trail: bool
    data: bytes


class _Header(Record):
    size: int
    id: int
    trail: bool
    kind: ChunkKind


_HEX_RE = re.compile(rb"[0-9A-Fa-f]+")


def _parse_header(line: bytes, max_chunk: int) -> _Header:
    parts = line.split(b";")
    size_text = parts[0]
    if _HEX_RE.fullmatch(size_text) is None:
        raise ProtocolError(f"tunnel chunk size is not hexadecimal: {line[:40]!r}")
    stripped = size_text.lstrip(b"0")
    if len(stripped) > 8:
        raise ProtocolError(f"tunnel chunk size {size_text[:20]!r}... exceeds {max_chunk} bytes")
    size = int(stripped or b"0", 16)
    if size > max_chunk:
        raise ProtocolError(f"tunnel chunk of {size} bytes exceeds the {max_chunk}-byte limit")
    chunk_id = 0
    trail = False
    kind = ChunkKind.DATA
    for ext in parts[1:]:
        if ext.startswith(b"id="):
            digits = ext[3:]
            if not digits.isdigit() or len(digits) > 10:  # bytes.isdigit: ASCII digits only
                raise ProtocolError(f"tunnel chunk id is not a decimal number: {ext[:40]!r}")
            chunk_id = int(digits)
            if chunk_id > _MAX_ID:
                raise ProtocolError(f"tunnel chunk id {chunk_id} does not fit in 32 bits")
        elif ext == b"trail":
            trail = True
        elif ext in (b"echo", b"echo-response"):
            kind = ChunkKind.ECHO_RESPONSE
        elif ext == b"echo-request":
            if kind is not ChunkKind.ECHO_RESPONSE:
                kind = ChunkKind.ECHO_REQUEST
        # any other extension is ignored, as libarms 5.33 does
    if size == 0:
        kind = ChunkKind.END
    return _Header(size, chunk_id, trail, kind)


class ChunkDecoder:
    """Incremental decoder: :meth:`feed` any slice of the stream, get the complete chunks.

    Memory is bounded by ``max_chunk`` + :data:`MAX_HEADER` bytes whatever the input.
    """

    def __init__(self, max_chunk: int = 65536):
        if not 0 < max_chunk <= 2**31:
            raise ValueError(f"max_chunk must be in 1..2**31, not {max_chunk}")
        self.max_chunk = max_chunk
        self._buf = bytearray()
        self._header: _Header | None = None
        self._ended = False
        self._failed: ProtocolError | None = None

    @property
    def ended(self) -> bool:
        """True once the zero chunk has been decoded."""
        return self._ended

    def feed(self, data: bytes) -> list[Chunk]:
        """Consume ``data``; return the chunks completed by it, in stream order."""
        if self._failed is not None:
            raise ProtocolError(f"tunnel chunk stream already failed: {self._failed}")
        try:
            return self._feed(data)
        except ProtocolError as exc:
            self._failed = exc
            raise

    def _feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        if not data:
            return out
        if self._ended:
            raise ProtocolError("bytes after the tunnel's zero (end) chunk")
        buf = self._buf
        buf += data
        pos = 0
        n = len(buf)
        while pos < n:
            hdr = self._header
            if hdr is None:
                end = buf.find(b"\r\n", pos, pos + MAX_HEADER + 1)
                if end < 0:
                    if n - pos > MAX_HEADER:
                        raise ProtocolError(
                            f"tunnel chunk header line longer than {MAX_HEADER - 1} bytes")
                    if b"\n" in buf[pos:n]:
                        raise ProtocolError("tunnel chunk header line ends in LF without CR")
                    break
                line = bytes(buf[pos:end])
                if len(line) >= MAX_HEADER:
                    raise ProtocolError(
                        f"tunnel chunk header line longer than {MAX_HEADER - 1} bytes")
                if b"\n" in line or b"\r" in line:
                    raise ProtocolError("stray CR or LF in a tunnel chunk header line")
                hdr = _parse_header(line, self.max_chunk)
                self._header = hdr
                pos = end + 2
                continue
            need = hdr.size + 2
            avail = n - pos
            if avail > hdr.size:  # check the CR LF as soon as its first byte is here
                tail = buf[pos + hdr.size:pos + min(need, avail)]
                if tail != b"\r\n"[:len(tail)]:
                    if hdr.kind is ChunkKind.END:
                        raise ProtocolError("tunnel zero chunk not followed by an empty line "
                                            "(trailers are not supported)")
                    raise ProtocolError(
                        f"tunnel chunk data of {hdr.size} bytes not followed by CR LF")
            if avail < need:
                break
            out.append(Chunk(hdr.kind, hdr.id, hdr.trail, bytes(buf[pos:pos + hdr.size])))
            pos += need
            self._header = None
            if hdr.kind is ChunkKind.END:
                self._ended = True
                if pos < n:
                    raise ProtocolError("bytes after the tunnel's zero (end) chunk")
                break
        del buf[:pos]
        return out


def encode_chunk(data: bytes, chunk_id: int, trail: bool) -> bytes:
    """One message chunk as the device writes it: ``<hex>;id=<id>[;trail]\\r\\n<data>\\r\\n``."""
    if not data:
        raise ValueError("a message chunk needs data (size 0 would end the stream)")
    if len(data) > MAX_WRITE_DATA:
        raise ValueError(f"chunk data of {len(data)} bytes exceeds {MAX_WRITE_DATA}")
    if not 0 <= chunk_id <= _MAX_ID:
        raise ValueError(f"chunk id {chunk_id} outside 0..2**32-1")
    head = b"%x;id=%d%s\r\n" % (len(data), chunk_id, b";trail" if trail else b"")
    return head + bytes(data) + b"\r\n"


def split_message(xml: bytes, chunk_id: int, max_data: int = DEFAULT_PIECE) -> list[bytes]:
    """Frame one message as chunks of at most ``max_data`` bytes; only the last has ``;trail``."""
    if not xml:
        raise ValueError("cannot frame an empty message")
    if not 0 < max_data <= MAX_WRITE_DATA:
        raise ValueError(f"max_data must be in 1..{MAX_WRITE_DATA}")
    pieces = [xml[i:i + max_data] for i in range(0, len(xml), max_data)]
    last = len(pieces) - 1
    return [encode_chunk(p, chunk_id, i == last) for i, p in enumerate(pieces)]
