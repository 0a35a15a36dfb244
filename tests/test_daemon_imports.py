"""What a running armsd has imported once it sits in PUSH_WAIT with heartbeats going: the
footprint budget (issue 5: steady RSS) depends on heavy modules staying out of it.

armsd runs as a real subprocess against the test server (LS, RS, tunnel proxy, heartbeat
receiver); a two-line wrapper runs the real ``libarms.daemon.main`` and, at its clean exit after
SIGTERM, writes ``sorted(sys.modules)`` to a file. The interpreter runs with ``-S`` (no site
set-up), as the modules an installed package sees on a device.
"""

import json
import os
import signal
import subprocess
import sys
import sysconfig
import threading

import pytest

pytest.importorskip("libarms.testserver.pushservice", reason="needs the push service merged")

from conftest_daemon import DISTID, closed_port, write_conf  # noqa: E402

from libarms.testserver.heartbeat import HeartbeatReceiver  # noqa: E402
from libarms.testserver.pushservice import PushService  # noqa: E402
from libarms.testserver.server import TestServer as ArmsTestServer  # noqa: E402

LS_KEY = "ls-key-import-tests"

#: Modules armsd must not hold at steady state: test-server or pull-tool stacks, and the stdlib
#: parts that cost memory for nothing (each line says why it was a candidate).
FORBIDDEN = [
    "requests", "urllib3", "cryptography",         # ~9 MiB / ~10 MiB: test and server side only
    "libarms.testserver", "libarms.demo", "bridge",
    "sqlite3", "http.client", "http.server", "email", "xml.dom", "xml.sax",
    "cffi", "pycparser", "ctypes",                  # the core is loaded, not built
    "multiprocessing", "pickle", "zipfile", "tarfile", "decimal",
    "logging.handlers",                             # only with -l FILE or --syslog
    "shutil", "bz2", "lzma", "tempfile",            # argparse width, SA credentials via memfd
    "encodings.idna", "unicodedata", "stringprep",  # getaddrinfo/SNI with a str host name
    "asyncio", "concurrent", "contextvars",         # push phase on threads: asyncio ~3.4-5 MiB
    "queue",                                        # the callback runner has its own deque
    "dataclasses", "inspect", "ast", "dis",          # records are libarms._record (~1.5 MiB)
    "typing",                                       # annotations only (TYPE_CHECKING)
    "argparse", "getopt", "gettext", "locale",      # armsd's options: table + own parser
    "json",                                         # state blob, module list: libarms._lines
    "ipaddress",                                    # numeric address checks: libarms._inet
    "hashlib", "hmac", "_hashlib",                  # heartbeats keyed in C; state blob CRC-32
    "subprocess",                                   # imported by the first hook (none here)
    "random",                                       # push jitter from os.urandom; hb-dummy only
]

WRAPPER = (
    "import atexit, os, runpy, sys\n"
    "atexit.register(lambda: open(os.environ['ARMSD_MODULES_OUT'], 'w')"
    ".write('\\n'.join(sorted(sys.modules))))\n"
    "sys.argv = ['armsd'] + sys.argv[1:]\n"
    "runpy.run_module('libarms.daemon.main', run_name='__main__', alter_sys=True)\n"
)


@pytest.fixture(params=["https-tunnel", "https-simple"])
def server(tmp_path, request):
    sd = str(tmp_path / "server")
    srv = ArmsTestServer(sd).start()
    srv.push_method = request.param
    try:
        srv.add_component(PushService(sd, token="imports", methods=(request.param,)))
        rx = HeartbeatReceiver()
        srv.add_component(rx)
        srv.add_device(DISTID, LS_KEY, service={
            "modules": [{"id": 1, "version": "1", "info": "one", "config": "x\n"}],
            "heartbeat": [{"host": "127.0.0.1", "port": rx.port,
                           "passphrase": "hb-pass-imports", "interval": 1}]})
        yield srv
    finally:
        srv.stop()


def device_like_env(env: dict) -> dict:
    """Run armsd as on a device: ``python -S`` with the checkout and this venv's site-packages
    on PYTHONPATH, so that no site set-up runs (a dev venv's editable-install finder imports
    pathlib, urllib.parse and ipaddress at start-up: not armsd's doing, not on a device)."""
    paths = sysconfig.get_paths()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return dict(env, PYTHONPATH=os.pathsep.join(dict.fromkeys([root, paths["purelib"],
                                                               paths["platlib"]])))


def steady_state_modules(tmp_path, server) -> set:
    ic = tmp_path / "initial-config"
    ic.write_text(server.initial_config(retry_interval=1, retry_max=1))
    conf = write_conf(tmp_path / "armsd.conf", distribution_id=DISTID, ls_sa_key=LS_KEY,
                      path_root_ca=server.ca_path, path_iconfig=str(ic),
                      path_work_dir=str(tmp_path / "work"),
                      path_state_cache=str(tmp_path / "state"), hb_traffic_if0="lo")
    out = tmp_path / "modules.txt"
    env = device_like_env(dict(os.environ, ARMSD_MODULES_OUT=str(out)))
    extra = ["-p", str(closed_port())] if server.push_method == "https-simple" else []
    proc = subprocess.Popen([sys.executable, "-S", "-c", WRAPPER, "-f", conf] + extra,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, env=env)
    lines, steady = [], threading.Event()

    def read():
        for line in proc.stderr:
            lines.append(line)
            if "heartbeat started" in line and any("PUSH_WAIT" in ln for ln in lines):
                steady.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert steady.wait(60), "armsd did not reach PUSH_WAIT:\n" + "".join(lines[-30:])
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(30)
        except subprocess.TimeoutExpired:
            rc = "no exit within 30 s of SIGTERM"
        assert rc == 0, "".join(lines[-30:])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        reader.join(10)
    return set(out.read_text().split())


def test_armsd_in_push_wait_holds_no_heavy_or_test_only_modules(tmp_path, server):
    """Both push methods: the tunnel worker and the https-simple listener."""
    mods = steady_state_modules(tmp_path, server)
    # the dump is real: the push phase and the C core are there
    assert {"libarms.push", "libarms.heartbeat", "libarms._core", "ssl"} <= mods
    held = sorted(m for m in mods if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert held == [], "armsd holds at steady state: " + json.dumps(held)
