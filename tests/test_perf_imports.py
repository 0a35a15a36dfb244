"""The device modules (daemon, pull and push sides) import none of the stdlib modules trimmed
for the footprint budget (issue 5): typing (annotations only), json, ipaddress, hashlib/hmac,
argparse/getopt (with gettext and locale), subprocess (first hook), random, queue, asyncio,
dataclasses. Checked by importing them in a fresh ``python -S`` (no site set-up: on a device
nothing else runs before armsd), so that a stray top-level import in any of them fails here
whatever path armsd takes at run time."""

import os
import subprocess
import sys
import sysconfig

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

#: The modules a running armsd loads.
DEVICE_MODULES = [
    "libarms.daemon.main", "libarms.daemon.app", "libarms.daemon.config", "libarms.daemon.hooks",
    "libarms.daemon.logs", "libarms.daemon.modules", "libarms.daemon.statefile",
    "libarms.daemon.stats", "libarms.agent", "libarms.heartbeat", "libarms.chunkcodec",
    "libarms.configstore", "libarms.protocol.push", "libarms.protocol.cstate",
    "libarms.transport.https", "libarms.transport.tls", "libarms.push",
    "libarms.transport.simple", "libarms.transport.tunnel", "libarms.transport.pushtls",
]
TRIMMED = ["typing", "json", "ipaddress", "hashlib", "hmac", "argparse", "getopt", "gettext",
           "locale", "subprocess", "random", "queue", "shutil", "tempfile", "urllib", "ctypes",
           "asyncio", "dataclasses", "inspect"]


def imported_by(modules) -> set:
    paths = sysconfig.get_paths()
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        dict.fromkeys([ROOT, paths["purelib"], paths["platlib"]])))
    code = f"import sys\nfor m in {modules!r}: __import__(m)\nprint(' '.join(sys.modules))"
    r = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True,
                       env=env, timeout=60)
    assert r.returncode == 0, r.stderr
    return set(r.stdout.split())


def test_pull_side_and_daemon_modules_import_none_of_the_trimmed_stdlib_modules():
    mods = imported_by(DEVICE_MODULES)
    assert "libarms._core" in mods and "ssl" in mods          # the import was real
    held = sorted(m for m in mods if m.split(".")[0] in TRIMMED)
    assert held == []


@pytest.mark.parametrize("trimmed", ["json", "ipaddress", "hashlib"])
def test_the_check_sees_a_trimmed_module_when_one_is_imported(trimmed):
    assert trimmed in imported_by(["libarms.agent", trimmed])
