"""The test server: LS and RS over HTTPS on loopback, state in SQLite, open to plug-ins.

``TestServer(state_dir)`` makes its CA and server certificate on first start (``pki.py``),
keeps devices, configs and every request it served in ``<state_dir>/testserver.db``
(``db.py``) and listens on two TLS ports: the **LS** (``ls_url``, ``/arms.cgi``) and the **RS**
(``rs_url``, ``/rs.cgi``). It follows the server rules of ``spec/arms-wire.md``: answers in one
write (one TLS record), upper-case distribution ids, only the attributes libarms declares,
``CN=ARMS Root CA ...`` and ``CN=Location Server ...`` subjects, an ``md-config`` with a line
block and the ``rs-certificate``. TLS 1.2+ unless ``legacy_tls=True``, which also allows the
TLS 1.0 of the real libarms 5.33 client (OpenSSL security level 0).

Plug-in hooks (for the push proxy, tunnel, REST API, heartbeat receiver, readings collector):

``add_message_handler(type, fn)``
    ARMS messages POSTed to any path of a role's port that has no route of its own are
    authenticated (HTTP Basic: distribution id + LS-SA key on the LS port, + RS key on the RS
    port; 401 otherwise), parsed (``libarms.protocol.parse_request``; bodies with
    Content-Length or chunked) and dispatched on their ``type``: ``fn(req, msg) -> bytes``
    returns the ARMS document to answer (wrapped in HTTP/1.0 200 with Content-Length and written
    in one go). ``req`` is a :class:`Request`; ``msg`` a :class:`~libarms.protocol.Message`.
    Built in: ``rs-solicitation`` (LS) and ``config-solicitation`` (RS).
``add_route(role, path, fn)``
    Full control of one path on the "ls" or "rs" port: ``fn(req) -> bytes | None``. Return the
    complete HTTP response bytes to have them written in one go and the connection closed, or
    None after handling the connection yourself (``req.rfile``/``req.wfile``/``req.connection``:
    e.g. a long-lived https-tunnel). The request body is NOT read for routes.
``add_component(obj)``
    Anything with ``start(server)`` and ``stop()`` (a UDP heartbeat receiver, a REST API
    thread, ...); started with the server (or at once if it already runs), stopped before it.
    Components may add tables with ``server.db.execute_script(...)`` and keep small values in
    ``server.db.kv_set``.
``default_heartbeat``
    ``fn(distribution_id) -> [heartbeat entry]`` (or None): the heartbeat servers announced to
    a device whose service config sets none (``heartbeat`` null); ``arms-testserver serve``
    points it at its own receiver. :meth:`heartbeat_entries` gives what a device is told.
``set_override(path, result=None, raw=None, times=None)``
    Test hook: answer ARMS messages on ``path`` with result code ``result`` or the raw body
    ``raw`` (``times`` times, or until cleared with ``clear_overrides``).

Every ARMS request is recorded in ``request_log`` (``db.requests()``) before it is answered;
``wait_for_request`` blocks (bounded) until a matching one has been served, ``wait_until(pred)``
until any condition holds (re-checked on every request and every failed TLS handshake, which
are kept in ``handshake_failures``).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import email.message
import hmac
import logging
import os
import re
import socket
import ssl
import threading
import time
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from ..callbacks import Line, LineType
from ..errors import ProtocolError
from ..protocol import (HeartbeatInfo, Message, Module, ModuleConfig, build_config_solicitation_response,
                        build_http_response, build_location_config, build_response,
                        build_rs_solicitation_response, parse_request)
from ..protocol.envelope import SERVER_DECLARATION
from ..protocol.http import parse_url
from ..protocol.location import BLOCKS
from .db import Database
from .pki import Pki

log = logging.getLogger("libarms.testserver")

MAX_REQUEST_BODY = 1024 * 1024
IO_TIMEOUT = 30.0


@dataclasses.dataclass
class Request:
    """One HTTP request as plug-ins see it."""

    server: "TestServer"
    role: str                     # "ls" or "rs"
    method: str
    path: str
    headers: email.message.Message
    peer: str
    handler: BaseHTTPRequestHandler
    body: Optional[bytes] = None
    user: Optional[str] = None    # Basic auth user (distribution id, upper-cased)
    password: Optional[str] = dataclasses.field(default=None, repr=False)

    @property
    def rfile(self):
        return self.handler.rfile

    @property
    def wfile(self):
        return self.handler.wfile

    @property
    def connection(self) -> ssl.SSLSocket:
        return self.handler.connection

    @property
    def peer_cert(self) -> Optional[dict]:
        """The client certificate (SA certificate), verified against the server CA, if sent."""
        try:
            return self.connection.getpeercert() or None
        except (ValueError, OSError):
            return None

    def authenticated(self) -> bool:
        """Basic credentials match the device's LS-SA key (LS port) or RS key (RS port)."""
        return self.server.check_auth(self.role, self.user, self.password)


def _read_chunked(rfile, limit: int) -> bytes:
    body = bytearray()
    for _ in range(100_000):
        line = rfile.readline(1025)
        if not line:
            raise ProtocolError("connection closed inside a chunked body")
        s = line.strip()
        if not s:
            continue
        m = re.match(rb"([0-9a-fA-F]+)", s)
        if not m:
            raise ProtocolError(f"bad chunk-size line {s[:40]!r}")
        n = int(m.group(1), 16)
        if n == 0:
            for _ in range(100):                 # trailer up to the empty line
                t = rfile.readline(1025)
                if not t or not t.strip():
                    return bytes(body)
            raise ProtocolError("chunked trailer too long")
        if len(body) + n > limit:
            raise ProtocolError(f"chunked body larger than {limit} bytes")
        data = rfile.read(n)
        if len(data) != n:
            raise ProtocolError("connection closed inside a chunk")
        body += data
        if rfile.read(2) != b"\r\n":
            raise ProtocolError("chunk not followed by CR LF")
    raise ProtocolError("too many chunks")


class _Handler(BaseHTTPRequestHandler):
    server_version = "arms-testserver"
    protocol_version = "HTTP/1.0"
    timeout = IO_TIMEOUT

    def do_POST(self):
        self.server.owner._dispatch(self, self.server.role)

    do_GET = do_POST

    def log_message(self, fmt, *args):
        log.debug("%s %s " + fmt, self.server.role, self.client_address[0], *args)


class _TlsServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 32

    def __init__(self, addr, ssl_ctx: ssl.SSLContext, owner: "TestServer", role: str):
        self.address_family = socket.AF_INET6 if ":" in addr[0] else socket.AF_INET
        self.ssl_ctx, self.owner, self.role = ssl_ctx, owner, role
        super().__init__(addr, _Handler)

    def finish_request(self, request, client_address):
        request.settimeout(IO_TIMEOUT)
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            tls = self.ssl_ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError) as e:
            hint = ""
            if ("UNSUPPORTED_PROTOCOL" in str(e) or "VERSION" in str(e).upper()) and not self.owner.legacy_tls:
                hint = " (an old client, e.g. libarms 5.33, speaks TLS 1.0: run with --legacy-tls)"
            log.warning("%s: TLS handshake with %s failed: %s%s", self.role, client_address[0], e, hint)
            self.owner._note_handshake_failure(self.role, client_address, e)
            return
        try:
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.close()
            except OSError:
                pass


# The address family a stage-2 line reaches (spec W 2.1): a device skips every RS URL of the
# other family, so a location whose lines cannot reach its RS never gets past the LS.
LINE_FAMILY = {"dhcp": 4, "pppoe": 4, "mobile": 4, "ra": 6, "pppoe-ipv6": 6}     # static: any


def url_family(url: str) -> Optional[int]:
    try:
        return parse_url(url).family
    except ValueError:
        return None


def default_lines(rs_url: str) -> list[dict]:
    """The stage-2 line of a location that names none: DHCP for an IPv4 RS, RA for an IPv6
    RS (a real libarms 5.33 client refuses an IPv6 RS over a DHCP line: "address family
    mismatched")."""
    return [{"type": "ra" if url_family(rs_url) == 6 else "dhcp", "ifindex": 0}]


def line_from_doc(d: dict) -> Line:
    t = BLOCKS["line-" + d.get("type", "dhcp")]
    return Line(t, int(d.get("ifindex", 0)), pppoe_id=d.get("account", ""),
                pppoe_pass=d.get("password", ""), telno=d.get("telno", ""), cid=int(d.get("cid", 0)),
                apn=d.get("apn", ""), pdp=d.get("pdp-type", ""), ipaddr=d.get("ipaddress", ""))


class TestServer:
    """LS + RS on loopback (see the module docstring for the plug-in hooks)."""

    def __init__(self, state_dir: str, *, host: str = "127.0.0.1", ls_port: int = 0,
                 rs_port: int = 0, legacy_tls: bool = False):
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.host = host
        self.legacy_tls = legacy_tls
        self._want_ports = {"ls": ls_port, "rs": rs_port}
        self.pki = Pki(self.state_dir)
        self.db: Optional[Database] = None
        self._servers: dict[str, _TlsServer] = {}
        self._threads: list[threading.Thread] = []
        self._routes: dict[tuple[str, str], Callable] = {}
        self._handlers: dict[str, Callable] = {
            "rs-solicitation": self._handle_rs_solicitation,
            "config-solicitation": self._handle_config_solicitation,
        }
        self._handler_roles = {"rs-solicitation": "ls"}
        self._components: list = []
        self._overrides: dict[str, dict] = {}
        self._served = threading.Condition()
        self._lock = threading.Lock()
        self.handshake_failures: list[tuple[str, str, str]] = []
        self.default_heartbeat: Optional[Callable[[str], Optional[list]]] = None
        self.running = False

    # -- lifecycle ------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        if self.legacy_tls:
            with warnings.catch_warnings():      # TLS 1.0 is deprecated: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                ctx.minimum_version = ssl.TLSVersion.TLSv1
            ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
        else:
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.pki.server_cert, self.pki.server_key)
        # SA certificates (issued by this CA) are asked for, not required.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(self.pki.ca_cert)
        return ctx

    def start(self) -> "TestServer":
        self.pki.ensure([self.host] + (["::1"] if self.host == "127.0.0.1" else []))
        self.db = Database(os.path.join(self.state_dir, "testserver.db"))
        ctx = self.ssl_context()
        for role in ("ls", "rs"):
            srv = _TlsServer((self.host, self._want_ports[role]), ctx, self, role)
            self._servers[role] = srv
            t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                                 name=f"testserver-{role}", daemon=True)
            t.start()
            self._threads.append(t)
        self.running = True
        self.db.kv_set("ls_url", self.ls_url)
        self.db.kv_set("rs_url", self.rs_url)
        for c in self._components:
            c.start(self)
        log.info("test server up: LS %s RS %s CA %s%s", self.ls_url, self.rs_url, self.ca_path,
                 " (legacy TLS 1.0 allowed)" if self.legacy_tls else "")
        return self

    def stop(self) -> None:
        for c in reversed(self._components):
            try:
                c.stop()
            except Exception:
                log.exception("component %r failed to stop", c)
        for srv in self._servers.values():
            srv.shutdown()
            srv.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self._servers.clear()
        self._threads.clear()
        if self.db is not None:
            self.db.close()
            self.db = None
        self.running = False

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- addresses ------------------------------------------------------------------------
    def port(self, role: str) -> int:
        return self._servers[role].server_address[1]

    @property
    def ls_port(self) -> int:
        return self.port("ls")

    @property
    def rs_port(self) -> int:
        return self.port("rs")

    def _base(self, role: str) -> str:
        h = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{h}:{self.port(role)}"

    @property
    def ls_url(self) -> str:
        return self._base("ls") + "/arms.cgi"

    @property
    def rs_url(self) -> str:
        return self._base("rs") + "/rs.cgi"

    def url(self, role: str, path: str) -> str:
        return self._base(role) + path

    @property
    def ca_path(self) -> str:
        return self.pki.ca_cert

    @property
    def ca_pem(self) -> str:
        return self.pki.ca_pem

    def initial_config(self, retry_interval: int = 1, retry_max: int = 1) -> str:
        """An initial-config text pointing an agent at this LS."""
        return f"{self.ls_url}\n\n{retry_interval}\n{retry_max}\n"

    # -- devices (conveniences over db) ---------------------------------------------------
    def add_device(self, distribution_id: str, ls_sa_key: str, *, rs_key: Optional[str] = None,
                   description: str = "", location: Optional[dict] = None,
                   service: Optional[dict] = None) -> None:
        self.db.add_device(distribution_id, ls_sa_key, rs_key=rs_key, description=description)
        if location:
            self.db.set_location(distribution_id, **location)
        if service:
            self.db.set_service(distribution_id, **service)

    # -- plug-ins ---------------------------------------------------------------------------
    def add_route(self, role: str, path: str, fn: Callable) -> None:
        self._routes[(role, path)] = fn

    def add_message_handler(self, type_: str, fn: Callable, role: str = "rs") -> None:
        self._handlers[type_] = fn
        self._handler_roles[type_] = role

    def add_component(self, component) -> None:
        self._components.append(component)
        if self.running:
            component.start(self)

    def set_override(self, path: str, *, result: Optional[int] = None, raw: Optional[bytes] = None,
                     times: Optional[int] = None) -> None:
        with self._lock:
            self._overrides[path] = {"result": result, "raw": raw, "times": times}

    def clear_overrides(self) -> None:
        with self._lock:
            self._overrides.clear()

    def _take_override(self, path: str) -> Optional[dict]:
        with self._lock:
            o = self._overrides.get(path)
            if o is None:
                return None
            if o["times"] is not None:
                o["times"] -= 1
                if o["times"] <= 0:
                    del self._overrides[path]
            return o

    def wait_for_request(self, distribution_id: Optional[str] = None, type_: Optional[str] = None,
                         count: int = 1, timeout: float = 10.0) -> list:
        """Block until ``count`` matching requests were served (bounded by ``timeout``)."""
        deadline = time.monotonic() + timeout
        with self._served:
            while True:
                rows = self.db.requests(distribution_id, type_)
                if len(rows) >= count:
                    return rows
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{len(rows)}/{count} {type_ or 'ARMS'} requests after {timeout} s")
                self._served.wait(left)

    # -- auth ---------------------------------------------------------------------------------
    def check_auth(self, role: str, user: Optional[str], password: Optional[str]) -> bool:
        if not user or password is None:
            return False
        dev = self.db.device(user)
        if dev is None:
            return False
        want = dev["ls_sa_key"] if role == "ls" else self.db.location(user)["rs_key"]
        return hmac.compare_digest(password.encode("latin-1"), (want or "").encode("utf-8"))

    def _note_handshake_failure(self, role, addr, e) -> None:
        with self._lock:
            self.handshake_failures.append((role, addr[0], str(e)))
            del self.handshake_failures[:-100]
        with self._served:
            self._served.notify_all()

    def wait_until(self, predicate: Callable[[], bool], timeout: float = 10.0) -> None:
        """Block until ``predicate()`` holds, re-checked whenever a request is served or a
        handshake fails (bounded by ``timeout``: TimeoutError)."""
        deadline = time.monotonic() + timeout
        with self._served:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"condition not met within {timeout} s")
                self._served.wait(left)

    # -- dispatch -------------------------------------------------------------------------
    def _dispatch(self, h: BaseHTTPRequestHandler, role: str) -> None:
        user = password = None
        auth = h.headers.get("Authorization", "")
        if auth.startswith("Basic "):
            try:
                u, _, p = base64.b64decode(auth[6:].strip(), validate=True).decode("latin-1").partition(":")
                user, password = u.upper(), p
            except (binascii.Error, ValueError):
                pass
        req = Request(self, role, h.command, h.path, h.headers, h.client_address[0], h, None, user, password)
        route = self._routes.get((role, h.path))
        if route is not None:
            out = route(req)
            if out is not None:
                h.wfile.write(out)
            h.close_connection = True
            return
        self._serve_arms(req)

    def _write(self, req: Request, status: int, body: bytes, *, msg_type=None, trig=None, request_body=b""):
        if status == 200:
            out = build_http_response(body)
        elif status == 401:
            out = (b"HTTP/1.0 401 Authorization Required\r\nWWW-Authenticate: Basic realm=\"arms\"\r\n"
                   b"Content-Length: 0\r\nConnection: close\r\n\r\n")
        else:
            out = f"HTTP/1.0 {status} Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".encode()
        # recorded before answering, so a client that saw the answer finds the request logged
        m = re.search(rb"<result-code>(\d+)</result-code>", body or b"")
        self.db.log_request(role=req.role, path=req.path, peer=req.peer, distribution_id=req.user,
                            type=msg_type, trig=trig, http_status=status,
                            result_code=int(m.group(1)) if m else None, body=request_body)
        with self._served:
            self._served.notify_all()
        try:
            req.wfile.write(out)          # one write: one TLS record for small answers
        except OSError as e:
            log.info("%s: could not answer %s: %s", req.role, req.peer, e)

    def _serve_arms(self, req: Request) -> None:
        h = req.handler
        try:
            if "chunked" in (h.headers.get("Transfer-Encoding") or "").lower():
                body = _read_chunked(h.rfile, MAX_REQUEST_BODY)
            else:
                n = int(h.headers.get("Content-Length") or 0)
                if not 0 <= n <= MAX_REQUEST_BODY:
                    raise ProtocolError(f"request body of {n} bytes")
                body = h.rfile.read(n)
        except (ProtocolError, ValueError, OSError) as e:
            log.info("%s: bad request body from %s: %s", req.role, req.peer, e)
            self._write(req, 400, b"")
            return
        req.body = body
        if not req.authenticated():
            log.info("%s: authentication failed for %r from %s", req.role, req.user, req.peer)
            self._write(req, 401, b"", request_body=body)
            return
        try:
            msg = parse_request(body)
        except ProtocolError as e:
            log.info("%s: bad ARMS request from %s: %s", req.role, req.peer, e)
            self._write(req, 200, build_response("generic-error", 201, "<generic-error-response>"
                                                 "</generic-error-response>", declaration=SERVER_DECLARATION),
                        request_body=body)
            return
        trig = None
        if msg.body is not None:
            t = msg.body.find("trigger")
            trig = t.text if t is not None else None
        o = self._take_override(req.path)
        if o is not None:
            out = o["raw"] if o["raw"] is not None else build_response(
                msg.type, o["result"], declaration=SERVER_DECLARATION)
            self._write(req, 200, out, msg_type=msg.type, trig=trig, request_body=body)
            return
        fn = self._handlers.get(msg.type)
        if fn is None or self._handler_roles.get(msg.type, "rs") != req.role:
            out = build_response(msg.type or "generic-error", 507, declaration=SERVER_DECLARATION)
        elif msg.distribution_id is None or msg.distribution_id.upper() != req.user \
                or msg.distribution_id != msg.distribution_id.upper():
            out = build_response(msg.type, 203, description="distribution-id does not match the "
                                 "authenticated device", declaration=SERVER_DECLARATION)
        else:
            try:
                out = fn(req, msg)
            except Exception:
                log.exception("%s: handler for %s failed", req.role, msg.type)
                out = build_response(msg.type, 401, declaration=SERVER_DECLARATION)
        self._write(req, 200, out, msg_type=msg.type, trig=trig, request_body=body)

    # -- built-in LS and RS ---------------------------------------------------------------
    def _handle_rs_solicitation(self, req: Request, msg: Message) -> bytes:
        loc = self.db.location(req.user)
        if loc["result"]:
            return build_rs_solicitation_response(int(loc["result"]))
        urls = loc["rs_urls"] or [self.rs_url]
        docs = loc["lines"] if loc["lines"] is not None else default_lines(urls[0])
        fam = url_family(urls[0])
        if fam and docs and all(LINE_FAMILY.get(d.get("type", "dhcp"), fam) != fam for d in docs):
            log.warning("ls: no stage-2 line of %s reaches its RS %s (IPv%d): the device will "
                        "skip it; set a line of that family (arms-testserver set-location --line)",
                        req.user, urls[0], fam)
        lines = [line_from_doc(d) for d in docs]
        ca = self.pki.ca_pem
        infos = [(u, build_location_config(lines if i == 0 else [], ca)) for i, u in enumerate(urls)]
        return build_rs_solicitation_response(
            100, rs_preshared_key=loc["rs_key"], rs_info=infos, ll_timeout=loc["ll_timeout"],
            rs_retry_max=loc["rs_retry_max"], rs_retry_interval=loc["rs_retry_interval"],
            lifetime=loc["lifetime"])

    def sa_credential(self, distribution_id: str) -> tuple[str, str]:
        """The device's SA certificate and key (issued on first use, then kept)."""
        cred = self.db.sa_credential(distribution_id)
        if cred is None:
            cred = self.pki.issue_sa(distribution_id.upper())
            self.db.set_sa_credential(distribution_id, *cred)
        return cred

    def heartbeat_entries(self, distribution_id: str) -> list[dict]:
        """The heartbeat servers the RS announces to a device: its service config's, or
        ``default_heartbeat``'s when the config sets none (``heartbeat`` null)."""
        entries = self.db.service(distribution_id)["heartbeat"]
        if entries is None and self.default_heartbeat is not None:
            entries = self.default_heartbeat(distribution_id.upper())
        return list(entries or [])

    def _local_address(self, req: Request) -> str:
        """This server's address as the device reached it (the push source it announces)."""
        try:
            return req.handler.connection.getsockname()[0].split("%")[0]
        except (OSError, AttributeError, IndexError):
            return self.host

    def _handle_config_solicitation(self, req: Request, msg: Message) -> bytes:
        svc = self.db.service(req.user)
        if svc["result"]:
            return build_config_solicitation_response(int(svc["result"]))
        cert, key = self.sa_credential(req.user)
        modules, configs = [], []
        for m in svc["modules"]:
            modules.append(Module(int(m["id"]), m.get("version", ""), m.get("info", "")))
            if m.get("config_b64") is not None:
                configs.append(ModuleConfig(int(m["id"]), base64.b64decode(m["config_b64"]),
                                            encoding="base64"))
            elif m.get("config") is not None:
                configs.append(ModuleConfig(int(m["id"]), m["config"].encode("ascii")))
        hbs = [HeartbeatInfo(h["host"], int(h["port"]), h["passphrase"], int(h["interval"]),
                             tuple(h.get("algorithms", ("hmac-sha1",))))
               for h in self.heartbeat_entries(req.user)]
        return build_config_solicitation_response(
            100, sa_certificate=cert, sa_private_key=key, push_port=svc["push_port"],
            push_timeout=svc["push_timeout"], heartbeat=hbs,
            rs_push_server_addresses=(svc["push_addresses"] if svc["push_addresses"] is not None
                                      else [self._local_address(req)]),
            rs_pull_server_urls=svc["rs_pull_urls"] or [self.rs_url], modules=modules,
            configs=configs)


__all__ = ["TestServer", "Request", "line_from_doc", "LineType"]
