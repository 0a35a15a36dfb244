"""Fixtures for the push tests: a throw-away PKI, the proxy on a loopback port in its own
thread, and a device running the real event loop in another thread."""

from __future__ import annotations

import asyncio
import datetime
import os
import ssl
import tempfile
import threading
from typing import Optional

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from libarms import push
from libarms.callbacks import Callbacks, ConfigAction, PingResult, TraceHop
from libarms.errors import AppExecError, Err
from libarms.protocol import push as P
from libarms.testserver.proxy import PushProxy

DIST = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"
RS_KEY = "rs-presharedkey-abcdef"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key, issuer_name: x509.Name, issuer_key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
         .public_key(key.public_key()).serial_number(x509.random_serial_number())
         .not_valid_before(now - datetime.timedelta(days=1))
         .not_valid_after(now + datetime.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    return b.sign(issuer_key, hashes.SHA256())


def _pem(cert) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Pki:
    def __init__(self):
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("RS CA (push tests)", self.ca_key, _name("RS CA (push tests)"), self.ca_key, True)
        self.server_key = ec.generate_private_key(ec.SECP256R1())
        self.server = _cert("ARMS proxy 127.0.0.1", self.server_key, self.ca.subject, self.ca_key, False)
        self.sa_key = ec.generate_private_key(ec.SECP256R1())
        self.sa = _cert(f"SA {DIST}", self.sa_key, self.ca.subject, self.ca_key, False)
        self.ca_pem = _pem(self.ca)
        self.sa_pem, self.sa_key_pem = _pem(self.sa), _key_pem(self.sa_key)
        self.dir = tempfile.mkdtemp(prefix="push-pki-")
        self.server_file = os.path.join(self.dir, "server.pem")
        with open(self.server_file, "wb") as f:
            f.write(_pem(self.server) + _key_pem(self.server_key))
        self.ca_file = os.path.join(self.dir, "ca.pem")
        with open(self.ca_file, "wb") as f:
            f.write(self.ca_pem)

    def server_ssl(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.server_file)
        return ctx

    def client_ssl(self) -> ssl.SSLContext:
        """The proxy as client of an https-simple device: verifies the SA under the CA."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.load_verify_locations(cadata=self.ca_pem.decode())
        ctx.load_cert_chain(self.server_file)
        return ctx


@pytest.fixture(scope="session")
def pki() -> Pki:
    return Pki()


class LoopThread:
    """An asyncio loop in a thread; ``call`` runs a coroutine there and waits (bounded)."""

    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="push-proxy")
        self.thread.start()

    def call(self, coro, timeout: float = 30):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self):
        async def cancel_rest():
            rest = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in rest:
                t.cancel()
            await asyncio.gather(*rest, return_exceptions=True)
        try:
            self.call(cancel_rest(), 10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            if not self.thread.is_alive():
                self.loop.close()


class ProxyHandle:
    def __init__(self, pki: Pki, **kw):
        self.lt = LoopThread()
        self.keys = {DIST: RS_KEY}
        self.proxy = PushProxy(pki.server_ssl(), self.keys.get, client_ssl=pki.client_ssl(), **kw)
        self.lt.call(self.proxy.start())

    def push(self, method: str, body: bytes = b"", timeout: float = 20, connect_timeout: float = 10):
        return self.lt.call(self.proxy.push(DIST, method, body, timeout=timeout,
                                            connect_timeout=connect_timeout), timeout + connect_timeout + 5)

    def wait_reachable(self, timeout: float = 10):
        return self.lt.call(self.proxy.wait_reachable(DIST, timeout), timeout + 5)

    def confirmations(self) -> int:
        return self.proxy.device(DIST).confirmations

    def close(self):
        try:
            self.lt.call(self.proxy.stop(), 10)
        finally:
            self.lt.close()


@pytest.fixture
def make_proxy(pki):
    made = []

    def make(**kw) -> ProxyHandle:
        h = ProxyHandle(pki, **kw)
        made.append(h)
        return h
    yield make
    for h in made:
        h.close()


class RecordingCallbacks(Callbacks):
    """A device that implements every push callback and records what it was asked."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.states: list[tuple] = []
        self.lock = threading.Lock()
        self.exec_fails = False
        self.revert_fails = False
        self.md_delay: Optional[float] = None
        self.md_event = threading.Event()

    def _rec(self, *a):
        with self.lock:
            self.calls.append(a)

    def config(self, module_id, version, info, action, data, flags):
        self._rec("config", module_id, ConfigAction(action), bytes(data), int(flags))
        if action == ConfigAction.PUSH_EXEC_STORED_CONFIG and self.exec_fails:
            raise RuntimeError("commit refused by the device")
        if action == ConfigAction.PUSH_REVERT_CONFIG and self.revert_fails:
            raise RuntimeError("revert impossible")

    def state(self, old, new):
        self.states.append((old, new))

    def md_command(self, module_id, command):
        self._rec("md_command", module_id, command)
        if command == b"fail":
            raise AppExecError("exit status 1")
        if command == b"crash":
            raise ValueError("callback bug")
        if command == b"slow":
            self.md_event.wait(30)
            return "late"
        if command.startswith(b"bin"):
            return bytes(range(256))
        return f"ran {command.decode()} on {module_id}"

    def get_status(self, module_id, request):
        self._rec("get_status", module_id, request)
        return f"status of {module_id}: {request.decode()}"

    def clear_status(self, module_id, request):
        self._rec("clear_status", module_id, request)
        return "counters cleared"

    def read_config(self, module_id, kind):
        self._rec("read_config", module_id, kind)
        return f"config {module_id} {kind.name.lower()}"

    def ping(self, dst, count, size):
        self._rec("ping", dst, count, size)
        return PingResult(count, 0)

    def traceroute(self, addr, count, maxhop):
        self._rec("traceroute", addr, count, maxhop)
        return [TraceHop(1, "192.0.2.254"), TraceHop(2, addr)]

    def dump_debug(self):
        return "debug: all fine"


class DeviceHandle:
    """A device: method query, then the event loop in a thread."""

    def __init__(self, pki: Pki, proxy: ProxyHandle, callbacks: Callbacks, port: int = 0,
                 dist: str = DIST, **kw):
        self.cb = callbacks
        proxy.keys[dist] = RS_KEY
        defaults = dict(distribution_id=dist, rs_key=RS_KEY, rs_ca_pem=pki.ca_pem,
                        sa_cert_pem=pki.sa_pem, sa_key_pem=pki.sa_key_pem,
                        pull_urls=[proxy.proxy.url], callbacks=callbacks,
                        description="push test device", rs_retry_max=2, rs_retry_interval=0.05,
                        modules=[P.ModuleInfo(1, "1.0", "mod1")], confirm_timeout=10,
                        io_timeout=10, callback_timeout=10, reconnect_base=0.05,
                        reconnect_cap=0.5, bind_retry_wait=0.1, listen_host="127.0.0.1",
                        configure_reconnect_wait=0.05)
        defaults.update(kw)
        self.ctx = push.PushContext(**defaults)
        self.port = port
        self.result: Optional[Err] = None
        self.error: Optional[BaseException] = None
        self.thread: Optional[threading.Thread] = None
        self.done = threading.Event()

    def method_query(self) -> Err:
        return push.push_method_query(self.ctx)

    def start(self) -> "DeviceHandle":
        assert self.method_query() == Err.OK

        def run():
            try:
                self.result = push.event_loop(self.ctx, self.port)
            except BaseException as e:  # reported by the test
                self.error = e
            finally:
                self.done.set()
        self.thread = threading.Thread(target=run, daemon=True, name="push-device")
        self.thread.start()
        return self

    def wait(self, timeout: float = 20) -> Err:
        assert self.done.wait(timeout), "event loop did not end"
        if self.error:
            raise self.error
        return self.result

    def stop(self):
        if self.thread and not self.done.is_set():
            push.stop_event_loop(self.ctx, Err.EPULL)
            self.done.wait(15)


@pytest.fixture
def make_device(pki):
    made = []

    def make(proxy: ProxyHandle, callbacks: Optional[Callbacks] = None, **kw) -> DeviceHandle:
        d = DeviceHandle(pki, proxy, callbacks or RecordingCallbacks(), **kw)
        made.append(d)
        return d
    yield make
    for d in made:
        d.stop()


def free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def wait_for(predicate, timeout: float = 10, what: str = "condition") -> None:
    """Poll ``predicate`` until true (bounded); for states another thread sets."""
    import time
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
