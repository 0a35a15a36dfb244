"""The README's main job: ``python -m libarms.demo`` brings the whole system up and down."""

import signal
import subprocess
import sys

import pytest

pytest.importorskip("libarms.agent", reason="needs the Agent merged")
pytest.importorskip("libarms.testserver.pushservice", reason="needs the push service merged")
pytest.importorskip("libarms.testserver.heartbeat", reason="needs the heartbeat receiver merged")

DEMO = [sys.executable, "-m", "libarms.demo"]


def test_demo_once_runs_every_step_and_exits_0():
    r = subprocess.run(DEMO + ["--once"], capture_output=True, text=True, timeout=240)
    out = r.stdout
    assert r.returncode == 0, out + r.stderr
    for step in ("test server up", "LSPULL(1) -> RSPULL(2)", "module 1001: config version",
                 "tunnel confirmed", "-> PUSH_WAIT(12)", "heartbeats received",
                 "REST POST /user/demo/request/md-command", "result code 100",
                 "module 1001 | distribution id: 0001-0000-1234-0005-0000-0000-0000-002A",
                 "all steps done", "armsd stopped (exit 0"):
        assert step in out, f"missing {step!r} in:\n{out}"
    assert "demo-ppp-secret" not in out          # the PPPoE password is never shown
    try:
        import bridge.sim  # noqa: F401
    except ImportError:
        return
    assert '"E7": {"name": "power_w"' in out     # the simulated meter was read


def test_demo_stops_everything_cleanly_on_ctrl_c():
    p = subprocess.Popen(DEMO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    try:
        for line in p.stdout:
            seen.append(line)
            if "Ctrl-C stops everything" in line:
                p.send_signal(signal.SIGINT)
                break
        rest, _ = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    out = "".join(seen) + rest
    assert p.returncode == 0, out
    assert "Ctrl-C: stopping" in out and "armsd stopped (exit 0" in out
    assert "test server stopped" in out
