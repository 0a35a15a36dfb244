"""Cross-build libarms for a Debian foreign architecture and lay out a staging tree.

Run by scripts/cross/build.sh (which builds the sysroot first); usable alone:

    .venv/bin/python scripts/cross/build.py --arch armhf --sysroot build/sysroot-armhf

1. The C core's cffi extension: cffi (on the host) writes the C source of ``libarms._core`` from
   ``csrc/build_core.py``'s ``ffibuilder``; the cross gcc compiles it with the extension's own
   sources, include directories, macros and libraries, against the sysroot's Python 3.11 headers
   and libcrypto. The result is named with the sysroot Python's EXT_SUFFIX, e.g.
   ``_core.cpython-311-arm-linux-gnueabihf.so``.
2. ``build/stage-ARCH/``: this project's Python packages, the extension, and the pure-Python
   distributions libarms depends on, copied from the host virtualenv. Compiled dependencies are
   not copied (their host binaries cannot run there): the sysroot provides ``_cffi_backend``.
   Run with ``qemu-arm -L SYSROOT SYSROOT/usr/bin/python3.11`` and ``PYTHONPATH=build/stage-ARCH``.

Prints the staging directory on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import ast
import importlib.metadata as md
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BUILDER = REPO / "csrc" / "build_core.py"
PROJECT_PACKAGES = ("libarms", "bridge")


class Arch:
    """What differs between the Debian architectures we build for."""

    TABLE = {
        # debian arch: (gcc prefix / multiarch triplet, qemu-user binary, extra cflags)
        "armhf": ("arm-linux-gnueabihf", "qemu-arm", ["-march=armv7-a", "-mfpu=vfpv3-d16",
                                                      "-mfloat-abi=hard", "-mthumb"]),
        "mipsel": ("mipsel-linux-gnu", "qemu-mipsel", ["-march=mips32r2"]),
        "mips": ("mips-linux-gnu", "qemu-mips", ["-march=mips32r2"]),
    }

    def __init__(self, name: str):
        if name not in self.TABLE:
            raise SystemExit(f"build.py: unsupported architecture {name!r} "
                             f"(one of {', '.join(self.TABLE)})")
        self.name = name
        self.triplet, self.qemu, self.cflags = self.TABLE[name]
        self.cc = f"{self.triplet}-gcc"
        self.strip = f"{self.triplet}-strip"


def log(msg: str) -> None:
    print(f"[cross-build] {msg}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    log(" ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def sysroot_python_facts(sysroot: Path, arch: Arch) -> dict[str, str]:
    """EXT_SUFFIX and the Python version of the sysroot's Python, from its sysconfigdata."""
    libdir = sysroot / "usr" / "lib" / "python3.11"
    cands = sorted(libdir.glob(f"_sysconfigdata_*{arch.triplet}*.py"))
    if not cands:
        raise SystemExit(f"build.py: no sysconfigdata for {arch.triplet} in {libdir}; "
                         "is the sysroot complete (libpython3.11-stdlib)?")
    tree = ast.parse(cands[0].read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "build_time_vars":
            data = ast.literal_eval(node.value)
            return {"EXT_SUFFIX": data["EXT_SUFFIX"], "VERSION": data["VERSION"]}
    raise SystemExit(f"build.py: cannot read build_time_vars from {cands[0]}")


def load_ffibuilder():
    if not BUILDER.exists():
        return None
    sys.path.insert(0, str(BUILDER.parent))
    try:
        ns = runpy.run_path(str(BUILDER), run_name="libarms_cross_build")
    finally:
        sys.path.pop(0)
    return ns["ffibuilder"]


def build_extension(arch: Arch, sysroot: Path, out_dir: Path, opt: str = "-O2") -> Path | None:
    """Cross-compile libarms._core into out_dir; returns the .so path (None: no C core yet)."""
    ffibuilder = load_ffibuilder()
    if ffibuilder is None:
        log(f"{BUILDER.relative_to(REPO)} is not there yet: staging without libarms._core")
        return None
    facts = sysroot_python_facts(sysroot, arch)
    work = REPO / "build" / f"ext-{arch.name}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    # distutils_extension() writes the C source and describes how setuptools would build it:
    # sources, include dirs, macros, libraries. We build exactly that with the cross compiler.
    cwd = os.getcwd()
    os.chdir(REPO)  # the builder's relative paths are relative to the repository
    try:
        ext = ffibuilder.distutils_extension(tmpdir=str(work), verbose=False)
    finally:
        os.chdir(cwd)
    name = ext.name.rsplit(".", 1)[-1]
    target = out_dir / (name + facts["EXT_SUFFIX"])
    inc = [sysroot / "usr/include/python3.11", sysroot / f"usr/include/{arch.triplet}/python3.11",
           sysroot / "usr/include", sysroot / f"usr/include/{arch.triplet}"]
    libdir = sysroot / f"usr/lib/{arch.triplet}"
    cmd = [arch.cc, "-shared", "-fPIC", "-fno-strict-aliasing", "-Wall", *arch.cflags]
    for macro, value in ext.define_macros or []:
        cmd.append(f"-D{macro}" if value is None else f"-D{macro}={value}")
    for m in ext.undef_macros or []:
        cmd.append(f"-U{m}")
    cmd += [f"-I{REPO / d}" for d in ext.include_dirs or []]
    cmd += [f"-I{d}" for d in inc]
    cmd += list(ext.extra_compile_args or [])
    cmd.append(opt)  # after the builder's own flags, so that it wins
    cmd += [str(REPO / s) if not os.path.isabs(s) else s for s in ext.sources]
    cmd += ["-o", target, f"-L{libdir}", f"-Wl,-rpath-link,{libdir}",
            f"-Wl,-rpath-link,{sysroot / 'lib' / arch.triplet}"]
    cmd += [f"-L{REPO / d}" for d in ext.library_dirs or []]
    cmd += [f"-l{lib}" for lib in ext.libraries or []]
    cmd += list(ext.extra_link_args or [])
    # The host's Python headers must never leak in: keep the environment's flags out.
    env = {k: v for k, v in os.environ.items() if k not in ("CFLAGS", "CPPFLAGS", "LDFLAGS")}
    run(cmd, env=env)
    run([arch.strip, "--strip-unneeded", target])
    return target


def pure_distributions(root: str = "libarms") -> tuple[list[md.Distribution], list[str]]:
    """The pure-Python distributions `root` depends on (transitively), and the compiled ones."""
    seen: dict[str, md.Distribution] = {}
    compiled: list[str] = []
    todo = [r for r in (md.requires(root) or [])]
    while todo:
        req = todo.pop()
        if ";" in req:  # environment markers: extras only (tests), skip them
            continue
        name = re.split(r"[<>=!~\[ (]", req, 1)[0].strip()
        key = name.lower().replace("-", "_")
        if key in seen or name in compiled:
            continue
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            log(f"dependency {name} is not installed in this Python; skipped")
            continue
        wheel = dist.read_text("WHEEL") or ""
        if "Root-Is-Purelib: true" not in wheel:
            compiled.append(name)
            continue
        seen[key] = dist
        todo.extend(dist.requires or [])
    return list(seen.values()), compiled


def precompile(arch: Arch, sysroot: Path, stage_dir: Path) -> None:
    """Write the byte code of the sysroot's standard library and of the staging tree.

    Debian compiles byte code in maintainer scripts, which ``dpkg -x`` does not run, and the
    foreign Python may not write any (read-only tree, PYTHONDONTWRITEBYTECODE): without this,
    every start under qemu compiles the standard library again (about twice as slow). Byte code
    does not depend on the CPU; the host writes it when both Pythons share the magic number.
    """
    import importlib.util
    magic = subprocess.run([arch.qemu, "-L", sysroot, sysroot / "usr/bin/python3.11", "-c",
                            "import importlib.util,sys;"
                            "sys.stdout.write(importlib.util.MAGIC_NUMBER.hex())"],
                           check=True, capture_output=True, text=True, cwd="/").stdout.strip()
    if magic != importlib.util.MAGIC_NUMBER.hex():
        log(f"host Python's byte code ({importlib.util.MAGIC_NUMBER.hex()}) is not the "
            f"sysroot's ({magic}): not precompiling; starts under qemu will be slower")
        return
    stamp = sysroot / f".pyc-{magic}"
    if not stamp.exists():
        # Paths inside the byte code are the ones the foreign Python sees (-s/-p).
        run([sys.executable, "-m", "compileall", "-q", "-j0", "-s", sysroot, "-p", "/",
             "-x", r"lib2to3/tests|/test/", sysroot / "usr/lib/python3.11"],
            stdout=subprocess.DEVNULL)
        stamp.touch()
    run([sys.executable, "-m", "compileall", "-q", "-j0", stage_dir], stdout=subprocess.DEVNULL)


def copy_tree(src: Path, dst: Path) -> None:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.so", "*.o", "_core.c", "*.egg-info"), dirs_exist_ok=True)


def inputs_digest(arch: Arch, sysroot: Path, opt: str) -> str:
    """A digest of everything the staging tree is made from: reuse the tree when unchanged."""
    import hashlib
    h = hashlib.sha256(f"{arch.name}|{sysroot}|{opt}|{sys.version}".encode())
    # a rebuilt sysroot (new stamp) rebuilds the stage and its byte code too
    h.update(repr(sorted(p.name for p in sysroot.glob(".complete-*"))).encode())
    files = [Path(__file__)] + sorted((REPO / "csrc").glob("*.[ch]")) + [BUILDER]
    for pkg in PROJECT_PACKAGES:
        files += sorted(p for p in (REPO / pkg).rglob("*") if p.is_file()
                        and "__pycache__" not in p.parts and p.suffix not in (".so", ".pyc")
                        and p.name != "_core.c")
    for f in files:
        if f.exists():
            h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes() + b"\0")
    dists, compiled = pure_distributions()
    h.update(repr(sorted((d.metadata["Name"], d.version) for d in dists) + compiled).encode())
    return h.hexdigest()[:16]


def stage(arch: Arch, sysroot: Path, out: Path, opt: str) -> Path:
    digest = inputs_digest(arch, sysroot, opt)
    info = out / "STAGE-INFO"
    if info.exists() and f"inputs={digest}\n" in info.read_text():
        log(f"{out.relative_to(REPO) if REPO in out.parents else out} is up to date")
        return out
    tmp = Path(tempfile.mkdtemp(prefix=f"stage-{arch.name}.", dir=out.parent))
    try:
        for pkg in PROJECT_PACKAGES:
            copy_tree(REPO / pkg, tmp / pkg)
        so = build_extension(arch, sysroot, tmp / "libarms", opt)
        dists, compiled = pure_distributions()
        for dist in dists:
            n = 0
            for f in dist.files or []:
                parts = Path(f).parts
                if parts[0].endswith(".dist-info") or parts[0] in ("..", "bin") or f.suffix == ".pyc":
                    continue
                dst = tmp / f
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(dist.locate_file(f), dst)
                n += 1
            log(f"staged {dist.metadata['Name']} {dist.version} ({n} files)")
        if compiled:
            log("not staged (compiled; the sysroot's Python must provide them if needed): "
                + ", ".join(compiled))
        (tmp / "STAGE-INFO").write_text(
            f"arch={arch.name}\nsysroot={sysroot}\ninputs={digest}\n"
            f"extension={so.name if so else ''}\n"
            f"pure={','.join(d.metadata['Name'] for d in dists)}\ncompiled={','.join(compiled)}\n")
        shutil.rmtree(out, ignore_errors=True)
        tmp.rename(out)
        precompile(arch, sysroot, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arch", required=True, help="Debian architecture: armhf, mipsel")
    ap.add_argument("--sysroot", required=True, type=Path, help="sysroot from sysroot.sh")
    ap.add_argument("--out", type=Path, help="staging directory (default build/stage-ARCH)")
    ap.add_argument("--opt", default="-O2", help="optimisation flag for the extension")
    args = ap.parse_args(argv)
    arch = Arch(args.arch)
    if shutil.which(arch.cc) is None:
        raise SystemExit(f"build.py: {arch.cc} not found (Debian: gcc-{arch.triplet})")
    sysroot = args.sysroot.resolve()
    if not (sysroot / "usr/bin/python3.11").exists():
        raise SystemExit(f"build.py: {sysroot} has no usr/bin/python3.11; run sysroot.sh first")
    out = (args.out or REPO / "build" / f"stage-{arch.name}").resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    print(stage(arch, sysroot, out, args.opt))
    return 0


if __name__ == "__main__":
    sys.exit(main())
