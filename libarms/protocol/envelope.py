"""The ``<arms-message>`` envelope (``spec/arms-wire.md`` §3.2), both directions.

Builders return the exact bytes libarms writes (no declaration, one line). :func:`parse_message`
turns bytes from a peer into a :class:`Message` whose ``body`` is the method's body element,
left for the per-message parsers.
"""

from __future__ import annotations

from .._record import Record, field
from ..errors import ProtocolError
from .results import result_text
from .xmlutil import MAX_DOCUMENT, child, element, escape, int_of, parse_document, text_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing (and the XML parser) stay unloaded at import
    import xml.etree.ElementTree as ET
    from typing import Optional

#: XML declaration servers put in front of their answers (vector tunnel/02, LF-terminated).
SERVER_DECLARATION = b'<?xml version="1.0" encoding="US-ASCII" ?>\n'


def build_request(type_: str, distribution_id: str, body: str, *, description: str = "",
                  transaction_id: int = 0, transaction_result: Optional[int] = None) -> bytes:
    """An ``arms-request``; ``body`` is the already-built body element (e.g. from
    :func:`~libarms.protocol.xmlutil.element`). Child order as libarms: transaction-result,
    distribution-id, transaction-id (when not 0), description, body."""
    parts = []
    if transaction_result is not None:
        parts.append(element("transaction-result", str(int(transaction_result))))
    parts.append(element("distribution-id", str(distribution_id)))
    if transaction_id:
        parts.append(element("transaction-id", str(int(transaction_id))))
    parts.append(element("description", escape(description)))
    parts.append(body)
    inner = element("arms-request", "".join(parts), [("type", type_)])
    return element("arms-message", inner).encode("ascii")


def build_response(type_: str, result_code: int, body: str = "", *, transaction_id: int = 0,
                   description: Optional[str] = None, declaration: bytes = b"") -> bytes:
    """An ``arms-response``: transaction-id (when not 0), result-code, description, body.

    ``description`` defaults to libarms' text for the code. ``declaration`` is written in front
    as is (servers: :data:`SERVER_DECLARATION`).
    """
    parts = []
    if transaction_id:
        parts.append(element("transaction-id", str(int(transaction_id))))
    parts.append(element("result-code", str(int(result_code))))
    parts.append(element("description", escape(result_text(result_code) if description is None
                                                else description)))
    parts.append(body)
    inner = element("arms-response", "".join(parts), [("type", type_)])
    return declaration + element("arms-message", inner).encode("ascii")


class Message(Record):
    """One parsed ARMS message.

    ``kind`` is "request" or "response"; ``type`` the ``type`` attribute ("" when absent);
    ``result_code`` is None when absent or not a valid integer (responses); ``body`` is the
    first child element that is not an envelope field, or None.
    """

    kind: str
    type: str
    distribution_id: Optional[str] = None
    description: Optional[str] = None
    transaction_id: Optional[int] = None
    transaction_result: Optional[int] = None
    result_code: Optional[int] = None
    result_url: Optional[str] = None
    body: Optional[ET.Element] = field(default=None, compare=False, repr=False)
    root: Optional[ET.Element] = field(default=None, compare=False, repr=False)

    def body_named(self, name: str) -> Optional[ET.Element]:
        """The child of the envelope called ``name`` (the device only reads data from the
        body element with the exact expected name)."""
        inner = self.root[0] if self.root is not None and len(self.root) else None
        return child(inner, name)


_ENVELOPE_FIELDS = {"transaction-result", "distribution-id", "transaction-id", "description",
                    "result-code", "result-description", "result-url", "error-reason"}


def parse_message(data: bytes, *, limit: int = MAX_DOCUMENT, what: str = "ARMS message") -> Message:
    """Parse an ARMS document (request or response). ProtocolError when it is not one."""
    root = parse_document(data, limit=limit, what=what)
    if root.tag != "arms-message":
        raise ProtocolError(f"{what}: root element is <{root.tag}>, expected <arms-message>")
    if len(root) != 1 or root[0].tag not in ("arms-request", "arms-response"):
        raise ProtocolError(f"{what}: <arms-message> must hold exactly one <arms-request> or "
                            "<arms-response>")
    inner = root[0]
    kind = "request" if inner.tag == "arms-request" else "response"
    body = None
    for c in inner:
        if c.tag not in _ENVELOPE_FIELDS:
            body = c
            break
    desc = child(inner, "description")
    if desc is None:
        desc = child(inner, "result-description")
    return Message(
        kind=kind,
        type=inner.get("type", ""),
        distribution_id=text_of(child(inner, "distribution-id")),
        description=text_of(desc),
        transaction_id=int_of(child(inner, "transaction-id")),
        transaction_result=int_of(child(inner, "transaction-result")),
        result_code=int_of(child(inner, "result-code")),
        result_url=text_of(child(inner, "result-url")),
        body=body,
        root=root,
    )


def parse_response(data: bytes, expected_type: Optional[str] = None, *, limit: int = MAX_DOCUMENT) -> Message:
    """Parse a server answer; ProtocolError if it is a request or of another ``type``."""
    m = parse_message(data, limit=limit, what=f"{expected_type or 'ARMS'} response")
    if m.kind != "response":
        raise ProtocolError(f"expected an <arms-response>, got an <arms-request type=\"{m.type}\">")
    if expected_type is not None and m.type not in ("", expected_type):
        raise ProtocolError(f"expected a {expected_type} response, got type \"{m.type}\"")
    return m


def parse_request(data: bytes, expected_type: Optional[str] = None, *, limit: int = MAX_DOCUMENT) -> Message:
    """Parse an ARMS request (server side of pull messages, device side of pushes)."""
    m = parse_message(data, limit=limit, what=f"{expected_type or 'ARMS'} request")
    if m.kind != "request":
        raise ProtocolError(f"expected an <arms-request>, got an <arms-response type=\"{m.type}\">")
    if expected_type is not None and m.type != expected_type:
        raise ProtocolError(f"expected a {expected_type} request, got type \"{m.type}\"")
    return m
