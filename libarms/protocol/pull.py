"""Pull-phase messages: rs-solicitation (SA -> LS) and config-solicitation (SA -> RS).

``spec/arms-wire.md`` §3.5.1-3.5.2. Device side: ``build_*_request`` and ``parse_*_response``.
Server side (the test server): ``parse_*_request`` and ``build_*_response``. All sans-I/O.

The response parsers return frozen records (:mod:`libarms._record`). A document the device
cannot use raises :class:`~libarms.errors.ProtocolError` (libarms: try the next URL);
:class:`FatalAnswer`, a subclass, marks a well-formed answer that libarms treats as "stop:
reboot" (too many entries, an empty location config).
"""

from __future__ import annotations

import base64
import binascii

from .._record import Record, field
from ..errors import ProtocolError
from .envelope import SERVER_DECLARATION, Message, build_request, build_response, parse_request, parse_response
from .location import LocationConfig, parse_location_config
from .xmlutil import child, children, element, escape, int_of, text_of

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Iterable, Optional, Sequence

PROTOCOL_VERSION = "4.0"
TRIGGER_POWER_ON = "power on boot"
MAX_RS = 5
MAX_HEARTBEAT = 5
MAX_LIST = 5
MAX_PEM = 5120
MAX_KEY = 64
MAX_LS_RESPONSE = 64 * 1024
MAX_RS_RESPONSE = 4 * 1024 * 1024


class FatalAnswer(ProtocolError):
    """A server answer libarms refuses with "stop: reboot" rather than "next URL"."""


# -- device side: requests ---------------------------------------------------------------------

def build_rs_solicitation_request(distribution_id: str, *, description: str = "",
                                  trigger: str = TRIGGER_POWER_ON) -> bytes:
    body = element("rs-solicitation-request", element("trigger", trigger))
    return build_request("rs-solicitation", distribution_id, body, description=description)


def build_config_solicitation_request(distribution_id: str, *, description: str = "",
                                      trigger: str = TRIGGER_POWER_ON,
                                      firmware_info: str = "") -> bytes:
    inner = element("protocol-version", PROTOCOL_VERSION) + element("trigger", trigger)
    if firmware_info:
        inner += element("firmware-info", escape(firmware_info))
    body = element("config-solicitation-request", inner)
    return build_request("config-solicitation", distribution_id, body, description=description)


# -- device side: responses --------------------------------------------------------------------

class RsInfo(Record):
    """One RS from the LS: its URL and its location config (raw text and parsed)."""

    url: str
    md_config: Optional[str] = None
    location: LocationConfig = LocationConfig()


class RsSolicitationResponse(Record):
    result_code: Optional[int]
    description: Optional[str] = None
    rs_preshared_key: str = field(default="", repr=False)
    ll_timeout: int = 0
    rs_retry_max: int = 0
    rs_retry_interval: int = 0
    lifetime: int = 0
    rs_info: tuple[RsInfo, ...] = ()

    @property
    def rs_urls(self) -> tuple[str, ...]:
        return tuple(i.url for i in self.rs_info)

    @property
    def lines(self):
        """Stage-2 lines: only the first rs-info's location config may define them."""
        return self.rs_info[0].location.lines if self.rs_info else ()

    @property
    def rs_ca_pem(self) -> Optional[str]:
        """The RS CA: the rs-certificate of the first rs-info (libarms uses only that one)."""
        return self.rs_info[0].location.rs_certificate if self.rs_info else None


def _clean_url(text: str) -> str:
    t = text.lstrip("\r\n ")
    for sep in ("\r", "\n"):
        t = t.split(sep, 1)[0]
    return t[:256]


def parse_rs_solicitation_response(data: bytes) -> RsSolicitationResponse:
    """Parse the LS answer. Only a 1xx answer is checked for its body."""
    m = parse_response(data, "rs-solicitation", limit=MAX_LS_RESPONSE)
    if m.result_code is None or not 100 <= m.result_code <= 199:
        return RsSolicitationResponse(m.result_code, m.description)
    body = m.body_named("rs-solicitation-response")
    urls = [e for e in body.iter("url")] if body is not None else []
    cfgs = [e for e in body.iter("md-config")] if body is not None else []
    if len(urls) > MAX_RS or len(cfgs) > MAX_RS:
        raise FatalAnswer(f"LS answer lists {max(len(urls), len(cfgs))} RS entries; at most {MAX_RS} are allowed")
    infos = []
    for i, u in enumerate(urls):
        text = text_of(cfgs[i]) if i < len(cfgs) else None
        if text is not None and text == "":
            raise FatalAnswer(f"LS answer: md-config #{i} is empty (libarms stops with reboot)")
        loc = parse_location_config(text) if text is not None else LocationConfig()
        infos.append(RsInfo(_clean_url(text_of(u)), text, loc))
    key = text_of(child(body, "rs-preshared-key")) or ""
    if len(key) > MAX_KEY:
        raise ProtocolError(f"LS answer: rs-preshared-key longer than {MAX_KEY} characters")

    def num(name):
        return int_of(child(body, name)) or 0

    return RsSolicitationResponse(m.result_code, m.description, key, num("ll-timeout"),
                                  num("rs-retry-max"), num("rs-retry-interval"), num("lifetime"),
                                  tuple(infos))


class Module(Record):
    id: int
    version: str = ""
    info: str = ""


class ModuleConfig(Record):
    """One ``md-config`` of the RS answer, base64 already decoded."""

    id: int
    data: bytes = field(repr=False)
    content_type: str = ""
    commit_order: str = ""
    encoding: str = ""


class HeartbeatInfo(Record):
    host: str
    port: int
    passphrase: str = field(repr=False)
    interval: int = 0
    algorithms: tuple[str, ...] = ()


class ConfigSolicitationResponse(Record):
    result_code: Optional[int]
    description: Optional[str] = None
    sa_certificate: Optional[str] = None
    sa_private_key: Optional[str] = field(default=None, repr=False)
    push_port: int = 0
    push_timeout: int = 0
    heartbeat: tuple[HeartbeatInfo, ...] = ()
    rs_push_server_addresses: tuple[str, ...] = ()
    rs_pull_server_urls: tuple[str, ...] = ()
    modules: tuple[Module, ...] = ()
    configs: tuple[ModuleConfig, ...] = ()


def _module_id(text: Optional[str], where: str) -> int:
    t = (text or "").strip()
    if not t.isdigit():
        raise ProtocolError(f"{where}: id {text!r} is not an unsigned decimal number")
    v = int(t)
    if v > 0xFFFFFFFF:
        raise ProtocolError(f"{where}: id {v} does not fit 32 bits")
    return v


def decode_base64(text: str, where: str) -> bytes:
    """Base64 as libarms reads it: CR and LF skipped anywhere, anything else outside the
    alphabet (space, tab, ...) is an error."""
    t = text.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(t.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        raise ProtocolError(f"{where}: invalid base64 data") from None


def parse_config_solicitation_response(data: bytes) -> ConfigSolicitationResponse:
    """Parse the RS answer (module list, configs, SA credentials, heartbeat and push lists)."""
    m = parse_response(data, "config-solicitation", limit=MAX_RS_RESPONSE)
    if m.result_code is None or not 100 <= m.result_code <= 199:
        return ConfigSolicitationResponse(m.result_code, m.description)
    body = m.body_named("config-solicitation-response")
    if body is None:
        return ConfigSolicitationResponse(m.result_code, m.description)
    modules: list[Module] = []
    configs: list[ModuleConfig] = []
    hbs: list[HeartbeatInfo] = []
    push_addrs: list[str] = []
    pull_urls: list[str] = []
    seen_config = False
    restart_modules = False
    fields = {}
    for e in body:
        tag = e.tag
        if tag == "module":
            if restart_modules:      # modules announced after an md-config replace the list
                modules, restart_modules = [], False
            mid = _module_id(e.get("id"), "module")
            modules.append(Module(mid, e.get("version", ""), e.text or ""))
        elif tag == "md-config":
            seen_config = True
            restart_modules = True
            mid = _module_id(e.get("id"), "md-config")
            if mid not in {mm.id for mm in modules}:
                raise ProtocolError(f"RS answer: md-config for module {mid}, which is not in the module list")
            enc = e.get("encoding", "")
            raw = e.text or ""
            payload = decode_base64(raw, f"md-config {mid}") if enc == "base64" else raw.encode("ascii")
            configs.append(ModuleConfig(mid, payload, e.get("content-type", ""),
                                        e.get("commit-order", ""), enc))
        elif tag == "heartbeat-info":
            if len(hbs) >= MAX_HEARTBEAT:
                raise FatalAnswer(f"RS answer lists more than {MAX_HEARTBEAT} heartbeat-info entries")
            host = text_of(child(e, "host"))
            pp = text_of(child(e, "passphrase"))
            if not host or pp is None:
                raise ProtocolError("RS answer: heartbeat-info needs a host and a passphrase")
            port = int_of(child(e, "port")) or 0
            if not 0 <= port <= 65535 or len(host) > 255 or len(pp) > 1024:
                raise ProtocolError("RS answer: heartbeat-info port, host or passphrase out of range")
            algs = tuple(a.text or "" for a in children(e, "algorithm"))[:3]
            hbs.append(HeartbeatInfo(host, port, pp, int_of(child(e, "interval")) or 0, algs))
        elif tag == "rs-push-server-address":
            if len(push_addrs) >= MAX_LIST:
                raise ProtocolError(f"RS answer lists more than {MAX_LIST} rs-push-server-address")
            push_addrs.append(e.text or "")
        elif tag == "rs-pull-server-url":
            if len(pull_urls) >= MAX_LIST:
                raise ProtocolError(f"RS answer lists more than {MAX_LIST} rs-pull-server-url")
            pull_urls.append(_clean_url(e.text or ""))
        elif tag in ("sa-certificate", "sa-private-key"):
            t = e.text or ""
            if len(t) > MAX_PEM:
                raise ProtocolError(f"RS answer: {tag} longer than {MAX_PEM} bytes")
            fields[tag] = t
        elif tag == "proposal-for-sa":
            fields["push-port"] = int_of(child(e, "push-port")) or 0
            fields["push-timeout"] = int_of(child(e, "push-timeout")) or 0
    if len({h.interval for h in hbs}) > 1:
        raise ProtocolError("RS answer: every heartbeat-info must carry the same interval")
    del seen_config
    return ConfigSolicitationResponse(
        m.result_code, m.description, fields.get("sa-certificate"), fields.get("sa-private-key"),
        fields.get("push-port", 0), fields.get("push-timeout", 0), tuple(hbs), tuple(push_addrs),
        tuple(pull_urls), tuple(modules), tuple(configs))


# -- server side -------------------------------------------------------------------------------

class SolicitationRequest(Record):
    """A pull request as a server sees it."""

    type: str
    distribution_id: str
    description: str
    trigger: str
    protocol_version: Optional[str] = None
    firmware_info: Optional[str] = None


def parse_solicitation_request(data: bytes, expected_type: Optional[str] = None) -> SolicitationRequest:
    """Server side: parse an rs-solicitation or config-solicitation request."""
    m: Message = parse_request(data, expected_type, limit=64 * 1024)
    if m.type not in ("rs-solicitation", "config-solicitation"):
        raise ProtocolError(f"not a pull request: type \"{m.type}\"")
    body = m.body_named(f"{m.type}-request")
    if m.distribution_id is None:
        raise ProtocolError(f"{m.type} request without distribution-id")
    return SolicitationRequest(m.type, m.distribution_id, m.description or "",
                               text_of(child(body, "trigger")) or "",
                               text_of(child(body, "protocol-version")),
                               text_of(child(body, "firmware-info")))


def _check_ascii_text(value: str, what: str) -> str:
    try:
        value.encode("ascii")
    except UnicodeEncodeError:
        raise ValueError(f"{what} must be ASCII (ARMS devices parse US-ASCII only)") from None
    return value


def build_rs_solicitation_response(result_code: int = 100, *, rs_preshared_key: str = "",
                                   rs_info: Sequence[tuple[str, Optional[str]]] = (),
                                   ll_timeout: int = 30, rs_retry_max: int = 1,
                                   rs_retry_interval: int = 2, lifetime: int = 0,
                                   declaration: bytes = SERVER_DECLARATION) -> bytes:
    """Server side: the LS answer, in the layout of vector tunnel/02. ``rs_info`` holds
    (url, location-config text) pairs; a non-1xx answer carries no body."""
    body = ""
    if 100 <= result_code <= 199:
        if not 1 <= len(rs_info) <= MAX_RS:
            raise ValueError(f"an LS answer needs 1..{MAX_RS} rs-info entries")
        infos = ""
        for url, cfg in rs_info:
            inner = element("url", escape(_check_ascii_text(url, "RS URL")))
            if cfg is not None:
                inner += element("md-config", escape(_check_ascii_text(cfg, "location config")))
            infos += element("rs-info", inner)
        body = element("rs-solicitation-response",
                       element("rs-preshared-key", escape(rs_preshared_key))
                       + element("ll-timeout", str(int(ll_timeout)))
                       + element("rs-retry-max", str(int(rs_retry_max)))
                       + element("rs-retry-interval", str(int(rs_retry_interval)))
                       + element("lifetime", str(int(lifetime)))
                       + infos)
    return build_response("rs-solicitation", result_code, body, declaration=declaration)


def build_config_solicitation_response(
        result_code: int = 100, *, sa_certificate: Optional[str] = None,
        sa_private_key: Optional[str] = None, push_port: Optional[int] = None,
        push_timeout: Optional[int] = None, heartbeat: Iterable[HeartbeatInfo] = (),
        rs_push_server_addresses: Iterable[str] = (), rs_pull_server_urls: Iterable[str] = (),
        modules: Iterable[Module] = (), configs: Iterable[ModuleConfig] = (),
        declaration: bytes = SERVER_DECLARATION) -> bytes:
    """Server side: the RS answer, in the layout of vector tunnel/04. Only the attributes
    libarms declares are written; binary configs go base64 (set ``encoding="base64"``)."""
    body = ""
    if 100 <= result_code <= 199:
        parts = []
        if sa_certificate:
            parts.append(element("sa-certificate", escape(sa_certificate)))
        if sa_private_key:
            parts.append(element("sa-private-key", escape(sa_private_key)))
        if push_port is not None or push_timeout is not None:
            parts.append(element("proposal-for-sa",
                                 element("push-port", str(int(push_port or 0)))
                                 + element("push-timeout", str(int(push_timeout or 0)))))
        for h in heartbeat:
            algs = "".join(element("algorithm", escape(a)) for a in (h.algorithms or ("hmac-sha1",)))
            parts.append(element("heartbeat-info",
                                 element("host", escape(h.host)) + element("port", str(int(h.port)))
                                 + element("passphrase", escape(h.passphrase))
                                 + element("interval", str(int(h.interval))) + algs))
        parts += [element("rs-push-server-address", escape(a)) for a in rs_push_server_addresses]
        parts += [element("rs-pull-server-url", escape(u)) for u in rs_pull_server_urls]
        for mod in modules:
            parts.append(element("module", escape(_check_ascii_text(mod.info, "module info")),
                                 [("id", mod.id), ("version", mod.version)]))
        for c in configs:
            attrs = [("id", c.id), ("content-type", c.content_type or "text/plain"),
                     ("commit-order", c.commit_order or "0")]
            if c.encoding == "base64":
                attrs.append(("encoding", "base64"))
                text = base64.b64encode(c.data).decode("ascii")
            else:
                try:
                    text = c.data.decode("ascii")
                except UnicodeDecodeError:
                    raise ValueError(f"config of module {c.id} is not ASCII: use encoding base64") from None
            parts.append(element("md-config", escape(text), attrs))
        body = element("config-solicitation-response", "".join(parts))
    return build_response("config-solicitation", result_code, body, declaration=declaration)
