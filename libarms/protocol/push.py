"""ARMS push messages, sans-I/O, for both the device (SA) and the server side.

Spec: ``arms-wire.md`` (W) 3.2-3.5.7 and 4.1-4.14. Nothing here touches a socket: builders
return bytes (or a list of byte *pieces*: the device writes each builder piece as one tunnel
chunk or one HTTP chunk, W 2.3 / 5.2), parsers take the bytes of one ARMS message.

Theory of operation
-------------------
* The device receives a push request and calls :func:`parse_push_request`. It never raises for
  bad peer bytes: the result is a :class:`PushRequest` whose ``result`` is 100 or the error
  code the device must answer with (201 broken XML, 202 unknown type, 203 bad parameter, 402
  size/base64, 415 unknown module, 422 several md-commands, 423 foreign distribution id), and
  whose ``method`` is ``None`` when the answer has to be a ``generic-error``.
* The device answers with :func:`build_start_response` (asynchronous methods, first leg),
  :func:`build_sync_response` and the per-method ``*_response`` builders, and reports
  asynchronous results with :func:`build_done_request`.
* The device's own requests (method query, confirmation start) come from
  :func:`build_method_query_request` / :func:`build_confirmation_start_request`; the server's
  answers are read by :func:`parse_method_query_response`, :func:`parse_confirmation_start_response`
  and :func:`parse_done_response`, which raise :class:`ProtocolError` for unusable bytes.
* The server side (test server) builds requests with :func:`build_push_request` and the
  ``*_body`` helpers, and reads every device message with :func:`parse_message`, then
  :func:`read_push_answer` for the typed results.

Device-written XML follows W 3.1 exactly (no declaration, no white space, ``<x></x>`` for empty
elements, bytes >= 0x80 written as ``?``). Incoming XML is parsed with defusedxml (DTDs and
entities refused), must be 7-bit ASCII and at most ``limit`` bytes.
"""

from __future__ import annotations

import base64
import binascii
import enum
import re
from xml.etree.ElementTree import Element

from .. import _inet
from .._record import Record, field
from ..errors import ProtocolError
from .xmlutil import parse_document

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional, Sequence, Union

Result = str | bytes

#: Default upper bound for one ARMS message we parse (a configure may carry big configs).
MAX_MESSAGE = 16 * 1024 * 1024
#: W 4.8: the md-command text as received may be at most this long (else 402).
MAX_MD_COMMAND = 8192
#: Size of one result segment (libarms' callback buffer); results are written in such pieces.
RESULT_SEGMENT = 1024
#: W 7.4 limits on lists in the method-query answer.
MAX_PUSH_METHODS = 5
MAX_TUNNEL_URLS = 5
DEFAULT_ECHO_INTERVAL = 60
MAX_TRACEROUTE_HOP = 256

# -- result codes (W 3.3) -------------------------------------------------------------------

RESULT_TEXT = {
    100: "Success", 102: "Command Execute Error",
    201: "Invalid XML", 202: "Invalid Message type", 203: "Invalid Parameter",
    301: "Server Busy", 302: "SA Busy", 303: "Module syncing",
    400: "Bad Request", 401: "Server Failure", 402: "SA Failure", 403: "Authentication Falure",
    404: "SA Marked as stand-by", 405: "Not found", 406: "Too many Transaction",
    407: "Too many Status", 408: "Invalid Storage", 409: "Invalid Module ID",
    410: "Validation Failure", 411: "Commit Failure", 412: "Transction Failure",
    413: "Resource Exhausted", 414: "SA Rollbacked", 415: "System Error",
    416: "System Mismatch", 417: "Invalid Hardware", 418: "Invalid Firmware",
    419: "Module Sync needed", 420: "Distribution ID not found",
    421: "Configuration not found", 422: "Multiple Request", 423: "Distribution ID Mismatch",
    501: "Out of Service", 502: "Push Failed", 503: "Need Reboot", 504: "Addresss Mismatch",
    505: "Not Support", 506: "Server Moved", 507: "Invalid type", 508: "Rollback Failure",
}


def result_text(code: int) -> str:
    """The exact description text the device writes for ``code`` (typos included)."""
    return RESULT_TEXT.get(code, "Unknown result")


class Rc(enum.IntEnum):
    """Result codes the agent itself produces (names for readability)."""

    SUCCESS = 100
    COMMAND_EXECUTE_ERROR = 102
    INVALID_XML = 201
    INVALID_MESSAGE_TYPE = 202
    INVALID_PARAMETER = 203
    SA_BUSY = 302
    MODULE_SYNCING = 303
    SA_FAILURE = 402
    TOO_MANY_TRANSACTION = 406
    VALIDATION_FAILURE = 410
    COMMIT_FAILURE = 411
    RESOURCE_EXHAUSTED = 413
    SA_ROLLBACKED = 414
    SYSTEM_ERROR = 415
    MULTIPLE_REQUEST = 422
    DISTRIBUTION_ID_MISMATCH = 423
    PUSH_FAILED = 502
    NOT_SUPPORT = 505
    ROLLBACK_FAILURE = 508


# -- methods (W 4.1) --------------------------------------------------------------------------

class Kind(enum.Enum):
    SYNC = "sync"
    ASYNC = "async"


METHODS: dict[str, Kind] = {
    "configure": Kind.ASYNC,
    "read-status": Kind.ASYNC,
    "clear-status": Kind.ASYNC,
    "read-storage": Kind.ASYNC,
    "ping": Kind.ASYNC,
    "traceroute": Kind.ASYNC,
    "md-command": Kind.SYNC,
    "dump-debug": Kind.SYNC,
    "read-module-list": Kind.SYNC,
    "check-transaction": Kind.SYNC,
    "pull-config": Kind.SYNC,
    "reboot": Kind.SYNC,
    "push-confirmation-done": Kind.SYNC,
}

#: Method names a server may push through the REST API (everything but the confirmation).
PUSH_METHODS = tuple(m for m in METHODS if m != "push-confirmation-done")

PUSH_METHOD_SIMPLE = "https-simple"
PUSH_METHOD_TUNNEL = "https-tunnel"


def method_of_type(type_: str) -> Optional[str]:
    """``type`` attribute -> method name: ``NAME``, ``NAME-start`` or ``NAME-done`` (W 3.2)."""
    if type_ in METHODS:
        return type_
    for suffix in ("-start", "-done"):
        if type_.endswith(suffix) and type_[: -len(suffix)] in METHODS:
            return type_[: -len(suffix)]
    return None


def is_async(method: str) -> bool:
    return METHODS.get(method) is Kind.ASYNC


def response_type(method: str) -> str:
    """``type`` of the device's first answer to ``method``: ``NAME-start`` or ``NAME``."""
    return f"{method}-start" if is_async(method) else method


def request_type(method: str) -> str:
    """``type`` the server writes on a push request of ``method``."""
    return response_type(method)


# -- writing XML (W 3.1) ----------------------------------------------------------------------

_ESCAPES = {0x3C: b"&lt;", 0x3E: b"&gt;", 0x26: b"&amp;", 0x22: b"&quot;", 0x27: b"&apos;"}
#: libarms writes bytes >= 0x80 as "?". Control bytes other than TAB/LF/CR cannot appear in
#: XML 1.0 at all (libarms would write them raw and break the message): they become "?" too.
_BAD = frozenset(range(0x80, 0x100)) | (frozenset(range(0x20)) - {0x09, 0x0A, 0x0D}) | {0x7F}
_ESCAPE_TABLE = {i: (b"?" if i in _BAD else _ESCAPES.get(i, bytes([i]))) for i in range(256)}


def escape(value: Union[str, bytes]) -> bytes:
    """Escape text the way the device does: XML specials, and every byte >= 0x80 -> ``?``."""
    raw = value.encode("utf-8", "replace") if isinstance(value, str) else bytes(value)
    if not any(b in _ESCAPES or b in _BAD for b in raw):
        return raw
    return b"".join(_ESCAPE_TABLE[b] for b in raw)


def _tag(name: str, text: Union[str, bytes] = b"", attrs: Sequence[tuple[str, object]] = (),
         raw: bool = False) -> bytes:
    a = b"".join(b' %s="%s"' % (k.encode(), escape(str(v))) for k, v in attrs)
    body = (text.encode("ascii") if isinstance(text, str) else text) if raw else escape(text)
    return b"<%s%s>%s</%s>" % (name.encode(), a, body, name.encode())


def _open(name: str, attrs: Sequence[tuple[str, object]] = ()) -> bytes:
    a = b"".join(b' %s="%s"' % (k.encode(), escape(str(v))) for k, v in attrs)
    return b"<%s%s>" % (name.encode(), a)


def _close(name: str) -> bytes:
    return b"</%s>" % name.encode()


def _result_segments(value: Result) -> tuple[bool, list[bytes]]:
    """Split a callback result into written pieces: (is_binary, pieces).

    Text is escaped per 1024-byte segment; binary is one continuous base64 string cut at
    multiples of 4 characters, like libarms' carry-over of the remainder (W 4.1).
    """
    if isinstance(value, str):
        raw = value.encode("utf-8", "replace")
        return False, [escape(raw[i:i + RESULT_SEGMENT]) for i in range(0, len(raw), RESULT_SEGMENT)]
    b64 = base64.b64encode(bytes(value))
    step = (RESULT_SEGMENT // 3 + 1) * 4
    return True, [b64[i:i + step] for i in range(0, len(b64), step)]


def _pieces(*parts: Union[bytes, Iterable[bytes]]) -> list[bytes]:
    out: list[bytes] = []
    for p in parts:
        if isinstance(p, (bytes, bytearray)):
            out.append(bytes(p))
        else:
            out.extend(p)
    return [p for p in out if p]


def join(pieces: Iterable[bytes]) -> bytes:
    return b"".join(pieces)


# -- device side: requests the device sends ---------------------------------------------------

def _request_head(type_: str, distribution_id: str, description: str,
                  transaction_id: int = 0, transaction_result: Optional[int] = None) -> bytes:
    head = b'<arms-message><arms-request type="%s">' % type_.encode()
    if transaction_result is not None:
        head += b"<transaction-result>%d</transaction-result>" % transaction_result
    head += _tag("distribution-id", distribution_id)
    if transaction_id:
        head += b"<transaction-id>%d</transaction-id>" % transaction_id
    head += _tag("description", description)
    return head


_REQUEST_TAIL = b"</arms-request></arms-message>"
_RESPONSE_TAIL = b"</arms-response></arms-message>"


def build_method_query_request(distribution_id: str, description: str,
                               methods: Sequence[str] = (PUSH_METHOD_SIMPLE, PUSH_METHOD_TUNNEL)) -> bytes:
    """push-method-query request body (W 3.5.3); form A carries it whole."""
    body = b"".join(_tag("push-method", m, raw=True) for m in methods)
    return (_request_head("push-method-query", distribution_id, description)
            + _tag("push-method-query-request", body, raw=True) + _REQUEST_TAIL)


def build_confirmation_start_request(distribution_id: str, description: str, method: str,
                                     endpoint: Optional[str] = None) -> bytes:
    """push-confirmation-start request (W 3.5.4); ``endpoint`` only for https-simple."""
    body = _tag("push-method", method, raw=True)
    if endpoint is not None:
        body += _tag("push-endpoint", endpoint, raw=True)
    return (_request_head("push-confirmation-start", distribution_id, description)
            + _tag("push-confirmation-start-request", body, raw=True) + _REQUEST_TAIL)


#: Done requests whose body libarms writes in the same piece as the envelope (vector tunnel/21).
_ONE_PIECE_DONE = frozenset({"ping", "configure"})


def build_done_request(method: str, distribution_id: str, description: str,
                       transaction_id: int, transaction_result: int,
                       body_pieces: Sequence[bytes] = ()) -> list[bytes]:
    """``NAME-done`` request pieces (W 4.1 step 4). A body with content is cut into pieces
    head+open / entries / close+tail as libarms' builder does (vector tunnel/17)."""
    head = _request_head(f"{method}-done", distribution_id, description,
                         transaction_id, transaction_result)
    name = f"{method}-done-request"
    if not body_pieces or method in _ONE_PIECE_DONE:
        return [head + _open(name) + b"".join(body_pieces) + _close(name) + _REQUEST_TAIL]
    return _pieces(head + _open(name), body_pieces, _close(name) + _REQUEST_TAIL)


# device-side done bodies

def status_report_pieces(module_id: int, result: int, value: Optional[Result],
                         whole: bool = False) -> list[bytes]:
    """One ``status-report`` of a read-status / clear-status done request (W 4.3).

    read-status writes the open tag with the first part of the value, the rest, then the close
    (vector tunnel/17); ``whole`` gives the report in one piece, as libarms writes it for
    clear-status (seen from the real 5.33 client).
    """
    if whole:
        return [join(status_report_pieces(module_id, result, value))]
    if value is None:
        value = ""
    binary, segs = _result_segments(value)
    attrs: list[tuple[str, object]] = [("id", module_id)]
    if binary and result == 100:
        attrs.append(("encoding", "base64"))
    attrs.append(("result", result))
    first = _open("status-report", attrs) + (segs[0] if segs else b"")
    return _pieces(first, segs[1:], _close("status-report"))


def md_config_pieces(module_id: int, value: Optional[Result]) -> list[bytes]:
    """One ``md-config`` of a read-storage done request (W 4.5)."""
    binary, segs = _result_segments(value if value is not None else "")
    attrs: list[tuple[str, object]] = [("id", module_id)]
    if binary:
        attrs.append(("encoding", "base64"))
    return _pieces(_open("md-config", attrs) + (segs[0] if segs else b""), segs[1:],
                   _close("md-config"))


def ping_done_pieces(success: int, failure: int) -> list[bytes]:
    return [b"<success>%d</success><failure>%d</failure>" % (success, failure)]


def traceroute_done_pieces(hops: Sequence[tuple[int, str]], max_hop: int) -> list[bytes]:
    """``nodeinfo`` per hop: the first ``max_hop`` entries, up to the first empty address."""
    out = []
    for hop, addr in list(hops)[:max_hop]:
        if not addr:
            break
        out.append(_tag("nodeinfo", addr[:255], [("hop", int(hop))]))
    return out


# -- device side: responses the device writes -------------------------------------------------

def _response_head(type_: str, result: int, transaction_id: int = 0) -> bytes:
    head = b'<arms-message><arms-response type="%s">' % type_.encode()
    if transaction_id:
        head += b"<transaction-id>%d</transaction-id>" % transaction_id
    head += b"<result-code>%d</result-code>" % result
    head += _tag("description", result_text(result))
    return head


def build_response(type_: str, result: int, transaction_id: int = 0,
                   body_pieces: Sequence[bytes] = (), body_name: Optional[str] = None) -> list[bytes]:
    """Generic device response: envelope, then ``<TYPE-response>`` holding ``body_pieces``."""
    name = body_name or f"{type_}-response"
    head = _response_head(type_, result, transaction_id)
    if not body_pieces:
        return [head + _open(name) + _close(name) + _RESPONSE_TAIL]
    return _pieces(head + _open(name), body_pieces, _close(name) + _RESPONSE_TAIL)


def build_start_response(method: str, transaction_id: int, result: int) -> list[bytes]:
    """``NAME-start`` response of an asynchronous method (always with the transaction id)."""
    return build_response(f"{method}-start", result, transaction_id)


def build_sync_response(method: str, result: int, body_pieces: Sequence[bytes] = (),
                        transaction_id: int = 0) -> list[bytes]:
    return build_response(method, result, transaction_id, body_pieces)


def build_generic_error(result: int) -> list[bytes]:
    """``generic-error`` answer (W 3.5.6): unknown type, or broken XML before the type."""
    return build_response("generic-error", result)


def build_error_response(request: "PushRequest", transaction_id: int = 0) -> list[bytes]:
    """The answer to a request whose ``result`` is not 100, in the method's own form."""
    if request.method is None:
        return build_generic_error(request.result)
    if is_async(request.method):
        return build_start_response(request.method, transaction_id, request.result)
    return build_sync_response(request.method, request.result)


def build_confirmation_done_response(transaction_id: int = 0) -> list[bytes]:
    """push-confirmation-done answer; ``transaction_id`` is copied in tunnel mode only."""
    return build_response("push-confirmation-done", 100, transaction_id)


def _md_result_response(method: str, result: int, module_id: int,
                        output: Optional[Result]) -> list[bytes]:
    name = f"{method}-response"
    head = _response_head(method, result)
    if output is None:
        return [head + _open(name) + _close(name) + _RESPONSE_TAIL]
    binary, segs = _result_segments(output)
    attrs: list[tuple[str, object]] = [("id", module_id)]
    if binary:
        attrs.append(("encoding", "base64"))
    return _pieces(head + _open(name) + _open("md-result", attrs), segs,
                   _close("md-result") + _close(name) + _RESPONSE_TAIL)


def build_md_command_response(result: int, module_id: int = 0,
                              output: Optional[Result] = None) -> list[bytes]:
    """md-command response (W 4.8): ``output`` None gives the empty body of 302/402/505.

    Pieces as in vector tunnel/14: head up to ``<md-result ...>``, the output, the close.
    """
    return _md_result_response("md-command", result, module_id, output)


def build_dump_debug_response(result: int, output: Optional[Result] = None) -> list[bytes]:
    """dump-debug response (W 4.9), ``md-result id="0"``."""
    return _md_result_response("dump-debug", result, 0, output)


class ModuleInfo(Record):
    """One module of the module list (``module`` element)."""

    id: int
    version: str = ""
    info: str = ""
    install_order: Optional[int] = None


def build_read_module_list_response(modules: Sequence[ModuleInfo]) -> list[bytes]:
    """read-module-list response (W 4.10): id signed decimal, version and text escaped."""
    body = [_tag("module", m.info, [("id", int(m.id)), ("version", m.version)]) for m in modules]
    # libarms writes the whole answer in one piece (one chunk on the tunnel), unlike md-command
    return [join(build_sync_response("read-module-list", 100, body))]


def build_check_transaction_response(transaction_ids: Sequence[int]) -> list[bytes]:
    """check-transaction response (W 4.11): one ``transaction-id`` per live transaction."""
    body = [b"<transaction-id>%d</transaction-id>" % t for t in transaction_ids]
    return [join(build_sync_response("check-transaction", 100, body))]     # one piece, as libarms


# -- parsing XML ------------------------------------------------------------------------------

def parse_xml(data: bytes, limit: int = MAX_MESSAGE) -> Element:
    """Parse one ARMS message with the shared XML layer (:mod:`libarms.protocol.xmlutil`:
    size limit, 7-bit ASCII, no DTD/entities) and check the ``arms-message`` root."""
    root = parse_document(bytes(data), limit=limit)
    if root.tag != "arms-message":
        raise ProtocolError(f"root element is <{root.tag}>, expected <arms-message>")
    return root


_INT_RE = re.compile(r"[ \t\r\n]*[+-]?[0-9]+\Z")


def xml_int(text: Optional[str]) -> Optional[int]:
    """An integer element as the device reads it: empty -> 0, trailing junk -> absent (None)."""
    if text is None or text == "":
        return 0 if text == "" else None
    if not _INT_RE.match(text):
        return None
    return int(text.strip())


def _text(el: Optional[Element]) -> Optional[str]:
    if el is None:
        return None
    return el.text or ""


def decode_base64(text: str) -> bytes:
    """Standard base64; CR/LF skipped, anything else outside the alphabet fails (W 3.1)."""
    cleaned = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(cleaned, validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError("invalid base64 data") from None


def _payload(el: Element) -> bytes:
    text = el.text or ""
    if el.get("encoding") == "base64":
        return decode_base64(text)
    return text.encode("ascii")


# -- generic envelope (both sides) ------------------------------------------------------------

class Message(Record):
    """One ARMS message, envelope fields decoded (W 3.2). ``body`` is the body element."""

    kind: str                       # "request" or "response"
    type: str
    distribution_id: Optional[str] = None
    transaction_id: Optional[int] = None
    transaction_result: Optional[int] = None
    result_code: Optional[int] = None
    description: Optional[str] = None
    result_url: Optional[str] = None
    body: Optional[Element] = field(default=None, compare=False, repr=False)

    @property
    def method(self) -> Optional[str]:
        return method_of_type(self.type)


def parse_message(data: bytes, limit: int = MAX_MESSAGE) -> Message:
    """Parse any ARMS message into its envelope; raise ProtocolError when it is not one."""
    root = parse_xml(data, limit)
    if len(root) != 1 or root[0].tag not in ("arms-request", "arms-response"):
        raise ProtocolError("<arms-message> must hold exactly one arms-request or arms-response")
    env = root[0]
    kind = "request" if env.tag == "arms-request" else "response"
    type_ = env.get("type")
    if not type_:
        raise ProtocolError(f"<{env.tag}> has no type attribute")
    fields: dict[str, object] = {}
    body = None
    for child in env:
        if child.tag in ("transaction-id", "transaction-result", "result-code"):
            fields[child.tag.replace("-", "_")] = xml_int(child.text or "")
        elif child.tag in ("distribution-id", "description", "result-url"):
            fields[child.tag.replace("-", "_")] = child.text or ""
        elif child.tag == "result-description" and "description" not in fields:
            fields["description"] = child.text or ""
        elif child.tag.endswith(("-request", "-response")):
            body = child
    return Message(kind=kind, type=type_, body=body, **fields)  # type: ignore[arg-type]


# -- device side: parsing server answers to the device's own requests --------------------------

class TooManyEntries(ProtocolError):
    """A server answer holds more list entries than the device accepts (it then reboots)."""


class MethodQueryAnswer(Record):
    result_code: int
    methods: tuple[str, ...] = ()
    tunnel_urls: tuple[str, ...] = ()
    echo_interval: int = DEFAULT_ECHO_INTERVAL


def _response(data: bytes, limit: int) -> Message:
    msg = parse_message(data, limit)
    if msg.kind != "response":
        raise ProtocolError(f"expected an arms-response, got an arms-request ({msg.type})")
    if msg.result_code is None:
        raise ProtocolError(f"{msg.type} answer has no integer result-code")
    return msg


def parse_method_query_response(data: bytes, limit: int = 65536) -> MethodQueryAnswer:
    """The server's push-method-query answer (W 3.5.3). Unknown methods are dropped."""
    msg = _response(data, limit)
    methods: list[str] = []
    urls: list[str] = []
    echo = DEFAULT_ECHO_INTERVAL
    n_methods = 0
    if msg.body is not None and msg.body.tag == "push-method-query-response":
        for el in msg.body:
            if el.tag == "push-method":
                n_methods += 1
                if (el.text or "") in (PUSH_METHOD_SIMPLE, PUSH_METHOD_TUNNEL):
                    methods.append(el.text or "")
            elif el.tag == "https-tunnel-url":
                urls.append(el.text or "")
            elif el.tag == "https-tunnel-echo-interval":
                v = xml_int(el.text or "")
                if v is not None and v > 0:
                    echo = v
    if n_methods > MAX_PUSH_METHODS or len(urls) > MAX_TUNNEL_URLS:
        raise TooManyEntries(f"method-query answer lists {n_methods} methods and {len(urls)} "
                             f"tunnel URLs (at most {MAX_PUSH_METHODS} each)")
    return MethodQueryAnswer(msg.result_code, tuple(methods), tuple(urls), echo)


class ConfirmationStartAnswer(Record):
    result_code: int
    transaction_id: Optional[int]


def parse_confirmation_start_response(data: bytes, limit: int = 65536) -> ConfirmationStartAnswer:
    """push-confirmation-start answer (W 3.5.4): result code and the required transaction id."""
    msg = _response(data, limit)
    tid = msg.transaction_id if msg.transaction_id else None
    return ConfirmationStartAnswer(msg.result_code, tid)


class DoneAnswer(Record):
    type: str
    result_code: int
    transaction_id: Optional[int]


def parse_done_response(data: bytes, method: Optional[str] = None,
                        limit: int = 65536) -> DoneAnswer:
    """The server's answer to a ``NAME-done`` request (W 4.1 step 5).

    ``type`` must be ``NAME-done`` (not checked for configure); else ProtocolError.
    """
    msg = _response(data, limit)
    if method is not None and method != "configure" and msg.type != f"{method}-done":
        raise ProtocolError(f"done answer has type {msg.type!r}, expected {method}-done")
    return DoneAnswer(msg.type, msg.result_code, msg.transaction_id or None)


def transaction_id_of(data: bytes) -> Optional[int]:
    """``transaction-id`` directly under the envelope of a message, if any (tunnel matching,
    W 5.4 rule 2). Returns None for unparsable data."""
    try:
        msg = parse_message(data, 65536)
    except ProtocolError:
        return None
    return msg.transaction_id or None


# -- device side: parsing push requests --------------------------------------------------------

class ModuleConfig(Record):
    id: int
    data: bytes
    commit_order: Optional[int] = None


class ConfigureParams(Record):
    modules: tuple[ModuleInfo, ...]
    configs: tuple[ModuleConfig, ...]


class StatusRequest(Record):
    id: int
    data: bytes = b""


class StatusParams(Record):
    requests: tuple[StatusRequest, ...]


class ReadStorageParams(Record):
    storage: int            # ConfigKind value: 1 candidate, 2 running, 3 backup


class PingParams(Record):
    address: str
    count: int = 0
    size: int = 0


class TracerouteParams(Record):
    address: str
    count: int
    max_hop: int = 0


class MdCommandParams(Record):
    module_id: int
    command: bytes
    binary: bool = False


class PullConfigParams(Record):
    ls: bool                # True: the next pull starts at the LS


Params = (ConfigureParams | StatusParams | ReadStorageParams | PingParams | TracerouteParams |
          MdCommandParams | PullConfigParams | None)


class PushRequest(Record):
    """A push request as the device understood it.

    ``result`` is 100 when the request can be executed, else the code to answer with.
    ``method`` is None when only a ``generic-error`` can answer.
    """

    method: Optional[str]
    result: int = 100
    type: str = ""
    distribution_id: Optional[str] = None
    result_url: Optional[str] = None
    transaction_id: Optional[int] = None
    params: Params = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.result == 100


_STORAGE = (("candidate", 1), ("running", 2), ("backup", 3))


def _fail(method, code, reason, **kw) -> PushRequest:
    return PushRequest(method=method, result=code, reason=reason, **kw)


def parse_push_request(data: bytes, distribution_id: Optional[str] = None,
                       limit: int = MAX_MESSAGE) -> PushRequest:
    """Interpret a server push request as the device does (W 3.2, 4.1-4.14). Never raises
    for peer bytes: errors are returned as ``PushRequest.result``."""
    try:
        root = parse_xml(data, limit)
    except ProtocolError as e:
        return _fail(None, Rc.INVALID_XML, str(e))
    env = root.find("arms-request")
    if env is None or len(root) != 1:
        return _fail(None, Rc.INVALID_MESSAGE_TYPE, "no arms-request element")
    type_ = env.get("type") or ""
    method = method_of_type(type_)
    if method is None:
        return _fail(None, Rc.INVALID_MESSAGE_TYPE, f"unknown message type {type_!r}")
    common: dict[str, object] = {"type": type_}
    body = None
    for child in env:
        if child.tag == "distribution-id":
            common["distribution_id"] = child.text or ""
        elif child.tag == "result-url":
            common["result_url"] = child.text or ""
        elif child.tag == "transaction-id":
            common["transaction_id"] = xml_int(child.text or "")
        elif child.tag in (f"{method}-request", f"{method}-start-request", f"{method}-done-request"):
            body = child
    did = common.get("distribution_id")
    if distribution_id is not None and did is not None and did != distribution_id:
        return _fail(method, Rc.DISTRIBUTION_ID_MISMATCH,
                     f"distribution-id {did!r} is not this device's", **common)
    url = common.get("result_url")
    if url is not None and not valid_result_url(str(url)):
        return _fail(method, Rc.INVALID_PARAMETER, f"invalid result-url {url!r}", **common)
    try:
        params = _PARAM_PARSERS.get(method, _no_params)(body)
    except _ParamError as e:
        return _fail(method, e.code, e.reason, **common)
    return PushRequest(method=method, params=params, **common)  # type: ignore[arg-type]


class _ParamError(Exception):
    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


def _no_params(body: Optional[Element]) -> Params:
    return None


def _module_id(text: Optional[str], what: str) -> int:
    if text is None or not text.strip().isdigit():
        raise _ParamError(Rc.INVALID_PARAMETER, f"{what}: module id {text!r} is not a decimal number")
    return int(text.strip())


def _decoded(el: Element, what: str) -> bytes:
    try:
        return _payload(el)
    except ProtocolError:
        raise _ParamError(Rc.SA_FAILURE, f"{what}: invalid base64") from None


def _parse_configure(body: Optional[Element]) -> Params:
    modules: list[ModuleInfo] = []
    configs: list[ModuleConfig] = []
    if body is not None:
        for el in body:
            if el.tag == "module":
                if configs:      # a module after an md-config restarts the list (W 3.5.2)
                    modules = []
                order = xml_int(el.get("install-order")) if el.get("install-order") else None
                modules.append(ModuleInfo(_module_id(el.get("id"), "module"), el.get("version") or "",
                                          el.text or "", order))
            elif el.tag == "md-config":
                mid = _module_id(el.get("id"), "md-config")
                if mid not in {m.id for m in modules}:
                    raise _ParamError(Rc.SYSTEM_ERROR, f"md-config for module {mid}, "
                                                       "which is not in the module list")
                order = xml_int(el.get("commit-order")) if el.get("commit-order") else None
                configs.append(ModuleConfig(mid, _decoded(el, "md-config"), order))
    return ConfigureParams(tuple(modules), tuple(configs))


def _parse_status(body: Optional[Element], *, require: bool) -> StatusParams:
    reqs = []
    if body is not None:
        for el in body:
            if el.tag == "status-request" and el.get("id") is not None:
                reqs.append(StatusRequest(_module_id(el.get("id"), "status-request"),
                                          _decoded(el, "status-request")))
    if not reqs:
        if require:
            raise _ParamError(Rc.INVALID_PARAMETER, "clear-status needs at least one status-request")
        reqs.append(StatusRequest(0, b""))      # W 4.3 quirk: module 0, empty parameter
    return StatusParams(tuple(reqs))


def _parse_read_storage(body: Optional[Element]) -> Params:
    el = body.find("storage") if body is not None else None
    text = (el.text or "") if el is not None else ""
    if text:
        for name, value in _STORAGE:
            if name.startswith(text):
                return ReadStorageParams(value)
    raise _ParamError(Rc.INVALID_PARAMETER, f"unknown storage {text!r} "
                                            "(candidate, running or backup)")


def _child_int(body: Optional[Element], name: str) -> int:
    el = body.find(name) if body is not None else None
    if el is None:
        return 0
    v = xml_int(el.text or "")
    return v if v is not None else 0


def _parse_ping(body: Optional[Element]) -> Params:
    addr = _text(body.find("address")) if body is not None else None
    if not addr:
        raise _ParamError(Rc.INVALID_PARAMETER, "ping needs an address")
    return PingParams(addr, _child_int(body, "count"), _child_int(body, "size"))


def _parse_traceroute(body: Optional[Element]) -> Params:
    addr = _text(body.find("address")) if body is not None else None
    count = _child_int(body, "count")
    max_hop = _child_int(body, "max-hop")
    if not addr or count == 0:
        raise _ParamError(Rc.INVALID_PARAMETER, "traceroute needs an address and a non-zero count")
    if max_hop > MAX_TRACEROUTE_HOP or max_hop < 0:
        raise _ParamError(Rc.INVALID_PARAMETER, f"max-hop {max_hop} above {MAX_TRACEROUTE_HOP}")
    return TracerouteParams(addr, count, max_hop)


def _parse_md_command(body: Optional[Element]) -> Params:
    cmds = [el for el in body if el.tag == "md-command"] if body is not None else []
    if not cmds:
        raise _ParamError(Rc.INVALID_PARAMETER, "md-command request without md-command")
    if len(cmds) > 1:
        raise _ParamError(Rc.MULTIPLE_REQUEST, f"{len(cmds)} md-command elements (one allowed)")
    el = cmds[0]
    if len((el.text or "").encode()) > MAX_MD_COMMAND:
        raise _ParamError(Rc.SA_FAILURE, f"md-command text longer than {MAX_MD_COMMAND} bytes")
    mid = _module_id(el.get("id") or "0", "md-command")
    return MdCommandParams(mid, _decoded(el, "md-command"), el.get("encoding") == "base64")


def _parse_pull_config(body: Optional[Element]) -> Params:
    el = body.find("type") if body is not None else None
    if el is None:
        return PullConfigParams(False)
    return PullConfigParams("LS".startswith(el.text or ""))


_PARAM_PARSERS = {
    "configure": _parse_configure,
    "read-status": lambda b: _parse_status(b, require=False),
    "clear-status": lambda b: _parse_status(b, require=True),
    "read-storage": _parse_read_storage,
    "ping": _parse_ping,
    "traceroute": _parse_traceroute,
    "md-command": _parse_md_command,
    "pull-config": _parse_pull_config,
}


# -- URLs (W 2.1) -------------------------------------------------------------------------------

class Url(Record):
    scheme: str
    host: str            # without brackets
    port: int
    path: str            # starts with "/"

    @property
    def family(self) -> int:
        return 6 if ":" in self.host else 4

    @property
    def netloc(self) -> str:
        return f"[{self.host}]:{self.port}" if self.family == 6 else f"{self.host}:{self.port}"


_URL_RE = re.compile(r"(?i)(https?)://(\[[0-9A-Fa-f:.]+\]|[^/:\[\]]+)(?::([0-9]{1,7}))?(/.*)?\Z",
                     re.S)


def parse_url(url: str) -> Url:
    """Parse an ARMS URL: numeric host only, limits 79/7/79 (W 2.1). ConfigError-free: raises
    ProtocolError since URLs come from servers."""
    m = _URL_RE.match(url or "")
    if not m:
        raise ProtocolError(f"invalid URL {url!r}")
    scheme = m.group(1).lower()
    host = m.group(2)
    if host.startswith("["):
        host = host[1:-1]
    if not _inet.is_ip(host):
        raise ProtocolError(f"URL {url!r}: host must be a numeric address")
    port_s = m.group(3)
    path = m.group(4) or "/"
    if len(host) > 79 or len(path) > 80 or (port_s and len(port_s) > 7):
        raise ProtocolError(f"URL {url!r} exceeds the host/port/path size limits")
    port = int(port_s) if port_s else (443 if scheme == "https" else 80)
    if not 0 < port < 65536:
        raise ProtocolError(f"URL {url!r}: port out of range")
    return Url(scheme, host, port, path)


def valid_result_url(url: str) -> bool:
    """W 3.2: ``result-url`` must be a syntactically valid http/https URL (127 chars kept)."""
    if len(url) > 127:
        return False
    try:
        parse_url(url)
    except ProtocolError:
        return False
    return True


# -- server side: building push requests and answers --------------------------------------------

def build_push_request(method: str, distribution_id: str, body: Union[bytes, str] = b"",
                       result_url: Optional[str] = None, type_: Optional[str] = None) -> bytes:
    """A server push request: envelope, ``distribution-id``, ``result-url``, then the body
    element ``<TYPE-request>`` holding ``body`` (already XML)."""
    if method not in METHODS:
        raise ValueError(f"unknown push method {method!r}")
    t = type_ or request_type(method)
    raw = body.encode("ascii") if isinstance(body, str) else body
    out = b'<arms-message><arms-request type="%s">' % t.encode()
    out += _tag("distribution-id", distribution_id)
    if result_url:
        out += _tag("result-url", result_url)
    out += _tag(f"{t}-request", raw, raw=True) + _REQUEST_TAIL
    return out


def _payload_tag(name: str, value: Result, attrs: list[tuple[str, object]]) -> bytes:
    if isinstance(value, bytes):
        return _tag(name, base64.b64encode(value), attrs + [("encoding", "base64")], raw=True)
    return _tag(name, value, attrs)


def md_command_body(module_id: int, command: Result) -> bytes:
    return _payload_tag("md-command", command, [("id", module_id)])


def status_body(requests: Sequence[tuple[int, Result]]) -> bytes:
    return b"".join(_payload_tag("status-request", p, [("id", i)]) for i, p in requests)


def read_storage_body(storage: str) -> bytes:
    return _tag("storage", storage)


def ping_body(address: str, count: int = 5, size: int = 56) -> bytes:
    return _tag("address", address) + b"<count>%d</count><size>%d</size>" % (count, size)


def traceroute_body(address: str, count: int = 3, max_hop: int = 30) -> bytes:
    return _tag("address", address) + b"<count>%d</count><max-hop>%d</max-hop>" % (count, max_hop)


def pull_config_body(kind: str = "RS") -> bytes:
    return _tag("type", kind)


def configure_body(modules: Sequence[ModuleInfo], configs: Sequence[tuple[int, Result]]) -> bytes:
    out = b""
    for m in modules:
        attrs: list[tuple[str, object]] = [("id", m.id), ("version", m.version)]
        if m.install_order is not None:
            attrs.append(("install-order", m.install_order))
        out += _tag("module", m.info, attrs)
    for mid, data in configs:
        out += _payload_tag("md-config", data, [("id", mid)])
    return out


def build_server_response(type_: str, result: int, transaction_id: Optional[int] = None,
                          body: Optional[bytes] = None, description: str = "Success") -> bytes:
    """A server answer: ``transaction-id`` first when given, then result and description."""
    out = b'<arms-message><arms-response type="%s">' % type_.encode()
    if transaction_id is not None:
        out += b"<transaction-id>%d</transaction-id>" % transaction_id
    out += b"<result-code>%d</result-code>" % result + _tag("description", description)
    if body is not None:
        out += _tag(f"{type_}-response", body, raw=True)
    return out + _RESPONSE_TAIL


def build_method_query_response(result: int, methods: Sequence[str],
                                tunnel_urls: Sequence[str] = (),
                                echo_interval: Optional[int] = None) -> bytes:
    body = b"".join(_tag("push-method", m) for m in methods)
    body += b"".join(_tag("https-tunnel-url", u) for u in tunnel_urls)
    if echo_interval is not None:
        body += b"<https-tunnel-echo-interval>%d</https-tunnel-echo-interval>" % echo_interval
    return build_server_response("push-method-query", result, body=body)


def build_confirmation_start_response(result: int, transaction_id: int) -> bytes:
    return build_server_response("push-confirmation-start", result, transaction_id, body=b"")


def build_confirmation_done_request(distribution_id: str, transaction_id: int) -> bytes:
    return (b'<arms-message><arms-request type="push-confirmation-done">'
            + _tag("distribution-id", distribution_id)
            + b"<transaction-id>%d</transaction-id>" % transaction_id
            + b"<push-confirmation-done-request></push-confirmation-done-request>"
            + _REQUEST_TAIL)


def build_done_response(method: str, result: int, transaction_id: Optional[int]) -> bytes:
    """Server answer to a ``NAME-done`` request; ``transaction_id`` is required on a tunnel."""
    return build_server_response(f"{method}-done", result, transaction_id, body=b"")


# -- server side: reading device answers ---------------------------------------------------------

class ModuleResult(Record):
    """One per-module result the device reported (md-result, status-report, md-config)."""

    id: int
    result: int
    data: bytes
    binary: bool = False


class PushAnswer(Record):
    """What a device message says about a push: its start/sync response or its done request."""

    method: Optional[str]
    type: str
    kind: str                                 # "request" (done) or "response"
    result_code: int                          # result-code, or transaction-result of a done
    transaction_id: Optional[int] = None
    modules: tuple[ModuleResult, ...] = ()
    success: Optional[int] = None             # ping
    failure: Optional[int] = None
    hops: tuple[tuple[int, str], ...] = ()    # traceroute
    module_list: tuple[ModuleInfo, ...] = ()  # read-module-list
    transaction_ids: tuple[int, ...] = ()     # check-transaction
    push_methods: tuple[str, ...] = ()        # method query / confirmation start
    push_endpoint: Optional[str] = None
    distribution_id: Optional[str] = None

    @property
    def is_done(self) -> bool:
        return self.kind == "request" and self.type.endswith("-done")


def read_push_answer(data: bytes, limit: int = MAX_MESSAGE) -> PushAnswer:
    """Server side: parse a device message (response or request) into a :class:`PushAnswer`."""
    msg = parse_message(data, limit)
    code = msg.result_code if msg.kind == "response" else msg.transaction_result
    modules: list[ModuleResult] = []
    hops: list[tuple[int, str]] = []
    mlist: list[ModuleInfo] = []
    tids: list[int] = []
    methods: list[str] = []
    success = failure = None
    endpoint = None
    body = msg.body
    if body is not None:
        for el in body:
            tag = el.tag
            if tag in ("md-result", "status-report", "md-config"):
                binary = el.get("encoding") == "base64"
                res = xml_int(el.get("result")) if el.get("result") is not None else code
                modules.append(ModuleResult(int(el.get("id") or 0), res if res is not None else 0,
                                            _payload(el), binary))
            elif tag == "nodeinfo":
                hops.append((int(el.get("hop") or 0), el.text or ""))
            elif tag == "module":
                mlist.append(ModuleInfo(int(el.get("id") or 0), el.get("version") or "",
                                        el.text or ""))
            elif tag == "transaction-id":
                v = xml_int(el.text or "")
                tids.append(v or 0)
            elif tag == "success":
                success = xml_int(el.text or "")
            elif tag == "failure":
                failure = xml_int(el.text or "")
            elif tag == "push-method":
                methods.append(el.text or "")
            elif tag == "push-endpoint":
                endpoint = el.text or ""
    return PushAnswer(method=msg.method, type=msg.type, kind=msg.kind,
                      result_code=code if code is not None else 0,
                      transaction_id=msg.transaction_id or None, modules=tuple(modules),
                      success=success, failure=failure, hops=tuple(hops),
                      module_list=tuple(mlist), transaction_ids=tuple(tids),
                      push_methods=tuple(methods), push_endpoint=endpoint,
                      distribution_id=msg.distribution_id)
