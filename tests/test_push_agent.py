"""The whole chain: Agent.pull() against the test server, Agent.push_method_query(),
Agent.run() in push wait, pushes driven through the REST API, heartbeats on PUSH_WAIT."""

from __future__ import annotations

import socket
import threading

import pytest
import requests

from libarms.callbacks import PingResult
from libarms.errors import Err
from libarms.protocol.heartbeat import parse_packet
from libarms.states import State
from libarms.testserver.pushservice import PushService
from tests.conftest_pull import DIST, Recorder, make_agent, new_server, pull_pki  # noqa: F401
from tests.conftest_push import free_port, wait_for


class Device(Recorder):
    def md_command(self, module_id, command):
        return f"{module_id}:{command.decode()}"

    def ping(self, dst, count, size):
        return PingResult(count - 1, 1)


@pytest.fixture
def udp():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(10)
    yield s
    s.close()


def _server(tmp_path, pki_dir, methods, hb_port):
    srv = new_server(tmp_path / "server", pki_dir).start()
    srv.add_device(DIST, "ls-presharedkey-0123456789", rs_key="rs-presharedkey-abcdef", service={
        "modules": [{"id": 1001, "version": "1.0.0", "info": "m", "config": "hostname sa\n"}],
        "heartbeat": [{"host": "127.0.0.1", "port": hb_port, "passphrase": "hb-pass", "interval": 1}]})
    svc = PushService(str(tmp_path / "server"), token="tok", methods=methods, echo_interval=5,
                      connect_timeout=10, push_timeout=10)
    srv.add_component(svc)
    return srv, svc


@pytest.mark.parametrize("methods", [("https-tunnel",), ("https-simple",)])
def test_agent_pull_then_push_wait_then_rest_driven_pushes(tmp_path, pull_pki, udp, methods):
    srv, svc = _server(tmp_path, pull_pki, methods, udp.getsockname()[1])
    try:
        cb = Device()
        agent = make_agent(srv, cb)
        agent.pull()
        assert agent.push_method_query() == Err.OK
        assert agent.ctx.push_methods == list(methods)
        result = {}
        port = free_port()
        t = threading.Thread(target=lambda: result.setdefault("rc", agent.run(port)), daemon=True)
        t.start()
        wait_for(lambda: agent.state == State.PUSH_WAIT, 15, "PUSH_WAIT")
        # heartbeats start with push wait
        data, _ = udp.recvfrom(2048)
        assert str(parse_packet(data).distribution_id) == DIST
        h = {"Authorization": "Bearer tok"}
        base = f"{svc.rest.url}/user/u/request"
        r = requests.post(f"{base}/md-command", json={"code": DIST, "module": 1001, "command": "show"}, headers=h, timeout=10)
        doc = requests.get(f"{base}/md-command/{r.json()['id']}", params={"wait": 15}, headers=h, timeout=30).json()
        assert doc["status"] == "done" and doc["results"][0]["data"] == "1001:show"
        assert doc["via"] == methods[0].split("-")[1]
        r = requests.post(f"{base}/ping", json={"code": DIST, "address": "192.0.2.1", "count": 3}, headers=h, timeout=10)
        doc = requests.get(f"{base}/ping/{r.json()['id']}", params={"wait": 15}, headers=h, timeout=30).json()
        assert (doc["success"], doc["failure"]) == (2, 1)
        r = requests.post(f"{base}/pull-config", json={"code": DIST, "pullType": "LS"}, headers=h, timeout=10)
        doc = requests.get(f"{base}/pull-config/{r.json()['id']}", params={"wait": 15}, headers=h, timeout=30).json()
        assert doc["resultCode"] == 100
        t.join(15)
        assert result["rc"] == Err.EPULL
        assert agent.state == State.PUSH_REBOOT
        assert agent.ctx.trigger == "Pull requested by RS" and agent.ctx.rs_endpoint == ""
    finally:
        srv.stop()


def test_arms_testserver_serve_and_request_md_command_cli(tmp_path):
    """`arms-testserver serve` (subprocess) + an Agent + `arms-testserver request md-command`."""
    import json
    import subprocess
    import sys
    state = str(tmp_path / "ts")
    cli = [sys.executable, "-m", "libarms.testserver"]
    subprocess.run(cli + ["add-device", "--state-dir", state, DIST, "--ls-key", "lskey", "--rs-key", "rskey"],
                   check=True, capture_output=True, timeout=60)
    cfg = tmp_path / "cfg.txt"
    cfg.write_text("hostname sa\n")
    subprocess.run(cli + ["set-service", "--state-dir", state, DIST, "--module", f"1:1.0:m={cfg}"],
                   check=True, capture_output=True, timeout=60)
    srv = subprocess.Popen(cli + ["serve", "--state-dir", state, "--push-methods", "https-tunnel"],
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        info = json.loads(srv.stdout.readline())
        from libarms import Agent
        from tests.conftest_pull import FAST
        agent = Agent(DIST, Device(), **FAST)
        agent.load_config(f"{info['ls_url']}\n\n1\n1\n")
        agent.register_cert(open(info["ca"]).read())
        agent.register_authkey("lskey")
        agent.pull()
        assert agent.push_method_query() == Err.OK
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("rc", agent.run()), daemon=True)
        t.start()
        wait_for(lambda: agent.state == State.PUSH_WAIT, 15, "PUSH_WAIT")
        out = subprocess.run(cli + ["request", "md-command", "--state-dir", state, "--device", DIST,
                                    "--module", "1", "show status"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "1:show status" in out.stdout
        out = subprocess.run(cli + ["request", "reboot", "--state-dir", state, "--device", DIST],
                             capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        t.join(15)
        assert result["rc"] == Err.EREBOOT
    finally:
        srv.terminate()
        srv.wait(15)
