"""armsd as a real subprocess in push wait: tunnel to the test server's proxy, heartbeats to its
receiver, pushes from its REST API answered by the hooks; SIGHUP, SIGTERM, SIGKILL mid-apply,
a hanging hook, a reboot push."""

import json
import os
import signal

import pytest

pytest.importorskip("libarms.agent", reason="needs the Agent merged")
pytest.importorskip("libarms.testserver.pushservice", reason="needs the push service merged")
pytest.importorskip("libarms.testserver.heartbeat", reason="needs the heartbeat receiver merged")

import requests  # noqa: E402
from conftest_daemon import DISTID, Armsd, closed_port, hooks, write_conf  # noqa: E402,F401

from libarms.testserver.heartbeat import HeartbeatReceiver  # noqa: E402
from libarms.testserver.pushservice import PushService  # noqa: E402
from libarms.testserver.server import TestServer as ArmsTestServer  # noqa: E402

LS_KEY = "ls-key-push-tests"
TOKEN = "push-test-token"
OLD = "hostname v1\n"


class Server:
    def __init__(self, state_dir, methods=("https-tunnel",)):
        self.srv = ArmsTestServer(state_dir).start()
        self.push = PushService(state_dir, token=TOKEN, methods=methods,
                                echo_interval=5, push_timeout=20)
        self.srv.add_component(self.push)
        self.rx = HeartbeatReceiver()
        self.srv.add_component(self.rx)
        self.srv.add_device(DISTID, LS_KEY, service={
            "modules": [{"id": 1, "version": "1", "info": "one", "config": OLD}],
            "heartbeat": [{"host": "127.0.0.1", "port": self.rx.port,
                           "passphrase": "hb-pass-push-tests", "interval": 1}]})
        with open(os.path.join(state_dir, "push-service.json")) as f:
            self.rest = json.load(f)["rest_url"]

    def request(self, method: str, **params) -> dict:
        """One push through the REST API; waits (bounded) for its outcome."""
        h = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{self.rest}/user/tests/request/{method}"
        r = requests.post(url, json=dict(code=DISTID, **params), headers=h, timeout=10)
        assert r.status_code == 201, r.text
        rid = r.json()["id"]
        for _ in range(3):
            doc = requests.get(f"{url}/{rid}", params={"wait": 30}, headers=h, timeout=40).json()
            if doc["status"] in ("done", "error"):
                return doc
        raise AssertionError(f"{method} request {rid} did not finish: {doc}")

    def stop(self):
        self.srv.stop()


@pytest.fixture
def server(tmp_path):
    s = Server(str(tmp_path / "server"))
    try:
        yield s
    finally:
        s.stop()


COMMAND = """
req=$(cat "$2")
case "$req" in
  fail) echo "it failed" > "$3"; exit 3;;
  hang) sleep 30;;
  *) echo "ran $req on $1" > "$3";;
esac
"""


@pytest.fixture
def conf(tmp_path, server, hooks):
    ic = tmp_path / "initial-config"
    ic.write_text(server.srv.initial_config(retry_interval=1, retry_max=1))

    def make(**more):
        keys = dict(distribution_id=DISTID, ls_sa_key=LS_KEY, path_root_ca=server.srv.ca_path,
                    path_iconfig=str(ic), path_work_dir=str(tmp_path / "work"),
                    path_state_cache=str(tmp_path / "state"), timeout=2, timeout_kill=1,
                    hb_traffic_if0="lo")
        default_hooks = {"script_command": ("cmd", COMMAND),
                         "script_status": ("status", 'printf "status of %s" "$1" > "$3"'),
                         "script_reconfig": ("reconfig", "exit 0"), "script_stop": ("stop", ""),
                         "script_reboot": ("reboot", "")}
        for key, (name, body) in default_hooks.items():
            if key not in more:
                keys[key] = hooks.make(name, body)
        keys.update(more)
        return write_conf(tmp_path / "armsd.conf", **keys)
    return make


def stop_armsd(d, expect=0):
    d.signal(signal.SIGTERM)
    try:
        assert d.wait(60) == expect
    finally:
        d.stop()


def test_push_wait_over_a_tunnel_with_heartbeats_and_sigterm_stops_cleanly(conf, server, tmp_path):
    # PYTHONPROFILEIMPORTTIME: armsd reports every module it imports on its stderr
    d = Armsd(conf(), env=dict(os.environ, PYTHONPROFILEIMPORTTIME="1"))
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        assert server.rx.wait_for(DISTID, count=2, timeout=30)
        metrics = server.rx.latest_metrics(DISTID)
        assert {"mem_usage/0", "disk_usage/0"} <= set(metrics)      # built-in Linux collector
        assert metrics["mem_usage/0"]["used"] > 0
        mark = d.mark()
    finally:
        stop_armsd(d)
    log = "\n".join(d.lines[mark:])
    assert "stopped by SIGTERM" in log and "heartbeat stopped" in log
    assert "state saved" in log
    assert LS_KEY not in "\n".join(d.lines)
    # the steady path stays light: no requests, no cryptography (RSS budget, issue 5)
    imported = {ln.rsplit("|", 1)[-1].strip() for ln in d.lines if ln.startswith("import time:")}
    assert "ssl" in imported
    assert not {m for m in imported if m.split(".")[0] in ("requests", "cryptography")}


def test_rest_pushes_are_answered_by_the_hooks_and_a_hanging_hook_times_out(conf, server,
                                                                            hooks, tmp_path):
    d = Armsd(conf())
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        ok = server.request("md-command", module=1, command="show version")
        assert ok["resultCode"] == 100
        assert ok["results"][0]["data"] == "ran show version on 1\n"
        (call,) = hooks.calls("cmd")
        assert call.startswith(f"[1][{tmp_path / 'work' / 'tmp'}")
        bad = server.request("md-command", module=1, command="fail")
        assert bad["results"][0]["result"] == 102                 # Command Execute Error
        assert bad["results"][0]["data"] == "it failed\n"
        hung = server.request("md-command", module=1, command="hang")
        assert hung["resultCode"] == 402                          # hook killed: an error
        d.wait_for("hook script-command: timed out", 30)
        again = server.request("md-command", module=1, command="ping")
        assert again["resultCode"] == 100                         # armsd still serves
        st = server.request("read-status", modules=[1])
        assert st["results"][0]["data"] == "status of 1"
        storage = server.request("read-storage", storage="running")
        assert storage["results"][0]["data"] == OLD
        assert d.proc.poll() is None
    finally:
        stop_armsd(d)


def test_sighup_in_push_wait_switches_to_the_reloaded_hooks(conf, server, hooks):
    path = conf()
    d = Armsd(path)
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        assert server.request("md-command", module=1, command="a")["results"][0]["data"] \
            == "ran a on 1\n"
        conf(script_command=hooks.make("cmd2", 'echo "v2 $(cat "$2")" > "$3"'))
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_for("configuration reloaded", 30, start=mark)
        assert server.request("md-command", module=1, command="b")["results"][0]["data"] \
            == "v2 b\n"
    finally:
        stop_armsd(d)


def test_configure_push_commits_through_the_reconfig_hook(conf, server, hooks, tmp_path):
    d = Armsd(conf())
    work = tmp_path / "work"
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        new = "hostname v2\n"
        res = server.request("configure", modules=[{"id": 1, "version": "2", "info": "one-v2"}],
                             configs=[{"id": 1, "data": new}])
        assert res["status"] == "done" and res["resultCode"] == 100, res
        (call,) = hooks.calls("reconfig")
        assert call == f"[1][2][one-v2][{work / 'candidate-config' / '1'}] env={DISTID}"
        assert (work / "running-config" / "1").read_text() == new
        assert (work / "backup-config" / "1").read_text() == OLD
        storage = server.request("read-storage", storage="backup")
        assert storage["results"][0]["data"] == OLD
    finally:
        stop_armsd(d)


def test_failed_reconfig_rolls_back_to_the_old_config(conf, server, hooks, tmp_path):
    d = Armsd(conf(script_reconfig=hooks.make("reconfig", '[ "$2" = 2 ] && exit 1; exit 0')))
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        res = server.request("configure", modules=[{"id": 1, "version": "2", "info": "x"}],
                             configs=[{"id": 1, "data": "broken\n"}])
        assert res["resultCode"] == 414, res                  # SA Rollbacked
        assert (tmp_path / "work" / "running-config" / "1").read_text() == OLD
        assert hooks.calls("reconfig")[-1].startswith("[1][1][one][")
        assert d.proc.poll() is None
    finally:
        stop_armsd(d)


def test_sigkill_during_a_configure_apply_then_restart_keeps_a_whole_config(conf, server,
                                                                            hooks, tmp_path):
    release = tmp_path / "release"
    wait = (f'i=0; while [ ! -e "{release}" ] && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); '
            'done')
    d = Armsd(conf(script_reconfig=hooks.make("reconfig", wait), timeout=30), "-v")
    running = tmp_path / "work" / "running-config" / "1"
    new = "hostname v2\n" + "y" * 30_000 + "\n"     # (the proxy sends one chunk: < 64 KiB)
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        h = {"Authorization": f"Bearer {TOKEN}"}
        r = requests.post(f"{server.rest}/user/tests/request/configure", headers=h, timeout=10,
                          json={"code": DISTID, "modules": [{"id": 1, "version": "2"}],
                                "configs": [{"id": 1, "data": new}]})
        assert r.status_code == 201
        d.wait_for("hook script-reconfig: run", 60)
        d.signal(signal.SIGKILL)
        assert d.wait(30) == -signal.SIGKILL
    finally:
        release.touch()
        d.stop()
    assert running.read_text() in (OLD, new)
    again = Armsd(conf())
    try:
        again.wait_for("-> PUSH_WAIT", 60)
        # the RS still has version 1: the restart pulls it and applies it whole
        assert running.read_text() == OLD
    finally:
        stop_armsd(again)


def test_reboot_push_runs_the_reboot_hook_and_exits_4(conf, server, hooks):
    d = Armsd(conf())
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        server.request("reboot")
        assert d.wait(60) == 4
    finally:
        d.stop()
    assert hooks.calls("reboot") == [f" env={DISTID}"]
    assert hooks.calls("stop") == [f"[1] env={DISTID}"]


def test_pull_config_push_stops_the_modules_and_pulls_again_in_process(conf, server, hooks):
    d = Armsd(conf())
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        mark = d.mark()
        server.request("pull-config", pullType="RS")
        d.wait_for("pull requested: stopping the modules and pulling again", 60, start=mark)
        d.wait_for("-> PUSH_WAIT", 60, start=mark)          # back in push wait, same process
        assert hooks.calls("stop") == [f"[1] env={DISTID}"]
        assert "Skip LS access" in "\n".join(d.lines[mark:])  # RS pull: the LS is skipped
    finally:
        stop_armsd(d)


def test_exit_on_pull_leaves_with_exit_6(conf, server):
    d = Armsd(conf(), "--exit-on-pull")
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        server.request("pull-config", pullType="LS")
        assert d.wait(60) == 6
    finally:
        d.stop()


def test_ping_traceroute_dump_debug_clear_status_and_heartbeat_hooks(conf, server, hooks):
    d = Armsd(conf(
        script_ping=hooks.make("ping", 'echo "$2 packets transmitted, 1 received, 66% loss"'),
        script_traceroute=hooks.make("trace", "echo ' 1 192.0.2.1 0.1 ms'; "
                                              "echo ' 2 198.51.100.7 0.2 ms'"),
        script_debug=hooks.make("debug", 'echo "debug from hook" > "$2"'),
        script_heartbeat=hooks.make("hb", "echo 'cpu_usage 0 42'; echo 'mem_usage 0 1000 2000'"),
        script_clear=hooks.make("clear", 'printf "cleared %s: %s" "$1" "$(cat "$2")" > "$3"'),
        script_status=""))                   # no status hook: the server gets 505
    try:
        d.wait_for("-> PUSH_WAIT", 60)
        ping = server.request("ping", address="127.0.0.1", count=3, size=56)
        assert ping["status"] == "done" and ping["resultCode"] == 100, ping
        assert (ping["success"], ping["failure"]) == (1, 2)
        assert hooks.calls("ping") == [f"[127.0.0.1][3][56] env={DISTID}"]
        trace = server.request("traceroute", address="127.0.0.1", count=2, maxhop=5)
        assert trace["resultCode"] == 100, trace
        assert trace["hops"] == [{"hop": 1, "address": "192.0.2.1"},
                                 {"hop": 2, "address": "198.51.100.7"}]
        assert hooks.calls("trace") == [f"[127.0.0.1][2][5] env={DISTID}"]
        dump = server.request("dump-debug")
        assert dump["resultCode"] == 100, dump
        assert hooks.calls("debug")[0].startswith("[0][")
        assert "debug from hook" in json.dumps(dump)
        clear = server.request("clear-status", modules=[1], parameter="counters")
        assert clear["resultCode"] == 100, clear
        assert hooks.calls("clear")[0].startswith("[1][")
        assert "cleared 1: counters" in json.dumps(clear)
        # script-heartbeat replaces the built-in collector
        have = server.rx.counters.get("accepted", 0)
        assert server.rx.wait_for(DISTID, count=have + 1, timeout=30)
        m = server.rx.latest_metrics(DISTID)
        assert m["cpu_usage/0"]["utilization"] == 42 and m["mem_usage/0"]["used"] == 1000
        assert "disk_usage/0" not in m
        status = server.request("read-status", modules=[1])
        assert 505 in [status["resultCode"]] + [r["result"] for r in status["results"]], status
    finally:
        stop_armsd(d)


def test_https_simple_mode_listens_on_the_configured_push_port(tmp_path, hooks):
    server = Server(str(tmp_path / "server"), methods=("https-simple",))
    try:
        ic = tmp_path / "initial-config"
        ic.write_text(server.srv.initial_config(retry_interval=1, retry_max=1))
        port = closed_port()
        path = write_conf(tmp_path / "armsd.conf", distribution_id=DISTID, ls_sa_key=LS_KEY,
                          path_root_ca=server.srv.ca_path, path_iconfig=str(ic),
                          path_work_dir=str(tmp_path / "work"),
                          path_state_cache=str(tmp_path / "state"),
                          script_command=hooks.make("cmd", COMMAND))
        d = Armsd(path, "-p", str(port))
        try:
            d.wait_for("-> PUSH_WAIT", 60)
            res = server.request("md-command", module=1, command="over simple")
            assert res["via"] == "simple" and res["results"][0]["data"] == "ran over simple on 1\n"
            assert f":{port}" in "\n".join(d.lines)       # the listener is on -p's port
        finally:
            stop_armsd(d)
    finally:
        server.stop()
