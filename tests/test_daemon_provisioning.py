"""armsd as a real subprocess against the test server: two-stage provisioning, module files and
hooks, the state cache and the LS skip on restart."""

import os
import signal

import pytest

pytest.importorskip("libarms.agent", reason="needs the Agent (pull branch) merged")
pytest.importorskip("libarms.testserver.server", reason="needs the test server merged")

from conftest_daemon import DISTID, Armsd, hooks, run_until, write_conf  # noqa: E402,F401

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


def test_restart_skips_the_ls_and_sigkill_while_applying_a_new_config_leaves_the_old_one(
        conf, hooks, server, tmp_path):
    running = tmp_path / "work" / "running-config" / "1001"
    run_until(conf, "state saved")
    old = running.read_bytes()
    ls_requests = len(server.db.requests(DISTID, "rs-solicitation"))
    new_config = "hostname fake-sa-v2\n" + "x" * 200_000 + "\n"
    server.db.set_service(DISTID, modules=[dict(MODULES[0], version="2.0.0", config=new_config),
                                           MODULES[1]])
    # script-start of module 1001 now waits until the test lets it go (bounded: 20 s)
    release = tmp_path / "release"
    hooks.make("start", f'[ "$1" = 1001 ] && {{ i=0; while [ ! -e "{release}" ] && '
                        f'[ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; }}; exit 0')
    second = Armsd(conf, "-v")
    try:
        second.wait_for("state restored", 60)           # LS-skip state from the first run
        second.wait_for("hook script-start: run", 60)
        second.signal(signal.SIGKILL)
        assert second.wait(30) == -signal.SIGKILL
    finally:
        release.touch()
        second.stop()
    assert running.read_bytes() == old               # old, complete
    third = run_until(conf, "state saved")
    assert running.read_text() == new_config          # new, complete
    assert not os.listdir(tmp_path / "work" / "tmp")
    assert "Skip LS access" in "\n".join(third.lines)
    assert len(server.db.requests(DISTID, "rs-solicitation")) == ls_requests   # no LS again


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


@pytest.mark.parametrize("result, exit_code, reboot_hook", [(501, 3, False), (503, 4, True)])
def test_ls_stop_results_leave_with_their_exit_codes(conf, hooks, server, result, exit_code,
                                                     reboot_hook):
    server.set_override("/arms.cgi", result=result)
    d = Armsd(conf)
    try:
        assert d.wait(60) == exit_code
    finally:
        d.stop()
    assert bool(hooks.calls("reboot")) == reboot_hook
    assert hooks.calls("start") == []


def test_per_phase_proxies_ls_through_the_proxy_and_rs_direct(conf, server):
    from conftest_pull import ConnectProxy
    proxy = ConnectProxy()
    try:
        with open(conf, "a") as f:
            f.write(f"https-proxy-url-ls: {proxy.url}\nhttps-proxy-url-rs:\n")
        d = Armsd(conf)
        try:
            d.wait_for("pull done", 60)
        finally:
            d.signal(signal.SIGTERM)
            d.wait(60)
            d.stop()
    finally:
        proxy.close()
    ls = f"127.0.0.1:{server.ls_port}"
    assert [r.split(b"\r\n")[0] for r in proxy.requests] == \
        [f"CONNECT {ls} HTTP/1.1".encode()], "\n".join(d.lines)


def test_a_proxy_url_the_agent_cannot_use_is_refused_at_start(conf):
    with open(conf, "a") as f:
        f.write("https-proxy-url-rs: http://proxy.example:8080/\n")
    d = Armsd(conf)
    try:
        assert d.wait(60) == 1
    finally:
        d.stop()
    assert "https-proxy-url-rs" in "\n".join(d.lines)
