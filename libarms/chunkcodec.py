"""Tunnel chunk codec backed by the C core, with the API of :mod:`libarms.protocol.chunks`.

Use this module in the tunnel (push side) and the test server::

    from libarms.chunkcodec import ChunkDecoder, ChunkKind, encode_chunk, split_message

When ``libarms._core`` is not built, ``ChunkDecoder`` and :class:`Keepalive` fall back to pure
Python (``HAVE_CORE`` says which one you got); encoding is always the Python reference (it is
a one-line format). Both decoders accept and reject exactly the same bytes (tests check it).

:class:`Keepalive` is the echo / inactivity bookkeeping of W 5.6 (``csrc/arms_keepalive.h``):
feed it events and monotonic milliseconds, act on what :meth:`Keepalive.poll` returns.
"""

from __future__ import annotations

import enum

from libarms.errors import ProtocolError
from libarms.protocol.chunks import (DEFAULT_PIECE, ECHO_REQUEST_CHUNK, ECHO_RESPONSE_CHUNK,
                                     END_CHUNK, MAX_HEADER, MAX_WRITE_DATA, Chunk, ChunkKind,
                                     encode_chunk, split_message)
from libarms.protocol.chunks import ChunkDecoder as PyChunkDecoder

try:
    from libarms._core import ffi as _ffi, lib as _lib
    HAVE_CORE = True
except ImportError:  # not built: pure Python everywhere
    _ffi = _lib = None
    HAVE_CORE = False

__all__ = [
    "ChunkKind", "Chunk", "ChunkDecoder", "PyChunkDecoder", "encode_chunk", "split_message",
    "ECHO_REQUEST_CHUNK", "ECHO_RESPONSE_CHUNK", "END_CHUNK", "MAX_HEADER", "MAX_WRITE_DATA",
    "DEFAULT_PIECE", "Keepalive", "KeepaliveAction", "HAVE_CORE",
]

_ERRORS = {
    1: "tunnel chunk size is not hexadecimal",
    2: "tunnel chunk size exceeds the limit",
    3: "tunnel chunk id is not a decimal number below 2**32",
    4: "tunnel chunk header line too long or holding a stray CR / LF",
    5: "tunnel chunk data not followed by CR LF",
    6: "bytes after the tunnel's zero (end) chunk",
}


def _kind(flags: int) -> ChunkKind:
    if flags & 8:
        return ChunkKind.END
    if flags & 4:
        return ChunkKind.ECHO_RESPONSE
    if flags & 2:
        return ChunkKind.ECHO_REQUEST
    return ChunkKind.DATA


class CChunkDecoder:
    """Incremental decoder over ``arms_chunk_decode``; same behaviour as the Python one."""

    def __init__(self, max_chunk: int = 65536):
        if not 0 < max_chunk <= 2**31:
            raise ValueError(f"max_chunk must be in 1..2**31, not {max_chunk}")
        self.max_chunk = max_chunk
        self._d = _ffi.new("struct arms_chunk_decoder *")
        self._d.max_chunk = max_chunk
        self._ev = _ffi.new("struct arms_chunk_event *")
        self._data = bytearray()
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    def feed(self, data: bytes) -> list[Chunk]:
        out: list[Chunk] = []
        n = len(data)
        if n == 0:
            if self._d.error:
                raise ProtocolError(f"tunnel chunk stream already failed: "
                                    f"{_ERRORS.get(self._d.error)}")
            return out
        data = bytes(data)
        buf = _ffi.from_buffer("uint8_t[]", data)
        pos = 0
        ev = self._ev
        decode = _lib.arms_chunk_decode
        while pos < n:
            used = decode(self._d, buf + pos, n - pos, ev)
            if used < 0:
                raise ProtocolError(_ERRORS.get(self._d.error, "malformed tunnel chunk"))
            pos += used
            kind = ev.kind
            if kind == 1:  # EV_DATA: the last data_len bytes consumed
                self._data += data[pos - ev.data_len:pos]
            elif kind == 2 or kind == 3:  # EV_CHUNK / EV_END
                out.append(Chunk(_kind(ev.flags), ev.id, bool(ev.flags & 1), bytes(self._data)))
                self._data.clear()
                if kind == 3:
                    self._ended = True
        return out


ChunkDecoder = CChunkDecoder if HAVE_CORE else PyChunkDecoder


class KeepaliveAction(enum.IntEnum):
    NONE = 0
    SEND_ECHO = 1   #: write ECHO_REQUEST_CHUNK now
    DEAD = 2        #: the previous echo went unanswered: drop the tunnel
    IDLE = 3        #: no read or write for the inactivity period


_DEFAULT_INTERVAL_MS = 60000
_CONFIRMED_IDLE_MS = 10000
_BUSY_RETRY_MS = 1000
_NEVER = 2**64 - 1


class _PyKeepalive:
    """Pure-Python twin of ``csrc/arms_keepalive.c`` (same rules, used without the core)."""

    def __init__(self):
        self.interval_ms = 0
        self.next_tick_ms = 0
        self.idle_deadline_ms = 0
        self.armed = False
        self.echo_outstanding = False

    def _interval(self):
        return self.interval_ms or _DEFAULT_INTERVAL_MS

    def start(self, now_ms, interval_ms):
        self.interval_ms = interval_ms or _DEFAULT_INTERVAL_MS
        self.armed, self.echo_outstanding = True, False
        self.next_tick_ms = self.idle_deadline_ms = now_ms + self.interval_ms

    def confirmed(self, now_ms):
        self.echo_outstanding = False
        self.idle_deadline_ms = now_ms + _CONFIRMED_IDLE_MS

    def activity(self, now_ms):
        self.idle_deadline_ms = now_ms + self._interval()

    def echo_answered(self):
        self.echo_outstanding = False

    def poll(self, now_ms, writing):
        if not self.armed:
            return 0
        if now_ms >= self.next_tick_ms:
            if self.echo_outstanding:
                return 2
            if writing:
                self.next_tick_ms = now_ms + _BUSY_RETRY_MS
                return 0
            self.echo_outstanding = True
            self.next_tick_ms = now_ms + self._interval()
            return 1
        if now_ms >= self.idle_deadline_ms:
            self.idle_deadline_ms = now_ms + self._interval()
            return 3
        return 0

    def next_deadline(self):
        return min(self.next_tick_ms, self.idle_deadline_ms) if self.armed else _NEVER

    def stop(self):
        self.armed = self.echo_outstanding = False


class Keepalive:
    """Tunnel echo and inactivity deadlines (W 5.6). Times are monotonic milliseconds (int).

    Call :meth:`start` on the HTTP 200, :meth:`confirmed` when the confirmation completes,
    :meth:`activity` on every read or write, :meth:`echo_answered` on an echo chunk, and
    :meth:`poll` whenever :meth:`next_deadline` has passed.
    """

    def __init__(self, use_core: bool | None = None):
        self._c = HAVE_CORE if use_core is None else (use_core and HAVE_CORE)
        if self._c:
            self._k = _ffi.new("struct arms_keepalive *")
        else:
            self._k = _PyKeepalive()

    def start(self, now_ms: int, interval_ms: int = _DEFAULT_INTERVAL_MS) -> None:
        if self._c:
            _lib.arms_keepalive_start(self._k, now_ms, interval_ms)
        else:
            self._k.start(now_ms, interval_ms)

    def confirmed(self, now_ms: int) -> None:
        if self._c:
            _lib.arms_keepalive_confirmed(self._k, now_ms)
        else:
            self._k.confirmed(now_ms)

    def activity(self, now_ms: int) -> None:
        if self._c:
            _lib.arms_keepalive_activity(self._k, now_ms)
        else:
            self._k.activity(now_ms)

    def echo_answered(self) -> None:
        if self._c:
            _lib.arms_keepalive_echo_answered(self._k)
        else:
            self._k.echo_answered()

    def poll(self, now_ms: int, writing: bool = False) -> KeepaliveAction:
        if self._c:
            return KeepaliveAction(_lib.arms_keepalive_poll(self._k, now_ms, int(writing)))
        return KeepaliveAction(self._k.poll(now_ms, writing))

    def next_deadline(self) -> int | None:
        """Earliest time :meth:`poll` may act, or None when disarmed."""
        v = (_lib.arms_keepalive_next_deadline(self._k) if self._c
             else self._k.next_deadline())
        return None if v == _NEVER else int(v)

    @property
    def echo_outstanding(self) -> bool:
        return bool(self._k.echo_outstanding)

    def stop(self) -> None:
        if self._c:
            _lib.arms_keepalive_stop(self._k)
        else:
            self._k.stop()
