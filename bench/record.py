"""What a record costs: class creation and instance construction, libarms._record against
frozen dataclasses (issue 5: armsd's launch time and footprint).

    .venv/bin/python bench/record.py [--classes 60] [--runs 7]

Class creation: ``--classes`` classes of 6 fields (2 with defaults, 1 with repr=False) made in
one go, each kind in a fresh subprocess; the import of the helper (``libarms/_record.py`` alone,
or ``dataclasses``) is timed apart. Instances: construct ``Line``-like records (positional,
keyword, with defaults) and compare/hash them. Prints figures; the last line is one JSON
object.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import py_compile
import shutil
import statistics
import subprocess
import sys
import tempfile
import timeit

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MAKE = {
    "record": (
        "from _record import Record, field\n"
        "def make(i):\n"
        "    class C(Record):\n"
        "        a: int\n        b: str\n        c: bytes\n        d: tuple\n"
        "        e: int = 0\n        f: str = field(default='', repr=False)\n"
        "    return C\n"),
    "dataclass": (
        "import dataclasses\n"
        "def make(i):\n"
        "    @dataclasses.dataclass(frozen=True)\n"
        "    class C:\n"
        "        a: int\n        b: str\n        c: bytes\n        d: tuple\n"
        "        e: int = 0\n        f: str = dataclasses.field(default='', repr=False)\n"
        "    return C\n"),
}

#: The child times the import (the helper alone, as a top-level module, without the libarms
#: package) and the class statements separately.
CHILD = (
    "import time, sys\n"
    "sys.path.insert(0, {libdir!r})\n"
    "t0 = time.perf_counter()\n"
    "{make}"
    "t1 = time.perf_counter()\n"
    "classes = [make(i) for i in range({n})]\n"
    "t2 = time.perf_counter()\n"
    "rss = [l for l in open('/proc/self/status') if l.startswith('VmRSS')][0].split()[1]\n"
    "print((t1 - t0) * 1000, (t2 - t1) * 1000, rss)\n"
)


def compiled_helper(tmpdir: str) -> str:
    """A directory holding _record.py and its .pyc (as on a device: the stdlib's dataclasses
    is precompiled too, and PYTHONDONTWRITEBYTECODE may be set here)."""
    src = os.path.join(tmpdir, "_record.py")
    shutil.copyfile(os.path.join(ROOT, "libarms", "_record.py"), src)
    py_compile.compile(src, cfile=importlib.util.cache_from_source(src), doraise=True)
    return tmpdir


def class_creation(kind: str, n: int, libdir: str) -> tuple[float, float, int]:
    """(import ms, class creation ms, VmRSS kB) in a fresh interpreter."""
    code = "from __future__ import annotations\n" + CHILD.format(make=MAKE[kind], n=n,
                                                                 libdir=libdir)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout.split()
    return float(out[0]), float(out[1]), int(out[2])


def instance_costs(kind: str) -> dict:
    ns: dict = {}
    sys.path.insert(0, os.path.join(ROOT, "libarms"))
    exec("from __future__ import annotations\n" + MAKE[kind], ns)
    C = ns["make"](0)
    a = C(1, "x", b"y", ())
    b = C(1, "x", b"y", ())
    cases = {
        "positional": lambda: C(1, "x", b"y", (), 2, "s"),
        "defaults": lambda: C(1, "x", b"y", ()),
        "keyword": lambda: C(a=1, b="x", c=b"y", d=(), f="s"),
        "eq": lambda: a == b,
        "hash": lambda: hash(a),
    }
    out = {}
    for name, fn in cases.items():
        t = timeit.Timer(fn)
        loops, _ = t.autorange()
        out[name] = min(t.repeat(3, loops)) / loops * 1e6     # microseconds per call
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--classes", type=int, default=60, help="classes made per run (60)")
    ap.add_argument("--runs", type=int, default=7, help="subprocess runs per kind (7)")
    args = ap.parse_args()
    result = {"bench": "record", "classes": args.classes, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        libdir = compiled_helper(tmp)
        creation = {kind: [class_creation(kind, args.classes, libdir) for _ in range(args.runs)]
                    for kind in ("record", "dataclass")}
    for kind, runs in creation.items():
        imp = statistics.median(r[0] for r in runs)
        ms = statistics.median(r[1] for r in runs)
        rss = statistics.median(r[2] for r in runs)
        inst = instance_costs(kind)
        print(f"{kind:9}: import {imp:.2f} ms, {args.classes} classes in {ms:.2f} ms, "
              f"RSS {rss} kB; per instance: " +
              ", ".join(f"{k} {v:.2f} us" for k, v in inst.items()))
        result[f"{kind}_import_ms"] = round(imp, 2)
        result[f"{kind}_create_ms"] = round(ms, 2)
        result[f"{kind}_rss_kb"] = rss
        for k, v in inst.items():
            result[f"{kind}_{k}_us"] = round(v, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
