"""Push over https-simple: the device's TLS listener with the SA certificate, real TLS."""

from __future__ import annotations

import base64
import socket
import ssl

import pytest

from libarms.errors import Err
from libarms.protocol import push as P
from libarms.states import State
from _vectors import VECTORS_DIR  # noqa: E402
from tests.conftest_push import (DIST, RS_KEY, RecordingCallbacks, free_port, make_device,  # noqa: F401
                                 make_proxy, pki, wait_for)


@pytest.fixture
def simple(make_proxy, make_device):
    proxy = make_proxy(methods=("https-simple",))
    dev = make_device(proxy, port=free_port()).start()
    proxy.wait_reachable()
    return proxy, dev


def raw_request(pki, port: int, request: bytes, client_cert: bool = True) -> bytes:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(cadata=pki.ca_pem.decode())
    if client_cert:
        ctx.load_cert_chain(pki.server_file)
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s) as t:
            t.sendall(request)
            out = b""
            while True:
                try:
                    data = t.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not data:
                    break
                out += data
            return out


def _auth(key=RS_KEY) -> str:
    return base64.b64encode(f"{DIST}:{key}".encode()).decode()


def test_simple_confirmation_uses_the_push_endpoint_and_reaches_push_wait(simple):
    proxy, dev = simple
    assert proxy.proxy.device(DIST).endpoint == f"https://127.0.0.1:{dev.port}/"
    wait_for(lambda: (State.PUSH_SENDREADY, State.PUSH_WAIT) in dev.cb.states, what="PUSH_WAIT")


def test_every_method_round_trips_over_https_simple(simple):
    proxy, dev = simple
    out = proxy.push("md-command", P.md_command_body(1, "show status"))
    assert out.via == "simple" and out.response.modules[0].data == b"ran show status on 1"
    out = proxy.push("read-status", P.status_body([(1, "interface lan0")]))
    assert out.done.modules == (P.ModuleResult(1, 100, b"status of 1: interface lan0"),)
    out = proxy.push("clear-status", P.status_body([(1, "")]))
    assert out.done.modules[0].data == b"counters cleared"
    out = proxy.push("ping", P.ping_body("192.0.2.1", 2, 56))
    assert (out.done.success, out.done.failure) == (2, 0)
    out = proxy.push("traceroute", P.traceroute_body("192.0.2.9"))
    assert out.done.hops[-1] == (2, "192.0.2.9")
    out = proxy.push("read-storage", P.read_storage_body("running"))
    assert out.done.modules[0].data == b"config 1 running"
    assert proxy.push("read-module-list").response.module_list[0].id == 1
    assert proxy.push("dump-debug").response.modules[0].data == b"debug: all fine"
    assert proxy.push("check-transaction").result_code == 100
    before = proxy.confirmations()
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "hostname x")]))
    assert out.done.result_code == 100
    wait_for(lambda: proxy.confirmations() > before, what="re-confirmation after configure")
    out = proxy.push("reboot")
    assert out.result_code == 100 and dev.wait() == Err.EREBOOT


def test_listener_answers_chunked_request_with_400_like_libarms(simple, pki):
    _, dev = simple
    body = P.build_push_request("md-command", DIST, P.md_command_body(1, "show version"))
    req = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1:{dev.port}\r\nConnection: close\r\n"
           f"Content-Type: text/xml\r\nTransfer-Encoding: chunked\r\nAuthorization: Basic {_auth()}\r\n\r\n"
           ).encode() + b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body)
    want = open(VECTORS_DIR + "/simple/14-sa-push-md-command-chunked-rejected-response.http", "rb").read()
    assert raw_request(pki, dev.port, req) == want


def test_listener_refuses_wrong_credentials_with_401_and_bad_line_with_202(simple, pki):
    _, dev = simple
    body = P.build_push_request("reboot", DIST)
    req = (f"POST / HTTP/1.1\r\nContent-Length: {len(body)}\r\nAuthorization: Basic {_auth('wrong')}\r\n\r\n"
           ).encode() + body
    out = raw_request(pki, dev.port, req)
    assert out.startswith(b'HTTP/1.0 401 Authorization Required\r\nWWW-Authenticate: Basic realm=""\r\n')
    out = raw_request(pki, dev.port, b"BREW /pot HTTP/1.1\r\n\r\n")
    assert out.startswith(b"HTTP/1.0 200 OK\r\nServer: armsd\r\n") and b"<result-code>202</result-code>" in out
    # the device is still serving
    assert dev.done.is_set() is False


def test_md_command_response_bytes_match_libarms_vector(simple, pki):
    _, dev = simple
    body = P.build_push_request("md-command", DIST, P.md_command_body(1, "show status"))
    req = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Type: text/xml\r\n"
           f"Content-Length: {len(body)}\r\nAuthorization: Basic {_auth()}\r\n\r\n").encode() + body
    out = raw_request(pki, dev.port, req, client_cert=False)
    assert out == (b"HTTP/1.0 200 OK\r\nServer: armsd\r\nConnection: close\r\nContent-Type: text/xml\r\n\r\n"
                   b'<?xml version="1.0" encoding="US-ASCII" ?>\r' + P.join(P.build_md_command_response(100, 1, "ran show status on 1")))


def test_client_certificate_outside_the_rs_ca_is_refused(simple):
    _, dev = simple
    from tests.conftest_push import Pki
    other = Pki()
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.load_cert_chain(other.server_file)
    body = P.build_push_request("reboot", DIST)
    req = (f"POST / HTTP/1.0\r\nContent-Length: {len(body)}\r\nAuthorization: Basic {_auth()}\r\n\r\n").encode() + body
    out = b""
    with socket.create_connection(("127.0.0.1", dev.port), timeout=10) as s:
        try:
            with ctx.wrap_socket(s) as t:
                t.sendall(req)
                while True:
                    data = t.recv(65536)
                    if not data:
                        break
                    out += data
        except (ssl.SSLError, OSError):
            pass
    assert out == b""
    assert not dev.done.is_set()          # the reboot was not executed


@pytest.mark.parametrize("method", ["https-simple", "https-tunnel"])
def test_push_over_ipv6_loopback(make_proxy, make_device, method):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no ::1 on this host")
    proxy = make_proxy(methods=(method,), host="::1", public_host="::1", echo_interval=5)
    dev = make_device(proxy, port=free_port(), listen_host="::1").start()
    proxy.wait_reachable()
    assert dev.ctx.sa_address == "::1"
    if method == "https-simple":
        assert proxy.proxy.device(DIST).endpoint == f"https://[::1]:{dev.port}/"
    assert proxy.push("md-command", P.md_command_body(1, "v6")).response.modules[0].data == b"ran v6 on 1"


def test_captured_server_requests_get_the_captured_answers_from_our_listener(make_proxy, make_device, pki):
    """simple/09, 11, 15, 23 sent as captured to our listener: answers equal 10, 12, 16, 24
    (the transaction id of 16 is random: compared with it substituted)."""
    import re
    from pathlib import Path
    V = Path(VECTORS_DIR + "/simple")

    class Sample(RecordingCallbacks):
        def md_command(self, module_id, command):
            return f"md_command(id={module_id}): done"

        def get_status(self, module_id, request):
            return f"id={module_id}: get_status_cb() result"
    proxy = make_proxy(methods=("https-simple",))
    dev = make_device(proxy, Sample(), port=free_port()).start()
    proxy.wait_reachable()
    for req, want in [("09-sa-push-confirmation-done-request.http", "10-sa-push-confirmation-done-response.http"),
                      ("11-sa-push-md-command-request.http", "12-sa-push-md-command-response.http"),
                      ("15-sa-push-read-status-start-request.http", "16-sa-push-read-status-start-response.http"),
                      ("23-sa-push-reboot-request.http", "24-sa-push-reboot-response.http")]:
        got = raw_request(pki, dev.port, (V / req).read_bytes())
        exp = (V / want).read_bytes()
        m = re.search(rb"<transaction-id>(\d+)</transaction-id>", got)
        if m and b"read-status" in want.encode():
            exp = re.sub(rb"<transaction-id>\d+</transaction-id>", m.group(0), exp)
        assert got == exp, req
    assert dev.wait() == Err.EREBOOT
