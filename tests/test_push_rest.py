"""REST API -> proxy -> device -> result, persisted in SQLite, across a server crash."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys

import pytest
import requests

from libarms.testserver.pushservice import INFO_FILE, PushService
from tests.conftest_push import DIST, RS_KEY, make_device, pki, wait_for  # noqa: F401


class _Svc:
    """Adapter so make_device can point a device at a PushService's proxy."""

    def __init__(self, svc):
        self.proxy = svc.proxy
        self.keys: dict = {}        # the service's key table is fixed at start (DIST only)


@pytest.fixture
def service(pki, tmp_path):
    svc = PushService(str(tmp_path / "ts"), cert=pki.server_file, ca=pki.ca_file,
                      keys={DIST: RS_KEY}.get, token="secret-token", methods=("https-tunnel",),
                      echo_interval=5, connect_timeout=1.5, push_timeout=10).start()
    yield svc
    svc.stop()


def api(svc, path: str) -> str:
    return f"{svc.rest.url}/user/u1/request/{path}"


H = {"Authorization": "Bearer secret-token"}


def test_md_command_through_rest_reaches_callback_and_result_is_stored(service, make_device):
    make_device(_Svc(service)).start()
    service.call(service.proxy.wait_reachable(DIST, 10), 15)
    r = requests.post(api(service, "md-command"), json={"code": DIST, "commands": {"1/plain": "show status"}},
                      headers=H, timeout=10)
    assert r.status_code == 201
    rid = r.json()["id"]
    doc = requests.get(api(service, f"md-command/{rid}"), params={"wait": 10}, headers=H, timeout=20).json()
    assert doc["status"] == "done" and doc["resultCode"] == 100 and doc["via"] == "tunnel"
    assert doc["results"] == [{"module": 1, "result": 100, "encoding": "plain", "data": "ran show status on 1"}]
    raw = requests.get(api(service, f"md-command/{rid}/result/module/1/plain"), headers=H, timeout=10)
    assert raw.content == b"ran show status on 1"
    listed = requests.get(api(service, "md-command"), headers=H, timeout=10).json()["requests"]
    assert [d["id"] for d in listed] == [rid]


def test_async_methods_through_rest(service, make_device):
    make_device(_Svc(service)).start()
    service.call(service.proxy.wait_reachable(DIST, 10), 15)
    for method, body, check in [
        ("ping", {"address": "192.0.2.1"}, lambda d: (d["success"], d["failure"]) == (5, 0)),
        ("traceroute", {"address": "192.0.2.7"}, lambda d: d["hops"][-1] == {"hop": 2, "address": "192.0.2.7"}),
        ("read-status", {"modules": [1]}, lambda d: d["results"][0]["data"] == "status of 1: "),
        ("read-module-list", {}, lambda d: d["modules"][0]["id"] == 1),
        ("clear-status", {"modules": [1]}, lambda d: d["results"][0]["data"] == "counters cleared"),
        ("read-storage", {"storage": "candidate"}, lambda d: d["results"][0]["data"] == "config 1 candidate"),
        ("dump-debug", {}, lambda d: d["results"][0]["data"] == "debug: all fine"),
        ("check-transaction", {}, lambda d: d["transactions"][0] == 0),
        ("md-command", {"module": 2, "command": base64.b64encode(b"bin").decode(), "base64": True},
         lambda d: d["results"][0]["encoding"] == "base64"),
        ("configure", {"modules": [{"id": 1, "version": "2"}], "configs": [{"id": 1, "data": "hostname r"}]},
         lambda d: d["transactionId"] is not None),
    ]:
        r = requests.post(api(service, method), json=dict(body, code=DIST), headers=H, timeout=10)
        doc = requests.get(api(service, f"{method}/{r.json()['id']}"), params={"wait": 10}, headers=H, timeout=20).json()
        assert doc["status"] == "done" and doc["resultCode"] == 100, doc
        assert check(doc), doc


def test_rest_refuses_missing_token_and_bad_bodies(service):
    assert requests.post(api(service, "md-command"), json={"code": DIST}, timeout=10).status_code == 401
    assert requests.post(api(service, "md-command"), json={"code": DIST}, headers={"Authorization": "Bearer x"},
                         timeout=10).status_code == 401
    assert requests.post(api(service, "format-disk"), json={"code": DIST}, headers=H, timeout=10).status_code == 404
    assert requests.post(api(service, "ping"), json={"code": DIST}, headers=H, timeout=10).status_code == 400
    assert requests.post(api(service, "ping"), data=b"{", headers=H, timeout=10).status_code == 400


def test_request_for_unconnected_device_ends_with_an_error(service):
    r = requests.post(api(service, "reboot"), json={"code": DIST}, headers=H, timeout=10)
    doc = requests.get(api(service, f"reboot/{r.json()['id']}"), params={"wait": 10}, headers=H, timeout=20).json()
    assert doc["status"] == "error" and "not connected" in doc["error"]


def test_server_killed_while_request_pending_reports_error_after_restart(pki, tmp_path):
    state = tmp_path / "ts"
    cmd = [sys.executable, "-m", "libarms.testserver.pushservice", "--state-dir", str(state),
           "--cert", pki.server_file, "--ca", pki.ca_file, "--device", f"{DIST}:{RS_KEY}",
           "--token", "tok", "--connect-timeout", "120"]

    def start():
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = p.stdout.readline()
        assert line, "push service did not start"
        return p, json.loads(line)["rest_url"]

    p, url = start()
    try:
        h = {"Authorization": "Bearer tok"}
        r = requests.post(f"{url}/user/u1/request/md-command", json={"code": DIST, "module": 1, "command": "x"},
                          headers=h, timeout=10)
        rid = r.json()["id"]
        doc = requests.get(f"{url}/user/u1/request/md-command/{rid}", headers=h, timeout=10).json()
        assert doc["status"] in ("pending", "running")
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait(10)
    p, url = start()
    try:
        doc = requests.get(f"{url}/user/u1/request/md-command/{rid}", headers={"Authorization": "Bearer tok"},
                           timeout=10).json()
        assert doc["status"] == "error" and "restarted" in doc["error"]
        info = json.loads((state / INFO_FILE).read_text())
        assert info["rest_url"] == url and oct(os.stat(state / INFO_FILE).st_mode & 0o777) == "0o600"
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(15)


def test_cli_request_md_command_prints_the_result(service, make_device):
    make_device(_Svc(service)).start()
    service.call(service.proxy.wait_reachable(DIST, 10), 15)
    out = subprocess.run([sys.executable, "-m", "libarms.testserver.restcli", "request", "md-command",
                          "--device", DIST, "--module", "1", "show status", "--state-dir", service.state_dir],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "result 100 Success (via tunnel)" in out.stdout and "ran show status on 1" in out.stdout
    out = subprocess.run([sys.executable, "-m", "libarms.testserver.restcli", "request", "reboot",
                          "--device", "0001-0000-0000-0000-0000-0000-0000-0009", "--state-dir", service.state_dir],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "not connected" in out.stderr
