"""Fixtures for the testserver tests: ``arms-testserver serve`` as a real subprocess (one per
test module), an authenticated session on its REST port, and a real Agent it provisioned, in
push wait over the tunnel, sending heartbeats to the default receiver."""

from __future__ import annotations

import contextlib
import io
import json
import select
import subprocess
import sys
import threading
import time
import secrets

import pytest
import requests

from libarms import Agent
from libarms.errors import Err
from libarms.states import State
from libarms.testserver import cli
from tests.conftest_pull import FAST, Recorder
from tests.conftest_push import free_port

DIST = "0001-0000-1234-0005-0000-0000-0000-7E57"
OTHER = "0001-0000-1234-0005-0000-0000-0000-0BAD"
LS_KEY = "ts-ls-key-0123456789"
TOKEN = "dash-" + secrets.token_hex(8)
BRIDGE_TOKEN = "bridge-" + secrets.token_hex(8)
TIMEOUT = 20.0


def _cli(state: str, *args: str) -> str:
    """The config sub-commands, in-process (they edit the served SQLite file, as they would
    from another process; only ``serve`` needs to be a real subprocess here)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert cli.main([*args, "--state-dir", state]) == 0
    return out.getvalue()


class Served:
    """The running process, its ready line and an authenticated HTTP session."""

    def __init__(self, state: str, proc: subprocess.Popen, info: dict, log_path: str):
        self.state, self.proc, self.info, self.log_path = state, proc, info, log_path
        self.base = info["rest_url"]
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"

    def get(self, path: str, **kw) -> dict:
        r = self.http.get(self.base + path, timeout=TIMEOUT, **kw)
        assert r.status_code == 200, (path, r.status_code, r.text)
        return r.json()

    def device(self, code: str = DIST) -> dict:
        return self.get(f"/user/test/device/{code}")

    def wait_until(self, what: str, fn, timeout: float = TIMEOUT):
        """Poll the dashboard JSON (another process's state) until ``fn()`` is truthy."""
        end = time.monotonic() + timeout
        while True:
            got = fn()
            if got:
                return got
            if time.monotonic() > end:
                raise AssertionError(f"timed out waiting for {what}")
            select.select([], [], [], 0.1)


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("testserver-serve")
    state, log_path = str(d / "state"), str(d / "serve.log")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "libarms.testserver", "serve", "--state-dir", state,
             "--heartbeat-interval", "1", "--rest-token", TOKEN, "--collector-token",
             BRIDGE_TOKEN, "--echo-interval", "10"],
            stdout=subprocess.PIPE, stderr=log, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "arms-testserver serve did not print its ready line"
        line = proc.stdout.readline()
        assert line, open(log_path).read()
        s = Served(state, proc, json.loads(line), log_path)
        _cli(state, "add-device", DIST, "--ls-key", LS_KEY, "--description", "dashboard test SA")
        yield s
    finally:
        proc.terminate()
        rc = proc.wait(timeout=30)
    assert rc == 0, open(log_path).read()[-4000:]


@pytest.fixture(scope="module")
def agent_in_push_wait(served):
    """A real Agent provisioned by the served LS/RS, in push wait over the tunnel, sending the
    statistics below in its heartbeats."""

    class Device(Recorder):
        def hb_store_statistics(self, hb):
            hb.set_cpu_usage(0, 42)
            hb.set_mem_usage(0, 65536, 32768)
            hb.set_traffic_rate(1, 2048, 1024, 2, 1, 0, 0)

        def md_command(self, module_id, command):
            return f"module {module_id} ran {command.decode()}"

    agent = Agent(DIST, Device(), **FAST)
    agent.load_config(f"{served.info['ls_url']}\n\n1\n1\n")
    with open(served.info["ca"]) as f:
        agent.register_cert(f.read())
    agent.register_authkey(LS_KEY)
    agent.register_description("dashboard test SA", "1.0")
    agent.pull()
    assert agent.push_method_query() == Err.OK
    done = threading.Event()

    def run():
        try:
            agent.run(free_port())
        finally:
            done.set()
    threading.Thread(target=run, daemon=True, name="dashboard-test-agent").start()
    end = time.monotonic() + TIMEOUT
    while agent.state != State.PUSH_WAIT:
        assert time.monotonic() < end and not done.is_set(), "agent never reached PUSH_WAIT"
        done.wait(0.05)
    yield agent
    agent.stop()
    assert done.wait(15), "the agent's event loop did not stop"
