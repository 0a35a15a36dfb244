"""Heartbeat datagrams (``arms-agent.md`` 1.3-1.4, ``arms-wire.md`` App. A), sans-I/O.

A datagram is a flat run of TLVs (u16 type, u16 value length, value; big-endian)::

    0x0001 HMAC (20)  |  0x0011 distribution id (16)  |  items in the order they were set

The HMAC-SHA1, keyed with the server's passphrase, covers the whole datagram with its own 20
bytes (offsets 4-23) zeroed. There is no timestamp or sequence number.

This module holds the receiver side (:func:`parse_packet`, :func:`verify_packet`) and a pure
Python :class:`PacketBuilder` that follows the libarms builder rules (1024-byte limit,
``ARMS_ESIZE``, duplicate (type, index) refused with ``ARMS_EEXIST``). The device sends with
the C core (:mod:`libarms.heartbeat`); the Python builder is the reference the tests and the
benchmark baseline use.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import struct

from libarms._record import Record
from libarms.errors import ArmsError, Err, ProtocolError

__all__ = [
    "ItemType", "DistributionId", "CpuUsage", "CpuDetailUsage", "MemUsage", "DiskUsage",
    "TrafficCount", "TrafficRate", "RadioWave", "UnknownItem", "HeartbeatPacket",
    "parse_packet", "compute_digest", "verify_packet", "sign_packet", "PacketBuilder",
    "MAX_PACKET", "PREFIX_LEN", "DIGEST_OFFSET", "DIGEST_LEN",
]

MAX_PACKET = 1024
PREFIX_LEN = 44
DIGEST_OFFSET = 4
DIGEST_LEN = 20
MAX_PASSPHRASE = 1024


class ItemType(enum.IntEnum):
    HMAC = 0x0001
    DIST_ID = 0x0011
    RADIOWAVE = 0x002C
    CPU_USAGE = 0x0033
    CPU_DETAIL = 0x0034
    MEM_USAGE = 0x0035
    DISK_USAGE = 0x0037
    TRAFFIC_COUNT = 0x0038
    TRAFFIC_RATE = 0x0039


_DIST_RE = re.compile(r"^[0-9A-Fa-f]{4}(-[0-9A-Fa-f]{4}){7}$")


class DistributionId(Record):
    """The 128-bit distribution id: ``VVVV-VVVV-VVVV-TTTT-CCCC-CCCC-CCCC-CCCC`` in text."""

    version: int
    vendor_code: int
    sa_type: int
    sa_code: int

    @classmethod
    def parse(cls, text: str) -> "DistributionId":
        if not isinstance(text, str) or not _DIST_RE.match(text):
            raise ValueError(f"distribution id must be 8 groups of 4 hex digits, not {text!r}")
        h = text.replace("-", "")
        return cls(int(h[0:4], 16), int(h[4:12], 16), int(h[12:16], 16), int(h[16:32], 16))

    @classmethod
    def from_bytes(cls, raw: bytes) -> "DistributionId":
        return cls(*struct.unpack(">HIHQ", raw))

    def to_bytes(self) -> bytes:
        return struct.pack(">HIHQ", self.version, self.vendor_code, self.sa_type, self.sa_code)

    def __str__(self) -> str:
        h = self.to_bytes().hex().upper()
        return "-".join(h[i:i + 4] for i in range(0, 32, 4))


class CpuUsage(Record):
    index: int
    utilization: int


class CpuDetailUsage(Record):
    index: int
    idle: int
    interrupt: int
    user: int
    system: int
    other: int


class MemUsage(Record):
    index: int
    used: int
    available: int


class DiskUsage(Record):
    index: int
    used: int
    available: int


class TrafficCount(Record):
    ifindex: int
    in_octets: int
    out_octets: int
    in_packets: int
    out_packets: int
    in_errors: int
    out_errors: int


class TrafficRate(Record):
    ifindex: int
    in_octets: int
    out_octets: int
    in_packets: int
    out_packets: int
    in_errors: int
    out_errors: int


class RadioWave(Record):
    ifindex: int
    status: int
    max: int
    min: int
    avg: int


class UnknownItem(Record):
    """A TLV of a type this receiver does not know: kept, not interpreted."""

    type: int
    value: bytes


Item = (CpuUsage | CpuDetailUsage | MemUsage | DiskUsage | TrafficCount | TrafficRate |
        RadioWave | UnknownItem)

# type -> (value struct, record class)
_LAYOUT: dict[int, tuple[struct.Struct, type]] = {
    ItemType.CPU_USAGE: (struct.Struct(">HB"), CpuUsage),
    ItemType.CPU_DETAIL: (struct.Struct(">H5B"), CpuDetailUsage),
    ItemType.MEM_USAGE: (struct.Struct(">HQQ"), MemUsage),
    ItemType.DISK_USAGE: (struct.Struct(">HQQ"), DiskUsage),
    ItemType.TRAFFIC_COUNT: (struct.Struct(">H6Q"), TrafficCount),
    ItemType.TRAFFIC_RATE: (struct.Struct(">H6Q"), TrafficRate),
    ItemType.RADIOWAVE: (struct.Struct(">H4B"), RadioWave),
}
_TYPE_OF = {cls: t for t, (_, cls) in _LAYOUT.items()}
_TL = struct.Struct(">HH")


class HeartbeatPacket(Record):
    digest: bytes
    distribution_id: DistributionId
    items: tuple[Item, ...]


def parse_packet(data: bytes) -> HeartbeatPacket:
    """Decode a datagram (the digest is not checked here: see :func:`verify_packet`).

    Raises :class:`ProtocolError` for a datagram shorter than 44 or longer than 1024 bytes, a
    wrong prefix, a TLV overrunning the end, or a known item with the wrong length.
    """
    n = len(data)
    if n < PREFIX_LEN:
        raise ProtocolError(f"heartbeat of {n} bytes is shorter than the {PREFIX_LEN}-byte prefix")
    if n > MAX_PACKET:
        raise ProtocolError(f"heartbeat of {n} bytes exceeds {MAX_PACKET} bytes")
    if _TL.unpack_from(data, 0) != (ItemType.HMAC, DIGEST_LEN):
        raise ProtocolError("heartbeat does not start with an HMAC TLV of 20 bytes")
    if _TL.unpack_from(data, 24) != (ItemType.DIST_ID, 16):
        raise ProtocolError("heartbeat has no distribution id TLV of 16 bytes at offset 24")
    dist = DistributionId.from_bytes(bytes(data[28:44]))
    items: list[Item] = []
    pos = PREFIX_LEN
    while pos < n:
        if n - pos < 4:
            raise ProtocolError(f"heartbeat has {n - pos} stray bytes at offset {pos}")
        typ, length = _TL.unpack_from(data, pos)
        pos += 4
        if length > n - pos:
            raise ProtocolError(f"heartbeat TLV type 0x{typ:04x} at offset {pos - 4} "
                                f"overruns the datagram")
        value = bytes(data[pos:pos + length])
        pos += length
        layout = _LAYOUT.get(typ)
        if layout is None:
            if typ in (ItemType.HMAC, ItemType.DIST_ID):
                raise ProtocolError(f"heartbeat repeats its prefix TLV 0x{typ:04x}")
            items.append(UnknownItem(typ, value))
            continue
        st, cls = layout
        if length != st.size:
            raise ProtocolError(f"heartbeat item 0x{typ:04x} has length {length}, "
                                f"expected {st.size}")
        items.append(cls(*st.unpack(value)))
    return HeartbeatPacket(bytes(data[4:24]), dist, tuple(items))


def _key(passphrase: str | bytes) -> bytes:
    return passphrase.encode("utf-8") if isinstance(passphrase, str) else bytes(passphrase)


def compute_digest(data: bytes, passphrase: str | bytes) -> bytes:
    """HMAC-SHA1 of ``data`` with bytes 4-23 taken as zero."""
    if len(data) < 24:
        raise ProtocolError("heartbeat too short to carry a digest")
    zeroed = bytes(data[:4]) + bytes(DIGEST_LEN) + bytes(data[24:])
    return hmac.new(_key(passphrase), zeroed, hashlib.sha1).digest()


def verify_packet(data: bytes, passphrase: str | bytes) -> bool:
    """True when the digest in ``data`` is the one ``passphrase`` gives (constant time)."""
    if len(data) < 24:
        return False
    return hmac.compare_digest(compute_digest(data, passphrase), bytes(data[4:24]))


def sign_packet(unsigned: bytes, passphrase: str | bytes) -> bytes:
    """Return ``unsigned`` with its digest filled in for ``passphrase``."""
    digest = compute_digest(unsigned, passphrase)
    return bytes(unsigned[:4]) + digest + bytes(unsigned[24:])


class PacketBuilder:
    """Pure-Python heartbeat builder with libarms' rules (reference and benchmark baseline).

    The ``set_*`` methods raise :class:`ArmsError` with ``Err.EEXIST`` when the same item kind
    and index is already present and ``Err.ESIZE`` when the item does not fit in 1024 bytes.
    """

    def __init__(self, distribution_id: DistributionId | str):
        if isinstance(distribution_id, str):
            distribution_id = DistributionId.parse(distribution_id)
        self.distribution_id = distribution_id
        self._prefix = (_TL.pack(ItemType.HMAC, DIGEST_LEN) + bytes(DIGEST_LEN)
                        + _TL.pack(ItemType.DIST_ID, 16) + distribution_id.to_bytes())
        self._items = bytearray()
        self._seen: set[tuple[int, int]] = set()

    def clear(self) -> None:
        self._items.clear()
        self._seen.clear()

    def __len__(self) -> int:
        return PREFIX_LEN + len(self._items)

    def _add(self, cls: type, index: int, *values: int) -> None:
        typ = _TYPE_OF[cls]
        st = _LAYOUT[typ][0]
        if (typ, index) in self._seen:
            raise ArmsError(Err.EEXIST, f"heartbeat item 0x{typ:04x} index {index} already set")
        if len(self) + 4 + st.size > MAX_PACKET:
            raise ArmsError(Err.ESIZE, f"heartbeat item 0x{typ:04x} does not fit in "
                                       f"{MAX_PACKET} bytes")
        try:
            value = st.pack(index, *values)
        except struct.error as exc:
            raise ValueError(f"heartbeat item 0x{typ:04x}: {exc}") from None
        self._items += _TL.pack(typ, st.size) + value
        self._seen.add((typ, index))

    def set_cpu_usage(self, idx, utilization):
        self._add(CpuUsage, idx, utilization)

    def set_cpu_detail_usage(self, idx, idle, interrupt, user, sys, other):
        self._add(CpuDetailUsage, idx, idle, interrupt, user, sys, other)

    def set_mem_usage(self, idx, used, avail):
        self._add(MemUsage, idx, used, avail)

    def set_disk_usage(self, idx, used, avail):
        self._add(DiskUsage, idx, used, avail)

    def set_traffic_count(self, ifidx, in_octet, out_octet, in_packet, out_packet,
                          in_error, out_error):
        self._add(TrafficCount, ifidx, in_octet, out_octet, in_packet, out_packet,
                  in_error, out_error)

    def set_traffic_rate(self, ifidx, in_octet, out_octet, in_packet, out_packet,
                         in_error, out_error):
        self._add(TrafficRate, ifidx, in_octet, out_octet, in_packet, out_packet,
                  in_error, out_error)

    def set_radiowave(self, ifidx, status, max, min, avg):  # noqa: A002 (libarms names)
        self._add(RadioWave, ifidx, status, max, min, avg)

    def unsigned(self) -> bytes:
        return self._prefix + bytes(self._items)

    def build(self, passphrase: str | bytes) -> bytes:
        return sign_packet(self.unsigned(), passphrase)
