"""armsd footprint: launch -> PUSH_WAIT, then 30 s in PUSH_WAIT with a heartbeat every second.

Starts the test server in this process (LS, RS, push proxy with https-tunnel, heartbeat
receiver) and armsd as a subprocess. Reports, from /proc:

* launch -> PUSH_WAIT (ms): from ``Popen`` to the reading of armsd's log line entering PUSH_WAIT
  (timed by the thread that reads armsd's stderr), and the CPU
  time armsd used until then (``launch_cpu_ms``: less sensitive to the machine's load): the
  first boot (no state file: LS then RS), the headline figure;
* restart -> PUSH_WAIT (``restart_median_ms``): armsd started again on the same directory
  after a SIGTERM, its state file kept (the LS is skipped, as after a device reboot);
* peak RSS (VmHWM) and steady RSS (VmRSS at the end of the window), KiB;
* CPU % of one core over the window (utime + stime of all threads);
* wake-ups per second: voluntary + involuntary context switches of all threads;
* heartbeats received during the window.

Two layouts are measured, one after the other:

* **device** (the budget's figure, issue 5): the system interpreter a Debian/Buildroot gateway
  runs (``/usr/bin/python3`` when it is the same minor version as this one, else this
  interpreter), a throw-away venv (``--without-pip``) whose site-packages holds a copy of
  ``libarms/`` (with its built ``_core``), ``defusedxml`` and ``_cffi_backend``, byte code
  compiled; armsd runs from there with its cwd outside the checkout;
* **dev**: this interpreter (the development venv, editable install), for comparison only.

Usage: ``python bench/daemon.py [--seconds 30] [--runs 3]``. The last line is one JSON object:
the device layout's figures, ``python`` (its interpreter), and ``dev_*`` for the dev venv.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import signal
import statistics
import subprocess
import shutil
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


def start_armsd(workdir: str, server: TestServer, python: str, cwd: str) -> tuple:
    """Start armsd on ``workdir`` (its config written on the first start; a second start on
    the same directory finds the state file the first one left: a restart) and wait for
    PUSH_WAIT."""
    ic = os.path.join(workdir, "initial-config")
    conf = os.path.join(workdir, "armsd.conf")
    if not os.path.exists(conf):
        with open(ic, "w") as f:
            f.write(server.initial_config(retry_interval=1, retry_max=1))
        with open(conf, "w") as f:
            f.write(f"distribution-id: {DISTID}\nls-sa-key: {LS_KEY}\n"
                    f"path-root-ca: {server.ca_path}\npath-iconfig: {ic}\n"
                    f"path-work-dir: {workdir}/work\npath-state-cache: {workdir}/state\n"
                    "hb-traffic-if0: lo\n")
    t0 = time.monotonic()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    proc = subprocess.Popen([python, "-m", "libarms.daemon.main", "-f", conf], cwd=cwd, env=env,
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
            if "the LS is skipped" in line:
                marks.setdefault("restored", now)
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
    # The time the reader thread saw the line, not the time this thread woke from the event:
    # the test server's threads share this process's GIL, and the hand-over from the reader to
    # this thread (up to a switch interval, 5 ms, while a server thread runs) is the bench's own
    # delay, not armsd's.
    ms = marks["push_wait"]
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


def device_python() -> str:
    """Debian's (Buildroot's) system interpreter when it can load the dev venv's compiled
    extensions (same minor version), else this interpreter."""
    sysp = "/usr/bin/python3"
    if os.path.exists(sysp) and os.path.realpath(sysp) != os.path.realpath(sys.executable):
        r = subprocess.run([sysp, "-c", "import sys; print(sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode == 0 and r.stdout.strip() == str(tuple(sys.version_info[:2])):
            return sysp
    return getattr(sys, "_base_executable", None) or sys.executable


def make_device_layout(dest: str, python: str) -> str:
    """A plain venv at ``dest`` holding copies of libarms, defusedxml and _cffi_backend in its
    site-packages, byte code compiled (as an installed package is); returns its python."""
    import _cffi_backend
    import defusedxml
    subprocess.run([python, "-m", "venv", "--without-pip", dest], check=True, timeout=120)
    vpy = os.path.join(dest, "bin", "python")
    sp = subprocess.run([vpy, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                        check=True, capture_output=True, text=True, timeout=60).stdout.strip()
    junk = shutil.ignore_patterns("__pycache__", "*.pyc", "*.c", "*.o")
    shutil.copytree(os.path.join(os.path.dirname(HERE), "libarms"), os.path.join(sp, "libarms"),
                    ignore=junk)
    shutil.copytree(defusedxml.__path__[0], os.path.join(sp, "defusedxml"), ignore=junk)
    shutil.copy2(_cffi_backend.__file__, sp)
    subprocess.run([vpy, "-m", "compileall", "-q", sp], check=True, timeout=300)
    return vpy


def measure(label: str, python: str, cwd: str, tmp: str, server, rx, runs: int,
            seconds: float) -> dict:
    """``runs`` first boots to PUSH_WAIT, each followed by a restart on the same directory
    (the state file kept: the LS is skipped, as after a device reboot); the last armsd stays
    ``seconds`` in PUSH_WAIT."""
    launches, starts, pulls, cpus, restarts, restart_cpus = [], [], [], [], [], []
    for i in range(max(1, runs)):
        wd = os.path.join(tmp, f"{label}-run{i}")
        os.makedirs(wd)
        proc, ms, marks = start_armsd(wd, server, python, cwd)
        launches.append(ms)
        starts.append(marks.get("started", 0.0))
        pulls.append(marks.get("pulled", 0.0))
        cpus.append(marks["cpu_ms"])
        print(f"{label} run {i}: launch -> PUSH_WAIT {ms:.1f} ms (interpreter + imports "
              f"{starts[-1]:.0f} ms, pull done at {pulls[-1]:.0f} ms, CPU used "
              f"{cpus[-1]:.0f} ms)", flush=True)
        stop(proc)                            # SIGTERM: the state file is saved
        proc, ms, marks = start_armsd(wd, server, python, cwd)
        if "restored" not in marks:
            stop(proc)
            raise SystemExit(f"{label} run {i}: the restart did not restore the state file")
        restarts.append(ms)
        restart_cpus.append(marks["cpu_ms"])
        print(f"{label} run {i}: restart -> PUSH_WAIT {ms:.1f} ms (LS skipped, CPU used "
              f"{restart_cpus[-1]:.0f} ms)", flush=True)
        if i < runs - 1:
            stop(proc)
    # the last armsd stays for the steady-state window
    pid = proc.pid
    try:
        time.sleep(1.0)                       # let the first heartbeat round settle
        hb0, cpu0, cs0, w0 = hb_count(rx), cpu_ticks(pid), ctx_switches(pid), time.monotonic()
        time.sleep(seconds)
        hb1, cpu1, cs1, w1 = hb_count(rx), cpu_ticks(pid), ctx_switches(pid), time.monotonic()
        st = proc_status(pid)
    finally:
        stop(proc)
    window = w1 - w0
    launches.sort()
    p99 = launches[min(len(launches) - 1, int(round(0.99 * (len(launches) - 1))))]
    return {
        "median_ms": round(statistics.median(launches), 1), "p99_ms": round(p99, 1),
        "runs": len(launches), "rss_peak_kib": kib(st["VmHWM"]),
        "rss_steady_kib": kib(st["VmRSS"]), "threads": int(st["Threads"]),
        "cpu_pct": round((cpu1 - cpu0) / CLK_TCK / window * 100.0, 3),
        "wakeups_per_s": round((cs1 - cs0) / window, 2), "heartbeats": hb1 - hb0,
        "window_s": round(window, 1),
        "imports_ms": round(statistics.median(starts), 1),
        "pull_done_ms": round(statistics.median(pulls), 1),
        "launch_cpu_ms": round(statistics.median(cpus), 1),
        "restart_median_ms": round(statistics.median(restarts), 1),
        "restart_cpu_ms": round(statistics.median(restart_cpus), 1),
    }


def summary(label: str, python: str, r: dict) -> None:
    print(f"{label}: {python}")
    print(f"  launch -> PUSH_WAIT median {r['median_ms']} ms, p99 {r['p99_ms']} ms "
          f"({r['runs']} runs, CPU {r['launch_cpu_ms']} ms); restart (state kept, LS skipped) "
          f"median {r['restart_median_ms']} ms (CPU {r['restart_cpu_ms']} ms); RSS peak "
          f"{r['rss_peak_kib'] / 1024:.1f} MiB, steady {r['rss_steady_kib'] / 1024:.1f} MiB, "
          f"{r['threads']} threads; CPU {r['cpu_pct']:.3f} % of a core, "
          f"{r['wakeups_per_s']:.1f} wake-ups/s, {r['heartbeats']} heartbeats in "
          f"{r['window_s']:.1f} s", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=3, help="launches measured for launch->PUSH_WAIT")
    args = ap.parse_args()
    # An installed package has its byte code compiled (pip, Buildroot): so must the dev tree
    # measured here, or every launch compiles the modules that lack a .pyc
    # (PYTHONDONTWRITEBYTECODE=1 in a CI environment keeps them missing).
    import compileall
    compileall.compile_dir(os.path.join(os.path.dirname(HERE), "libarms"), quiet=1)
    with tempfile.TemporaryDirectory(prefix="armsd-bench-") as tmp:
        dev_py = device_python()
        try:
            vpy = make_device_layout(os.path.join(tmp, "device-venv"), dev_py)
        except (subprocess.CalledProcessError, OSError) as e:   # e.g. no venv module there
            fallback = getattr(sys, "_base_executable", None) or sys.executable
            print(f"device layout with {dev_py} failed ({e}); using {fallback}", flush=True)
            dev_py = fallback
            shutil.rmtree(os.path.join(tmp, "device-venv"), ignore_errors=True)
            vpy = make_device_layout(os.path.join(tmp, "device-venv"), dev_py)
        print(f"device layout: {dev_py} (venv {vpy}, libarms copied into its site-packages, "
              f"byte code compiled, cwd outside the checkout)", flush=True)
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
            dev = measure("device", vpy, tmp, tmp, server, rx, args.runs, args.seconds)
            ed = measure("dev-venv", sys.executable, os.path.dirname(HERE), tmp, server, rx,
                         args.runs, args.seconds)
        finally:
            server.stop()
    result = {"bench": "daemon", **dev, "python": dev_py, "layout": "device",
              "dev_python": sys.executable, "dev_rss_steady_kib": ed["rss_steady_kib"],
              "dev_rss_peak_kib": ed["rss_peak_kib"], "dev_median_ms": ed["median_ms"],
              "dev_launch_cpu_ms": ed["launch_cpu_ms"], "dev_cpu_pct": ed["cpu_pct"],
              "dev_restart_median_ms": ed["restart_median_ms"],
              "loadavg_1m": round(os.getloadavg()[0], 2)}
    summary("device layout (the budget's figure)", dev_py, dev)
    summary("dev venv (editable install, for comparison)", sys.executable, ed)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
