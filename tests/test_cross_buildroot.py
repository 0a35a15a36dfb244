"""The Buildroot external tree (buildroot/): structure, Kconfig, package conventions, and that
every file a package installs exists in this repository.

A full Buildroot build cannot run here (no network for Buildroot's downloads); these tests check
what can be checked without one: the Kconfig files parse with a real Kconfig parser (kconfiglib)
against stand-ins for the Buildroot symbols they use, the defconfig keeps every value it sets,
the .mk files follow Buildroot's naming rules, and the C core's Makefile targets the libarms-core
package calls build and install an ARM static library with the cross compiler, as Buildroot
would run them.
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

kconfiglib = pytest.importorskip("kconfiglib")

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / "buildroot"
PACKAGES = sorted(p for p in (TREE / "package").iterdir() if p.is_dir())

# Buildroot symbols the tree may depend on or select, with the Buildroot package defining them.
# A symbol outside this list and outside the tree is a typo or a package Buildroot lacks.
BUILDROOT_SYMBOLS = {
    "BR2_TOOLCHAIN_HAS_THREADS": "toolchain",
    "BR2_INSTALL_LIBSTDCPP": "toolchain",
    "BR2_PACKAGE_HAS_UDEV": "eudev / systemd",
    "BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS": "rustc",
    "BR2_PACKAGE_OPENSSL": "openssl",
    "BR2_PACKAGE_OPENSSL_FORCE_LIBOPENSSL": "openssl",
    "BR2_PACKAGE_PYTHON3": "python3",
    "BR2_PACKAGE_PYTHON3_SSL": "python3",
    "BR2_PACKAGE_PYTHON3_PYEXPAT": "python3",
    "BR2_PACKAGE_PYTHON3_SQLITE": "python3",
    "BR2_PACKAGE_PYTHON_CFFI": "python-cffi",
    "BR2_PACKAGE_PYTHON_DEFUSEDXML": "python-defusedxml",
    "BR2_PACKAGE_PYTHON_CRYPTOGRAPHY": "python-cryptography",
    "BR2_PACKAGE_PYTHON_REQUESTS": "python-requests",
    "BR2_PACKAGE_PYTHON_SERIAL": "python-serial",
    "BR2_PACKAGE_PYTHON_PYUDEV": "python-pyudev",
}
# Stand-ins: toolchain facts are true, packages are user choices, udev is absent (mdev).
_STUB = """
config BR2_TOOLCHAIN_HAS_THREADS
\tdef_bool y
config BR2_INSTALL_LIBSTDCPP
\tdef_bool y
config BR2_PACKAGE_HOST_RUSTC_TARGET_ARCH_SUPPORTS
\tdef_bool y
config BR2_PACKAGE_HAS_UDEV
\tbool
config BR2_PACKAGE_OPENSSL_FORCE_LIBOPENSSL
\tbool
"""


def pkg_var(pkgdir: Path) -> str:
    return pkgdir.name.upper().replace("-", "_")


def load_kconfig(tmp_path: Path):
    stub = tmp_path / "Config.in"
    user_syms = [s for s in BUILDROOT_SYMBOLS if f"config {s}\n" not in _STUB]
    stub.write_text(_STUB + "".join(f'config {s}\n\tbool "{s}"\n' for s in user_syms)
                    + f'source "{TREE}/Config.in"\n')
    os.environ["BR2_EXTERNAL_LIBARMS_PATH"] = str(TREE)
    os.environ["CONFIG_"] = ""  # Buildroot's .config names have no CONFIG_ prefix
    return kconfiglib.Kconfig(str(stub), warn=True, warn_to_stderr=False)


def defined_in_tree(sym) -> bool:
    return any(Path(node.filename).resolve().is_relative_to(TREE) for node in sym.nodes)


def mk_text(pkgdir: Path) -> str:
    return (pkgdir / f"{pkgdir.name}.mk").read_text()


def mk_vars(text: str) -> dict[str, str]:
    """Top-level `NAME = value` / `NAME += value` assignments, continuation lines joined."""
    joined = re.sub(r"\\\n\s*", " ", text)
    out: dict[str, str] = {}
    for m in re.finditer(r"^([A-Z0-9_]+)\s*(\+?=)\s*(.*)$", joined, re.M):
        name, op, value = m.groups()
        out[name] = (out.get(name, "") + " " + value).strip() if op == "+=" else value.strip()
    return out


def resolve_site(value: str) -> Path:
    return Path(value.replace("$(BR2_EXTERNAL_LIBARMS_PATH)", str(TREE))).resolve()


def setup_py_facts() -> tuple[str, dict[str, str]]:
    tree = ast.parse((REPO / "setup.py").read_text())
    version, scripts = None, {}
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "version":
            version = ast.literal_eval(node.value)
        if isinstance(node, ast.Dict):
            for k, v in zip(node.keys, node.values):
                if isinstance(k, ast.Constant) and k.value == "console_scripts":
                    for entry in ast.literal_eval(v):
                        name, target = (s.strip() for s in entry.split("=", 1))
                        scripts[name] = target
    return version, scripts


def test_buildroot_external_desc_names_the_tree_and_external_mk_includes_every_package():
    desc = dict(line.split(":", 1) for line in (TREE / "external.desc").read_text().splitlines()
                if line.strip())
    assert desc["name"].strip() == "LIBARMS"
    assert re.fullmatch(r"[A-Za-z0-9_]+", desc["name"].strip())
    assert desc["desc"].strip()
    ext_mk = (TREE / "external.mk").read_text()
    assert "$(BR2_EXTERNAL_LIBARMS_PATH)/package/*/*.mk" in ext_mk
    assert PACKAGES, "no package in buildroot/package"
    for pkgdir in PACKAGES:
        assert (pkgdir / f"{pkgdir.name}.mk").is_file(), pkgdir
        assert (pkgdir / "Config.in").is_file(), pkgdir


def test_buildroot_kconfig_parses_and_each_package_has_its_symbol_prompt_and_help(tmp_path):
    kc = load_kconfig(tmp_path)
    assert kc.warnings == []
    top = (TREE / "Config.in").read_text()
    for pkgdir in PACKAGES:
        assert f'source "$BR2_EXTERNAL_LIBARMS_PATH/package/{pkgdir.name}/Config.in"' in top
        sym = kc.syms[f"BR2_PACKAGE_{pkg_var(pkgdir)}"]
        assert sym.type == kconfiglib.BOOL
        node = sym.nodes[0]
        assert node.prompt[0] == pkgdir.name
        assert node.help and len(node.help) > 40, f"{pkgdir.name}: help text missing"
    # Buildroot's style: help text indented by a tab and two spaces, wrapped at 72 columns.
    for cfg in [TREE / "Config.in"] + [p / "Config.in" for p in PACKAGES]:
        in_help = False
        for lineno, line in enumerate(cfg.read_text().splitlines(), 1):
            if line.strip() == "help":
                in_help = True
                continue
            if in_help and line and not line.startswith("\t  "):
                in_help = False
            if in_help and line:
                assert len(line.expandtabs(8)) <= 72, f"{cfg}:{lineno} longer than 72 columns"


def test_buildroot_kconfig_refers_only_to_symbols_of_the_tree_or_of_buildroot(tmp_path):
    kc = load_kconfig(tmp_path)
    ours = {name for name, sym in kc.syms.items() if defined_in_tree(sym)}
    assert ours, "no symbol defined by the tree"
    referenced = set()
    for sym in kc.unique_defined_syms:
        if sym.name not in ours:
            continue
        referenced |= {s.name for s, _ in sym.selects}
        referenced |= {s.name for s in kconfiglib.expr_items(sym.direct_dep)
                       if isinstance(s, kconfiglib.Symbol)}
    unknown = referenced - ours - set(BUILDROOT_SYMBOLS) - {"y", "n", "m"}
    assert not unknown, f"symbols neither in the tree nor in Buildroot: {sorted(unknown)}"


def test_buildroot_defconfig_keeps_every_value_it_sets_for_the_tree(tmp_path):
    defconfigs = sorted((TREE / "configs").glob("*_defconfig"))
    assert defconfigs
    for defconfig in defconfigs:
        kc = load_kconfig(tmp_path)
        text = defconfig.read_text()
        assert re.search(r"^BR2_arm=y$", text, re.M) and "BR2_cortex_a7=y" in text  # ARMv7
        assert "BR2_OPTIMIZE_S=y" in text
        kc.load_config(str(defconfig))
        wanted = dict(re.findall(r"^(BR2_[A-Z0-9_]+)=(\S+)$", text, re.M))
        checked = 0
        for name, value in wanted.items():
            sym = kc.syms.get(name)
            if sym is None or not sym.nodes:
                continue  # a Buildroot symbol this test does not model (arch, toolchain, fs)
            if not defined_in_tree(sym) and name not in BUILDROOT_SYMBOLS:
                continue
            assert sym.str_value == value.strip('"'), \
                f"{defconfig.name}: {name}={value} is dropped (unmet dependency?)"
            checked += 1
        for pkgdir in PACKAGES:
            assert kc.syms[f"BR2_PACKAGE_{pkg_var(pkgdir)}"].str_value == "y", pkgdir.name
        assert checked >= len(PACKAGES)


def test_buildroot_mk_files_follow_the_package_conventions():
    version, _ = setup_py_facts()
    for pkgdir in PACKAGES:
        text = mk_text(pkgdir)
        var = pkg_var(pkgdir)
        banner = "#" * 80
        assert text.startswith(f"{banner}\n#\n# {pkgdir.name}\n#\n{banner}\n"), pkgdir.name
        last = [line for line in text.splitlines() if line.strip()][-1]
        infra = re.fullmatch(r"\$\(eval \$\((generic|python)-package\)\)", last)
        assert infra, f"{pkgdir.name}: last line must evaluate the package infrastructure"
        variables = mk_vars(text)
        for name in variables:
            assert name.startswith(var + "_"), f"{pkgdir.name}: variable {name} lacks {var}_"
        assert variables[f"{var}_VERSION"] == version, f"{pkgdir.name}: version != setup.py"
        assert variables.get(f"{var}_LICENSE")
        if infra.group(1) == "python":
            assert variables[f"{var}_SETUP_TYPE"] == "setuptools"
            assert "host-python-cffi" in variables[f"{var}_DEPENDENCIES"].split()
        site = variables.get(f"{var}_SITE")
        if site is None:
            continue  # no source of its own
        if variables.get(f"{var}_SITE_METHOD") == "local":
            path = resolve_site(site)
            assert path == REPO or REPO in path.parents, f"{pkgdir.name}: site outside the repo"
            assert not (pkgdir / f"{pkgdir.name}.hash").exists()
        else:
            hash_file = pkgdir / f"{pkgdir.name}.hash"
            assert hash_file.is_file(), f"{pkgdir.name}: fetched source needs a .hash file"
            assert re.search(r"^sha256\s+[0-9a-f]{64}\s+\S+", hash_file.read_text(), re.M)


def test_buildroot_local_sources_exclude_build_products_and_the_virtualenv():
    for pkgdir in PACKAGES:
        variables = mk_vars(mk_text(pkgdir))
        var = pkg_var(pkgdir)
        if variables.get(f"{var}_SITE_METHOD") != "local":
            continue
        excl = variables.get(f"{var}_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS", "")
        assert "*.so" in excl and "build" in excl, pkgdir.name
        if resolve_site(variables[f"{var}_SITE"]) == REPO:
            for must in ("/.venv", "/build", "/buildroot", "/tests"):
                assert f"--exclude {must}" in excl, f"{pkgdir.name}: {must} not excluded"
            # setup.py reads README.md for its long description: it must stay in.
            assert "README" not in excl


def test_buildroot_every_installed_file_exists_in_the_repo_and_none_is_orphaned():
    referenced_anywhere: set[Path] = set()
    for pkgdir in PACKAGES:
        text = re.sub(r"\\\n\s*", " ", mk_text(pkgdir))
        var = pkg_var(pkgdir)
        for rel in re.findall(r"\$\(" + var + r"_PKGDIR\)/([\w.+-]+)", text):
            path = pkgdir / rel
            assert path.is_file(), f"{pkgdir.name} installs {rel}, missing from {pkgdir}"
            referenced_anywhere.add(path)
        site = mk_vars(text).get(f"{var}_SITE")
        for rel in re.findall(r"\$\(@D\)/([\w./+*-]+)", text):
            assert site, f"{pkgdir.name} installs $(@D)/{rel} without a site"
            if rel.split("/")[0] == "out":
                continue  # a build product: test_..._make_targets_build_... makes it
            assert (resolve_site(site) / rel).exists(), f"{pkgdir.name}: $(@D)/{rel} missing"
        for line in text.splitlines():
            if "$(INSTALL)" in line and "-m 0755" in line and "/etc/init.d/" in line:
                script = re.search(r"_PKGDIR\)/(S\d\d[\w-]+)", line).group(1)
                assert line.rstrip().endswith(f"/etc/init.d/{script}")
    for pkgdir in PACKAGES:
        for f in pkgdir.iterdir():
            if f.name in ("Config.in", f"{pkgdir.name}.mk", f"{pkgdir.name}.hash"):
                continue
            assert f in referenced_anywhere, f"{f} is in the tree but no package installs it"


def test_buildroot_init_scripts_start_console_scripts_that_setup_py_installs():
    _, scripts = setup_py_facts()
    inits = sorted(TREE.glob("package/*/S[0-9][0-9]*"))
    assert inits
    for init in inits:
        # Buildroot's rule: the file is not executable in the tree, the .mk installs it 0755
        # (checked in test_buildroot_every_installed_file_...), and it passes shellcheck.
        assert not os.access(init, os.X_OK), f"{init}: Buildroot wants it not executable"
        subprocess.run(["sh", "-n", str(init)], check=True)
        if shutil.which("shellcheck"):
            r = subprocess.run(["shellcheck", "-s", "sh", str(init)], capture_output=True,
                               text=True)
            assert r.returncode == 0, r.stdout
        text = init.read_text()
        daemon = re.search(r'^DAEMON="([\w-]+)"$', text, re.M).group(1)
        assert init.name[3:] == daemon, f"{init.name}: DAEMON={daemon} does not match the name"
        assert '--startas "/usr/bin/$DAEMON"' in text
        assert daemon in scripts, f"{daemon} is not a console script of setup.py"
        for verb in ("start", "stop", "restart", "reload"):
            assert re.search(rf"^\t{verb}\|?|\|{verb}\b|^\t{verb}\)", text, re.M), verb
    units = list(TREE.glob("package/*/*.service"))
    for pkgdir in PACKAGES:
        site = mk_vars(mk_text(pkgdir)).get(f"{pkg_var(pkgdir)}_SITE")
        for rel in re.findall(r"\$\(@D\)/([\w./-]+\.service)", mk_text(pkgdir)):
            units.append(resolve_site(site) / rel)
    assert len(units) >= 2
    for unit in units:
        text = unit.read_text()
        exe = re.search(r"^ExecStart=(\S+)", text, re.M).group(1)
        assert exe.startswith("/usr/bin/") and exe[len("/usr/bin/"):] in scripts, unit.name


def test_buildroot_python_package_removes_only_modules_that_exist():
    _, scripts = setup_py_facts()
    text = mk_text(TREE / "package" / "python-libarms")
    removed = re.findall(r"\$\(PYTHON_LIBARMS_SITE_PACKAGES\)/([\w/]+)", text)
    assert {"bridge", "libarms/testserver", "libarms/demo"} <= set(removed), removed
    for rel in removed:
        stem = REPO / rel.replace("/__pycache__", "")
        assert stem.is_dir() or stem.with_suffix(".py").is_file(), f"removes {rel}: not in repo"
    for name in re.findall(r"\$\(TARGET_DIR\)/usr/bin/([\w-]+)", text):
        assert name in scripts, f"removes /usr/bin/{name}, which setup.py does not install"


def test_buildroot_armsd_default_config_is_read_by_armsd_and_every_example_line_is_valid(
        tmp_path):
    from libarms.daemon.config import load_config, parse_config
    from libarms.errors import ConfigError
    conf = (TREE / "package" / "python-libarms" / "armsd.conf").read_text()
    cfg = parse_config(conf, source="armsd.conf")
    assert cfg.warnings == ()
    assert not cfg.distribution_id  # the device's own id: the integrator sets it
    assert cfg.path_state_cache == "/var/lib/armsd/state"
    (tmp_path / "armsd.conf").write_text(conf)
    with pytest.raises(ConfigError, match="distribution-id"):
        load_config(str(tmp_path / "armsd.conf"))   # as S80armsd's check: no id, no start
    # Every commented example ("#key: value") is a valid line for armsd.
    examples = re.sub(r"^#([a-z][a-z0-9-]+:)", r"\1", conf, flags=re.M)
    assert examples != conf
    cfg = parse_config(examples, source="armsd.conf (examples)")
    assert cfg.warnings == ()
    assert cfg.distribution_id and cfg.path_root_ca == "/etc/armsd/ca.pem"
    assert set(cfg.scripts) >= {"script-line-ctrl", "script-command", "script-reconfig"}


def test_buildroot_bridge_default_config_is_read_by_the_bridge(tmp_path):
    from bridge.config import load
    text = mk_text(TREE / "package" / "broute-bridge")
    src = re.search(r"\$\(@D\)/([\w.-]+)\s*\\?\s*\$\(TARGET_DIR\)/etc/broute-bridge.conf",
                    re.sub(r"\\\n\s*", " ", text)).group(1)
    cfg = load(str(REPO / "bridge" / src))
    assert cfg is not None
    default = (TREE / "package" / "broute-bridge" / "broute-bridge.default").read_text()
    assert 'BROUTE_BRIDGE_ARGS="-c /etc/broute-bridge.conf"' in default
    assert "ENABLED=no" in default   # no start with the sample's placeholder credentials


def mk_define(text: str, name: str) -> list[str]:
    """The shell lines of ``define NAME ... endef``, continuation lines joined."""
    body = re.search(rf"^define {name}\n(.*?)^endef", text, re.M | re.S).group(1)
    return [line.strip() for line in re.sub(r"\\\n\s*", " ", body).splitlines() if line.strip()]


@pytest.mark.skipif(not (REPO / "csrc" / "Makefile").exists(), reason="csrc/Makefile not merged")
@pytest.mark.skipif(shutil.which("arm-linux-gnueabihf-gcc") is None, reason="no ARM compiler")
def test_buildroot_core_package_commands_build_and_install_an_arm_static_library(tmp_path):
    """Run libarms-core.mk's own build and staging-install commands, as Buildroot would, with
    the ARM cross compiler standing in for Buildroot's toolchain."""
    text = mk_text(TREE / "package" / "libarms-core")
    src = tmp_path / "libarms-core-0.1.0"     # $(@D): the rsync copy of csrc/
    shutil.copytree(REPO / "csrc", src,
                    ignore=shutil.ignore_patterns("*.o", "*.a", "*.so", "build", "__pycache__"))
    staging = tmp_path / "staging"
    # OpenSSL's ARM headers, as Buildroot's staging would have them: from the armhf sysroot
    # (built once and cached by scripts/sysroot.sh, shared with the other cross tests).
    r = subprocess.run(["bash", str(REPO / "scripts" / "sysroot.sh"), "armhf"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    sysroot = Path(r.stdout.strip().splitlines()[-1])
    ssl_inc = f"-I{sysroot}/usr/include -I{sysroot}/usr/include/arm-linux-gnueabihf"
    subst = {
        "$(TARGET_MAKE_ENV)": "",
        "$(MAKE)": "make",
        # what Buildroot's TARGET_CONFIGURE_OPTS passes, for an ARMv7 -Os target
        "$(TARGET_CONFIGURE_OPTS)": (f'CC=arm-linux-gnueabihf-gcc AR=arm-linux-gnueabihf-ar '
                                     f'CFLAGS="-Os -march=armv7-a -mfpu=neon {ssl_inc}"'),
        "$(INSTALL)": "install",
        "$(@D)": str(src),
        "$(STAGING_DIR)": str(staging),
    }
    for define in ("LIBARMS_CORE_BUILD_CMDS", "LIBARMS_CORE_INSTALL_STAGING_CMDS"):
        for line in mk_define(text, define):
            for k, v in subst.items():
                line = line.replace(k, v)
            assert "$(" not in line, f"unsubstituted make variable in: {line}"
            r = subprocess.run(["sh", "-c", line], capture_output=True, text=True)
            assert r.returncode == 0, f"{line}\n{r.stderr[-3000:]}"
    lib = staging / "usr" / "lib" / "libarmscore.a"
    assert lib.is_file()
    headers = sorted(p.name for p in (staging / "usr" / "include" / "armscore").glob("*.h"))
    assert "arms_hb.h" in headers and "arms_chunk.h" in headers
    out = subprocess.run(["arm-linux-gnueabihf-readelf", "-h", str(lib)], check=True,
                         capture_output=True, text=True).stdout
    assert re.search(r"Machine:\s+ARM$", out, re.M)
    members = subprocess.run(["arm-linux-gnueabihf-ar", "t", str(lib)], check=True,
                             capture_output=True, text=True).stdout.split()
    assert "arms_hb.o" in members and "arms_chunk.o" in members


def _wait_until(pred, timeout: float, what: str) -> None:
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.skipif(shutil.which("start-stop-daemon") is None, reason="no start-stop-daemon")
def test_buildroot_armsd_init_script_starts_reloads_and_stops_a_real_armsd(tmp_path):
    """S80armsd with its paths moved under tmp_path, Debian's start-stop-daemon standing in for
    BusyBox's (same options), and the real armsd provisioning from the test server."""
    import sys

    from libarms.testserver.server import TestServer
    did = "0001-0000-0000-0000-0000-0000-00B5-0001"
    from libarms.testserver.pushservice import PushService
    with TestServer(str(tmp_path / "server")) as srv:
        # The push side too: without it armsd's method query fails after the pull and, on a
        # loaded machine, armsd leaves with "boot fail" before the test reloads and stops it.
        srv.add_component(PushService(str(tmp_path / "server"), token="tok",
                                      methods=("https-tunnel",)))
        srv.add_device(did, "init-ls-key", service={
            "modules": [{"id": 1, "version": "1", "config": "x\n"}]})
        (tmp_path / "iconfig").write_text(srv.initial_config())
        conf = tmp_path / "armsd.conf"
        conf.write_text(f"distribution-id: {did}\nls-sa-key: init-ls-key\n"
                        f"path-root-ca: {srv.ca_path}\npath-iconfig: {tmp_path / 'iconfig'}\n"
                        f"path-work-dir: {tmp_path / 'work'}\n"
                        f"path-state-cache: {tmp_path / 'state'}\n")
        bindir = tmp_path / "bin"
        bindir.mkdir()
        (bindir / "armsd").write_text(f"#!/bin/sh\nexec {sys.executable} -m libarms.daemon.main "
                                      f'"$@"\n')
        (bindir / "armsd").chmod(0o755)
        log = tmp_path / "armsd.log"
        (tmp_path / "default").write_text(f'ARMSD_ARGS="-l {log}"\n')
        script = (TREE / "package" / "python-libarms" / "S80armsd").read_text()
        for old, new in {'"/var/run/$DAEMON.pid"': f'"{tmp_path}/armsd.pid"',
                         '"/etc/armsd/armsd.conf"': f'"{conf}"',
                         '"/etc/default/$DAEMON"': f'"{tmp_path}/default"',
                         '"/usr/bin/$DAEMON"': f'"{bindir}/$DAEMON"',
                         "/var/lib/armsd": f"{tmp_path}/lib"}.items():
            assert old in script, old
            script = script.replace(old, new)
        init = tmp_path / "S80armsd"
        init.write_text(script)
        env = dict(os.environ, PYTHONPATH=str(REPO))

        def run(verb: str) -> str:
            r = subprocess.run(["sh", str(init), verb], capture_output=True, text=True, env=env,
                               timeout=60)
            assert r.returncode == 0, r.stdout + r.stderr
            return r.stdout

        pidfile = tmp_path / "armsd.pid"
        try:
            assert "OK" in run("start")
            _wait_until(pidfile.exists, 10, "the PID file")
            pid = int(pidfile.read_text())
            srv.wait_for_request(did, "config-solicitation", timeout=60)
            _wait_until(lambda: log.exists() and "state saved" in log.read_text(), 30,
                        "armsd to save its state after the pull")
            _wait_until(lambda: "PUSH_WAIT" in log.read_text(), 60, "armsd to reach push wait")
            assert "OK" in run("reload")
            _wait_until(lambda: "configuration reloaded" in log.read_text(), 30, "the reload")
            assert "OK" in run("stop")
            assert not pidfile.exists()
            status = Path(f"/proc/{pid}/status")
            assert not status.exists() or "\nState:\tZ" in status.read_text()  # gone (or a zombie)
            assert "stopped by SIGTERM" in log.read_text()
        finally:
            if pidfile.exists():
                subprocess.run(["start-stop-daemon", "--stop", "--pidfile", str(pidfile),
                                "--retry", "5"], capture_output=True)
        # Without a distribution id the script does not start armsd, and says why.
        conf.write_text("ls-sa-key: x\n")
        assert "SKIPPED (no distribution-id" in run("start")
        assert not pidfile.exists()
