"""The push side of the test server as one service: ARMS proxy + REST API on one asyncio loop.

Use it inside the test server (``TestServer.add_component(PushService(...))``: the RS port then
answers push-method-query, push-confirmation-start and the https-simple done requests, while
tunnels and the REST API get their own ports) or stand-alone
(``python -m libarms.testserver.pushservice --help``).

It writes ``<state_dir>/push-service.json`` (mode 0600: REST URL, bearer token, proxy URL) so
that ``arms-testserver request ...`` finds the API.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import logging
import os
import secrets
import signal
import ssl
import threading
from typing import Callable, Optional

from .._atomic import write_atomic
from ..protocol import push as P
from .proxy import PushProxy
from .rest import RequestStore, RestApi

log = logging.getLogger("libarms.testserver.push")

INFO_FILE = "push-service.json"


def _server_ssl(cert: str, key: Optional[str], ca: Optional[str]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    if ca:
        ctx.load_verify_locations(ca)
        ctx.verify_mode = ssl.CERT_OPTIONAL
    return ctx


def _client_ssl(cert: str, key: Optional[str], ca: Optional[str], legacy: bool = False) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if legacy:                              # a real libarms 5.33 device speaks TLS 1.0 only
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(cert, key)
    return ctx


class PushService:
    def __init__(self, state_dir: str, *, cert: Optional[str] = None, key: Optional[str] = None,
                 ca: Optional[str] = None, keys: Optional[Callable[[str], Optional[str]]] = None,
                 token: Optional[str] = None, host: str = "127.0.0.1", proxy_port: int = 0,
                 rest_port: int = 0, methods=("https-tunnel", "https-simple"),
                 echo_interval: Optional[int] = None, push_timeout: float = 60.0,
                 connect_timeout: float = 30.0):
        self.state_dir = os.path.abspath(state_dir)
        os.makedirs(self.state_dir, mode=0o700, exist_ok=True)
        self.cert, self.key, self.ca = cert, key, ca
        self.keys = keys
        self.token = token or secrets.token_urlsafe(24)
        self.host = host
        self.proxy_port, self.rest_port = proxy_port, rest_port
        self.methods = tuple(methods)
        self.echo_interval = echo_interval
        self.push_timeout, self.connect_timeout = push_timeout, connect_timeout
        self.loop: Optional[asyncio.AbstractEventLoop] = None
        self.thread: Optional[threading.Thread] = None
        self.proxy: Optional[PushProxy] = None
        self.rest: Optional[RestApi] = None
        self.store: Optional[RequestStore] = None
        self.server = None
        self._server_ssl_factory = None        # the TestServer's (honours --legacy-tls)
        self.legacy_tls = False

    # -- lifecycle ----------------------------------------------------------------------------

    def start(self, server=None) -> "PushService":
        """Start on a private loop thread; ``server`` is the TestServer when used as component."""
        if server is not None:
            self._attach(server)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="push-service", daemon=True)
        self.thread.start()
        self.call(self._start())
        return self

    def call(self, coro, timeout: float = 30):
        assert self.loop is not None
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    async def _start(self) -> None:
        assert self.cert and self.keys
        server_ssl = (self._server_ssl_factory() if self._server_ssl_factory
                      else _server_ssl(self.cert, self.key, self.ca))
        self.proxy = PushProxy(server_ssl, self.keys,
                               client_ssl=_client_ssl(self.cert, self.key, self.ca, self.legacy_tls),
                               methods=self.methods, echo_interval=self.echo_interval,
                               public_host=self.host, host=self.host, port=self.proxy_port)
        await self.proxy.start()
        self.store = RequestStore(os.path.join(self.state_dir, "push-requests.db"))
        self.rest = RestApi(self.proxy, self.store, self.token, host=self.host, port=self.rest_port,
                            push_timeout=self.push_timeout, connect_timeout=self.connect_timeout,
                            on_done=self._pushed)
        await self.rest.start()
        info = {"rest_url": self.rest.url, "token": self.token, "proxy_url": self.proxy.url,
                "tunnel_url": self.proxy.tunnel_url}
        path = os.path.join(self.state_dir, INFO_FILE)
        write_atomic(path, json.dumps(info, indent=1).encode(), 0o644)
        os.chmod(path, 0o600)

    def stop(self) -> None:
        if self.loop is None:
            return
        try:
            self.call(self._stop(), 30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            if self.thread is not None:
                self.thread.join(10)
            if self.thread is None or not self.thread.is_alive():
                self.loop.close()
            self.loop = None

    async def _stop(self) -> None:
        if self.rest is not None:
            await self.rest.stop()
        if self.proxy is not None:
            await self.proxy.stop()
        if self.store is not None:
            self.store.close()
        rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in rest:                      # idle keep-alive connections and the like
            t.cancel()
        await asyncio.gather(*rest, return_exceptions=True)

    # -- inside the TestServer ----------------------------------------------------------------

    def _attach(self, server) -> None:
        """Take certificates and device keys from the TestServer and answer the push messages
        that reach its RS port (the devices' ``rs-pull-server-url`` defaults to it)."""
        self.cert, self.key, self.ca = server.pki.server_cert, server.pki.server_key, server.pki.ca_cert
        if self.keys is None:
            def keys(dist: str) -> Optional[str]:
                try:
                    if server.db.device(dist) is None:
                        return None
                    return server.db.location(dist)["rs_key"]
                except Exception:
                    return None
            self.keys = keys
        self.host = getattr(server, "host", self.host)
        self.server = server
        self._server_ssl_factory = server.ssl_context
        self.legacy_tls = bool(getattr(server, "legacy_tls", False))
        for t in ["push-method-query", "push-confirmation-start"] + [f"{m}-done" for m in P.PUSH_METHODS]:
            server.add_message_handler(t, self._handle)

    def _pushed(self, device: str, method: str, params: dict, result_code: int) -> None:
        """A configure the device committed (done result 100, or 303: committed, reboot
        follows) becomes its service config, so that its next config-solicitation (after a
        pull-config, a reboot, a restart) gets the pushed modules and configs back, as from
        SACM, instead of the old ones overwriting them (PULL_STORE_CONFIG). Modules of the
        new list without an ``md-config`` in the push keep the config they had."""
        if method != "configure" or result_code not in (100, 303):
            return
        db = getattr(self.server, "db", None)
        if db is None or db.device(device) is None:
            return
        old = {int(m["id"]): m for m in db.service(device)["modules"]}
        configs = {int(c["id"]): c for c in params.get("configs", [])}
        modules = []
        for m in params.get("modules", []):
            mid = int(m["id"])
            doc = {"id": mid, "version": str(m.get("version", "")), "info": str(m.get("info", ""))}
            c = configs.get(mid)
            if c is None:
                prev = old.get(mid, {})
                for k in ("config", "config_b64"):
                    if prev.get(k) is not None:
                        doc[k] = prev[k]
            elif c.get("base64"):
                doc["config_b64"] = c.get("data", "")
            else:
                data = c.get("data", "")
                if data.isascii():
                    doc["config"] = data
                else:
                    doc["config_b64"] = base64.b64encode(data.encode("utf-8")).decode("ascii")
            modules.append(doc)
        db.set_service(device, modules=modules)
        log.info("configure %d of %s kept as its service config (%d module(s))",
                 result_code, device, len(modules))

    def _handle(self, req, msg) -> bytes:
        body = req.body if req.body is not None else b""
        assert self.proxy is not None
        return self.call(self.proxy._message(msg.distribution_id or req.user, body), 30)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m libarms.testserver.pushservice",
                                 description="ARMS push proxy (method query, confirmation, tunnels, "
                                             "https-simple) and REST API, stand-alone.")
    ap.add_argument("--state-dir", required=True, help="directory for push-requests.db and push-service.json")
    ap.add_argument("--cert", required=True, help="PEM with the server certificate (and key, unless --key)")
    ap.add_argument("--key", help="PEM with the server key")
    ap.add_argument("--ca", help="RS CA: verifies device certificates")
    ap.add_argument("--device", action="append", default=[], metavar="DIST:RSKEY",
                    help="a device and its RS key (repeatable)")
    ap.add_argument("--token", help="REST bearer token (default: random, see push-service.json)")
    ap.add_argument("--host", default="127.0.0.1", help="listen address (loopback)")
    ap.add_argument("--proxy-port", type=int, default=0)
    ap.add_argument("--rest-port", type=int, default=0)
    ap.add_argument("--methods", default="https-tunnel,https-simple",
                    help="push methods offered, in order of preference")
    ap.add_argument("--echo-interval", type=int, help="tunnel echo interval to announce")
    ap.add_argument("--connect-timeout", type=float, default=30.0,
                    help="how long a request waits for its device to be connected")
    ap.add_argument("--push-timeout", type=float, default=60.0)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    keys = {}
    for d in args.device:
        dist, _, key = d.partition(":")
        keys[dist.upper()] = key
    svc = PushService(args.state_dir, cert=args.cert, key=args.key, ca=args.ca, keys=keys.get,
                      token=args.token, host=args.host, proxy_port=args.proxy_port,
                      rest_port=args.rest_port, methods=args.methods.split(","),
                      echo_interval=args.echo_interval, push_timeout=args.push_timeout,
                      connect_timeout=args.connect_timeout)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    svc.start()
    print(json.dumps({"rest_url": svc.rest.url, "proxy_url": svc.proxy.url}), flush=True)
    while not stop.wait(3600):
        pass
    svc.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
