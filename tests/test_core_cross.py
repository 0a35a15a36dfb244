"""The C core built the ways that bypass cffi: the unit tests natively under ASan + UBSan and
cross-compiled for armhf, mipsel (linked against Debian's libcrypto from a sysroot made by
scripts/sysroot.sh) and big-endian mips (libc only, digest passed in), run under qemu-user;
and the static library linked into a firmware-style program."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from libarms.protocol.chunks import encode_chunk
from libarms.protocol.heartbeat import PacketBuilder
from _vectors import VECTORS_DIR  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CSRC = os.path.join(ROOT, "csrc")
BUILD = os.path.join(ROOT, "build", "core")

pytestmark = pytest.mark.cross

# arch: (gcc prefix, qemu, Debian triple, sysroot arch or None for libc only)
TARGETS = {
    "armhf": ("arm-linux-gnueabihf-", "qemu-arm", "arm-linux-gnueabihf", "armhf"),
    "mipsel": ("mipsel-linux-gnu-", "qemu-mipsel", "mipsel-linux-gnu", "mipsel"),
    "mips": ("mips-linux-gnu-", "qemu-mips", "mips-linux-gnu", None),
}


def _run(cmd, timeout=240, **kw):
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    assert p.returncode == 0, (f"{' '.join(cmd)} exited {p.returncode}\n"
                               f"--- stdout\n{p.stdout[-3000:]}\n--- stderr\n{p.stderr[-3000:]}")
    return p.stdout


def _sysroot(arch: str) -> str:
    out = _run(["bash", os.path.join(ROOT, "scripts", "sysroot.sh"), arch], timeout=280)
    path = out.strip().splitlines()[-1]
    assert os.path.isfile(os.path.join(path, "usr", "include", "openssl", "hmac.h")), path
    return path


def test_c_unit_tests_pass_natively_under_asan_and_ubsan():
    out = _run(["make", "-s", "-C", CSRC, "test-native", f"OUT={BUILD}", f"VECTORS={VECTORS_DIR}"])
    assert "signed with libcrypto" in out and "sender:" in out
    assert out.rstrip().endswith("ALL OK")


@pytest.mark.parametrize("arch", list(TARGETS))
def test_c_unit_tests_pass_under_qemu_user(arch):
    prefix, qemu, triple, sysarch = TARGETS[arch]
    if shutil.which(prefix + "gcc") is None or shutil.which(qemu) is None:
        pytest.fail(f"{prefix}gcc / {qemu} missing: run scripts/bootstrap.sh")
    out_dir = os.path.join(BUILD, arch)
    make = ["make", "-s", "-C", CSRC, "test-bin", f"CROSS={prefix}", f"OUT={out_dir}", f"VECTORS={VECTORS_DIR}"]
    if sysarch:
        sysroot = _sysroot(sysarch)
        make += [f"SYSROOT={sysroot}", f"TRIPLE={triple}"]
    else:
        sysroot = f"/usr/{triple}"  # the cross toolchain's own libc
        make += ["NOCRYPTO=1"]
    _run(make)
    out = _run([qemu, "-L", sysroot, os.path.join(out_dir, "test_core")])
    assert out.rstrip().endswith("ALL OK"), out
    assert "chunk stream c2s" in out and "hb vectors: 10 rebuilt" in out
    if sysarch:
        assert "signed with libcrypto" in out and "sender:" in out
    else:
        assert "digest passed in" in out


def test_static_library_links_into_a_firmware_program(tmp_path):
    out_dir = os.path.join(BUILD, "firmware")
    dest = tmp_path / "staging"
    _run(["make", "-s", "-C", CSRC, "install-lib", f"OUT={out_dir}", f"DESTDIR={dest}",
          "PREFIX=/usr"])
    lib = dest / "usr" / "lib" / "libarmscore.a"
    inc = dest / "usr" / "include" / "armscore"
    assert lib.is_file() and (inc / "arms_core.h").is_file()
    exe = os.path.join(out_dir, "firmware_example")
    _run(["gcc", "-std=c99", "-Wall", "-Werror", "-I", str(inc),
          os.path.join(CSRC, "tests", "firmware_example.c"), str(lib), "-lcrypto", "-lpthread",
          "-o", exe])
    lines = _run([exe]).split()
    b = PacketBuilder("0001-1234-5678-0101-0011-2233-4455-6677")
    b.set_cpu_usage(0, 42)
    b.set_radiowave(4, 0, 90, 10, 55)
    assert bytes.fromhex(lines[0]) == b.build("secret")
    assert bytes.fromhex(lines[1]) == encode_chunk(b"<arms-message></arms-message>", 1234, True)
    assert lines[2:] == ["decoded", "id=1234", "trail"]


def test_chunk_bench_prints_figures_and_a_json_last_line():
    import json
    import sys
    out = _run([sys.executable, os.path.join(ROOT, "bench", "chunk.py"), "--quick"])
    last = json.loads(out.strip().splitlines()[-1])
    assert last["bench"] == "chunk" and last["c_mb_s"] > 0 and last["python_mb_s"] > 0


def test_chunk_fuzz_target_replays_vectors_and_mutations_under_asan(tmp_path):
    import glob
    import random
    out_dir = os.path.join(BUILD, "fuzz")
    _run(["make", "-s", "-C", CSRC, "fuzz-bin", f"OUT={out_dir}"])
    vec = VECTORS_DIR + "/tunnel"
    seeds = sorted(glob.glob(os.path.join(vec, "*.chunks")) + glob.glob(os.path.join(vec, "*.raw")))
    blobs = [open(p, "rb").read() for p in seeds]
    rng = random.Random(4)
    files = list(seeds)
    for i in range(300):
        b = bytearray(rng.choice(blobs))
        for _ in range(rng.randint(1, 4)):
            op = rng.randrange(4)
            pos = rng.randrange(len(b) + 1)
            if op == 0 and b:
                b[pos % len(b)] ^= 1 << rng.randrange(8)
            elif op == 1:
                del b[pos:pos + rng.randint(1, 40)]
            elif op == 2:
                b[pos:pos] = rng.choice(blobs)[:rng.randint(1, 300)]
            else:
                b[pos:pos] = rng.choice([b"\r\n", b";", b"0\r\n\r\n", b"ffffffff", b";id="])
        p = tmp_path / f"m{i:03d}"
        p.write_bytes(bytes(b))
        files.append(str(p))
    out = _run([os.path.join(out_dir, "fuzz_chunk"), *files])
    assert f"{len(files)} inputs ok" in out
