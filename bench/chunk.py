#!/usr/bin/env python3
"""Tunnel chunk decoding throughput: C alone, C through cffi (libarms.chunkcodec), pure Python.

    .venv/bin/python bench/chunk.py [--reps 400] [--read 4096] [--runs 5] [--quick]

Input: the server-to-device tunnel stream captured from libarms 5.33 (9 chunks, 2 KiB) repeated
``--reps`` times, fed in ``--read``-byte pieces as TLS records would deliver it. Prints MB/s
and chunks/s per decoder (median of ``--runs``); the last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _cbench import run_c_bench  # noqa: E402
from libarms import chunkcodec  # noqa: E402
from libarms.protocol import chunks as pychunks  # noqa: E402

STREAM = next((p for p in (os.path.join(os.path.dirname(ROOT), "shared", "vectors", "libarms-5.33", "tunnel", "tunnel-stream-s2c.raw"),
                  "/work/shared/vectors/libarms-5.33/tunnel/tunnel-stream-s2c.raw") if os.path.exists(p)),
              "/work/shared/vectors/libarms-5.33/tunnel/tunnel-stream-s2c.raw")


def c_only(seconds: float) -> float | None:
    figures = run_c_bench(seconds)
    return None if figures is None else float(figures["chunk_decode_mb_per_s"])


def run(decoder_cls, data: bytes, read: int) -> tuple[float, int]:
    dec = decoder_cls()
    n = 0
    t0 = time.perf_counter()
    for i in range(0, len(data), read):
        n += len(dec.feed(data[i:i + read]))
    return time.perf_counter() - t0, n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=400)
    ap.add_argument("--read", type=int, default=4096)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    if a.quick:
        a.reps, a.runs = 50, 3
    raw = open(STREAM, "rb").read()
    body = raw[raw.index(b"\r\n\r\n") + 4:]
    data = body * a.reps
    result = {"bench": "chunk", "bytes": len(data), "read": a.read, "runs": a.runs}
    mb = len(data) / 1e6
    c = c_only(0.3 if a.quick else 1.0)
    result["c_mb_s"] = c
    print(f"C (no Python): {c} MB/s")
    decoders = [("python", pychunks.ChunkDecoder)]
    if chunkcodec.HAVE_CORE:
        decoders.insert(0, ("cffi", chunkcodec.CChunkDecoder))
    for name, cls in decoders:
        times = []
        for _ in range(a.runs):
            dt, n = run(cls, data, a.read)
            assert n == 9 * a.reps, n
            times.append(dt)
        med = statistics.median(times)
        result[f"{name}_mb_s"] = round(mb / med, 2)
        result[f"{name}_chunks_s"] = round(9 * a.reps / med)
        result[f"{name}_median_ms"] = round(med * 1000, 2)
        print(f"{name:6s}: {mb / med:8.2f} MB/s  {9 * a.reps / med:10.0f} chunks/s  "
              f"(median of {a.runs}: {med * 1000:.1f} ms for {mb:.2f} MB)")
    key = "cffi" if chunkcodec.HAVE_CORE else "python"
    result["median_ms"] = result[f"{key}_median_ms"]
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
