"""Figures for the agent on 32-bit ARM and MIPS (issue 7). Prints them, then one JSON line.

* ``core_stripped_bytes``: the C core (csrc/, the sources of libarms._core without the cffi
  glue) compiled -Os as a position-independent shared object and stripped, for ARMv7
  (armhf: ARMv7-A, Thumb-2, VFPv3-D16) and MIPS32 (mips32r2, little and big endian); also the
  whole cffi extension (-Os, stripped) for armhf and mipsel.
* ``launch_to_pulldone_ms`` / ``launch_to_push_wait_ms`` under qemu-arm: from starting Debian's
  armhf Python with scripts/cross/device_agent.py to the agent's PULLDONE / PUSH_WAIT state,
  against the test server (and the push proxy) on the host, median of --runs.
* ``cross_tests_wall_s``: wall time of ``pytest -m cross`` (what the cross tests add to the test
  command) with the sysroots cached; ``--cold`` deletes build/sysroot-* and build/debs-* first
  so that the figure includes the download.

    .venv/bin/python bench/cross.py [--runs 5] [--cold] [--skip-tests]
"""

from __future__ import annotations

import argparse
import json
import os
import runpy
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

TARGETS = {
    # name: (gcc, flags, sysroot arch or None, include the libcrypto sources)
    "armv7": ("arm-linux-gnueabihf-gcc", ["-march=armv7-a", "-mthumb", "-mfpu=vfpv3-d16",
                                          "-mfloat-abi=hard"], "armhf", True),
    "mips32el": ("mipsel-linux-gnu-gcc", ["-march=mips32r2"], "mipsel", True),
    "mips32be_libc_only": ("mips-linux-gnu-gcc", ["-march=mips32r2"], None, False),
}


def sh(cmd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], check=True, capture_output=True, text=True, **kw)


def core_sources() -> list[Path]:
    ns = runpy.run_path(str(REPO / "csrc" / "build_core.py"), run_name="bench_cross")
    return [REPO / "csrc" / s for s in ns["SOURCES"]]


def text_data(binutils_prefix: str, path: Path) -> int:
    """text + data + bss of an ELF file (the file size also counts alignment padding)."""
    out = sh([binutils_prefix + "size", path]).stdout.splitlines()[1].split()
    return int(out[3])


def stripped_size(target: str, work: Path) -> dict | None:
    gcc, flags, arch, crypto = TARGETS[target]
    if shutil.which(gcc) is None:
        return None
    inc = []
    if arch:
        sysroot = REPO / "build" / f"sysroot-{arch}"
        triplet = gcc[:-len("-gcc")]
        inc = [f"-I{sysroot}/usr/include", f"-I{sysroot}/usr/include/{triplet}"]
    srcs = [s for s in core_sources() if crypto or s.name in ("arms_hb.c", "arms_chunk.c",
                                                              "arms_keepalive.c")]
    out = work / f"libarmscore-{target}.so"
    sh([gcc, "-Os", "-std=c99", "-fPIC", "-shared", *flags, *inc, f"-I{REPO / 'csrc'}", *srcs,
        "-o", out])
    sh([gcc[:-3] + "strip", "--strip-unneeded", out])
    return {"file": out.stat().st_size, "text_data_bss": text_data(gcc[:-3], out)}


def extension_size(arch: str) -> dict:
    out = REPO / "build" / f"bench-ext-{arch}"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    sh([sys.executable, REPO / "scripts/cross/build.py", "--arch", arch, "--sysroot",
        REPO / "build" / f"sysroot-{arch}", "--out", out / "stage", "--opt=-Os"])
    so = next((out / "stage" / "libarms").glob("_core.cpython-311-*.so"))
    prefix = {"armhf": "arm-linux-gnueabihf-", "mipsel": "mipsel-linux-gnu-"}[arch]
    size = {"file": so.stat().st_size, "text_data_bss": text_data(prefix, so)}
    shutil.rmtree(out, ignore_errors=True)
    return size


class Device:
    def __init__(self, conf: dict, work: Path, arch: str = "armhf"):
        sysroot = REPO / "build" / f"sysroot-{arch}"
        stage = REPO / "build" / f"stage-{arch}"
        path = work / "device.json"
        path.write_text(json.dumps(conf))
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
        env.update(PYTHONPATH=str(stage), PYTHONDONTWRITEBYTECODE="1", PYTHONNOUSERSITE="1")
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(
            ["qemu-arm" if arch == "armhf" else "qemu-mipsel", "-L", str(sysroot),
             str(sysroot / "usr/bin/python3.11"), str(REPO / "scripts/cross/device_agent.py"),
             str(path)], env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True)
        self.seen: dict[str, float] = {}
        self.cv = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            try:
                ev = json.loads(line)
            except ValueError:
                continue
            key = ev["event"] + (":" + ev["new"] if ev["event"] == "state" else "")
            with self.cv:
                self.seen.setdefault(key, time.monotonic() - self.t0)
                self.cv.notify_all()

    def wait(self, key: str, timeout: float) -> float | None:
        with self.cv:
            self.cv.wait_for(lambda: key in self.seen, timeout)
            return self.seen.get(key)

    def stop(self):
        self.proc.kill()
        self.proc.wait(10)


def launch_times(runs: int) -> tuple[list[float], list[float]]:
    """(launch -> PULLDONE ms, launch -> PUSH_WAIT ms) under qemu-arm, against the test server
    with its push service (https-tunnel) on the host."""
    from libarms.testserver.pushservice import PushService
    from libarms.testserver.server import TestServer
    pulled, waiting = [], []
    with tempfile.TemporaryDirectory() as d:
        work = Path(d)
        with TestServer(str(work / "server")) as srv:
            srv.add_component(PushService(str(work / "server"), methods=("https-tunnel",)))
            for i in range(runs):
                did = f"0001-0000-0000-0000-0000-0000-00B7-{i:04X}"
                srv.add_device(did, "bench-key", service={
                    "modules": [{"id": 1, "version": "1", "config": "x\n"}]})
                dev = Device({"distribution_id": did, "ls_sa_key": "bench-key",
                              "ca_pem": srv.ca_path, "initial_config": srv.initial_config(),
                              "push": True, "log_level": "WARNING",
                              "agent_options": {"ls_retry_interval_factor": 0.1,
                                                "line_poll_interval": 0.05}}, work)
                try:
                    t = dev.wait("state:PULLDONE", 120)
                    if t is not None:
                        pulled.append(t * 1000)
                    t = dev.wait("state:PUSH_WAIT", 120)
                    if t is not None:
                        waiting.append(t * 1000)
                finally:
                    dev.stop()
    return pulled, waiting


def cross_tests_wall(cold: bool) -> float:
    if cold:
        for p in list((REPO / "build").glob("sysroot-*")) + list((REPO / "build").glob("debs-*")):
            shutil.rmtree(p, ignore_errors=True)
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "cross", "-p",
                        "no:cacheprovider", str(REPO / "tests")], cwd=REPO,
                       capture_output=True, text=True)
    wall = time.monotonic() - t
    print(r.stdout.strip().splitlines()[-1] if r.stdout.strip() else r.stderr[-500:])
    return wall


def ms(values: list[float]) -> float | None:
    return round(statistics.median(values), 1) if values else None


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cold", action="store_true", help="delete the cached sysroots first")
    ap.add_argument("--skip-tests", action="store_true", help="do not time pytest -m cross")
    args = ap.parse_args()

    for arch in ("armhf", "mipsel"):
        sh(["bash", REPO / "scripts/cross/build.sh", arch])   # sysroot + stage (cached)
    sizes = {}
    with tempfile.TemporaryDirectory() as d:
        for target in TARGETS:
            sizes[target] = stripped_size(target, Path(d))
            print(f"core, -Os, stripped, {target}: {sizes[target]} bytes")
    ext = {arch: extension_size(arch) for arch in ("armhf", "mipsel")}
    for arch, n in ext.items():
        print(f"libarms._core cffi extension, -Os, stripped, {arch}: {n} bytes")

    pulled, waiting = launch_times(args.runs)
    print(f"qemu-arm launch -> PULLDONE: median {ms(pulled)} ms over {len(pulled)} runs "
          f"(min {min(pulled, default=0):.0f}, max {max(pulled, default=0):.0f})")
    print(f"qemu-arm launch -> PUSH_WAIT: median {ms(waiting)} ms over {len(waiting)} runs "
          f"(min {min(waiting, default=0):.0f}, max {max(waiting, default=0):.0f})")

    wall = None
    if not args.skip_tests:
        wall = round(cross_tests_wall(args.cold), 1)
        print(f"pytest -m cross wall time ({'cold: sysroots downloaded' if args.cold else 'sysroots cached'}): {wall} s")

    print(json.dumps({"bench": "cross", "core_stripped_bytes": sizes,
                      "extension_stripped_bytes": ext,
                      "launch_to_pulldone_ms": ms(pulled), "launch_to_push_wait_ms": ms(waiting),
                      "median_ms": ms(waiting) or ms(pulled), "runs": len(pulled),
                      "cross_tests_wall_s": wall, "cold": args.cold}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
