"""Read the state blob of the C libarms 5.33 (``arms_dump_state``), to migrate a gateway.

A device that ran the C library keeps its LS-skip cache as a native C structure
(``spec/arms-agent.md`` §2.11, version 2, MD5 over everything before the digest). This module
reads it so that ``Agent.restore_state`` can start such a device at its last good RS. Two ABIs:

* LP64 (64-bit ``time_t``; 29456 bytes): ``lltimeout`` is 8 bytes at offset 144;
* ILP32 (32-bit ``time_t``; 29448 bytes): ``lltimeout`` is 4 bytes at 140, no padding.

Byte order is the writer's: found from the version field (2). Strings are NUL-terminated
inside their arrays. Anything else (size, version, digest) is a ProtocolError.
"""

from __future__ import annotations

import hashlib
import struct

from .._record import Record, field
from ..callbacks import Line, LineType
from ..errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Optional

VERSION = 2
LINE_RECORD = 464          # int type + 460-byte union
MAX_LINES = 5
RS_RECORD = 257 + 5120
MAX_RS = 5

_LAYOUTS = {
    # size: (lltimeout offset, lltimeout size, line_defs offset)
    29456: (144, 8, 152),
    29448: (140, 4, 144),
}


class CState(Record):
    rs_endpoint: str
    rs_retry_max: int
    rs_retry_interval: int
    ll_timeout: int
    lines: tuple[Line, ...]
    last_line: int
    rs_key: str = field(repr=False)
    rs_urls: tuple[str, ...]
    rs_certs: tuple[Optional[str], ...]
    current_rs: int
    result: int


def _cstr(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("ascii", "replace")


def _line(rec: bytes, bo: str) -> Optional[Line]:
    (t,) = struct.unpack(bo + "i", rec[:4])
    u = rec[4:]
    (ifindex,) = struct.unpack(bo + "i", u[:4])
    try:
        lt = LineType(t)
    except ValueError:
        raise ProtocolError(f"libarms state: unknown line type {t}") from None
    if lt == LineType.NONE:
        return None
    if lt in (LineType.PPPOE, LineType.PPPOE_IPV6):
        return Line(lt, ifindex, pppoe_id=_cstr(u[4:40]), pppoe_pass=_cstr(u[40:76]))
    if lt == LineType.MOBILE:
        (cid,) = struct.unpack(bo + "i", u[44:48])
        return Line(lt, ifindex, telno=_cstr(u[4:44]), cid=cid, apn=_cstr(u[48:148]),
                    pdp=_cstr(u[148:156]), pppoe_id=_cstr(u[156:284]), pppoe_pass=_cstr(u[284:412]),
                    ipaddr=_cstr(u[412:460]))
    if lt == LineType.STATIC:
        return Line(lt, ifindex, ipaddr=_cstr(u[4:52]))
    return Line(lt, ifindex)


def is_libarms_state(blob: bytes) -> bool:
    return len(blob) in _LAYOUTS


def parse_libarms_state(blob: bytes) -> CState:
    """Parse a C libarms 5.33 state blob (LP64 or ILP32, either byte order)."""
    blob = bytes(blob)
    layout = _LAYOUTS.get(len(blob))
    if layout is None:
        raise ProtocolError(f"libarms state: {len(blob)} bytes is neither the LP64 (29456) nor the "
                            "ILP32 (29448) layout")
    if hashlib.md5(blob[:-16]).digest() != blob[-16:]:
        raise ProtocolError("libarms state: MD5 digest mismatch (damaged file)")
    for bo in ("<", ">"):
        if struct.unpack(bo + "I", blob[:4])[0] == VERSION:
            break
    else:
        raise ProtocolError(f"libarms state: version is not {VERSION}")
    ll_off, ll_size, lines_off = layout
    endpoint = _cstr(blob[4:132])
    rmax, rint = struct.unpack(bo + "ii", blob[132:140])
    (ll,) = struct.unpack(bo + ("q" if ll_size == 8 else "i"), blob[ll_off:ll_off + ll_size])
    lines = []
    for i in range(MAX_LINES):
        rec = blob[lines_off + i * LINE_RECORD: lines_off + (i + 1) * LINE_RECORD]
        lines.append(_line(rec, bo))
    p = lines_off + MAX_LINES * LINE_RECORD
    num_line, last_line = struct.unpack(bo + "ii", blob[p:p + 8])
    key = _cstr(blob[p + 8:p + 8 + 65])
    p += 8 + 65
    urls, certs = [], []
    for i in range(MAX_RS):
        rec = blob[p + i * RS_RECORD: p + (i + 1) * RS_RECORD]
        url, cert = _cstr(rec[:257]), _cstr(rec[257:])
        if url:
            urls.append(url)
            certs.append(cert or None)
    p += MAX_RS * RS_RECORD
    p += (-p) % 4                      # padding before the ints
    current, result = struct.unpack(bo + "ii", blob[p:p + 8])
    if not 0 <= num_line <= MAX_LINES:
        raise ProtocolError(f"libarms state: {num_line} lines")
    used = [l for l in lines[:num_line] if l is not None]
    return CState(endpoint, rmax, rint, ll, tuple(used), last_line, key, tuple(urls), tuple(certs),
                  current, result)
