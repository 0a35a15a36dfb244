"""Fixtures for the pull tests: a real test server on loopback (TLS, SQLite) with a CA made
once per session, agents wired to it with short retry timings, and a recording Callbacks."""

from __future__ import annotations

import datetime
import os
import shutil
import socket

import pytest

from libarms import Agent, Callbacks, LineStatus
from libarms.testserver.pki import Pki, issue, make_ca
from libarms.testserver.server import TestServer

DIST = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"
LS_KEY = "ls-presharedkey-0123456789"
FAST = dict(ls_retry_max_factor=1, ls_retry_interval_factor=0.01, line_poll_interval=0.01,
            no_line_wait=0.01, connect_timeout=5, response_timeout=5)


@pytest.fixture(scope="session")
def pull_pki(tmp_path_factory):
    """A CA and server certificate made once; each server gets a copy."""
    d = tmp_path_factory.mktemp("pull-pki")
    pki = Pki(str(d)).ensure(["127.0.0.1", "::1"])
    cert, key = pki.issue_sa(DIST)          # one SA credential for the session (RSA keygen is slow)
    (d / "pki" / "sa.pem").write_text(cert)
    (d / "pki" / "sa.key").write_text(key)
    return str(d / "pki")


def new_server(state_dir, pki_dir=None, **kw) -> TestServer:
    if pki_dir:
        shutil.copytree(pki_dir, os.path.join(state_dir, "pki"))
    return TestServer(str(state_dir), **kw)


@pytest.fixture
def pull_server(tmp_path, pull_pki):
    s = new_server(tmp_path / "server", pull_pki).start()
    s.add_device(DIST, LS_KEY, rs_key="rs-presharedkey-abcdef", service={"modules": [
        {"id": 1001, "version": "1.0.0", "info": "module-1001-location",
         "config": "hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n"}]})
    s.db.set_sa_credential(DIST, open(f"{pull_pki}/sa.pem").read(), open(f"{pull_pki}/sa.key").read())
    yield s
    s.stop()


class Recorder(Callbacks):
    """Records every callback in order; line answers can be scripted."""

    def __init__(self, line_script=None, refuse_config=0):
        self.events = []
        self.logs = []
        self.configs = []
        self.line_script = list(line_script or [])
        self.refuse_config = refuse_config

    def line_ctrl(self, action, line):
        if self.line_script:
            st = self.line_script.pop(0)
        else:
            st = LineStatus.DISCONNECTED if action.name == "DISCONNECT" else LineStatus.CONNECTED
        self.events.append(("line", action.name, line.type.name, line.ifindex, LineStatus(st).name))
        return st

    def config(self, module_id, version, info, action, data, flags):
        if self.refuse_config > 0:
            self.refuse_config -= 1
            raise ValueError("config rejected by the test")
        self.configs.append((module_id, version, info, action.name, data, int(flags)))
        self.events.append(("config", module_id, action.name, int(flags)))

    def state(self, old, new):
        self.events.append(("state", old.name, new.name))

    def log(self, code, message):
        self.logs.append((code, message))

    def states(self):
        return [e[2] for e in self.events if e[0] == "state"]

    def log_text(self):
        return "\n".join(f"{c} {m}" for c, m in self.logs)


def make_agent(server: TestServer, cb=None, *, ls_url=None, retry_max=1, ca_pem=None, **kw) -> Agent:
    a = Agent(DIST, cb or Recorder(), **{**FAST, **kw})
    a.load_config(f"{ls_url or server.ls_url}\n\n1\n{retry_max}\n")
    a.register_cert(ca_pem or server.ca_pem)
    a.register_authkey(LS_KEY)
    a.register_description("libarms Test Client", "Version 5.33")
    return a


def closed_port() -> int:
    """A loopback port with nothing listening (bound then closed)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def write_server_cert(state_dir, ca_pki_dir, *, cn="Location Server 127.0.0.1", not_before=None,
                      not_after=None, foreign_ca=False, ips=("127.0.0.1",)):
    """Give a server (before start) a server certificate of our choosing."""
    pki = Pki(str(state_dir))
    os.makedirs(pki.dir, exist_ok=True)
    if foreign_ca:
        ca, ca_key = make_ca("ARMS Root CA (someone else)")
    else:
        ca, ca_key = open(os.path.join(ca_pki_dir, "ca.pem")).read(), open(os.path.join(ca_pki_dir, "ca.key")).read()
    with open(pki.ca_cert, "w") as f:
        f.write(ca)
    with open(pki.ca_key, "w") as f:
        f.write(ca_key)
    cert, key = issue(ca, ca_key, cn, ips=list(ips), not_before=not_before, not_after=not_after)
    with open(pki.server_cert, "w") as f:
        f.write(cert)
    with open(pki.server_key, "w") as f:
        f.write(key)
    return ca


def utc(*a):
    return datetime.datetime(*a, tzinfo=datetime.timezone.utc)


class ConnectProxy:
    """A minimal HTTP CONNECT proxy on loopback that records what clients asked for."""

    def __init__(self, answer: bytes = b"HTTP/1.1 200 Connection established\r\n\r\n"):
        import threading
        self.answer = answer
        self.requests = []
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/"
        self._threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    def _accept(self):
        import threading
        for _ in range(50):
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._handle, args=(c,), daemon=True)
            t.start()

    def _handle(self, c):
        import select
        c.settimeout(10)
        head = b""
        while b"\r\n\r\n" not in head:
            d = c.recv(1024)
            if not d:
                return c.close()
            head += d
        self.requests.append(head)
        if not self.answer.startswith(b"HTTP/1.1 200"):
            c.sendall(self.answer)
            return c.close()
        hostport = head.split(b" ")[1].decode()
        host, port = hostport.rsplit(":", 1)
        up = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        c.sendall(self.answer)
        for _ in range(10000):
            r, _, _ = select.select([c, up], [], [], 10)
            if not r:
                break
            done = False
            for s in r:
                d = s.recv(65536)
                if not d:
                    done = True
                    break
                (up if s is c else c).sendall(d)
            if done:
                break
        up.close()
        c.close()

    def close(self):
        self.sock.close()


def replay_over_tls(host: str, port: int, ctx, raw: bytes, require_version: str = ""):
    """Send captured request bytes over TLS and parse the answer read up to the connection's
    close (bounded); ``require_version`` skips the test when the handshake gave another one."""
    from libarms.protocol import parse_http_response
    with socket.create_connection((host, port), timeout=10) as sock:
        with ctx.wrap_socket(sock) as t:
            if require_version and t.version() != require_version:
                pytest.skip(f"no {require_version} in this OpenSSL")
            t.sendall(raw)
            out = b""
            for _ in range(1000):
                d = t.recv(65536)
                if not d:
                    break
                out += d
    return parse_http_response(out)
