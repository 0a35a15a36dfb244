"""armsd as a real subprocess against the test server: two-stage provisioning, module files and
hooks, the state cache and the LS skip on restart."""

import os
import signal

import pytest

pytest.importorskip("libarms.agent", reason="needs the Agent (pull branch) merged")
pytest.importorskip("libarms.testserver.server", reason="needs the test server merged")

from conftest_daemon import DISTID, Armsd, hooks, write_conf  # noqa: E402,F401

from libarms.testserver.server import TestServer as ArmsTestServer  # noqa: E402

LS_KEY = "ls-key-for-armsd-tests"
MODULES = [{"id": 1001, "version": "1.0.0", "info": "module-1001-location",
            "config": "hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n"},
           {"id": 7, "version": "3", "info": "seven", "config": "x=1\n"}]


@pytest.fixture
def server(tmp_path):
    srv = ArmsTestServer(str(tmp_path / "server")).start()
    try:
        srv.add_device(DISTID, LS_KEY, service={"modules": MODULES})
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def conf(tmp_path, server, hooks):
    ic = tmp_path / "initial-config"
    ic.write_text(server.initial_config(retry_interval=1, retry_max=1))
    return write_conf(
        tmp_path / "armsd.conf", distribution_id=DISTID, ls_sa_key=LS_KEY,
        path_root_ca=server.ca_path, path_iconfig=str(ic), path_work_dir=str(tmp_path / "work"),
        path_state_cache=str(tmp_path / "state"),
        script_start=hooks.make("start", 'cp "$4" "$(dirname "$0")/applied-$1"'),
        script_line_ctrl=hooks.make("line", 'case "$1" in connect|status) exit 129;; '
                                            '*) exit 130;; esac'),
        script_state_changed=hooks.make("state"), script_post_pull=hooks.make("post-pull"),
        script_stop=hooks.make("stop"), script_reboot=hooks.make("reboot"))


def test_armsd_provisions_from_ls_then_rs_and_applies_every_module(conf, hooks, tmp_path):
    d = Armsd(conf)
    try:
        d.wait_for("pull done", 60)
        d.wait_for("state saved", 30)
    finally:
        d.signal(signal.SIGTERM)
        d.wait(60)
        d.stop()
    states = hooks.calls("state")
    assert states[:3] == [f"[INITIAL][LSPULL] env={DISTID}", f"[LSPULL][RSPULL] env={DISTID}",
                          f"[RSPULL][PULLDONE] env={DISTID}"]
    start = hooks.calls("start")
    assert len(start) == 2
    assert start[0].startswith("[1001][1.0.0][module-1001-location][")
    assert start[1].startswith("[7][3][seven][")
    for m in MODULES:
        applied = os.path.join(hooks.dir, f"applied-{m['id']}")
        assert open(applied).read() == m["config"]
        for kind in ("running", "backup", "startup"):
            assert (tmp_path / "work" / f"{kind}-config" / str(m["id"])).read_text() \
                == m["config"]
    assert hooks.calls("post-pull") == [f" env={DISTID}"]
    # the LS phase and the RS phase each bring the line up and down
    assert hooks.calls("line")[:2] == [f"[connect][dhcp][0] env={DISTID}",
                                       f"[disconnect][dhcp][0] env={DISTID}"]
    assert (tmp_path / "state").stat().st_size > 0
    assert LS_KEY not in "\n".join(d.lines)


def test_restart_restores_the_state_and_skips_the_ls(conf, hooks, server):
    first = Armsd(conf)
    try:
        first.wait_for("state saved", 60)
    finally:
        first.signal(signal.SIGTERM)
        first.wait(60)
        first.stop()
    ls_requests = len(server.db.requests(DISTID, "rs-solicitation"))
    second = Armsd(conf)
    try:
        second.wait_for("state restored", 30)
        second.wait_for("pull done", 60)
    finally:
        second.signal(signal.SIGTERM)
        second.wait(60)
        second.stop()
    assert len(server.db.requests(DISTID, "rs-solicitation")) == ls_requests
    assert "[RSPULL][PULLDONE]" in "\n".join(hooks.calls("state"))


def test_sigkill_while_a_new_config_is_applied_leaves_the_old_one_then_restart_applies_new(
        conf, hooks, server, tmp_path):
    running = tmp_path / "work" / "running-config" / "1001"
    first = Armsd(conf)
    try:
        first.wait_for("state saved", 60)
    finally:
        first.signal(signal.SIGTERM)
        first.wait(60)
        first.stop()
    old = running.read_bytes()
    new_config = "hostname fake-sa-v2\n" + "x" * 200_000 + "\n"
    server.db.set_service(DISTID, modules=[dict(MODULES[0], version="2.0.0", config=new_config),
                                           MODULES[1]])
    # script-start of module 1001 now waits until the test lets it go (bounded: 20 s)
    release = tmp_path / "release"
    hooks.make("start", f'[ "$1" = 1001 ] && {{ i=0; while [ ! -e "{release}" ] && '
                        f'[ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; }}; exit 0')
    second = Armsd(conf, "-v")
    try:
        second.wait_for("hook script-start: run", 60)
        second.signal(signal.SIGKILL)
        assert second.wait(30) == -signal.SIGKILL
    finally:
        release.touch()
        second.stop()
    assert running.read_bytes() == old               # old, complete
    third = Armsd(conf)
    try:
        third.wait_for("state saved", 60)
    finally:
        third.signal(signal.SIGTERM)
        third.wait(60)
        third.stop()
    assert running.read_text() == new_config          # new, complete
    assert not os.listdir(tmp_path / "work" / "tmp")


def test_line_passwords_reach_the_line_hook_but_never_the_log(conf, hooks, server):
    server.db.set_location(DISTID, lines=[{"type": "pppoe", "ifindex": 3, "account": "u@isp",
                                           "password": "rs-line-secret"}])
    d = Armsd(conf, "-v")                     # debug: every hook command line is logged
    try:
        d.wait_for("pull done", 60)
    finally:
        d.signal(signal.SIGTERM)
        d.wait(60)
        d.stop()
    assert f"[connect][pppoe][3][u@isp][rs-line-secret] env={DISTID}" in hooks.calls("line")
    log = "\n".join(d.lines)
    assert "hook script-line-ctrl: run" in log and "u@isp ***" in log
    assert "rs-line-secret" not in log and LS_KEY not in log
