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

from conftest_pull import new_server, pull_pki  # noqa: F401
from _vectors import VECTORS_DIR
from libarms.callbacks import LineType
from libarms.protocol import (parse_config_solicitation_response, parse_http_response,
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


def _replay(host: str, port: int, ctx: ssl.SSLContext, raw: bytes):
    """Send the captured request bytes and read the answer to the connection close (bounded)."""
    with socket.create_connection((host, port), timeout=10) as sock:
        with ctx.wrap_socket(sock) as t:
            t.sendall(raw)
            out = b""
            for _ in range(1000):
                d = t.recv(65536)
                if not d:
                    break
                out += d
    return parse_http_response(out)


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
        ls = _replay(host, s.ls_port, ctx, (V / "tunnel/01-ls-pull-request.http").read_bytes())
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
        rs = _replay(host, s.rs_port, ctx, (V / "tunnel/03-rs-pull-request.http").read_bytes())
        r = parse_config_solicitation_response(rs.body)
        assert r.result_code == 100
        assert r.rs_push_server_addresses == (host,)
        s.db.set_service(P["distribution_id"], push_addresses=["192.0.2.20"])   # explicit wins
        rs = _replay(host, s.rs_port, ctx, (V / "tunnel/03-rs-pull-request.http").read_bytes())
        assert parse_config_solicitation_response(rs.body).rs_push_server_addresses == ("192.0.2.20",)
    finally:
        s.stop()


def test_ls_warns_when_no_configured_line_can_reach_the_rs(tmp_path, pull_pki, caplog):
    s = _server(tmp_path, pull_pki, "127.0.0.1")
    try:
        s.db.set_location(P["distribution_id"], rs_urls=["https://[2001:db8::1]/rs.cgi"],
                          lines=[{"type": "dhcp", "ifindex": 1}])
        with caplog.at_level(logging.WARNING, logger="libarms.testserver"):
            ls = _replay("127.0.0.1", s.ls_port, _client_ctx(s.ca_path),
                         (V / "tunnel/01-ls-pull-request.http").read_bytes())
        r = parse_rs_solicitation_response(ls.body)
        assert [ln.type for ln in r.lines] == [LineType.DHCP]          # as configured
        assert any("no stage-2 line" in m and "IPv6" in m for m in caplog.messages)
    finally:
        s.stop()
