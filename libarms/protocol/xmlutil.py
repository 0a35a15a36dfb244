"""XML helpers shared by every ARMS message: strict parsing and libarms-style writing.

Parsing rules (``spec/arms-wire.md`` §3.1): the peer must send 7-bit ASCII only; a DTD or an
entity declaration is refused (defusedxml, never expanded); every document has a size limit.
Everything wrong becomes a :class:`~libarms.errors.ProtocolError` whose message says what was
wrong, so a log line is enough to fix the server.

Writing rules: no declaration, no whitespace between elements, start and end tag for every
element, text escaped as libarms does (``<>&"'`` as entities, every byte >= 0x80 as ``?``).
"""

from __future__ import annotations

import re

from ..errors import ProtocolError

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    import xml.etree.ElementTree as ET
    from typing import Iterable, Optional

#: Default size limit for one ARMS document received from a server.
MAX_DOCUMENT = 1024 * 1024

_INT_RE = re.compile(r"[ \t\r\n]*[+-]?[0-9]+\Z")


def parse_document(data: bytes, *, limit: int = MAX_DOCUMENT, what: str = "ARMS message") -> ET.Element:
    """Parse one XML document from a peer and return its root element.

    Refuses (ProtocolError): more than ``limit`` bytes, any byte >= 0x80, a DTD or entity
    declaration, anything that is not well-formed, and anything but white space after the root.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("parse_document() takes bytes")
    load_parser()
    data = bytes(data)
    if len(data) > limit:
        raise ProtocolError(f"{what} too large: {len(data)} bytes (limit {limit})")
    if not data.strip():
        raise ProtocolError(f"{what} is empty")
    if not data.isascii():          # C speed; the loop below only finds the offset
        for i, b in enumerate(data):
            if b >= 0x80:
                raise ProtocolError(f"{what} is not 7-bit ASCII (byte 0x{b:02x} at offset {i}); "
                                    "servers must base64-encode non-ASCII data")
    try:
        return DET.fromstring(data, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden as e:
        raise ProtocolError(f"{what} carries a DTD, which ARMS never uses: {e}") from None
    except defusedxml.EntitiesForbidden as e:
        raise ProtocolError(f"{what} declares an entity, which is refused: {e}") from None
    except defusedxml.DefusedXmlException as e:
        raise ProtocolError(f"{what} refused by the XML guard: {e}") from None
    except ET.ParseError as e:
        raise ProtocolError(f"{what} is not well-formed XML: {e}") from None


def load_parser() -> None:
    """Import the parser side (ElementTree, expat, defusedxml: ~4 ms of CPU) now. Nothing is
    parsed before the first answer of a server, so armsd has this done while it waits for the
    LS (``libarms.daemon.main``); :func:`parse_document` calls it (a dict look-up once done).
    Writing needs none of it."""
    global ET, DET, defusedxml
    if DET is None:
        import xml.etree.ElementTree as _et

        import defusedxml as _dx
        import defusedxml.ElementTree as _det
        ET, defusedxml, DET = _et, _dx, _det


ET = DET = defusedxml = None     # set by load_parser()


def text_of(elem: Optional[ET.Element]) -> Optional[str]:
    """Text content of a text-only element (None when the element is absent)."""
    if elem is None:
        return None
    return elem.text or ""


def int_of(elem: Optional[ET.Element], *, what: str = "") -> Optional[int]:
    """Integer element as libarms reads it: decimal, leading blanks and a sign tolerated,
    nothing after the digits (else absent: None), empty element = 0, absent = None."""
    if elem is None:
        return None
    t = elem.text or ""
    if t == "":
        return 0
    if not _INT_RE.match(t):
        return None
    return int(t.strip())


def escape(value: str | bytes) -> str:
    """Escape text the way libarms writes it (§3.1): entities for ``<>&"'``, ``?`` for every
    byte >= 0x80 of the UTF-8 form."""
    raw = value.encode("utf-8") if isinstance(value, str) else bytes(value)
    out = []
    for b in raw:
        if b >= 0x80:
            out.append("?")
        elif b == 0x3C:
            out.append("&lt;")
        elif b == 0x3E:
            out.append("&gt;")
        elif b == 0x26:
            out.append("&amp;")
        elif b == 0x22:
            out.append("&quot;")
        elif b == 0x27:
            out.append("&apos;")
        else:
            out.append(chr(b))
    return "".join(out)


def element(name: str, content: str = "", attrs: Iterable[tuple[str, object]] = ()) -> str:
    """``<name a="v">content</name>``; ``content`` must already be escaped / built XML."""
    a = "".join(f' {k}="{escape(str(v))}"' for k, v in attrs)
    return f"<{name}{a}>{content}</{name}>"


def children(parent: Optional[ET.Element], name: str) -> list[ET.Element]:
    if parent is None:
        return []
    return [c for c in parent if c.tag == name]


def child(parent: Optional[ET.Element], name: str) -> Optional[ET.Element]:
    if parent is None:
        return None
    for c in parent:
        if c.tag == name:
            return c
    return None
