"""Builds and runs csrc's C micro-benchmark (bench_core); shared by bench/chunk.py and heartbeat.py."""

from __future__ import annotations

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "build", "core", "native")


def run_c_bench(seconds: float) -> dict[str, str] | None:
    """The figures bench_core prints (name -> value), or None if it cannot be built."""
    r = subprocess.run(["make", "-s", "-C", os.path.join(ROOT, "csrc"), "bench-bin", "OUT=" + OUT],
                       capture_output=True, text=True)
    if r.returncode != 0:
        print("C bench build failed:", r.stderr[-500:], file=sys.stderr)
        return None
    out = subprocess.run([os.path.join(OUT, "bench_core"), str(seconds)], capture_output=True,
                         text=True, check=True).stdout
    return dict(line.split() for line in out.splitlines())
