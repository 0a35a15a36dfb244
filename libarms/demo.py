"""``python -m libarms.demo``: the two-stage pull and the push phase, end to end, on this machine.

Starts the test server (in this process, or as an ``arms-testserver`` subprocess with
``--subprocess``) on free loopback ports with a temporary state directory, registers a demo
device, and runs an :class:`~libarms.Agent` through the LS pull (stage-1 line: PPPoE) and the RS
pull (stage-2 line from the LS answer: DHCP), printing every state change, line switch and
config hand-over; then push wait over the https-tunnel, four pushes started through the REST
API (md-command, read-status, ping, reboot) and the loop's end (libarms/demo_push.py).
``--once`` exits 0 when all that worked (non-zero on failure); without it
the server stays up until Ctrl-C so you can look at it with ``arms-testserver requests``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from . import Agent, Callbacks, Line, LineAction, LineStatus, LineType
from .errors import ArmsError

DEMO_DIST = "0001-0000-1234-0005-0000-0000-0000-002A"
DEMO_LS_KEY = "demo-ls-sa-key"
DEMO_CONFIG = "hostname demo-gateway\ninterface lan0 address 192.0.2.1/24\n"


def say(msg: str) -> None:
    # one write per line: the push loop's thread prints state changes at the same time
    sys.stdout.write(f"[demo] {msg}\n")
    sys.stdout.flush()


class DemoCallbacks(Callbacks):
    """Prints what a real gateway would do; lines come up at once."""

    def line_ctrl(self, action, line):
        st = LineStatus.DISCONNECTED if action == LineAction.DISCONNECT else LineStatus.CONNECTED
        if action != LineAction.STATUS:
            say(f"line   {action.name.lower():10s} {line.type.name} ifindex {line.ifindex} -> {st.name}")
        return st

    def config(self, module_id, version, info, action, data, flags):
        first = data.decode("ascii", "replace").splitlines()[0] if data else ""
        say(f"config {action.name} module {module_id} version {version} ({len(data)} bytes): {first} ...")

    def state(self, old, new):
        say(f"state  {old.name}({int(old)}) -> {new.name}({int(new)})")

    def log(self, code, message):
        if 100 <= code < 200:
            say(f"log    [{code}] {message}")

    # push phase (libarms.demo_push)
    def md_command(self, module_id, command):
        return f"module {module_id}: {command.decode()}: all interfaces up"

    def get_status(self, module_id, request):
        return f"module {module_id}: uptime 42 s"

    def ping(self, dst, count, size):
        from .callbacks import PingResult
        return PingResult(count, 0)


def _start_inprocess(state_dir):
    from .testserver.pushservice import PushService
    from .testserver.server import TestServer
    srv = TestServer(state_dir).start()
    srv.add_component(PushService(state_dir, methods=("https-tunnel",)))
    return srv, {"ls_url": srv.ls_url, "rs_url": srv.rs_url, "ca": srv.ca_path}, srv.stop


def _start_subprocess(state_dir):
    proc = subprocess.Popen([sys.executable, "-m", "libarms.testserver", "serve", "--state-dir", state_dir],
                            stdout=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], 60)
    line = proc.stdout.readline() if ready else ""
    if not line:
        proc.kill()
        raise RuntimeError("arms-testserver did not start")

    def stop():
        proc.terminate()
        proc.wait(timeout=30)
    return None, json.loads(line), stop


def _register(state_dir, srv):
    from .testserver.db import Database
    db = srv.db if srv is not None else Database(os.path.join(state_dir, "testserver.db"))
    db.add_device(DEMO_DIST, DEMO_LS_KEY, description="demo gateway")
    db.set_location(DEMO_DIST, lines=[{"type": "dhcp", "ifindex": 1}], rs_retry_max=1, rs_retry_interval=2)
    db.set_service(DEMO_DIST, modules=[{"id": 1001, "version": "1.0.0", "info": "demo-module",
                                        "config": DEMO_CONFIG}])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="arms-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true", help="exit when the pull is done (0 = success)")
    p.add_argument("--subprocess", action="store_true", help="run arms-testserver as a separate process")
    p.add_argument("--state-dir", help="keep the test server state here (default: a temp dir, removed)")
    p.add_argument("-v", "--verbose", action="store_true", help="also print the library's log lines")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    state_dir = args.state_dir or tempfile.mkdtemp(prefix="arms-demo-")
    srv, info, stop = (_start_subprocess if args.subprocess else _start_inprocess)(state_dir)
    try:
        say(f"test server: LS {info['ls_url']}  RS {info['rs_url']}  CA {info['ca']}")
        _register(state_dir, srv)
        say(f"device {DEMO_DIST} registered (LS-SA key {DEMO_LS_KEY!r})")
        agent = Agent(DEMO_DIST, DemoCallbacks())
        agent.load_config(f"{info['ls_url']}\n\n1\n1\n")
        with open(info["ca"]) as f:
            agent.register_cert(f.read())
        agent.register_authkey(DEMO_LS_KEY)
        agent.register_description("libarms demo", "0.1")
        t0 = time.monotonic()
        try:
            agent.pull(lines=[Line(LineType.ANONPPPOE, 0)])
        except ArmsError as e:
            say(f"pull FAILED: {e}")
            return 1
        ms = (time.monotonic() - t0) * 1000
        c = agent.ctx
        say(f"pull done in {ms:.1f} ms: RS {c.rs_endpoint}, {len(c.modules)} module(s), "
            f"SA certificate {'received' if c.sa_cert_pem else 'missing'}, "
            f"state blob {len(agent.dump_state())} bytes")
        from .demo_push import run_push_demo
        if run_push_demo(agent, DEMO_DIST, state_dir, say) != 0:
            return 1
        if args.once:
            return 0
        say(f"test server keeps running (state in {state_dir}); Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        return 0
    finally:
        stop()
        if not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
