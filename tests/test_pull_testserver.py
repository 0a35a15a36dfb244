"""arms-testserver as a real subprocess: CLI, SQLite state, serving an agent, legacy TLS switch."""

import json
import select
import os
import signal
import socket
import ssl
import subprocess
import sys

import pytest

from conftest_pull import DIST, FAST, LS_KEY, Recorder, new_server, pull_pki, replay_over_tls  # noqa: F401
from libarms import Agent, State
from _vectors import VECTORS_DIR  # noqa: E402



def run_cli(state, cmd, *args):
    """The editing subcommands, in this process (the server itself runs as a subprocess)."""
    import contextlib
    import io
    from libarms.testserver.cli import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main([cmd, "--state-dir", str(state), *args])
    assert rc == 0
    return out.getvalue()


def wait_ready(proc, timeout=30.0):
    """The server prints one JSON line once it listens: wait for it (bounded)."""
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "server did not come up"
    line = proc.stdout.readline()
    assert line, proc.stderr.read()
    return json.loads(line)


def test_cli_serves_a_device_it_registered_and_records_the_requests(tmp_path, pull_pki):
    state = tmp_path / "ts"
    os.makedirs(state)
    import shutil
    shutil.copytree(pull_pki, state / "pki")
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen([sys.executable, "-m", "libarms.testserver", "serve", "--state-dir", str(state),
                             "--ready-file", str(ready)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = wait_ready(proc)
        assert json.loads(ready.read_text()) == info
        run_cli(state, "add-device", DIST.lower(), "--ls-key", LS_KEY, "--rs-key", "rs-key-1")
        cfg = tmp_path / "cfg.txt"
        cfg.write_text("hostname cli\n")
        run_cli(state, "set-service", DIST, "--module", f"7:2.0:mod-seven={cfg}",
                "--heartbeat", "127.0.0.1:16000:hb-pass:2")
        run_cli(state, "set-location", DIST, "--line", "dhcp:3")
        ic = run_cli(state, "initial-config")
        cb = Recorder()
        a = Agent(DIST, cb, **FAST)
        a.load_config(ic)
        a.register_cert(open(info["ca"]).read())
        a.register_authkey(LS_KEY)
        a.pull()
        assert a.state == State.PULLDONE and a.ctx.rs_key == "rs-key-1"
        assert cb.configs[0][:5] == (7, "2.0", "mod-seven", "PULL_STORE_CONFIG", b"hostname cli\n")
        assert ("line", "CONNECT", "DHCP", 3, "CONNECTED") in cb.events
        assert a.ctx.heartbeat[0].port == 16000
        out = run_cli(state, "requests")
        assert "rs-solicitation" in out and "config-solicitation" in out and DIST in out
        shown = json.loads(run_cli(state, "show"))
        assert shown[0]["distribution_id"] == DIST          # stored upper case
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_cli_refuses_a_bad_distribution_id(tmp_path):
    r = subprocess.run([sys.executable, "-m", "libarms.testserver", "add-device", "--state-dir",
                        str(tmp_path), "12-34", "--ls-key", "k"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "distribution id" in r.stderr


def _tls10_handshake(port):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE      # this client only probes the protocol version
    ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        with ctx.wrap_socket(s) as t:
            return t.version()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated")
@pytest.mark.parametrize("legacy", [False, True])
def test_tls_1_0_is_accepted_only_behind_the_legacy_switch(tmp_path, pull_pki, legacy):
    s = new_server(tmp_path / "srv", pull_pki, legacy_tls=legacy).start()
    try:
        s.add_device(DIST, LS_KEY)                 # our agent (TLS 1.2+) is served either way
        a = Agent(DIST, **FAST)
        a.load_config(s.initial_config())
        a.register_cert(s.ca_pem)
        a.register_authkey(LS_KEY)
        a.pull()
        assert a.state == State.PULLDONE
        if legacy:
            try:
                assert _tls10_handshake(s.ls_port) == "TLSv1"
            except ssl.SSLError as e:                     # this OpenSSL build has no TLS 1.0 at all
                pytest.skip(f"local OpenSSL cannot speak TLS 1.0: {e}")
        else:
            with pytest.raises((ssl.SSLError, ConnectionResetError)):
                _tls10_handshake(s.ls_port)
            s.wait_until(lambda: bool(s.handshake_failures))     # noted by the server thread
            assert s.handshake_failures[0][0] == "ls"
    finally:
        s.stop()


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1 is deprecated")
def test_legacy_server_answers_the_captured_libarms_requests_over_tls_1_0(tmp_path, pull_pki):
    import pathlib
    from libarms.protocol import (parse_config_solicitation_response,
                                  parse_rs_solicitation_response)
    v = pathlib.Path(VECTORS_DIR)
    p = json.loads((v / "parameters.json").read_text())
    s = new_server(tmp_path / "srv", pull_pki, legacy_tls=True).start()
    try:
        s.add_device(p["distribution_id"], p["ls_sa_key"], rs_key=p["rs_preshared_key"],
                     service={"modules": [{"id": 1001, "version": "1.0.0", "info": "m", "config": "x\n"}]})
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False                    # as libarms: chain only
        ctx.load_verify_locations(s.ca_path)
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1
        ctx.set_ciphers("DEFAULT:@SECLEVEL=0")

        def exchange(port, raw):
            return replay_over_tls("127.0.0.1", port, ctx, raw, require_version="TLSv1")
        try:
            ls = exchange(s.ls_port, (v / "tunnel/01-ls-pull-request.http").read_bytes())
        except ssl.SSLError as e:
            pytest.skip(f"local OpenSSL cannot speak TLS 1.0: {e}")
        r = parse_rs_solicitation_response(ls.body)
        assert r.result_code == 100 and r.rs_urls == (s.rs_url,)
        assert r.rs_preshared_key == p["rs_preshared_key"] and r.lines and r.rs_ca_pem == s.ca_pem
        assert ls.body.startswith(b'<?xml version="1.0" encoding="US-ASCII" ?>\n<arms-message>')
        rs = parse_config_solicitation_response(
            exchange(s.rs_port, (v / "tunnel/03-rs-pull-request.http").read_bytes()).body)
        assert rs.result_code == 100 and rs.sa_certificate and rs.modules[0].id == 1001
        trig = [(x["type"], x["trig"]) for x in s.db.requests(p["distribution_id"])]
        assert trig == [("rs-solicitation", "power on boot"), ("config-solicitation", "power on boot")]
    finally:
        s.stop()
