"""ServeStack (what ``arms-testserver serve`` runs) in-process: the default heartbeat server and
its per-device passphrase, running without a receiver, and a start that cannot listen."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import threading

import pytest
import requests

from libarms.testserver import cli
from libarms.testserver.stack import ServeStack
from tests.conftest_pull import new_server, pull_pki  # noqa: F401

DIST = "0001-0000-1234-0005-0000-0000-0000-5A5A"
DIST2 = "0001-0000-1234-0005-0000-0000-0000-5A5B"


def _stack(state_dir, pki_dir, **kw) -> ServeStack:
    new_server(state_dir, pki_dir)          # copies the session CA (no key generation per test)
    return ServeStack(str(state_dir), rest_token="tok", **kw)


def test_default_heartbeat_passphrase_is_per_device_and_kept_across_restarts(tmp_path, pull_pki):
    state = tmp_path / "ts"
    with _stack(state, pull_pki, heartbeat_interval=5) as s:
        s.server.add_device(DIST, "k1")
        s.server.add_device(DIST2, "k2")
        (e1,) = s.server.heartbeat_entries(DIST)
        (e2,) = s.server.heartbeat_entries(DIST2)
        assert (e1["host"], e1["port"], e1["interval"]) == ("127.0.0.1", s.receiver.port, 5)
        assert e1["passphrase"] != e2["passphrase"] and len(e1["passphrase"]) >= 16
        # the receiver checks the device's datagrams with exactly that passphrase
        assert s.receiver._passphrases(DIST) == [e1["passphrase"]]
        assert s.receiver._passphrases("0001-0000-0000-0000-0000-0000-0000-0001") == []
    with ServeStack(str(state), rest_token="tok") as s:
        assert s.server.heartbeat_entries(DIST)[0]["passphrase"] == e1["passphrase"]
        # an operator's own server: announced as given, and no default passphrase is accepted
        s.server.db.set_service(DIST, heartbeat=[{"host": "192.0.2.1", "port": 9, "interval": 60,
                                                  "passphrase": "operator-pass"}])
        assert [h["passphrase"] for h in s.server.heartbeat_entries(DIST)] == ["operator-pass"]
        assert s.receiver._passphrases(DIST) == ["operator-pass"]


def test_without_a_receiver_devices_are_told_no_heartbeat_server(tmp_path, pull_pki):
    with _stack(tmp_path / "ts", pull_pki, heartbeat=False) as s:
        s.server.add_device(DIST, "k1")
        assert "heartbeat" not in s.info and s.receiver is None
        assert s.server.heartbeat_entries(DIST) == []
        r = requests.get(s.info["rest_url"] + "/server/status", timeout=10,
                         headers={"Authorization": "Bearer tok"})
        assert r.json()["heartbeat"] is None
        dev = requests.get(f"{s.info['rest_url']}/user/u/device/{DIST}", timeout=10,
                           headers={"Authorization": "Bearer tok"}).json()
        assert dev["heartbeatServers"] == [] and dev["heartbeat"] is None


def _names() -> set:
    return {t.name for t in threading.enumerate() if t.is_alive()}


def test_a_start_that_cannot_listen_raises_and_leaves_nothing_running(tmp_path, pull_pki):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    before = _names()
    try:
        s = _stack(tmp_path / "ts", pull_pki, rest_port=busy.getsockname()[1])
        with pytest.raises(OSError):
            s.start()
        assert not s.server.running
        left = _names() - before
        assert not {n for n in left if n.startswith(("testserver-", "push-service"))}, left
    finally:
        busy.close()


@pytest.mark.parametrize("interval", ["0", "-5", "100000"])
def test_serve_refuses_a_heartbeat_interval_out_of_range(tmp_path, interval, capsys):
    rc = cli.main(["serve", "--state-dir", str(tmp_path / "ts"), "--heartbeat-interval", interval])
    assert rc == 2
    assert "heartbeat interval" in capsys.readouterr().err


def test_set_service_heartbeat_options_edit_the_service_document(tmp_path):
    state = str(tmp_path / "ts")

    def run(*args):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            assert cli.main([*args, "--state-dir", state]) == 0
        return out.getvalue()
    run("add-device", DIST, "--ls-key", "k")

    def heartbeat():
        (dev,) = json.loads(run("show"))
        return dev["service"]["heartbeat"]
    assert heartbeat() is None
    run("set-service", DIST, "--heartbeat", "192.0.2.1:16000:pw:30")
    assert heartbeat() == [{"host": "192.0.2.1", "port": 16000, "passphrase": "pw", "interval": 30}]
    run("set-service", DIST, "--no-heartbeat")
    assert heartbeat() == []
    run("set-service", DIST, "--default-heartbeat")
    assert heartbeat() is None
    with pytest.raises(SystemExit):
        with contextlib.redirect_stderr(io.StringIO()):
            cli.main(["set-service", DIST, "--no-heartbeat", "--default-heartbeat",
                      "--state-dir", state])


def test_stop_with_a_device_in_push_wait_and_an_open_dashboard_session_ends_everything(
        tmp_path, pull_pki):
    from libarms import Agent
    from libarms.errors import Err
    from libarms.states import State
    from tests.conftest_pull import FAST, Recorder
    from tests.conftest_push import free_port, wait_for

    before = _names()
    s = _stack(tmp_path / "ts", pull_pki, heartbeat_interval=1)
    s.start()
    agent = Agent(DIST, Recorder(), **FAST)
    done = threading.Event()
    try:
        s.server.add_device(DIST, "ls-key")
        agent.load_config(s.server.initial_config())
        agent.register_cert(s.server.ca_pem)
        agent.register_authkey("ls-key")
        agent.pull()
        assert agent.push_method_query() == Err.OK

        def run():
            try:
                agent.run(free_port())
            finally:
                done.set()
        threading.Thread(target=run, daemon=True).start()
        wait_for(lambda: agent.state == State.PUSH_WAIT, 20, "PUSH_WAIT")
        assert s.receiver.wait_for(DIST, 1, timeout=10)
        http = requests.Session()            # a keep-alive dashboard connection stays open
        http.headers["Authorization"] = "Bearer tok"
        dev = http.get(f"{s.info['rest_url']}/user/u/device/{DIST}", timeout=10).json()
        assert dev["push"]["tunnels"] == 1 and dev["heartbeat"]["packets"] >= 1
        stopper = threading.Thread(target=s.stop)
        stopper.start()
        stopper.join(30)
        assert not stopper.is_alive(), "stop() hung with a tunnel and a client connected"
        left = {n for n in _names() - before if n.startswith(("testserver-", "push-service"))}
        assert not left, left
        with pytest.raises(requests.ConnectionError):
            http.get(f"{s.info['rest_url']}/server/status", timeout=10)
    finally:
        agent.stop()
        assert done.wait(20)
        s.stop()


def test_dashboard_command_without_a_server_says_where_it_looked(tmp_path, capsys):
    assert cli.main(["dashboard", "--state-dir", str(tmp_path / "none")]) == 1
    err = capsys.readouterr().err
    assert "push-service.json" in err and "no running server" in err


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no ::1 on this machine")
def test_on_ipv6_loopback_every_url_is_usable(tmp_path, pull_pki):
    with _stack(tmp_path / "ts", pull_pki, host="::1") as s:
        assert s.info["rest_url"].startswith("http://[::1]:")
        page = requests.get(s.info["dashboard_url"], timeout=10)
        assert page.status_code == 200
        r = requests.get(s.info["rest_url"] + "/server/status", timeout=10,
                         headers={"Authorization": "Bearer tok"})
        assert r.json()["heartbeat"]["address"] == s.info["heartbeat"]
        assert s.info["heartbeat"].startswith("::1:")
