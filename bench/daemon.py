"""armsd footprint: launch -> PUSH_WAIT, then 30 s in PUSH_WAIT with a heartbeat every second.

Starts the test server in this process (LS, RS, push proxy with https-tunnel, heartbeat
receiver) and armsd as a subprocess. Reports, from /proc:

* launch -> PUSH_WAIT (ms): from ``Popen`` to armsd's log line entering PUSH_WAIT, and the CPU
  time armsd used until then (``launch_cpu_ms``: less sensitive to the machine's load);
* peak RSS (VmHWM) and steady RSS (VmRSS at the end of the window), KiB;
* CPU % of one core over the window (utime + stime of all threads);
* wake-ups per second: voluntary + involuntary context switches of all threads;
* heartbeats received during the window.

Usage: ``python bench/daemon.py [--seconds 30] [--runs 3]``. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from libarms.testserver.heartbeat import HeartbeatReceiver  # noqa: E402
from libarms.testserver.pushservice import PushService  # noqa: E402
from libarms.testserver.server import TestServer  # noqa: E402

DISTID = "0001-0000-0000-0000-0000-0000-0000-BE00"
LS_KEY = "bench-ls-key"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status(pid: int) -> dict:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def cpu_ticks(pid: int) -> int:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])          # utime + stime (all threads)


def ctx_switches(pid: int) -> int:
    total = 0
    for path in glob.glob(f"/proc/{pid}/task/*/status"):
        try:
            st = proc_status_path(path)
        except OSError:
            continue
        total += int(st.get("voluntary_ctxt_switches", 0)) + \
            int(st.get("nonvoluntary_ctxt_switches", 0))
    return total


def proc_status_path(path: str) -> dict:
    out = {}
    with open(path) as f:
        for line in f:
            k, _, v = line.partition(":")
            out[k] = v.strip()
    return out


def kib(v: str) -> int:
    return int(v.split()[0])


def hb_count(rx) -> int:
    return int(rx.counters.get("accepted", 0))


def start_armsd(workdir: str, server: TestServer) -> tuple:
    ic = os.path.join(workdir, "initial-config")
    with open(ic, "w") as f:
        f.write(server.initial_config(retry_interval=1, retry_max=1))
    conf = os.path.join(workdir, "armsd.conf")
    with open(conf, "w") as f:
        f.write(f"distribution-id: {DISTID}\nls-sa-key: {LS_KEY}\n"
                f"path-root-ca: {server.ca_path}\npath-iconfig: {ic}\n"
                f"path-work-dir: {workdir}/work\npath-state-cache: {workdir}/state\n"
                "hb-traffic-if0: lo\n")
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "libarms.daemon.main", "-f", conf],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    lines = []
    reached = threading.Event()
    marks = {}

    def reader():
        for line in proc.stderr:
            lines.append(line)
            now = (time.monotonic() - t0) * 1000.0
            if "armsd version" in line:
                marks.setdefault("started", now)
            if "pull done" in line:
                marks.setdefault("pulled", now)
            if "->" in line and "PUSH_WAIT" in line.split("->", 1)[1]:
                marks.setdefault("push_wait", now)
                reached.set()

    threading.Thread(target=reader, daemon=True).start()
    if not reached.wait(60):
        proc.kill()
        proc.wait()
        raise SystemExit("armsd did not reach PUSH_WAIT in 60 s:\n" + "".join(lines[-30:]))
    ms = (time.monotonic() - t0) * 1000.0
    # CPU the launch cost (user + system, all threads): less sensitive to the machine's load
    # than the wall-clock figure
    marks["cpu_ms"] = cpu_ticks(proc.pid) * 1000.0 / CLK_TCK
    return proc, ms, marks


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=3, help="launches measured for launch->PUSH_WAIT")
    args = ap.parse_args()
    # An installed package has its byte code compiled (pip, Buildroot): so must the tree measured
    # here, or every launch compiles the modules that lack a .pyc (PYTHONDONTWRITEBYTECODE=1 in
    # a CI environment keeps them missing) and the launch figure measures the compiler.
    import compileall
    compileall.compile_dir(os.path.join(os.path.dirname(HERE), "libarms"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="armsd-bench-") as tmp:
        sd = os.path.join(tmp, "server")
        server = TestServer(sd).start()
        server.add_component(PushService(sd, token="bench", methods=("https-tunnel",)))
        rx = HeartbeatReceiver()
        server.add_component(rx)
        try:
            server.add_device(DISTID, LS_KEY, service={
                "modules": [{"id": 1, "version": "1", "info": "bench", "config": "x\n"}],
                "heartbeat": [{"host": "127.0.0.1", "port": rx.port,
                               "passphrase": "bench-pass", "interval": 1}]})
            launches, starts, pulls, cpus = [], [], [], []
            for i in range(max(1, args.runs)):
                wd = os.path.join(tmp, f"run{i}")
                os.makedirs(wd)
                proc, ms, marks = start_armsd(wd, server)
                launches.append(ms)
                starts.append(marks.get("started", 0.0))
                pulls.append(marks.get("pulled", 0.0))
                cpus.append(marks["cpu_ms"])
                print(f"run {i}: launch -> PUSH_WAIT {ms:.1f} ms (interpreter + imports "
                      f"{starts[-1]:.0f} ms, pull done at {pulls[-1]:.0f} ms, CPU used "
                      f"{cpus[-1]:.0f} ms)", flush=True)
                if i < args.runs - 1:
                    stop(proc)
            # the last armsd stays for the steady-state window
            pid = proc.pid
            time.sleep(1.0)                       # let the first heartbeat round settle
            hb0, cpu0, cs0, w0 = hb_count(rx), cpu_ticks(pid), ctx_switches(pid), time.monotonic()
            time.sleep(args.seconds)
            hb1, cpu1, cs1, w1 = hb_count(rx), cpu_ticks(pid), ctx_switches(pid), time.monotonic()
            st = proc_status(pid)
            stop(proc)
        finally:
            server.stop()
    window = w1 - w0
    cpu_pct = (cpu1 - cpu0) / CLK_TCK / window * 100.0
    wakeups = (cs1 - cs0) / window
    launches.sort()
    p99 = launches[min(len(launches) - 1, int(round(0.99 * (len(launches) - 1))))]
    result = {
        "bench": "daemon", "median_ms": round(statistics.median(launches), 1),
        "p99_ms": round(p99, 1), "runs": len(launches),
        "rss_peak_kib": kib(st["VmHWM"]), "rss_steady_kib": kib(st["VmRSS"]),
        "threads": int(st["Threads"]), "cpu_pct": round(cpu_pct, 3),
        "wakeups_per_s": round(wakeups, 2), "heartbeats": hb1 - hb0,
        "window_s": round(window, 1),
        "imports_ms": round(statistics.median(starts), 1),
        "pull_done_ms": round(statistics.median(pulls), 1),
        "launch_cpu_ms": round(statistics.median(cpus), 1),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }
    print(f"launch -> PUSH_WAIT median {result['median_ms']} ms, p99 {result['p99_ms']} ms "
          f"({len(launches)} runs)")
    print(f"RSS peak {result['rss_peak_kib'] / 1024:.1f} MiB, steady "
          f"{result['rss_steady_kib'] / 1024:.1f} MiB, {result['threads']} threads")
    print(f"CPU {cpu_pct:.3f} % of a core, {wakeups:.1f} wake-ups/s, "
          f"{result['heartbeats']} heartbeats in {window:.1f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
