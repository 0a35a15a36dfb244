"""armsd as a real subprocess while it pulls from an LS that cannot be reached: boot fail exit,
SIGTERM, SIGHUP, pid file, hooks called with their documented arguments."""

import os
import signal

import pytest

pytest.importorskip("libarms.agent", reason="needs the Agent (pull branch) merged")

from conftest_daemon import (DISTID, Armsd, closed_port, hooks, make_root_ca,  # noqa: E402,F401
                             write_conf)


@pytest.fixture
def setup(tmp_path, hooks):
    ca = make_root_ca(tmp_path)

    def conf(retry_interval, retry_max, **more):
        iconfig = tmp_path / "initial-config"
        iconfig.write_text(f"https://127.0.0.1:{closed_port()}/arms.cgi\n\n"
                           f"{retry_interval}\n{retry_max}\n")
        keys = dict(distribution_id=DISTID, ls_sa_key="very-secret-ls-key", path_root_ca=ca,
                    path_iconfig=str(iconfig), path_work_dir=str(tmp_path / "work"),
                    path_state_cache=str(tmp_path / "state"), pull_timeout=600,
                    script_line_ctrl=hooks.make("line", 'case "$1" in connect) exit 129;; '
                                                        '*) exit 130;; esac'),
                    script_reboot=hooks.make("reboot"), script_stop=hooks.make("stop"),
                    script_state_changed=hooks.make("state"))
        keys.update(more)
        return write_conf(tmp_path / "armsd.conf", **keys)
    return conf


def test_unreachable_ls_is_a_boot_fail_exit_5_after_the_reboot_hook(setup, hooks):
    d = Armsd(setup(0, 0))
    try:
        assert d.wait(120) == 5
    finally:
        d.stop()
    assert hooks.calls("line")[:2] == [f"[connect][dhcp][0] env={DISTID}",
                                       f"[disconnect][dhcp][0] env={DISTID}"]
    assert f"[connect][ra][0] env={DISTID}" in hooks.calls("line")
    assert hooks.calls("state")[0] == f"[INITIAL][LSPULL] env={DISTID}"
    assert hooks.calls("state")[-1] == f"[LSPULL][BOOT_FAIL] env={DISTID}"
    assert hooks.calls("reboot") == [f" env={DISTID}"]
    log = "\n".join(d.lines)
    assert "boot fail: EMAXRETRY" in log
    assert "very-secret-ls-key" not in log
    # every log line carries the distribution id and the state
    assert all(f"[{DISTID} " in ln for ln in d.lines if " armsd[" in ln)


def test_sigterm_while_waiting_to_retry_the_ls_stops_cleanly_exit_0(setup, hooks, tmp_path):
    pidfile = tmp_path / "armsd.pid"
    d = Armsd(setup(1, 3), "--pidfile", str(pidfile))     # 20 s between LS rounds
    try:
        d.wait_for("LS retry(1/", 60)
        assert pidfile.read_text() == f"{d.proc.pid}\n"
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.stop()
    assert not pidfile.exists()
    assert hooks.calls("reboot") == [] and hooks.calls("stop") == []
    assert "stopped by SIGTERM" in "\n".join(d.lines)


def test_sighup_reloads_the_config_and_a_bad_file_keeps_the_running_one(setup, tmp_path):
    conf = setup(1, 3)
    d = Armsd(conf)
    try:
        d.wait_for("LS retry(1/", 60)
        with open(conf, "a") as f:
            f.write("timeout: never\n")
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_for("reload failed, keeping the running configuration", 30, start=mark)
        text = open(conf).read().replace("timeout: never\n", "added-after-reload: 1\n")
        with open(conf, "w") as f:
            f.write(text)
        mark = d.mark()
        d.signal(signal.SIGHUP)
        d.wait_for("unknown key 'added-after-reload'", 30, start=mark)
        d.wait_for("configuration reloaded", 30, start=mark)
        assert d.proc.poll() is None
        d.signal(signal.SIGTERM)
        assert d.wait(30) == 0
    finally:
        d.stop()


def test_daemon_mode_detaches_writes_pidfile_and_sigterm_removes_it(setup, tmp_path):
    import select
    import subprocess
    import sys
    pidfile, logfile = tmp_path / "run" / "armsd.pid", tmp_path / "armsd.log"
    r = subprocess.run([sys.executable, "-m", "libarms.daemon.main", "-f", setup(1, 3),
                        "--daemon", "--pidfile", str(pidfile), "-l", str(logfile)],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    pid = int(pidfile.read_text())
    fd = os.pidfd_open(pid)
    try:
        assert os.getsid(pid) != os.getsid(0)     # detached into a session of its own
        # Once started (the parent exited, the pidfile is there), SIGTERM is already handled:
        # an init script stopping it right away still gets the clean exit path.
        with open(f"/proc/{pid}/status") as f:
            caught = int(next(ln for ln in f if ln.startswith("SigCgt:")).split()[1], 16)
        assert caught & (1 << (signal.SIGTERM - 1)), "SIGTERM not handled yet when started"
        os.kill(pid, signal.SIGTERM)
        ready, _, _ = select.select([fd], [], [], 30)
        assert ready, "armsd did not exit after SIGTERM"
    finally:
        if not select.select([fd], [], [], 0)[0]:
            os.kill(pid, signal.SIGKILL)
        os.close(fd)
    assert not pidfile.exists()
    log = logfile.read_text()
    assert "stopped by SIGTERM" in log and f"armsd[{pid}]" in log
