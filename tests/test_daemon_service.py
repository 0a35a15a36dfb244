"""The service files: the systemd unit verifies, the busybox/sysv init script starts, reloads
and stops a real armsd."""

import os
import shutil
import stat
import subprocess
import sys

import pytest

from conftest_daemon import DISTID, closed_port, make_root_ca, write_conf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_unit_verifies(tmp_path):
    unit = open(os.path.join(ROOT, "dist", "armsd.service")).read()
    assert "ExecStart=/usr/bin/armsd -f /etc/armsd/armsd.conf" in unit
    assert "RestartPreventExitStatus=1 2 3" in unit
    (tmp_path / "armsd.service").write_text(unit.replace("/usr/bin/armsd", "/bin/true"))
    r = subprocess.run(["systemd-analyze", "verify", str(tmp_path / "armsd.service")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stderr.strip(), r.stderr


@pytest.mark.skipif(shutil.which("start-stop-daemon") is None, reason="no start-stop-daemon")
def test_init_script_starts_reloads_and_stops_armsd(tmp_path):
    pytest.importorskip("libarms.agent", reason="needs the Agent merged")
    ic = tmp_path / "initial-config"
    ic.write_text(f"https://127.0.0.1:{closed_port()}/arms.cgi\n\n1\n3\n")  # LS never answers
    conf = write_conf(tmp_path / "armsd.conf", distribution_id=DISTID,
                      path_root_ca=make_root_ca(tmp_path), path_iconfig=str(ic),
                      path_work_dir=str(tmp_path / "work"),
                      path_state_cache=str(tmp_path / "state"))
    wrapper = tmp_path / "armsd"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m libarms.daemon.main "$@"\n')
    wrapper.chmod(stat.S_IRWXU)
    pidfile, logfile = tmp_path / "run" / "armsd.pid", tmp_path / "armsd.log"
    env = dict(os.environ, DAEMON=str(wrapper), CONF=conf, PIDFILE=str(pidfile),
               STATEDIR=str(tmp_path / "work"), ARGS=f"-l {logfile}")
    script = os.path.join(ROOT, "dist", "armsd.init")

    def init(action):
        return subprocess.run(["sh", script, action], env=env, capture_output=True, text=True,
                              timeout=90)

    r = init("start")
    assert r.returncode == 0 and "OK" in r.stdout, r.stdout + r.stderr
    pid = int(pidfile.read_text())
    try:
        assert "is running" in init("status").stdout
        assert "OK" in init("reload").stdout
        r = init("stop")
        assert r.returncode == 0 and "OK" in r.stdout
        assert not pidfile.exists()
        assert "is not running" in init("status").stdout
    finally:
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    log = logfile.read_text()
    assert "sighup received" in log and "stopped by SIGTERM" in log
