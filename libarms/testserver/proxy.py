"""The ARMS proxy of the test server: push-method-query, confirmation, tunnels, https-simple.

One :class:`PushProxy` serves, on one TLS port (server certificate under the RS CA):

* ``push-method-query`` (form A) -> the configured methods, tunnel URLs and echo interval;
* ``push-confirmation-start`` (https-simple, form B) -> a transaction id, then it connects to
  the device's push endpoint and sends ``push-confirmation-done``;
* ``NAME-done`` requests (https-simple ``result-url``) -> recorded, answered in one write;
* the tunnel path (``POST <tunnel_path>`` chunked, no body): ``HTTP/1.1 200`` head in one
  write, then the confirmation over the tunnel, echo answers, pushes and done answers
  (W 5.1-5.6). Many devices and many tunnels per device are held at once.

:meth:`PushProxy.push` sends one push to a device over any confirmed tunnel (preferred) or to
its https-simple endpoint and returns the device's answers. On a tunnel at most one request
per method type is outstanding until its (start) response arrived, because device answers
carry no link to the request (W 5.4); concurrent callers queue per device and method.
Asynchronous pushes wait for the done request (matched by transaction id).

Server rules kept (W 2.4, 5.1, 5.4): every answer in one write (one TLS record), done answers
in tunnel mode carry ``transaction-id`` directly under ``arms-response``, requests to an
https-simple device are never chunked.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import itertools
import logging
import re
import ssl
from typing import Callable, Optional

from ..errors import ProtocolError
from ..protocol import push as P
from ..transport.simple import ResponseReader, open_tls
from ..transport.tunnel import (ChunkDecoder, ChunkKind, ECHO_RESPONSE_CHUNK, MessageAssembler,
                                encode_chunk, split_message)

log = logging.getLogger("libarms.testserver.proxy")

TUNNEL_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nTransfer-Encoding: chunked\r\n\r\n"
MAX_HEAD = 16384
MAX_BODY = 16 * 1024 * 1024


class PushFailed(Exception):
    """A push could not get an answer from the device (not connected, tunnel lost, timeout)."""


@dataclasses.dataclass
class PushOutcome:
    """The device's answers to one push."""

    method: str
    result_code: int                     # of the sync response, or of the done request
    response: P.PushAnswer               # sync response or start response
    done: Optional[P.PushAnswer] = None  # done request of an asynchronous push
    via: str = ""                        # "tunnel" or "simple"


def http_answer(body: bytes, status: str = "200 OK") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n\r\n").encode() + body


class ServerTunnel:
    """Server end of one device tunnel."""

    _ids = itertools.count(5001)

    def __init__(self, proxy: "PushProxy", dist: str, writer: asyncio.StreamWriter):
        self.proxy = proxy
        self.dist = dist
        self.writer = writer
        self.confirmed = False
        self.expect: dict[str, asyncio.Future] = {}
        self.lock = asyncio.Lock()
        self.closed = False

    async def send(self, message: bytes) -> None:
        """One message, one chunk id; split at 8192 bytes (the device's read buffer), so a
        small message (every done answer) is one chunk written at once."""
        data = b"".join(split_message(message, next(self._ids), 8192))
        async with self.lock:
            self.writer.write(data)
            await self.writer.drain()

    async def send_raw(self, data: bytes) -> None:
        async with self.lock:
            self.writer.write(data)
            await self.writer.drain()

    def fail(self, why: str) -> None:
        self.closed = True
        for f in self.expect.values():
            if not f.done():
                f.set_exception(PushFailed(why))
        self.expect.clear()


class Device:
    def __init__(self, dist: str):
        self.dist = dist
        self.tunnels: list[ServerTunnel] = []
        self.endpoint: Optional[str] = None
        self.locks: dict[str, asyncio.Lock] = {}
        self.done: dict[int, asyncio.Future] = {}
        self.changed = asyncio.Event()
        self.confirmations = 0

    def lock(self, method: str) -> asyncio.Lock:
        return self.locks.setdefault(method, asyncio.Lock())

    def done_future(self, tid: int) -> asyncio.Future:
        f = self.done.get(tid)
        if f is None:
            f = self.done[tid] = asyncio.get_running_loop().create_future()
        return f

    @property
    def reachable(self) -> bool:
        return any(t.confirmed and not t.closed for t in self.tunnels) or self.endpoint is not None


class PushProxy:
    def __init__(self, ssl_context: ssl.SSLContext, keys: Callable[[str], Optional[str]], *,
                 client_ssl: Optional[ssl.SSLContext] = None, methods=("https-tunnel",),
                 tunnel_path: str = "/tunnel", echo_interval: Optional[int] = None,
                 public_host: str = "127.0.0.1", host: str = "127.0.0.1", port: int = 0):
        self.ssl_context = ssl_context
        self.client_ssl = client_ssl
        self.keys = keys
        self.methods = tuple(methods)
        self.tunnel_path = tunnel_path
        self.echo_interval = echo_interval
        self.public_host = public_host
        self.host = host
        self.port = port
        self.devices: dict[str, Device] = {}
        self.server: Optional[asyncio.base_events.Server] = None
        self._tids = itertools.count(70001)
        self._tasks: set[asyncio.Task] = set()
        self.events: list[tuple[str, str]] = []     # (event, distribution id) for tests/logs
        # fault injection for tests and demos
        self.extra_tunnel_urls: list[str] = []   # more tunnel servers to announce (W 5.7)
        self.refuse_tunnels = False       # answer tunnel opens with 503
        self.refused = 0                  # tunnel opens refused so far
        self.answer_echo = True           # answer echo-request chunks
        self.block_inbound = False        # act as if the device's push endpoint is unreachable
        self.done_script: dict[str, list[int]] = {}   # method -> result codes for next done answers
        self.cut_after_done: set[str] = set()  # methods whose done answer is followed by an outage
        self.confirm_result: Optional[int] = None  # answer push-confirmation-start with this code

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self.server = await asyncio.start_server(self._client, self.host, self.port,
                                                 ssl=self.ssl_context)
        self.port = self.server.sockets[0].getsockname()[1]
        log.info("ARMS proxy listening on %s:%d", self.host, self.port)

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
        for d in self.devices.values():
            for t in d.tunnels:
                t.fail("proxy stopped")
                t.writer.transport.abort()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    @property
    def _authority(self) -> str:
        h = self.public_host
        return f"[{h}]:{self.port}" if ":" in h else f"{h}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self._authority}/arms"

    @property
    def tunnel_url(self) -> str:
        return f"https://{self._authority}{self.tunnel_path}"

    def device(self, dist: str) -> Device:
        d = self.devices.get(dist)
        if d is None:
            d = self.devices[dist] = Device(dist)
        return d

    def _spawn(self, coro) -> asyncio.Task:
        t = asyncio.create_task(coro)
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        return t

    def _event(self, what: str, dist: str) -> None:
        self.events.append((what, dist))
        log.info("%s dist=%s", what, dist)

    async def wait_reachable(self, dist: str, timeout: float) -> Device:
        d = self.device(dist)
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not d.reachable:
            d.changed.clear()
            left = end - loop.time()
            if left <= 0:
                raise PushFailed(f"device {dist} is not connected (no tunnel, no push endpoint)")
            try:
                await asyncio.wait_for(d.changed.wait(), left)
            except asyncio.TimeoutError:
                pass
        return d

    # -- incoming connections ----------------------------------------------------------------

    def _auth(self, head: bytes) -> Optional[str]:
        m = re.search(rb"\r\nAuthorization: Basic ([A-Za-z0-9+/=]+)\r\n", head)
        if not m:
            return None
        try:
            user, _, password = base64.b64decode(m.group(1), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            return None
        key = self.keys(user)
        return user if key is not None and key == password else None

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            try:
                head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 30)
            except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, asyncio.TimeoutError,
                    OSError, ssl.SSLError):
                return
            line = head.split(b"\r\n", 1)[0]
            m = re.match(rb"POST (\S+) HTTP/1\.[01]\Z", line)
            dist = self._auth(head)
            if not m:
                writer.write(http_answer(b"", "400 Bad Request"))
                return
            if dist is None:
                writer.write(http_answer(b"", "401 Authorization Required"))
                return
            chunked = re.search(rb"\r\nTransfer-Encoding:[^\r]*chunked", head, re.I) is not None
            if m.group(1).decode() == self.tunnel_path and chunked:
                await self._tunnel(dist, reader, writer)
                return
            body = await asyncio.wait_for(self._read_body(reader, head, chunked), 30)
            answer = await self._message(dist, body)
            writer.write(http_answer(answer))
            await writer.drain()
        except (OSError, ssl.SSLError, asyncio.TimeoutError, ProtocolError) as e:
            log.warning("proxy connection failed: %s", e or type(e).__name__)
        except asyncio.CancelledError:
            pass        # shutting down; a cancelled connection task upsets asyncio 3.11's streams
        finally:
            writer.close()

    async def _read_body(self, reader: asyncio.StreamReader, head: bytes, chunked: bool) -> bytes:
        if chunked:
            out = bytearray()
            while True:
                line = await reader.readuntil(b"\r\n")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    await reader.readuntil(b"\r\n")
                    return bytes(out)
                out += await reader.readexactly(size)
                await reader.readexactly(2)
                if len(out) > MAX_BODY:
                    raise ProtocolError("request body too large")
        m = re.search(rb"\r\nContent-Length: *(\d+)", head, re.I)
        if not m or int(m.group(1)) > MAX_BODY:
            raise ProtocolError("request without a usable Content-Length")
        return await reader.readexactly(int(m.group(1)))

    async def _message(self, dist: str, body: bytes) -> bytes:
        """One non-tunnel request from a device: method query, simple confirmation, done."""
        msg = P.parse_message(body)
        if msg.distribution_id != dist:
            return P.build_server_response(msg.type, 423, description="Distribution ID Mismatch")
        if msg.type == "push-method-query":
            self._event("method-query", dist)
            urls = ([self.tunnel_url] + list(self.extra_tunnel_urls)) if "https-tunnel" in self.methods else []
            return P.build_method_query_response(100, self.methods, urls, self.echo_interval)
        if msg.type == "push-confirmation-start":
            if self.confirm_result is not None:
                return P.build_confirmation_start_response(self.confirm_result, None)
            a = P.read_push_answer(body)
            tid = next(self._tids)
            if a.push_endpoint:
                self.device(dist).endpoint = None     # until this confirmation completes
                self._spawn(self._confirm_simple(dist, a.push_endpoint, tid))
            return P.build_confirmation_start_response(100, tid)
        if msg.kind == "request" and msg.type.endswith("-done"):
            return self._done(dist, body, simple=True)
        return P.build_server_response(msg.type, 202, description="Invalid Message type")

    def _done(self, dist: str, body: bytes, simple: bool = False) -> bytes:
        """Record a done request and answer it. A configure done answered with a failure
        code is not final (the device rolls back and resends 414), so it resolves nothing.

        A configure done acknowledged with 1xx makes the device re-confirm (A 2.7): in
        https-simple mode it closes its listener and opens a new round, in tunnel mode each
        tunnel re-runs the confirmation. Until that completes the device is not reachable
        here, so a push waits for it (``wait_reachable``) instead of hitting a listener that
        is closing or a tunnel that is being replaced."""
        a = P.read_push_answer(body)
        d = self.device(dist)
        script = self.done_script.get(a.method or "")
        code = script.pop(0) if script else 100
        self._event(f"{a.type} {a.result_code}", dist)
        if a.method == "configure" and 100 <= code < 200 and a.result_code != P.Rc.MODULE_SYNCING:
            if simple:
                d.endpoint = None
            for t in d.tunnels:
                t.confirmed = False
            d.changed.set()
        final = a.method != "configure" or 100 <= code < 200 or code >= 500
        if a.transaction_id and final:
            f = d.done_future(a.transaction_id)
            if f.done():                  # a resent configure done: the last one counts
                f = d.done[a.transaction_id] = asyncio.get_running_loop().create_future()
            f.set_result(a)
        return P.build_done_response(a.method or "", code, a.transaction_id)

    async def _confirm_simple(self, dist: str, endpoint: str, tid: int) -> None:
        if self.block_inbound:
            self._event("endpoint unreachable", dist)
            return
        try:
            a = await self._post_device(endpoint, dist, P.build_confirmation_done_request(dist, tid))
        except (PushFailed, ProtocolError) as e:
            log.warning("push-confirmation-done to %s failed: %s", endpoint, e)
            return
        if a.result_code == 100:
            d = self.device(dist)
            d.endpoint = endpoint
            d.confirmations += 1
            d.changed.set()
            self._event("confirmed simple", dist)

    async def _post_device(self, endpoint: str, dist: str, body: bytes, timeout: float = 30) -> P.PushAnswer:
        """An https-simple request to the device (unchunked), its answer parsed."""
        key = self.keys(dist) or ""
        url = P.parse_url(endpoint)
        auth = base64.b64encode(f"{dist}:{key}".encode()).decode()
        req = (f"POST {url.path} HTTP/1.1\r\nHost: {url.netloc}\r\nConnection: close\r\n"
               f"Content-Type: text/xml\r\nContent-Length: {len(body)}\r\n"
               f"Authorization: Basic {auth}\r\n\r\n").encode() + body
        try:
            reader, writer = await open_tls(url, self.client_ssl, timeout)
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
            raise PushFailed(f"cannot connect to the device at {endpoint}: {e or type(e).__name__}") from None
        try:
            writer.write(req)
            await writer.drain()
            rr = ResponseReader(MAX_BODY)

            async def read_all():
                while not rr.done:
                    data = await reader.read(65536)
                    if not data:
                        break
                    rr.feed(data)
            await asyncio.wait_for(read_all(), timeout)
            ans = rr.answer()
        except (OSError, ssl.SSLError, asyncio.TimeoutError) as e:
            raise PushFailed(f"device at {endpoint} did not answer: {e or type(e).__name__}") from None
        finally:
            writer.close()
        if ans.status != 200:
            raise PushFailed(f"device at {endpoint} answered HTTP {ans.status}")
        return P.read_push_answer(ans.body)

    # -- tunnels -----------------------------------------------------------------------------

    async def _tunnel(self, dist: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse_tunnels:
            self.refused += 1
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\n\r\n")
            return
        writer.write(TUNNEL_HEAD)
        await writer.drain()
        tun = ServerTunnel(self, dist, writer)
        dev = self.device(dist)
        dev.tunnels.append(tun)
        self._event("tunnel open", dist)
        dec = ChunkDecoder(65536)
        asm = MessageAssembler(MAX_BODY)
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                chunks = dec.feed(data)
                for c in chunks:
                    if c.kind is ChunkKind.END:
                        raise EOFError
                    if c.kind is ChunkKind.ECHO_REQUEST:
                        self._event("echo", dist)
                        if self.answer_echo:
                            await tun.send_raw(ECHO_RESPONSE_CHUNK)
                        continue
                    if c.kind is not ChunkKind.DATA:
                        continue
                    msg = asm.feed(c)
                    if msg is not None:
                        await self._tunnel_message(tun, dev, msg)
        except (EOFError, OSError, ssl.SSLError, ProtocolError) as e:
            if not isinstance(e, EOFError):
                log.warning("tunnel of %s: %s", dist, e)
        finally:
            tun.fail("tunnel closed")
            if tun in dev.tunnels:
                dev.tunnels.remove(tun)
            dev.changed.set()
            self._event("tunnel closed", dist)

    async def _tunnel_message(self, tun: ServerTunnel, dev: Device, msg: bytes) -> None:
        a = P.read_push_answer(msg)
        if a.kind == "request" and a.type == "push-confirmation-start":
            if self.confirm_result is not None:
                await tun.send(P.build_confirmation_start_response(self.confirm_result, None))
                return
            tid = next(self._tids)
            # start answer and done request in one write (allowed, W 5.3)
            await tun.send_raw(encode_chunk(P.build_confirmation_start_response(100, tid), next(ServerTunnel._ids), True)
                               + encode_chunk(P.build_confirmation_done_request(tun.dist, tid), next(ServerTunnel._ids), True))
            return
        if a.kind == "response" and a.type == "push-confirmation-done":
            tun.confirmed = True
            dev.confirmations += 1
            dev.changed.set()
            self._event("confirmed tunnel", tun.dist)
            return
        if a.is_done:
            await tun.send(self._done(tun.dist, msg))
            if a.method in self.cut_after_done:     # e.g. the pushed config broke the WAN
                self.cut_after_done.discard(a.method)
                self.refuse_tunnels = True
                self.cut_tunnels(tun.dist)
            return
        if a.kind == "response":
            f = tun.expect.pop(a.type, None)
            if f is None and a.type == "generic-error" and len(tun.expect) == 1:
                f = tun.expect.pop(next(iter(tun.expect)))   # the device could not read it
            if a.method == "configure" and a.result_code == 100:
                # W 5.5: the device drops this tunnel now (no last-chunk) and sends the
                # done request on a new one: no more pushes on this connection
                tun.confirmed = False
                dev.changed.set()
            if f is not None and not f.done():
                f.set_result(a)
            else:
                log.warning("unexpected %s answer from %s", a.type, tun.dist)
            if a.method and P.is_async(a.method) and a.result_code == 100 and a.transaction_id:
                dev.done_future(a.transaction_id)
            return
        log.warning("unexpected %s %s from %s", a.kind, a.type, tun.dist)

    def cut_tunnels(self, dist: str) -> int:
        """Drop every tunnel of a device without last-chunk (a network cut)."""
        d = self.device(dist)
        n = 0
        for t in list(d.tunnels):
            t.writer.transport.abort()
            n += 1
        return n

    # -- pushing -----------------------------------------------------------------------------

    async def push(self, dist: str, method: str, body: bytes = b"", *, timeout: float = 60,
                   connect_timeout: float = 0) -> PushOutcome:
        """Send one push and return the device's answers; PushFailed when there is none."""
        dev = await self.wait_reachable(dist, connect_timeout) if connect_timeout else self.device(dist)
        if not dev.reachable:
            raise PushFailed(f"device {dist} is not connected (no tunnel, no push endpoint)")
        tunnels = [t for t in dev.tunnels if t.confirmed and not t.closed]
        if tunnels:
            return await self._push_tunnel(dev, tunnels[0], method, body, timeout)
        return await self._push_simple(dev, method, body, timeout)

    async def _wait_done(self, dev: Device, resp: P.PushAnswer, method: str, timeout: float,
                         via: str) -> PushOutcome:
        if not (P.is_async(method) and resp.result_code == 100 and resp.transaction_id):
            return PushOutcome(method, resp.result_code, resp, None, via)
        f = dev.done_future(resp.transaction_id)
        try:
            done = await asyncio.wait_for(asyncio.shield(f), timeout)
        except asyncio.TimeoutError:
            raise PushFailed(f"{method}: no done request from the device within {timeout} s "
                             f"(transaction {resp.transaction_id})") from None
        dev.done.pop(resp.transaction_id, None)
        return PushOutcome(method, done.result_code, resp, done, via)

    async def _push_tunnel(self, dev: Device, tun: ServerTunnel, method: str, body: bytes,
                           timeout: float) -> PushOutcome:
        rtype = P.response_type(method)
        req = P.build_push_request(method, dev.dist, body)
        async with dev.lock(method):
            loop = asyncio.get_running_loop()
            f = tun.expect[rtype] = loop.create_future()
            try:
                await tun.send(req)
            except (OSError, ssl.SSLError) as e:
                tun.expect.pop(rtype, None)
                raise PushFailed(f"tunnel write failed: {e}") from None
            try:
                resp = await asyncio.wait_for(f, timeout)
            except asyncio.TimeoutError:
                tun.expect.pop(rtype, None)
                raise PushFailed(f"{method}: no answer on the tunnel within {timeout} s") from None
        return await self._wait_done(dev, resp, method, timeout, "tunnel")

    async def _push_simple(self, dev: Device, method: str, body: bytes, timeout: float) -> PushOutcome:
        assert dev.endpoint is not None
        req = P.build_push_request(method, dev.dist, body, result_url=self.url)
        resp = await self._post_device(dev.endpoint, dev.dist, req, timeout)
        return await self._wait_done(dev, resp, method, timeout, "simple")


def build_body(method: str, params: dict) -> bytes:
    """Request body of ``method`` from REST-style parameters."""
    if method == "md-command":
        cmd = params.get("command", "")
        if params.get("base64"):
            cmd = base64.b64decode(cmd)
        return P.md_command_body(int(params.get("module", 0)), cmd)
    if method in ("read-status", "clear-status"):
        mods = params.get("modules") or [params.get("module", 0)]
        return P.status_body([(int(m), params.get("parameter", "")) for m in mods])
    if method == "read-storage":
        return P.read_storage_body(params.get("storage", "running"))
    if method == "ping":
        return P.ping_body(params["address"], int(params.get("count", 5)), int(params.get("size", 56)))
    if method == "traceroute":
        return P.traceroute_body(params["address"], int(params.get("count", 3)),
                                 int(params.get("max_hop", params.get("maxhop", 30))))
    if method == "pull-config":
        return P.pull_config_body(params.get("pullType", params.get("type", "RS")))
    if method == "configure":
        modules = [P.ModuleInfo(int(m["id"]), m.get("version", ""), m.get("info", ""))
                   for m in params.get("modules", [])]
        configs = []
        for c in params.get("configs", []):
            data = base64.b64decode(c["data"]) if c.get("base64") else c.get("data", "")
            configs.append((int(c["id"]), data))
        return P.configure_body(modules, configs)
    if method in P.PUSH_METHODS:
        return b""
    raise ValueError(f"unknown push method {method!r}")
