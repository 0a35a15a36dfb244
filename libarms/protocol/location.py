"""Location-config text: the ``md-config`` of each ``rs-info`` in the LS answer.

``spec/arms-wire.md`` §3.5.1, ``spec/arms-agent.md`` §3.5. Line blocks (``line-pppoe``,
``line-dhcp``, ...) give the stage-2 lines (only the first rs-info's text may define them), and
an ``rs-certificate { PEM }`` block gives the CA that signs that RS.

Sans-I/O: :func:`parse_location_config` (text -> :class:`LocationConfig`, ProtocolError on
anything the device could not use) and :func:`build_location_config` (for servers).
"""

from __future__ import annotations

import re

from .._record import Record
from ..callbacks import Line, LineType
from ..errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional

#: 5.33 copies the text into a 2048-byte buffer: longer texts are refused here.
MAX_TEXT = 2047
MAX_LINE = 255
MAX_LINES = 5
MAX_PEM = 5120

BLOCKS = {
    "line-pppoe": LineType.PPPOE,
    "line-pppoe-ipv6": LineType.PPPOE_IPV6,
    "line-dhcp": LineType.DHCP,
    "line-mobile": LineType.MOBILE,
    "line-static": LineType.STATIC,
    "line-ra": LineType.RA,
}
BLOCK_NAMES = {v: k for k, v in BLOCKS.items()}

_KEYS = {"ifindex", "account", "password", "telno", "cid", "apn", "pdp-type", "ipaddress"}
_SPLIT = re.compile(r"[ ;]+")


class LocationConfig(Record):
    """What one location-config text holds: lines (in order) and the RS CA PEM (or None)."""

    lines: tuple[Line, ...] = ()
    rs_certificate: Optional[str] = None


def _limit(line_type: LineType, key: str, value: str) -> None:
    mobile = line_type == LineType.MOBILE
    limits = {"account": 127 if mobile else 35, "password": 127 if mobile else 35, "telno": 39,
              "apn": 99, "pdp-type": 7, "ipaddress": 47}
    lim = limits.get(key)
    if lim is not None and len(value) > lim:
        raise ProtocolError(f"location config: {key} of {BLOCK_NAMES[line_type]} longer than {lim} characters")


def _atoi(text: str) -> int:
    m = re.match(r"\s*[+-]?\d+", text)
    return int(m.group(0)) if m else 0


def _make_line(line_type: LineType, fields: dict) -> Line:
    kw = {"ifindex": _atoi(fields.get("ifindex", "0"))}
    if line_type in (LineType.PPPOE, LineType.PPPOE_IPV6, LineType.MOBILE):
        kw["pppoe_id"] = fields.get("account", "")
        kw["pppoe_pass"] = fields.get("password", "")
    if line_type == LineType.MOBILE:
        kw.update(telno=fields.get("telno", ""), cid=_atoi(fields.get("cid", "0")),
                  apn=fields.get("apn", ""), pdp=fields.get("pdp-type", ""))
    if line_type in (LineType.MOBILE, LineType.STATIC):
        kw["ipaddr"] = fields.get("ipaddress", "")
    return Line(line_type, **kw)


def parse_location_config(text: str) -> LocationConfig:
    """Parse a location-config text (tokens separated by spaces or ``;``, LF line ends; a CR
    before the LF is tolerated)."""
    if len(text) > MAX_TEXT:
        raise ProtocolError(f"location config is {len(text)} bytes; libarms accepts at most {MAX_TEXT}")
    lines: list[Line] = []
    cert_lines: Optional[list[str]] = None
    block: Optional[str] = None          # None, a line-* name, or "rs-certificate"
    fields: dict = {}
    pending_key: Optional[str] = None
    for n, raw in enumerate(text.split("\n"), 1):
        if len(raw) > MAX_LINE:
            raise ProtocolError(f"location config line {n} is longer than {MAX_LINE} bytes")
        tokens = [t for t in _SPLIT.split(raw.strip(" \t\r;").rstrip("\r")) if t]
        for tok in tokens:
            tok = tok.strip("\r\t")
            if not tok:
                continue
            if block == "rs-certificate":
                if tok == "}":
                    block = None
                elif tok == "{":
                    continue
                elif tok == "-----BEGIN":
                    cert_lines.append("-----BEGIN CERTIFICATE-----")
                elif tok == "-----END":
                    cert_lines.append("-----END CERTIFICATE-----")
                elif tok == "CERTIFICATE-----":
                    continue
                else:
                    cert_lines.append(tok)
                continue
            if block is not None:                       # inside a line block
                if pending_key is not None:
                    if tok == "}":
                        raise ProtocolError(f"location config: {pending_key} in {block} has no value")
                    _limit(BLOCKS[block], pending_key, tok)
                    fields[pending_key] = tok
                    pending_key = None
                elif tok == "}":
                    if len(lines) >= MAX_LINES:
                        raise ProtocolError(f"location config defines more than {MAX_LINES} lines")
                    lines.append(_make_line(BLOCKS[block], fields))
                    block, fields = None, {}
                elif tok in _KEYS:
                    pending_key = tok
                # "{" and unknown tokens are ignored, as libarms does
                continue
            if tok in BLOCKS:
                block, fields = tok, {}
            elif tok == "rs-certificate":
                block, cert_lines = "rs-certificate", []
            # "{", "}" and unknown tokens outside blocks are ignored
    if block is not None:
        raise ProtocolError(f"location config: block {block} is not closed with }}")
    pem = None
    if cert_lines:
        pem = "\n".join(cert_lines) + "\n"
        if len(pem) >= MAX_PEM:
            raise ProtocolError(f"location config: rs-certificate longer than {MAX_PEM - 1} bytes")
        if not pem.startswith("-----BEGIN CERTIFICATE-----\n") or "-----END CERTIFICATE-----" not in pem:
            raise ProtocolError("location config: rs-certificate block is not a PEM certificate")
    return LocationConfig(tuple(lines), pem)


def build_location_config(lines: Iterable[Line] = (), rs_certificate: Optional[str] = None) -> str:
    """Write a location-config text in the layout of the capture (vector tunnel/02)."""
    out = []
    for ln in lines:
        out.append(f"{BLOCK_NAMES[LineType(ln.type)]} {{")
        out.append(f"\tifindex {int(ln.ifindex)}")
        pairs = []
        if ln.type in (LineType.PPPOE, LineType.PPPOE_IPV6, LineType.MOBILE):
            pairs += [("account", ln.pppoe_id), ("password", ln.pppoe_pass)]
        if ln.type == LineType.MOBILE:
            pairs += [("telno", ln.telno), ("cid", str(ln.cid)), ("apn", ln.apn), ("pdp-type", ln.pdp)]
        if ln.type in (LineType.MOBILE, LineType.STATIC):
            pairs += [("ipaddress", ln.ipaddr)]
        for k, v in pairs:
            if v:
                if _SPLIT.search(v) or any(c in v for c in "\t\r\n{}"):
                    raise ValueError(f"location config value for {k} cannot hold spaces, ';' or braces")
                out.append(f"\t{k} {v}")
        out.append("}")
    if rs_certificate:
        out.append("rs-certificate {")
        out.extend(l for l in rs_certificate.strip().splitlines() if l.strip())
        out.append("}")
    return "".join(l + "\n" for l in out)
