"""The demo (scripts/demo.sh runs it) provisions a device and exits 0 with --once."""

import subprocess
import sys


def test_demo_once_runs_the_two_stage_pull_and_exits_zero():
    r = subprocess.run([sys.executable, "-m", "libarms.demo", "--once"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    states = [l.split("state  ")[1] for l in r.stdout.splitlines() if "] state  " in l]
    assert states == ["INITIAL(0) -> LSPULL(1)", "LSPULL(1) -> RSPULL(2)", "RSPULL(2) -> PULLDONE(3)",
                      # then the push phase (libarms/demo_push.py)
                      "PULLDONE(3) -> PUSH_SENDREADY(11)", "PUSH_SENDREADY(11) -> PUSH_WAIT(12)",
                      "PUSH_WAIT(12) -> PUSH_REBOOT(16)"]
    assert "line   connect    PPPOE" in r.stdout and "line   connect    DHCP" in r.stdout
    assert "pull done" in r.stdout
    assert "push md-command  via tunnel: result 100" in r.stdout
    assert "event loop returned EREBOOT" in r.stdout
