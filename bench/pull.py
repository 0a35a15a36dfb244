"""Benchmark: from Agent() to pull done (LS + RS, real TLS on loopback) against the test server.

Prints the figures, then as its last line one JSON object:
{"bench": "pull", "median_ms": ..., "p99_ms": ..., "fresh_process_median_ms": ..., "runs": ...}

* in-process: a new Agent per run (no cached RS: both stages), median and p99 over --runs;
* fresh process: launch of a new Python process -> pull done -> exit, median over --fresh-runs.
The test server runs in this process; its SA certificate is issued once before timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIST = "0001-0000-1234-0005-0000-0000-0000-00B0"
KEY = "bench-ls-key"


def one_pull(ls_url: str, ca_pem: str) -> None:
    from libarms import Agent
    a = Agent(DIST)
    a.load_config(f"{ls_url}\n\n1\n1\n")
    a.register_cert(ca_pem)
    a.register_authkey(KEY)
    a.register_description("bench", "1")
    a.pull()


def percentile(values, p):
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))
    return v[k]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--fresh-runs", type=int, default=10)
    ap.add_argument("--child", nargs=2, metavar=("LS_URL", "CA_FILE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        one_pull(args.child[0], open(args.child[1]).read())
        return 0

    from libarms.testserver.server import TestServer
    state = tempfile.mkdtemp(prefix="bench-pull-")
    srv = TestServer(state).start()
    try:
        srv.add_device(DIST, KEY, service={"modules": [
            {"id": 1, "version": "1.0", "info": "bench", "config": "x" * 2000}]})
        ca = srv.ca_pem
        one_pull(srv.ls_url, ca)                 # warm-up: SA certificate issued, imports done
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            one_pull(srv.ls_url, ca)
            times.append((time.perf_counter() - t) * 1000)
        fresh = []
        for _ in range(args.fresh_runs):
            t = time.perf_counter()
            subprocess.run([sys.executable, os.path.abspath(__file__), "--child", srv.ls_url, srv.ca_path],
                           check=True, timeout=120)
            fresh.append((time.perf_counter() - t) * 1000)
    finally:
        srv.stop()
        shutil.rmtree(state, ignore_errors=True)
    med, p99 = statistics.median(times), percentile(times, 99)
    fmed = statistics.median(fresh)
    print(f"Agent() -> pull done (LS + RS over TLS 1.3 on loopback), {len(times)} runs:")
    print(f"  median {med:.2f} ms   p99 {p99:.2f} ms   min {min(times):.2f} ms   max {max(times):.2f} ms")
    print(f"fresh process (launch -> pull done -> exit), {len(fresh)} runs:")
    print(f"  median {fmed:.1f} ms   min {min(fresh):.1f} ms   max {max(fresh):.1f} ms")
    print("(libarms 5.33 C client, same machine class: LS pull + RS pull ~99 ms default, ~10 ms with a fast server)")
    print(json.dumps({"bench": "pull", "median_ms": round(med, 3), "p99_ms": round(p99, 3),
                      "fresh_process_median_ms": round(fmed, 1), "runs": len(times),
                      "fresh_runs": len(fresh)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
