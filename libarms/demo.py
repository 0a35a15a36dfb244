"""``arms-demo`` (``python -m libarms.demo``): the whole system on this machine, in one command.

1. starts the test server on free loopback ports: LS, RS, ARMS push proxy (https-tunnel),
   REST API and heartbeat receiver, state in a temporary directory;
2. registers a demo device: stage-1 line PPPoE (to reach the LS), stage-2 line DHCP (handed
   out by the LS to reach the RS), one module config, heartbeats every 2 s;
3. starts ``armsd`` against it with small demo hooks, and shows the two-stage provisioning,
   the tunnel coming up and the heartbeats arriving (CPU, memory, disk, traffic of this host);
4. sends an md-command through the REST API, as an operator would, and prints the result;
5. when the B-route bridge is installed: starts a simulated Wi-SUN module and smart meter on a
   pseudo-terminal and the bridge, and reads the meter through the same path
   (REST -> proxy -> tunnel -> armsd -> hook -> bridge -> pty -> meter).

``--once`` runs through and exits 0 (non-zero with the reason if a step fails); otherwise the
demo keeps printing heartbeats until Ctrl-C, then stops everything cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

DEMO_DIST = "0001-0000-1234-0005-0000-0000-0000-002A"
DEMO_LS_KEY = "demo-ls-sa-key"
DEMO_TOKEN = "demo-token"
DEMO_PPP = ("demo@isp.example", "demo-ppp-secret")
DEMO_CONFIG = "hostname demo-gateway\ninterface lan0 address 192.0.2.1/24\n"
HB_INTERVAL = 2
#: Runs broute-bridge's main() (also when its console script is not on PATH).
BRIDGE_MAIN = "import sys; from bridge.service import main; sys.exit(main(sys.argv[1:]))"


def say(msg: str) -> None:
    print(f"[demo]  {msg}", flush=True)


class DemoError(Exception):
    pass


# -- hooks armsd runs (a real gateway would configure its services here) ---------------------

HOOKS = {
    "line": """#!/bin/sh
# script-line-ctrl <connect|disconnect|status> <type> <ifindex> [id password ...]
# A gateway brings its uplink up or down here; the demo's lines are always there.
case "$1" in
  connect|status) exit 129 ;;   # CONNECTED
  disconnect) exit 130 ;;       # DISCONNECTED
esac
exit 1
""",
    "start": """#!/bin/sh
# script-start <id> <version> <info> <configfile>: apply a pulled module config.
mkdir -p "$DEMO_DIR/device"
cp "$4" "$DEMO_DIR/device/module-$1.conf"
""",
    "reconfig": """#!/bin/sh
# script-reconfig <id> <version> <info> <file>: apply a pushed (or rolled back) config.
mkdir -p "$DEMO_DIR/device"
cp "$4" "$DEMO_DIR/device/module-$1.conf"
""",
    "command": """#!/bin/sh
# script-command <id> <requestfile> <resultfile>: an md-command from the operator.
cmd=$(cat "$2")
case "$cmd" in
  "show status")
    { echo "distribution id: $ARMS_DISTRIBUTION_ID"
      echo "uptime: $(cut -d' ' -f1 /proc/uptime) s"
      echo "load: $(cut -d' ' -f1-3 /proc/loadavg)"
      echo "module $1 config: $(head -n1 "$DEMO_DIR/device/module-$1.conf" 2>/dev/null)"
    } > "$3" ;;
  meter*)
    if [ -n "$DEMO_BRIDGE_CONF" ]; then
      "$DEMO_PYTHON" -c "$DEMO_BRIDGE_MAIN" -c "$DEMO_BRIDGE_CONF" --query "$cmd" > "$3" || exit 3
    else
      echo "no meter on this gateway" > "$3"; exit 3
    fi ;;
  *) echo "unknown command: $cmd" > "$3"; exit 3 ;;
esac
""",
}


# -- the pieces ------------------------------------------------------------------------------

class Demo:
    def __init__(self, state_dir: str, verbose: bool):
        self.dir = state_dir
        self.verbose = verbose
        self.server = None
        self.rx = None
        self.rest_url = ""
        self.armsd: subprocess.Popen | None = None
        self.armsd_lines: list = []
        self._cv = threading.Condition()
        self.sim = None
        self.bridge: subprocess.Popen | None = None
        self.bridge_conf = ""

    # test server ----------------------------------------------------------------------------
    def start_server(self) -> None:
        try:
            from .testserver.heartbeat import HeartbeatReceiver
            from .testserver.pushservice import PushService
            from .testserver.server import TestServer
        except ImportError as e:
            raise DemoError(f"the test server is incomplete in this checkout ({e})") from None
        sd = os.path.join(self.dir, "server")
        self.server = TestServer(sd).start()
        self.server.add_component(PushService(sd, token=DEMO_TOKEN, methods=("https-tunnel",),
                                              echo_interval=30, push_timeout=60))
        self.rx = HeartbeatReceiver()
        self.server.add_component(self.rx)
        with open(os.path.join(sd, "push-service.json")) as f:
            self.rest_url = json.load(f)["rest_url"]
        say(f"test server up: LS {self.server.ls_url}  RS {self.server.rs_url}")
        say(f"                REST API {self.rest_url}  heartbeat udp/{self.rx.port}")

    def register_device(self) -> None:
        self.server.add_device(
            DEMO_DIST, DEMO_LS_KEY, description="demo gateway",
            location={"lines": [{"type": "dhcp", "ifindex": 2}], "rs_retry_max": 1,
                      "rs_retry_interval": 2},
            service={"modules": [{"id": 1001, "version": "1.0.0", "info": "demo-module",
                                  "config": DEMO_CONFIG}],
                     "heartbeat": [{"host": "127.0.0.1", "port": self.rx.port,
                                    "passphrase": "demo-heartbeat-passphrase",
                                    "interval": HB_INTERVAL}]})
        say(f"device {DEMO_DIST} registered: stage-1 line PPPoE (ifindex 1), stage-2 line "
            f"DHCP (ifindex 2), module 1001, heartbeat every {HB_INTERVAL} s")

    # simulated meter + bridge (optional) -----------------------------------------------------
    def start_meter(self) -> bool:
        try:
            from bridge.sim import MeterConfig, Simulator
        except ImportError:
            say("(B-route bridge not installed: no meter in this demo)")
            return False
        meter = MeterConfig()
        link = os.path.join(self.dir, "wisun0")
        self.sim = Simulator("bp35a1", path=link, meter=meter, time_scale=0.0).start()
        bdir = os.path.join(self.dir, "bridge")
        os.makedirs(bdir, exist_ok=True)
        self.bridge_conf = os.path.join(bdir, "broute-bridge.conf")
        ctl = os.path.join(bdir, "control.sock")
        with open(self.bridge_conf, "w") as f:
            f.write(f"[serial]\nport = {link}\nfamily = auto\ndrain_time = 0.2\n"
                    f"command_timeout = 5\n\n[broute]\nid = {meter.rbid}\n"
                    f"password = {meter.password}\nretry_gap = 0.5\nmin_request_gap = 0.5\n"
                    "instance_list_wait = 0.5\nbackoff = 1 2 5\n\n"
                    f"[bridge]\nstate_dir = {bdir}\ncontrol_socket = {ctl}\n"
                    "device_id = demo-meter\n\n[poll]\ninterval = 30\nenergy_interval = 300\n")
        os.chmod(self.bridge_conf, 0o600)
        self.bridge = subprocess.Popen([sys.executable, "-c", BRIDGE_MAIN, "-c",
                                        self.bridge_conf], preexec_fn=_die_with_parent,
                                       start_new_session=True, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL,
                                       stderr=None if self.verbose else subprocess.DEVNULL)
        say(f"simulated Wi-SUN module + smart meter on {link}; broute-bridge started "
            f"(pid {self.bridge.pid})")
        return True

    # armsd ----------------------------------------------------------------------------------
    def start_armsd(self) -> None:
        hooks = os.path.join(self.dir, "hooks")
        os.makedirs(hooks, exist_ok=True)
        paths = {}
        for name, text in HOOKS.items():
            paths[name] = os.path.join(hooks, name)
            with open(paths[name], "w") as f:
                f.write(text)
            os.chmod(paths[name], stat.S_IRWXU)
        ic = os.path.join(self.dir, "initial-config")
        with open(ic, "w") as f:
            f.write(self.server.initial_config(retry_interval=1, retry_max=1))
        conf = os.path.join(self.dir, "armsd.conf")
        with open(conf, "w") as f:
            f.write(f"distribution-id: {DEMO_DIST}\nls-sa-key: {DEMO_LS_KEY}\n"
                    f"path-root-ca: {self.server.ca_path}\npath-iconfig: {ic}\n"
                    f"path-work-dir: {self.dir}/armsd\npath-state-cache: {self.dir}/armsd/state\n"
                    f"ls-line0: pppoe 1 {DEMO_PPP[0]} {DEMO_PPP[1]}\n"
                    "hb-traffic-if0: lo\nhb-traffic-if1: eth0\ntimeout: 20\n"
                    f"script-line-ctrl: {paths['line']}\nscript-start: {paths['start']}\n"
                    f"script-reconfig: {paths['reconfig']}\n"
                    f"script-command: {paths['command']}\n")
        env = dict(os.environ, DEMO_DIR=self.dir, DEMO_PYTHON=sys.executable,
                   DEMO_BRIDGE_CONF=self.bridge_conf, DEMO_BRIDGE_MAIN=BRIDGE_MAIN)
        # Own session: a Ctrl-C reaches the demo only, which then stops armsd in order; and
        # armsd gets SIGTERM should the demo die without cleaning up.
        self.armsd = subprocess.Popen([sys.executable, "-m", "libarms.daemon.main", "-f", conf],
                                      stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True, env=env,
                                      start_new_session=True, preexec_fn=_die_with_parent)
        threading.Thread(target=self._follow, daemon=True).start()
        say(f"armsd started (pid {self.armsd.pid}) with {conf}")

    def _follow(self) -> None:
        for raw in self.armsd.stderr:
            line = raw.rstrip("\n")
            with self._cv:
                self.armsd_lines.append(line)
                self._cv.notify_all()
            text = _event_text(line)
            if self.verbose:
                print(f"        {line}", flush=True)
            elif text:
                print(f"[armsd] {text}", flush=True)
        with self._cv:
            self.armsd_lines.append(None)
            self._cv.notify_all()

    def wait_log(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._cv:
            seen = 0
            while True:
                for line in self.armsd_lines[seen:]:
                    if line is None:
                        raise DemoError(f"armsd exited ({self.armsd.wait()}) before "
                                        f"{text!r}")
                    if text in line:
                        return
                seen = len(self.armsd_lines)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DemoError(f"armsd did not get to {text!r} within {timeout:.0f} s")
                self._cv.wait(left)

    # heartbeats and pushes ------------------------------------------------------------------
    def show_heartbeats(self, count: int, timeout: float = 30.0) -> None:
        have = self.rx.counters.get("accepted", 0)
        if not self.rx.wait_for(DEMO_DIST, count=have + count, timeout=timeout):
            raise DemoError("no heartbeat arrived at the receiver")
        say(f"heartbeats received: {self.rx.counters.get('accepted', 0)}; latest: "
            + _metrics_text(self.rx.latest_metrics(DEMO_DIST)))

    def push(self, method: str, **params) -> dict:
        h = {"Authorization": f"Bearer {DEMO_TOKEN}", "Content-Type": "application/json"}
        url = f"{self.rest_url}/user/demo/request/{method}"
        body = json.dumps(dict(code=DEMO_DIST, **params)).encode()
        say(f"operator: REST POST /user/demo/request/{method} {json.dumps(params)}")
        req = urllib.request.Request(url, data=body, headers=h, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            rid = json.load(r)["id"]
        doc = {}
        for _ in range(3):   # each long-poll waits up to 30 s
            req = urllib.request.Request(f"{url}/{rid}?wait=30", headers=h)
            with urllib.request.urlopen(req, timeout=40) as r:
                doc = json.load(r)
            if doc.get("status") in ("done", "error"):
                break
        if doc.get("status") != "done":
            raise DemoError(f"{method} request {rid} did not finish: {doc.get('error') or doc}")
        say(f"result: request {rid} {doc['status']}, result code {doc['resultCode']} "
            f"(via {doc.get('via', '?')})")
        for r in doc.get("results") or []:
            for ln in str(r.get("data", "")).rstrip("\n").splitlines():
                say(f"   module {r.get('module')} | {ln}")
        return doc

    # shutdown -------------------------------------------------------------------------------
    def stop(self) -> int:
        rc = 0
        if self.armsd is not None and self.armsd.poll() is None:
            self.armsd.send_signal(signal.SIGTERM)
            try:
                rc = self.armsd.wait(60)
            except subprocess.TimeoutExpired:
                self.armsd.kill()
                rc = self.armsd.wait()
            say(f"armsd stopped (exit {rc}: tunnel closed, heartbeats stopped, state saved)")
        if self.bridge is not None and self.bridge.poll() is None:
            self.bridge.send_signal(signal.SIGTERM)
            try:
                self.bridge.wait(30)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait()
        if self.sim is not None:
            self.sim.stop()
        if self.server is not None:
            self.server.stop()
            say("test server stopped")
        return rc


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM when the demo process goes away (Linux prctl)."""
    try:
        import ctypes
        ctypes.CDLL(None).prctl(1, int(signal.SIGTERM))   # PR_SET_PDEATHSIG
    except Exception:
        pass


def _sigterm_as_interrupt(signum, frame):
    raise KeyboardInterrupt


_EVENTS = (
    ("Pull from LS", "stage 1: asking the Location Server (LS) where my RS is"),
    ("LS Access Done", "LS answered: RS address, RS key and the stage-2 line"),
    ("Skip LS access", "state cache says where my RS is: skipping the LS"),
    ("Connecting to RS", "stage 2: asking the Registration Server (RS) for my config"),
    ("RS Access Done", "RS answered: module configs, certificate, heartbeat servers"),
    ("config version", None), ("state saved to", "state cache saved (LS-skip on restart)"),
    ("tunnel[0] connected", "https-tunnel to the ARMS proxy connected"),
    ("ready to push", "tunnel confirmed: the server can push to this device now"),
    ("heartbeat started:", None), ("SIGTERM received", "SIGTERM: stopping cleanly"),
    ("stopped by", None),
)


def _event_text(line: str):
    """A short, person-readable form of the armsd log lines worth showing, else None."""
    msg = line.split("] ", 2)[-1] if "] " in line else line
    msg = msg.split(" state=")[0].split(" dist=")[0]
    if " WARNING " in line or " ERROR " in line:
        return msg
    if msg.startswith("state ") and "->" in msg:
        return msg
    if msg.startswith("line ") and "script-line-ctrl" in msg:
        return msg
    if "hook script-" in msg and ": exit" in msg:
        return msg
    for key, text in _EVENTS:
        if key in msg:
            return text or msg.split("] ", 1)[-1]
    return None


def _metrics_text(m: dict) -> str:
    parts = []
    cpu = m.get("cpu_usage/0")
    if cpu:
        parts.append(f"cpu {cpu.get('utilization')}%")
    mem = m.get("mem_usage/0")
    if mem:
        parts.append(f"memory {mem.get('used', 0) / 2**20:.0f} MiB used, "
                     f"{mem.get('free', mem.get('available', 0)) / 2**20:.0f} MiB free")
    disk = m.get("disk_usage/0")
    if disk:
        parts.append(f"disk / {disk.get('used', 0) / 2**30:.1f} GiB used")
    lo = m.get("traffic_rate/0")
    if lo:
        parts.append(f"lo in {lo.get('in_octet', lo.get('in_octets', '?'))} B/s")
    return ", ".join(parts) or "(no metrics yet)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="arms-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--once", action="store_true",
                   help="run through every step and exit 0 (non-zero if a step fails)")
    p.add_argument("--state-dir", help="keep everything here (default: a temp dir, removed)")
    p.add_argument("-v", "--verbose", action="store_true", help="print every armsd log line")
    args = p.parse_args(argv)
    state_dir = os.path.abspath(args.state_dir or tempfile.mkdtemp(prefix="arms-demo-"))
    os.makedirs(state_dir, exist_ok=True)
    demo = Demo(state_dir, args.verbose)
    signal.signal(signal.SIGTERM, _sigterm_as_interrupt)    # stop like Ctrl-C
    rc = 0
    try:
        demo.start_server()
        demo.register_device()
        meter = demo.start_meter()
        demo.start_armsd()
        demo.wait_log("-> PUSH_WAIT", 120)
        demo.show_heartbeats(2)
        demo.push("md-command", module=1001, command="show status")
        if meter:
            demo.push("md-command", module=1, command="meter get E7 E8")
        demo.show_heartbeats(1)
        if args.once:
            say("all steps done")
        else:
            say("running: heartbeats every %d s; Ctrl-C stops everything" % HB_INTERVAL)
            for _ in range(10 ** 9):
                demo.show_heartbeats(3, timeout=HB_INTERVAL * 10 + 30)
    except KeyboardInterrupt:
        print(flush=True)
        say("Ctrl-C: stopping")
    except (DemoError, OSError) as e:
        say(f"FAILED: {e}")
        rc = 1
    finally:
        try:
            armsd_rc = demo.stop()
        except KeyboardInterrupt:     # a second Ctrl-C: leave now, the children get SIGTERM
            armsd_rc = 1
        if rc == 0 and armsd_rc not in (0, None):
            rc = 1
        if not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)
    return rc


if __name__ == "__main__":
    sys.exit(main())
