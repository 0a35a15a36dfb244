"""ECHONET Lite frames as used on B-route (broute.md §3), sans-I/O.

``decode(datagram) -> Frame`` and ``Frame.encode() -> bytes`` are exact inverses for every valid
frame (format 1, EHD ``10 81``). Anything else raises :class:`~bridge.errors.FrameError`, the one
documented error. Trailing bytes after the last property are ignored, as §3.1 says.

Objects are 24-bit integers (``METER = 0x028801``), properties are ``Property(epc, edt)``.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Iterable, Optional, Sequence

from .errors import FrameError

EHD = b"\x10\x81"
CONTROLLER = 0x05FF01
METER = 0x028801
NODE_PROFILE = 0x0EF001
PORT = 3610
#: Largest datagram we accept (the module's DATALEN cap is 0x04D0 = 1232).
MAX_FRAME = 1232


class Esv(enum.IntEnum):
    SETI = 0x60
    SETC = 0x61
    GET = 0x62
    INF_REQ = 0x63
    SETGET = 0x6E
    SET_RES = 0x71
    GET_RES = 0x72
    INF = 0x73
    INFC = 0x74
    INFC_RES = 0x7A
    SETGET_RES = 0x7E
    SETI_SNA = 0x50
    SETC_SNA = 0x51
    GET_SNA = 0x52
    INF_SNA = 0x53
    SETGET_SNA = 0x5E


#: Which answers complete which request (§3.5 rule 5).
ANSWERS = {Esv.GET: (Esv.GET_RES, Esv.GET_SNA), Esv.SETC: (Esv.SET_RES, Esv.SETC_SNA),
           Esv.INF_REQ: (Esv.INF, Esv.INF_SNA)}
NOTIFICATIONS = (Esv.INF, Esv.INFC)


@dataclasses.dataclass(frozen=True)
class Property:
    epc: int
    edt: bytes = b""

    def __post_init__(self):
        if not 0 <= self.epc <= 0xFF:
            raise ValueError(f"EPC out of range: {self.epc}")
        if len(self.edt) > 0xFF:
            raise ValueError(f"EDT of EPC {self.epc:02X} longer than 255 bytes")


@dataclasses.dataclass(frozen=True)
class Frame:
    tid: int
    seoj: int
    deoj: int
    esv: int
    props: tuple[Property, ...]

    def __post_init__(self):
        if not 0 <= self.tid <= 0xFFFF:
            raise ValueError(f"TID out of range: {self.tid}")
        for eoj in (self.seoj, self.deoj):
            if not 0 <= eoj <= 0xFFFFFF:
                raise ValueError(f"EOJ out of range: {eoj}")
        if not 0 <= self.esv <= 0xFF:
            raise ValueError(f"ESV out of range: {self.esv}")
        if not 1 <= len(self.props) <= 0xFF:
            raise ValueError("a frame carries 1..255 properties")

    def encode(self) -> bytes:
        out = bytearray(EHD)
        out += self.tid.to_bytes(2, "big")
        out += self.seoj.to_bytes(3, "big") + self.deoj.to_bytes(3, "big")
        out += bytes((self.esv, len(self.props)))
        for p in self.props:
            out += bytes((p.epc, len(p.edt))) + p.edt
        return bytes(out)

    @property
    def epcs(self) -> tuple[int, ...]:
        return tuple(p.epc for p in self.props)

    def get(self, epc: int) -> Optional[bytes]:
        """EDT of ``epc``; None if absent or carried with PDC 0 (refused in a *_SNA)."""
        for p in self.props:
            if p.epc == epc:
                return p.edt or None
        return None

    def values(self) -> dict[int, bytes]:
        """EPC -> EDT for the properties that carry data."""
        return {p.epc: p.edt for p in self.props if p.edt}

    def hex(self) -> str:
        return self.encode().hex().upper()


def decode(data: bytes) -> Frame:
    """Parse one ECHONET Lite datagram. Raises FrameError for anything that is not a format-1 frame."""
    if len(data) > MAX_FRAME:
        raise FrameError(f"ECHONET frame of {len(data)} bytes exceeds {MAX_FRAME}")
    if len(data) < 14:
        raise FrameError(f"ECHONET frame too short ({len(data)} bytes, need at least 14)")
    if data[:2] != EHD:
        raise FrameError(f"not an ECHONET Lite format-1 frame (EHD {data[:2].hex().upper()})")
    tid = int.from_bytes(data[2:4], "big")
    seoj = int.from_bytes(data[4:7], "big")
    deoj = int.from_bytes(data[7:10], "big")
    esv, opc = data[10], data[11]
    if opc == 0:
        raise FrameError("ECHONET frame with OPC 0")
    props = []
    pos = 12
    for i in range(opc):
        if pos + 2 > len(data):
            raise FrameError(f"ECHONET frame truncated in property {i + 1} of {opc}")
        epc, pdc = data[pos], data[pos + 1]
        pos += 2
        if pos + pdc > len(data):
            raise FrameError(f"ECHONET frame truncated in EDT of EPC {epc:02X} "
                             f"(PDC {pdc}, {len(data) - pos} bytes left)")
        props.append(Property(epc, bytes(data[pos:pos + pdc])))
        pos += pdc
    return Frame(tid, seoj, deoj, esv, tuple(props))


def request(tid: int, esv: int, epcs: Iterable[int], deoj: int = METER,
            seoj: int = CONTROLLER) -> Frame:
    """A Get / INF_REQ / INFC_Res style frame: every EPC with PDC 0."""
    return Frame(tid, seoj, deoj, esv, tuple(Property(e) for e in epcs))


def set_request(tid: int, values: Sequence[tuple[int, bytes]], deoj: int = METER) -> Frame:
    return Frame(tid, CONTROLLER, deoj, Esv.SETC, tuple(Property(e, v) for e, v in values))


def infc_response(notification: Frame) -> Frame:
    """The INFC_Res for an INFC: same TID, swapped EOJs, each EPC with PDC 0 (§5.1)."""
    return Frame(notification.tid, notification.deoj, notification.seoj, Esv.INFC_RES,
                 tuple(Property(p.epc) for p in notification.props))


# -- property maps (§4.5) --------------------------------------------------------------------

def decode_property_map(edt: bytes) -> frozenset[int]:
    """0x9D/0x9E/0x9F: list form for n < 16, 16-byte bitmap for n >= 16."""
    if not edt:
        raise FrameError("empty property map")
    n = edt[0]
    if n < 16:
        if len(edt) < 1 + n:
            raise FrameError(f"property map announces {n} EPCs but carries {len(edt) - 1}")
        return frozenset(edt[1:1 + n])
    if len(edt) < 17:
        raise FrameError(f"bitmap property map of {len(edt)} bytes (need 17)")
    found = set()
    for i in range(16):
        for j in range(8):
            if edt[1 + i] & (1 << j):
                found.add(0x80 + 0x10 * j + i)
    return frozenset(found)


def encode_property_map(epcs: Iterable[int]) -> bytes:
    epcs = sorted(set(epcs))
    if any(not 0x80 <= e <= 0xFF for e in epcs):
        raise ValueError("property maps hold EPCs 0x80..0xFF only")
    if len(epcs) < 16:
        return bytes([len(epcs)] + epcs)
    bitmap = bytearray(16)
    for e in epcs:
        bitmap[(e - 0x80) & 0x0F] |= 1 << ((e - 0x80) >> 4)
    return bytes([len(epcs)]) + bytes(bitmap)


class TidCounter:
    """16-bit TID counter: new value per request and per retransmission, wrapping at 0xFFFF."""

    def __init__(self, start: int = 0):
        self._next = start & 0xFFFF

    def next(self) -> int:
        self._next = (self._next + 1) & 0xFFFF
        return self._next
