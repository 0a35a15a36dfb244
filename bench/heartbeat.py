#!/usr/bin/env python3
"""Heartbeat benchmark: build + sign rate, and send-interval jitter with and without a thread
that holds the GIL, for the C sender thread and for a pure-Python sender (the baseline).

    .venv/bin/python bench/heartbeat.py [--interval 0.05] [--packets 100] [--quick]

Figures:
* C: packets built and signed per second (csrc/tests/bench_core.c, no Python involved);
  cffi: the same through libarms.heartbeat.HeartbeatItems; Python: protocol.heartbeat's builder.
* jitter: a separate receiver process timestamps every datagram in the kernel (SO_TIMESTAMPNS);
  jitter = |gap between consecutive datagrams - interval|, p50 / p99 / max in ms, for
  {C sender, Python sender} x {idle, a thread holding the GIL in long C calls}.
The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cbench import run_c_bench  # noqa: E402
from libarms import heartbeat as hbmod  # noqa: E402
from libarms.protocol.heartbeat import PacketBuilder  # noqa: E402

DIST = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"

RECEIVER = r"""
import json, select, socket, struct, sys
n, timeout = int(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
s.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_TIMESTAMPNS", 35), 1)
print(s.getsockname()[1], flush=True)
ts = []
while len(ts) < n:
    r, _, _ = select.select([s], [], [], timeout)
    if not r:
        break
    data, anc, _, _ = s.recvmsg(2048, 64)
    for level, typ, c in anc:
        if typ == getattr(socket, "SO_TIMESTAMPNS", 35):
            sec, nsec = struct.unpack("qq", c[:16])
            ts.append(sec + nsec / 1e9)
print(json.dumps(ts), flush=True)
"""


def stats_cb(hb):
    hb.set_cpu_usage(0, 50)
    hb.set_mem_usage(0, 65536, 32768)
    hb.set_traffic_rate(0, 1024, 2048, 1, 2, 0, 0)
    hb.set_traffic_rate(1, 2048, 1024, 2, 1, 0, 0)


def build_rate_c(seconds: float) -> float | None:
    figures = run_c_bench(seconds)
    return None if figures is None else float(figures["hb_build_sign_per_s"])


def build_rate_py(make, seconds: float) -> float:
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        for _ in range(100):
            b = make()
            stats_cb(b)
            b.build("hb-passphrase-xyz")
        n += 100
    return n / (time.perf_counter() - t0)


def hold_gil(stop: threading.Event):
    while not stop.is_set():
        sum(range(3_000_000))  # one C call: the GIL is held for its whole length


def jitter_run(cls, interval: float, packets: int, gil: bool) -> dict:
    rx = subprocess.Popen([sys.executable, "-c", RECEIVER, str(packets), str(interval * 20 + 5)],
                          stdout=subprocess.PIPE, text=True)
    port = int(rx.stdout.readline())
    stop = threading.Event()
    hogs = [threading.Thread(target=hold_gil, args=(stop,), daemon=True) for _ in range(2 if gil else 0)]
    for t in hogs:
        t.start()
    sender = cls(DIST, [hbmod.HbServer("127.0.0.1", port, "bench")], interval, stats_cb,
                 lead=min(0.02, interval / 4))
    sender.start()
    try:
        ts = json.loads(rx.stdout.readline())
    finally:
        sender.stop()
        stop.set()
        for t in hogs:
            t.join()
        rx.wait(timeout=30)
    gaps = [b - a for a, b in zip(ts, ts[1:])]
    jit = sorted(abs(g - interval) * 1000 for g in gaps)
    if not jit:
        return {"packets": len(ts)}
    return {"packets": len(ts), "p50_ms": round(statistics.median(jit), 3),
            "p99_ms": round(jit[min(len(jit) - 1, int(len(jit) * 0.99))], 3),
            "max_ms": round(jit[-1], 3)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--interval", type=float, default=0.05)
    ap.add_argument("--packets", type=int, default=100)
    ap.add_argument("--quick", action="store_true", help="shorter runs (smoke test)")
    a = ap.parse_args()
    if a.quick:
        a.packets = min(a.packets, 20)
    secs = 0.3 if a.quick else 1.0
    result = {"bench": "heartbeat"}
    c_rate = build_rate_c(secs)
    result["c_build_sign_per_s"] = round(c_rate) if c_rate else None
    if hbmod.HAVE_CORE:
        result["cffi_build_sign_per_s"] = round(build_rate_py(lambda: hbmod.HeartbeatItems(DIST), secs))
    result["python_build_sign_per_s"] = round(build_rate_py(lambda: PacketBuilder(DIST), secs))
    print(f"build+sign per second: C {result['c_build_sign_per_s']}, "
          f"cffi {result.get('cffi_build_sign_per_s')}, pure Python {result['python_build_sign_per_s']}")
    senders = [("python", hbmod.PyHeartbeatSender)]
    if hbmod.HAVE_CORE:
        senders.insert(0, ("c", hbmod.CHeartbeatSender))
    for name, cls in senders:
        for gil in (False, True):
            key = f"{name}_{'gil' if gil else 'idle'}"
            r = jitter_run(cls, a.interval, a.packets, gil)
            result[key] = r
            print(f"jitter {key:11s} interval {a.interval * 1000:.0f} ms, {r['packets']} packets: "
                  f"p50 {r.get('p50_ms')} ms  p99 {r.get('p99_ms')} ms  max {r.get('max_ms')} ms")
    result["interval_ms"] = a.interval * 1000
    result["runs"] = a.packets
    if hbmod.HAVE_CORE:
        result["median_ms"] = result["c_gil"].get("p50_ms")
        result["p99_ms"] = result["c_gil"].get("p99_ms")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
