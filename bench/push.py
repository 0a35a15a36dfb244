"""Benchmark: md-command round trip REST -> proxy -> https-tunnel -> callback -> result.

Everything runs on loopback with real TLS: the test server's push service (proxy + REST API)
in this process, the device's event loop (``libarms.push``) in a thread of this process.
Each operation is one ``POST /user/bench/request/md-command`` plus one long-polling
``GET .../{id}?wait=30`` until the result is stored (stdlib http.client, one keep-alive
connection); operations run one after another. The result is in SQLite before it is served.

Prints the figures, then as its last line one JSON object:
{"bench": "push", "p50_ms": ..., "p99_ms": ..., "max_ms": ..., "ops_per_s": ..., "runs": ...}
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DIST = "0001-0000-1234-0005-0000-0000-0000-00B1"
RS_KEY = "bench-rs-key"


def percentile(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, max(0, int(round(p / 100 * (len(v) - 1)))))]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1000, help="md-command operations (default 1000)")
    ap.add_argument("--warmup", type=int, default=20)
    args = ap.parse_args(argv)

    from libarms import push
    from libarms.callbacks import Callbacks
    from libarms.errors import Err
    from libarms.protocol import push as P
    from libarms.testserver.pki import Pki
    from libarms.testserver.pushservice import PushService

    class Device(Callbacks):
        def md_command(self, module_id, command):
            return "ok " + command.decode()

    tmp = tempfile.mkdtemp(prefix="bench-push-")
    svc = None
    stop = None
    try:
        pki = Pki(tmp).ensure(["127.0.0.1"])
        sa_cert, sa_key = pki.issue_sa(DIST)
        svc = PushService(tmp, cert=pki.server_cert, key=pki.server_key, ca=pki.ca_cert,
                          keys={DIST: RS_KEY}.get, token="bench", methods=("https-tunnel",),
                          echo_interval=60).start()
        ctx = push.PushContext(distribution_id=DIST, rs_key=RS_KEY, rs_ca_pem=pki.ca_pem.encode(),
                               sa_cert_pem=sa_cert.encode(), sa_key_pem=sa_key.encode(),
                               pull_urls=[svc.proxy.url], callbacks=Device(),
                               modules=[P.ModuleInfo(1, "1", "bench")])
        assert push.push_method_query(ctx) == Err.OK
        t = threading.Thread(target=push.event_loop, args=(ctx,), daemon=True)
        t.start()
        stop = lambda: push.stop_event_loop(ctx, Err.EPULL)  # noqa: E731
        svc.call(svc.proxy.wait_reachable(DIST, 30), 35)

        conn = http.client.HTTPConnection("127.0.0.1", svc.rest.port, timeout=60)
        hdr = {"Authorization": "Bearer bench", "Content-Type": "application/json"}
        base = "/user/bench/request/md-command"

        def call(method, path, body=None):
            conn.request(method, path, body=body, headers=hdr)
            return json.loads(conn.getresponse().read())
        times = []
        t_all = time.perf_counter()
        for i in range(args.warmup + args.runs):
            t0 = time.perf_counter()
            rid = call("POST", base, json.dumps({"code": DIST, "module": 1, "command": f"c{i}"}))["id"]
            doc = call("GET", f"{base}/{rid}?wait=30")
            dt = (time.perf_counter() - t0) * 1000
            if doc["status"] != "done" or doc["results"][0]["data"] != f"ok c{i}":
                print(f"operation {i} failed: {doc}", file=sys.stderr)
                return 1
            if i == args.warmup - 1:
                t_all = time.perf_counter()
            if i >= args.warmup:
                times.append(dt)
        wall = time.perf_counter() - t_all
    finally:
        if stop:
            stop()
        if svc:
            svc.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    res = {"bench": "push", "p50_ms": round(statistics.median(times), 3),
           "p99_ms": round(percentile(times, 99), 3), "max_ms": round(max(times), 3),
           "ops_per_s": round(len(times) / wall, 1), "runs": len(times)}
    print(f"md-command REST -> tunnel -> callback -> result, {len(times)} sequential operations")
    print(f"  p50 {res['p50_ms']} ms  p99 {res['p99_ms']} ms  max {res['max_ms']} ms  "
          f"{res['ops_per_s']} ops/s")
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
