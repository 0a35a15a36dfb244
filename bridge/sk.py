"""SKSTACK-IP text protocol (broute.md §1), sans-I/O.

:class:`Reader` is an incremental parser: ``feed(bytes)`` returns the typed records of every
complete line or block (§1.11). It never raises on module output: bytes it cannot make sense of
come back as :class:`Garbage` records, so a noisy line can never crash the driver. Binary and hex
``ERXUDP`` are both handled (length-driven reading for binary, §1.3 rule 4).

:class:`Dialect` formats the commands whose syntax differs between module families A and C
(§1.1, §1.12). Parsing needs no family: EVENT/ERXUDP/EPANDESC variants are told apart by token
shape, which is what lets detection happen on a live line.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Optional, Union

from .errors import ConfigError

CRLF = b"\r\n"
#: A line longer than this without a terminator is garbage (module lines are < 300 bytes).
MAX_LINE = 2048
#: Largest ERXUDP payload accepted (the module's own cap, §1.7.11).
MAX_DATALEN = 0x04D0
#: J11 binary-UART response/notification unique code (§1.1, family J).
J11_MAGIC = b"\xd0\xf9\xee\x5d"
J11_REQUEST_MAGIC = b"\xd0\xea\x83\xfc"

_HEX = re.compile(rb"^[0-9A-Fa-f]+$")
_IPADDR = re.compile(r"^[0-9A-Fa-f]{4}(:[0-9A-Fa-f]{4}){7}$")
_PRODUCT_ECHO = ("ROPT", "WOPT", "RUART", "WUART")


# -- records ------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Ok:
    value: Optional[str] = None        # "01" for "OK 01" (ROPT/RUART)


@dataclasses.dataclass(frozen=True)
class Fail:
    code: Optional[int]                # 5 for "FAIL ER05"; None for a bare FAIL


@dataclasses.dataclass(frozen=True)
class Payload:
    """A response line that is not a status: EVER, EINFO, ESREG, an IPADDR (SKLL64), tables."""

    name: str                          # "EVER", "EINFO", "ESREG", "IPADDR", "EPORT", "LINE"...
    args: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Echo:
    text: str


@dataclasses.dataclass(frozen=True)
class Event:
    num: int
    addr: Optional[str] = None
    side: Optional[int] = None
    param: Optional[int] = None


@dataclasses.dataclass(frozen=True)
class PanDesc:
    channel: int
    channel_page: Optional[str]
    pan_id: int
    addr: str                          # ADDR64 of the coordinator (meter), 16 hex
    lqi: int
    side: Optional[int] = None
    pair_id: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class RxUdp:
    sender: str
    dest: str
    rport: int
    lport: int
    sender_mac: str
    secured: int
    side: Optional[int]
    rssi: Optional[int]
    data: bytes
    binary: bool = False               # True when the DATA part came as raw bytes


@dataclasses.dataclass(frozen=True)
class Garbage:
    raw: bytes
    reason: str


@dataclasses.dataclass(frozen=True)
class J11Frame:
    """A binary J11-style frame: the module is not an SKSTACK text module."""

    raw: bytes


Record = Union[Ok, Fail, Payload, Echo, Event, PanDesc, RxUdp, Garbage, J11Frame]
#: Records that go to the asynchronous event queue rather than to the in-flight command.
ASYNC = (Event, PanDesc, RxUdp, J11Frame)


def normalize_ipaddr(text: str) -> str:
    """Full 39-character upper-case form of an IPv6 address (accepts compressed input)."""
    import ipaddress
    try:
        packed = ipaddress.IPv6Address(text).packed
    except ValueError:
        raise ValueError(f"not an IPv6 address: {text!r}") from None
    return ":".join(packed[i:i + 2].hex().upper() for i in range(0, 16, 2))


def link_local_from_mac(mac: str) -> str:
    """Modified EUI-64 (§2.3): FE80::/64 + MAC with bit 0x02 of the first byte inverted."""
    raw = bytearray(bytes.fromhex(mac))
    if len(raw) != 8:
        raise ValueError(f"ADDR64 must be 16 hex digits: {mac!r}")
    raw[0] ^= 0x02
    return "FE80:0000:0000:0000:" + ":".join(raw[i:i + 2].hex().upper() for i in range(0, 8, 2))


def mac_from_link_local(addr: str) -> str:
    full = bytes.fromhex(normalize_ipaddr(addr).replace(":", ""))
    raw = bytearray(full[8:])
    raw[0] ^= 0x02
    return raw.hex().upper()


def _is_hex(token: str, n: Optional[int] = None) -> bool:
    return bool(token) and (n is None or len(token) == n) and all(
        c in "0123456789ABCDEFabcdef" for c in token)


# -- the reader -------------------------------------------------------------------------------

class Reader:
    """Incremental parser of module output.

    ``mode`` is the ERXUDP data format learned from ROPT: ``"hex"``, ``"binary"`` or ``None``
    (unknown: decided per record, §1.11 step 1).
    """

    def __init__(self, mode: Optional[str] = None):
        self.mode = mode
        self._buf = bytearray()
        self._pandesc: Optional[list[str]] = None
        self.garbage_count = 0

    def feed(self, data: bytes) -> list[Record]:
        """Add bytes; return every record now complete, in order."""
        self._buf += data
        out: list[Record] = []
        for _ in range(len(self._buf) + 1):       # each step consumes >= 1 byte or stops
            recs = self._step()
            if recs is None:
                break
            out.extend(recs)
        self.garbage_count += sum(isinstance(r, Garbage) for r in out)
        return out

    def flush(self) -> list[Record]:
        """End of input (port closed or idle): close an open EPANDESC block."""
        return [self._close_pandesc()] if self._pandesc is not None else []

    def _step(self) -> Optional[list]:
        """Records of the next line/record; [] when bytes were consumed silently; None = need more."""
        buf = self._buf
        if not buf:
            return None
        if buf[0] in (0x0D, 0x0A):              # terminators after binary data, lone CR/LF
            del buf[0]
            return []
        if buf[:4] in (J11_MAGIC, J11_REQUEST_MAGIC):
            raw = bytes(buf)
            buf.clear()
            return [J11Frame(raw)]
        if buf.startswith(b"ERXUDP "):
            rec = self._erxudp()
            if rec is _NEED:
                if len(buf) <= MAX_LINE + 2 * MAX_DATALEN + 2:
                    return None
                rec = None
            if rec is not None:
                return self._emit(rec)
        end = _find_eol(buf)
        if end < 0:
            if len(buf) > MAX_LINE:
                raw = bytes(buf)
                buf.clear()
                return self._emit(Garbage(raw, f"no line terminator within {MAX_LINE} bytes"))
            return None
        raw = bytes(buf[:end])
        del buf[:end + 1]
        return self._line(raw)

    def _emit(self, rec) -> list:
        # A new top-level record closes an open EPANDESC block first.
        if self._pandesc is not None:
            return [self._close_pandesc(), rec]
        return [rec]

    def _line(self, raw: bytes) -> list:
        if J11_MAGIC in raw or J11_REQUEST_MAGIC in raw:
            return self._emit(J11Frame(raw))
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            return self._emit(Garbage(raw, "non-ASCII bytes"))
        if any(ord(c) < 0x20 and c != "\t" for c in text):
            return self._emit(Garbage(raw, "control characters"))
        if self._pandesc is not None and (text.startswith("  ") or text.startswith("\t")):
            if len(self._pandesc) >= 16:
                self._pandesc = None
                return [Garbage(raw, "EPANDESC block too long")]
            self._pandesc.append(text.strip())
            return []
        stripped = text.strip()
        if not stripped:
            return []
        if stripped == "EPANDESC":
            out = [self._close_pandesc()] if self._pandesc is not None else []
            self._pandesc = []
            return out
        return self._emit(self._parse_line(text, raw))

    def _parse_line(self, text: str, raw: bytes):
        tokens = text.split()
        head = tokens[0]
        if head == "OK":
            return Ok(tokens[1] if len(tokens) > 1 else None)
        if head == "FAIL":
            if len(tokens) > 1 and tokens[1].startswith("ER") and _is_hex(tokens[1][2:]):
                return Fail(int(tokens[1][2:], 10) if tokens[1][2:].isdigit()
                            else int(tokens[1][2:], 16))
            return Fail(None)
        if head.startswith("SK") or head in _PRODUCT_ECHO:
            return Echo(text)
        if head == "EVENT":
            return self._event(tokens, raw)
        if head == "ERXUDP":
            # A hex ERXUDP that did not pass the length-driven path: malformed.
            return Garbage(raw, "malformed ERXUDP")
        if len(tokens) == 1 and _IPADDR.match(head):
            return Payload("IPADDR", (head.upper(),))
        if head in ("EVER", "EAPPVER", "EINFO", "ESREG", "EADDR", "ENEIGHBOR", "EPORT", "EEDSCAN",
                    "EHANDLE"):
            return Payload(head, tuple(tokens[1:]))
        return Payload("LINE", tuple(tokens))

    def _event(self, tokens, raw):
        if not 2 <= len(tokens) <= 5 or not _is_hex(tokens[1], 2):
            return Garbage(raw, "malformed EVENT")
        num = int(tokens[1], 16)
        addr = side = param = None
        rest = tokens[2:]
        if rest and ":" in rest[0]:
            addr = rest.pop(0).upper()
        for tok in rest:
            if len(tok) == 1 and tok.isdigit() and side is None and param is None:
                side = int(tok)
            elif _is_hex(tok, 2) and param is None:
                param = int(tok, 16)
            else:
                return Garbage(raw, "malformed EVENT")
        return Event(num, addr, side, param)

    def _close_pandesc(self):
        lines, self._pandesc = self._pandesc, None
        fields = {}
        for line in lines:
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip().lower()] = value.strip()
        try:
            return PanDesc(
                channel=int(fields["channel"], 16),
                channel_page=fields.get("channel page"),
                pan_id=int(fields["pan id"], 16),
                addr=fields["addr"].upper(),
                lqi=int(fields["lqi"], 16),
                side=int(fields["side"]) if "side" in fields else None,
                pair_id=fields.get("pairid"),
            )
        except (KeyError, ValueError) as exc:
            return Garbage("\n".join(lines).encode(), f"EPANDESC without a valid {exc}")

    def _erxudp(self):
        """Parse an ERXUDP record at the buffer start.

        Returns the record, ``_NEED`` (wait for more bytes) or None (not a valid ERXUDP: the
        line path turns it into Garbage). The header is split in one go; the DATALEN token is
        the first 4-hex-digit token after SENDERLLA (§1.10.3).
        """
        buf = self._buf
        head = bytes(buf[:_ERXUDP_HEAD_MAX])
        parts = head.split(b" ")
        # parts[k] is DATALEN when it is followed by a space (k < len(parts) - 1).
        k = next((i for i in range(7, min(10, len(parts) - 1)) if len(parts[i]) == 4), None)
        if k is None:
            if len(parts) - 1 < 10 and len(head) < _ERXUDP_HEAD_MAX and _find_eol(head) < 0:
                return _NEED
            return None
        header = parts[1:k + 1]
        for tok in header:
            if not tok or not _HEX.match(tok.replace(b":", b"")):
                return None
        tokens = [t.decode() for t in header]
        pos = sum(len(p) + 1 for p in parts[:k + 1])
        sender, dest, rport, lport, mac = tokens[:5]
        shorts = tokens[5:-1]
        datalen = int(tokens[-1], 16)
        if not (_IPADDR.match(sender) and _IPADDR.match(dest) and len(rport) == 4
                and len(lport) == 4 and len(mac) == 16 and 1 <= len(shorts) <= 3
                and datalen <= MAX_DATALEN):
            return None
        rssi = side = None
        try:
            if len(shorts) == 1:
                secured = int(shorts[0], 16)
            elif len(shorts) == 2:
                secured, side = int(shorts[0], 16), int(shorts[1], 16)
            else:
                rssi, secured, side = (int(shorts[0], 16), int(shorts[1], 16), int(shorts[2], 16))
        except ValueError:
            return None
        mode = self.mode
        if mode is None:
            if len(buf) <= pos:
                return _NEED
            mode = "hex" if buf[pos] in b"0123456789ABCDEFabcdef" else "binary"
        if mode == "hex":
            end = _find_eol(buf, pos)
            if end < 0:
                if len(buf) - pos > 2 * MAX_DATALEN + 2:
                    return None
                return _NEED
            if end - pos != 2 * datalen:
                return None
            try:
                data = bytes.fromhex(buf[pos:end].decode("ascii"))
            except ValueError:
                return None
            if len(data) != datalen:          # fromhex skips blanks: "1 8 1 0" is not 4 bytes
                return None
            del buf[:end + 1]
            binary = False
        else:
            if len(buf) < pos + datalen:
                return _NEED
            data = bytes(buf[pos:pos + datalen])
            del buf[:pos + datalen]
            binary = True
        return RxUdp(sender.upper(), dest.upper(), int(rport, 16), int(lport, 16), mac.upper(),
                     secured, side, rssi, data, binary)


_NEED = object()
#: ERXUDP header up to and including DATALEN and its space: 7+40+40+5+5+17+3+2+2+5 < 160 bytes.
_ERXUDP_HEAD_MAX = 160


def _find_eol(buf, start: int = 0, end: Optional[int] = None) -> int:
    end = len(buf) if end is None else min(end, len(buf))
    cr = buf.find(b"\r", start, end)
    lf = buf.find(b"\n", start, end)
    if cr < 0:
        return lf
    if lf < 0:
        return cr
    return min(cr, lf)


# -- dialects ---------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Dialect:
    """Command syntax of one module family (§1.1)."""

    family: str                         # "A" or "C"

    def __post_init__(self):
        if self.family not in ("A", "C"):
            raise ConfigError(f"module family must be A or C, not {self.family!r}")

    @property
    def side(self) -> bool:
        return self.family == "C"

    def other(self) -> "Dialect":
        return Dialect("C" if self.family == "A" else "A")

    def scan(self, duration: int, mode: int = 2, mask: int = 0xFFFFFFFF) -> bytes:
        if not 0 <= duration <= 14:
            raise ValueError("scan duration is 0..14")
        line = f"SKSCAN {mode} {mask:08X} {duration:X}"
        return (line + (" 0" if self.side else "")).encode() + CRLF

    def sendto_header(self, addr: str, data_len: int, handle: int = 1, port: int = 3610,
                      sec: int = 1) -> bytes:
        if not 1 <= data_len <= MAX_DATALEN:
            raise ValueError(f"SKSENDTO data of {data_len} bytes (1..{MAX_DATALEN})")
        side = " 0" if self.side else ""
        return (f"SKSENDTO {handle} {normalize_ipaddr(addr)} {port:04X} {sec}{side} "
                f"{data_len:04X} ").encode()


def command(*parts: str) -> bytes:
    """An ordinary command line: parts joined by one space, CR LF terminated."""
    return " ".join(parts).encode("ascii") + CRLF


def product_command(*parts: str) -> bytes:
    """ROPT/WOPT/RUART/WUART: CR-only terminator (§1.3 rule 2)."""
    return " ".join(parts).encode("ascii") + b"\r"


def masked(line: bytes) -> str:
    """A command as it may appear in a log: secrets of SKSETPWD/SKSETRBID masked (§1.7.6)."""
    text = line.decode("ascii", "replace").rstrip("\r\n")
    if text.startswith("SKSETPWD "):
        parts = text.split(" ")
        return " ".join(parts[:2] + ["****"])
    if text.startswith("SKSETRBID "):
        return "SKSETRBID ****"
    return text
