"""The test server against what the real libarms 5.33 client needs (found by running its
simple-armsd against ``arms-testserver serve``; steps in the lead's notes).

The requests replayed here are the client's own bytes from the 5.33 captures (the LS and RS
pull requests are the same whatever the server's address).
"""

import json
import logging
import pathlib
import socket
import ssl
import warnings

import pytest

from conftest_pull import new_server, pull_pki, replay_over_tls  # noqa: F401
from _vectors import VECTORS_DIR
from libarms.callbacks import LineType
from libarms.protocol import (parse_config_solicitation_response,
                              parse_rs_solicitation_response)

V = pathlib.Path(VECTORS_DIR)
P = json.loads((V / "parameters.json").read_text())


def _client_ctx(ca_path: str) -> ssl.SSLContext:
    """Like the 5.33 client: chain checked against the CA, no host name check; TLS 1.0 allowed
    (the server runs with legacy_tls) but not required, so the test also runs where the local
    OpenSSL has no TLS 1.0."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.load_verify_locations(ca_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    return ctx


def _server(tmp_path, pki, host):
    if host == "::1" and not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = new_server(tmp_path / "srv", pki, host=host, legacy_tls=True).start()
    except OSError as e:
        pytest.skip(f"cannot listen on {host}: {e}")
    s.add_device(P["distribution_id"], P["ls_sa_key"], rs_key=P["rs_preshared_key"])
    return s


@pytest.mark.parametrize("host,line_type", [("127.0.0.1", LineType.DHCP), ("::1", LineType.RA)])
def test_ls_default_line_is_of_the_rs_address_family_so_the_5_33_client_reaches_the_rs(
        tmp_path, pull_pki, host, line_type):
    # The 5.33 client skips an RS URL whose family differs from the stage-2 line's ("address
    # family mismatched: ::1") and falls back to the LS forever: on ::1 the server used to hand
    # out line-dhcp.
    s = _server(tmp_path, pull_pki, host)
    try:
        ctx = _client_ctx(s.ca_path)
        ls = replay_over_tls(host, s.ls_port, ctx, (V / "tunnel/01-ls-pull-request.http").read_bytes())
        r = parse_rs_solicitation_response(ls.body)
        assert r.result_code == 100 and r.rs_urls == (s.rs_url,)
        assert [ln.type for ln in r.lines] == [line_type]
        assert b"line-ra {" in ls.body if host == "::1" else b"line-dhcp {" in ls.body
    finally:
        s.stop()


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_rs_announces_its_own_address_as_push_source_by_default(tmp_path, pull_pki, host):
    s = _server(tmp_path, pull_pki, host)
    try:
        ctx = _client_ctx(s.ca_path)
        rs = replay_over_tls(host, s.rs_port, ctx, (V / "tunnel/03-rs-pull-request.http").read_bytes())
        r = parse_config_solicitation_response(rs.body)
        assert r.result_code == 100
        assert r.rs_push_server_addresses == (host,)
        s.db.set_service(P["distribution_id"], push_addresses=["192.0.2.20"])   # explicit wins
        rs = replay_over_tls(host, s.rs_port, ctx, (V / "tunnel/03-rs-pull-request.http").read_bytes())
        assert parse_config_solicitation_response(rs.body).rs_push_server_addresses == ("192.0.2.20",)
    finally:
        s.stop()


def test_ls_warns_when_no_configured_line_can_reach_the_rs(tmp_path, pull_pki, caplog):
    s = _server(tmp_path, pull_pki, "127.0.0.1")
    try:
        s.db.set_location(P["distribution_id"], rs_urls=["https://[2001:db8::1]/rs.cgi"],
                          lines=[{"type": "dhcp", "ifindex": 1}])
        with caplog.at_level(logging.WARNING, logger="libarms.testserver"):
            ls = replay_over_tls("127.0.0.1", s.ls_port, _client_ctx(s.ca_path),
                         (V / "tunnel/01-ls-pull-request.http").read_bytes())
        r = parse_rs_solicitation_response(ls.body)
        assert [ln.type for ln in r.lines] == [LineType.DHCP]          # as configured
        assert any("no stage-2 line" in m and "IPv6" in m for m in caplog.messages)
    finally:
        s.stop()


# -- a configure the device committed is what the RS hands out next ---------------------------

def _agent_in_push_wait(s, cb):
    import threading
    import time
    from conftest_pull import DIST, FAST, LS_KEY
    from conftest_push import free_port
    from libarms import Agent, State
    from libarms.errors import Err
    a = Agent(DIST, cb, **FAST)
    a.load_config(s.initial_config())
    a.register_cert(s.ca_pem)
    a.register_authkey(LS_KEY)
    a.pull()
    assert a.push_method_query() == Err.OK
    result, done = [], threading.Event()

    def run():
        try:
            result.append(a.run(free_port()))
        finally:
            done.set()
    threading.Thread(target=run, daemon=True, name="interop-agent").start()
    end = time.monotonic() + 30
    while a.state != State.PUSH_WAIT:
        assert time.monotonic() < end and not done.is_set(), "agent never reached PUSH_WAIT"
        done.wait(0.05)
    return a, result, done


def _rest(push, method, doc):
    import requests
    h = {"Authorization": f"Bearer {push.token}"}
    r = requests.post(f"{push.rest.url}/user/test/request/{method}", json=doc, headers=h, timeout=30)
    assert r.status_code == 201, r.text
    rid = r.json()["id"]
    r = requests.get(f"{push.rest.url}/user/test/request/{method}/{rid}?wait=30", headers=h, timeout=40)
    assert r.status_code == 200 and r.json()["status"] == "done", r.text
    return r.json()


def test_committed_configure_becomes_the_config_the_rs_hands_out_on_the_next_pull(tmp_path, pull_pki):
    # Seen with the real 5.33 client: configure 1.1.0 (done 100), then pull-config: the RS
    # answered the old 1.0.0 config and the device stored it back over the pushed one.
    import base64 as b64
    from conftest_pull import DIST, LS_KEY, Recorder
    from libarms.errors import Err
    from libarms.testserver.pushservice import PushService
    s = new_server(tmp_path / "srv", pull_pki).start()
    push = PushService(str(tmp_path / "srv"))
    s.add_component(push)
    a = None
    try:
        s.add_device(DIST, LS_KEY, service={"modules": [
            {"id": 1001, "version": "1.0.0", "info": "first", "config": "old 1001\n"},
            {"id": 1003, "version": "3.0", "info": "kept", "config": "old 1003\n"}]})
        cb = Recorder()
        a, result, done = _agent_in_push_wait(s, cb)
        out = _rest(push, "configure", {"code": DIST, "modules": [
            {"id": 1001, "version": "1.1.0", "info": "second"}, {"id": 1002, "version": "1"},
            {"id": 1003, "version": "3.0", "info": "kept"}],
            "configs": [{"id": 1001, "data": "new 1001 & <x>\n"},
                        {"id": 1002, "data": b64.b64encode(b"\x00bin\xff").decode(), "base64": True}]})
        assert out["resultCode"] == 100
        mods = {m["id"]: m for m in s.db.service(DIST)["modules"]}
        assert sorted(mods) == [1001, 1002, 1003]
        assert (mods[1001]["version"], mods[1001]["info"], mods[1001]["config"]) == \
            ("1.1.0", "second", "new 1001 & <x>\n")
        assert b64.b64decode(mods[1002]["config_b64"]) == b"\x00bin\xff"
        assert mods[1003]["config"] == "old 1003\n"                     # no md-config: kept
        assert _rest(push, "pull-config", {"code": DIST, "pullType": "RS"})["resultCode"] == 100
        assert done.wait(30) and result == [Err.EPULL]
        cb.configs.clear()
        a.pull()
        pulled = {c[0]: (c[1], c[4]) for c in cb.configs if c[3] == "PULL_STORE_CONFIG"}
        assert pulled == {1001: ("1.1.0", b"new 1001 & <x>\n"), 1002: ("1", b"\x00bin\xff"),
                          1003: ("3.0", b"old 1003\n")}
    finally:
        if a is not None:
            a.end()
        s.stop()


def test_configure_the_device_refused_leaves_the_service_config_alone(tmp_path, pull_pki):
    from conftest_pull import DIST, LS_KEY, Recorder
    from libarms.testserver.pushservice import PushService
    s = new_server(tmp_path / "srv", pull_pki).start()
    push = PushService(str(tmp_path / "srv"))
    s.add_component(push)
    a = None
    try:
        before = [{"id": 1001, "version": "1.0.0", "info": "first", "config": "old\n"}]
        s.add_device(DIST, LS_KEY, service={"modules": before})
        cb = Recorder()
        a, result, done = _agent_in_push_wait(s, cb)
        cb.refuse_config = 1                             # the store callback rejects: 410
        out = _rest(push, "configure", {"code": DIST, "modules": [{"id": 1001, "version": "2"}],
                                        "configs": [{"id": 1001, "data": "refused\n"}]})
        assert out["resultCode"] == 410
        assert s.db.service(DIST)["modules"] == before
        a.stop()
        assert done.wait(15), "the agent's event loop did not stop"
    finally:
        if a is not None:
            a.stop()
            a.end()
        s.stop()
