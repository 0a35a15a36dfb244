"""The agent on 32-bit ARM (armhf) and MIPS (mipsel) under qemu-user, against the host.

Debian's own Python 3.11 from a foreign sysroot runs under ``qemu-arm`` / ``qemu-mipsel`` with
the staging tree of ``scripts/cross/build.sh`` (this project's packages and the C core
cross-compiled for that CPU). The test server runs natively on the host over loopback, and every
outcome is asserted from the host's side: what the server received, what the heartbeat receiver
verified. Marked ``cross``; the first run downloads the sysroot (cached under build/).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest_cross import ARCHES, REPO, Device, ForeignPython, cross_stage
from _vectors import VECTORS_DIR  # noqa: E402

pytestmark = [pytest.mark.cross, pytest.mark.slow]


@pytest.fixture(params=sorted(ARCHES), scope="module")
def foreign(request) -> ForeignPython:
    """Debian's Python of that architecture under qemu-user, with this project staged."""
    return cross_stage(request.param)


VECTORS = Path(VECTORS_DIR)  # the libarms 5.33 captures (see _vectors.py)
DISTRIBUTION_ID = {"armhf": "0001-0000-0000-0000-0000-0000-00A7-0001",
                   "mipsel": "0001-0000-0000-0000-0000-0000-00A7-0002"}
MACHINE = {"armhf": "armv7l", "mipsel": "mips"}
HB_PASSPHRASE = "cross-hb-passphrase"


def needs(*paths: str) -> None:
    missing = [p for p in paths if not (REPO / p).exists()]
    if missing:
        pytest.skip(f"not merged yet: {', '.join(missing)}")


def test_cross_core_extension_is_built_for_the_foreign_cpu_and_decodes_streams_like_the_host(
        foreign: ForeignPython, tmp_path):
    needs("csrc/build_core.py", "libarms/chunkcodec.py")
    streams = sorted(VECTORS.glob("tunnel/tunnel-stream-*.raw"))
    assert streams, "vector streams missing"
    code = f"""
import json, platform, sys
import libarms._core as core
from libarms import chunkcodec
out = {{"machine": platform.machine(), "byteorder": sys.byteorder, "file": core.__file__,
        "decoder": type(chunkcodec.ChunkDecoder()).__name__, "streams": {{}}}}
for path in {[str(s) for s in streams]!r}:
    dec = chunkcodec.ChunkDecoder()
    data = open(path, "rb").read()
    data = data[data.index(b"\\r\\n\\r\\n") + 4:]   # after the tunnel's HTTP head
    chunks = []
    for i in range(0, len(data), 7):   # odd split points
        chunks += [[c.kind.name, c.id, c.trail, c.data.hex()] for c in dec.feed(data[i:i + 7])]
    out["streams"][path] = chunks
print(json.dumps(out))
"""
    got = json.loads(foreign.run(code, cwd=tmp_path).stdout)
    assert got["machine"] == MACHINE[foreign.arch]
    assert got["byteorder"] == "little"
    assert got["file"].endswith({"armhf": "_core.cpython-311-arm-linux-gnueabihf.so",
                                 "mipsel": "_core.cpython-311-mipsel-linux-gnu.so"}[foreign.arch])
    assert not got["decoder"].startswith("Py"), "the C decoder did not load on the foreign CPU"
    from libarms.protocol.chunks import ChunkDecoder as HostDecoder
    for path, chunks in got["streams"].items():
        data = Path(path).read_bytes()
        host = [[c.kind.name, c.id, c.trail, c.data.hex()]
                for c in HostDecoder().feed(data[data.index(b"\r\n\r\n") + 4:])]
        assert chunks == host and len(host) > 3, path


def rest(svc, method: str, params: dict, wait: float = 60) -> dict:
    """Start a push through the test server's REST API and wait (bounded) for its result."""
    import requests
    h = {"Authorization": f"Bearer {svc.token}"}
    base = f"{svc.rest.url}/user/cross/request/{method}"
    r = requests.post(base, json=params, headers=h, timeout=10)
    assert r.status_code == 201, r.text
    r = requests.get(f"{base}/{r.json()['id']}", params={"wait": wait}, headers=h,
                     timeout=wait + 10)
    doc = r.json()
    assert doc["status"] == "done", doc
    return doc


def tunnel_push_server(srv, tmp_path: Path, did: str, ls_key: str, module: dict):
    """The test server's heartbeat receiver and https-tunnel push service, and the device
    registered with one module and 1 s heartbeats to that receiver."""
    from libarms.testserver.heartbeat import HeartbeatReceiver
    from libarms.testserver.pushservice import PushService
    rx = HeartbeatReceiver()
    srv.add_component(rx)
    svc = PushService(str(tmp_path / "server"), methods=("https-tunnel",), echo_interval=30,
                      connect_timeout=60, push_timeout=60)
    srv.add_component(svc)
    srv.add_device(did, ls_key, service={
        "modules": [module],
        "heartbeat": [{"host": "127.0.0.1", "port": rx.port, "passphrase": HB_PASSPHRASE,
                       "interval": 1}]})
    return rx, svc


def md_command_and_configure(svc, dev, did: str, arch: str, via: str, hostname: str) -> None:
    """One md-command (its answer names the CPU it ran on) and one configure carried to its end
    (asynchronous on the device: start, then done), both through the REST API over ``via``."""
    doc = rest(svc, "md-command", {"code": did, "module": 1, "command": "show version"})
    assert doc["via"] == via and doc["resultCode"] == 100, doc
    assert doc["results"] == [{"module": 1, "result": 100, "encoding": "plain",
                               "data": f"{MACHINE[arch]} ran: show version"}]
    doc = rest(svc, "configure", {"code": did,
                                  "modules": [{"id": 1, "version": "1.1", "info": "mod1"}],
                                  "configs": [{"id": 1, "data": hostname}]})
    assert doc["via"] == via and doc["resultCode"] == 100, doc
    stored = dev.wait_event(lambda e: e["event"] == "config" and e["action"] == 2, 10,
                            "PUSH_STORE_CONFIG")
    assert stored["data"] == hostname
    dev.wait_event(lambda e: e["event"] == "config" and e["action"] == 3, 10,
                   "PUSH_EXEC_STORED_CONFIG")


def test_cross_agent_on_foreign_cpu_provisions_confirms_over_tunnel_serves_pushes_and_heartbeats(
        foreign: ForeignPython, tmp_path):
    """The whole agent on the foreign CPU against the host's test server: two-stage pull,
    push confirmation over the https-tunnel, one md-command and one configure through the REST
    API with their results, and heartbeats verified by the server's receiver."""
    needs("libarms/agent.py", "libarms/push.py", "libarms/testserver/server.py",
          "libarms/testserver/pushservice.py", "libarms/testserver/heartbeat.py",
          "csrc/build_core.py")
    from libarms.testserver.server import TestServer

    did = DISTRIBUTION_ID[foreign.arch]
    with TestServer(str(tmp_path / "server")) as srv:
        rx, svc = tunnel_push_server(srv, tmp_path, did, "ls-sa-key-x", {
            "id": 1, "version": "1.0", "info": "mod1", "config": "boot config\n"})
        dev = foreign.spawn({
            "distribution_id": did, "ls_sa_key": "ls-sa-key-x", "ca_pem": srv.ca_path,
            "initial_config": srv.initial_config(), "push": True, "pull_timeout": 120,
            "cpu_usage": 37,
            "agent_options": {"ls_retry_interval_factor": 0.1, "line_poll_interval": 0.05}},
            cwd=tmp_path)
        try:
            start = dev.wait_event(lambda e: e["event"] == "start", 60, "start")
            assert start["machine"] == MACHINE[foreign.arch] and start["core"] is True
            # Two-stage pull, seen by the server.
            dev.state("PULLDONE", 90)
            assert [r["result_code"] for r in srv.wait_for_request(did, "rs-solicitation")] == [100]
            assert [r["result_code"] for r in
                    srv.wait_for_request(did, "config-solicitation")] == [100]
            # Push confirmation over the tunnel: the proxy holds a confirmed tunnel.
            svc.call(svc.proxy.wait_reachable(did, 90), 100)
            device = svc.proxy.device(did)
            assert device.confirmations >= 1
            assert any(t.confirmed and not t.closed for t in device.tunnels)
            dev.state("PUSH_WAIT", 30)
            md_command_and_configure(svc, dev, did, foreign.arch, "tunnel", "hostname cross")
            # Heartbeats, verified (HMAC with the RS-given passphrase) by the server's receiver.
            assert rx.wait_for(did, count=2, timeout=60), rx.counters
            metrics = rx.latest_metrics(did)
            assert metrics["cpu_usage/0"]["utilization"] == 37
            assert (metrics["mem_usage/0"]["used"], metrics["mem_usage/0"]["available"]) == (
                1 << 20, 3 << 33)   # 64-bit fields built on a 32-bit CPU
            assert rx.counters["bad_digest"] == 0
        finally:
            dev.stop()
            print("device events:", *dev.events, sep="\n  ")       # shown when the test fails
            print("device stderr:", dev.stderr[-6000:])


def test_cross_armsd_on_qemu_arm_provisions_serves_a_hook_and_stops_cleanly_on_sigterm(tmp_path):
    """armsd itself (what the Buildroot image starts) on the ARM CPU: provisioning, the tunnel,
    an md-command answered by its script-command hook, heartbeats from its Linux statistics
    collector, and SIGTERM ending it with exit status 0 and the state saved."""
    needs("libarms/daemon/main.py", "libarms/testserver/pushservice.py",
          "libarms/testserver/heartbeat.py", "csrc/build_core.py")
    import signal
    import subprocess

    from libarms.testserver.server import TestServer

    arm = cross_stage("armhf")
    did = "0001-0000-0000-0000-0000-0000-00A7-0D01"
    with TestServer(str(tmp_path / "server")) as srv:
        rx, svc = tunnel_push_server(srv, tmp_path, did, "armsd-ls-key", {
            "id": 1, "version": "1", "info": "one", "config": "hostname v1\n"})
        (tmp_path / "initial-config").write_text(srv.initial_config())
        hook = tmp_path / "command"
        hook.write_text('#!/bin/sh\nprintf "armsd hook ran %s for module %s" "$(cat "$2")" "$1"'
                        ' > "$3"\n')
        hook.chmod(0o755)
        conf = tmp_path / "armsd.conf"
        conf.write_text("\n".join(f"{k}: {v}" for k, v in {
            "distribution-id": did, "ls-sa-key": "armsd-ls-key", "path-root-ca": srv.ca_path,
            "path-iconfig": tmp_path / "initial-config", "path-work-dir": tmp_path / "work",
            "path-state-cache": tmp_path / "state", "script-command": hook,
            "hb-traffic-if0": "lo"}.items()) + "\n")
        proc = subprocess.Popen(arm.argv("-m", "libarms.daemon.main", "-f", str(conf), "-v"),
                                env=arm.env(), cwd=tmp_path, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        dev = Device(proc)
        try:
            assert [r["result_code"] for r in
                    srv.wait_for_request(did, "config-solicitation", timeout=90)] == [100]
            svc.call(svc.proxy.wait_reachable(did, 90), 100)
            doc = rest(svc, "md-command", {"code": did, "module": 1, "command": "show arch"})
            assert doc["via"] == "tunnel" and doc["resultCode"] == 100
            assert doc["results"][0]["data"] == "armsd hook ran show arch for module 1"
            assert rx.wait_for(did, count=2, timeout=60), rx.counters
            metrics = rx.latest_metrics(did)
            assert metrics["mem_usage/0"]["used"] > 0      # the collector read /proc on "ARM"
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=60) == 0
            assert (tmp_path / "state").stat().st_size > 0
        finally:
            dev.stop()
            print("armsd stderr:", dev.stderr[-6000:])


def test_cross_agent_on_foreign_cpu_serves_pushes_over_https_simple(foreign: ForeignPython,
                                                                     tmp_path):
    """https-simple on the foreign CPU: the agent's own TLS listener (libarms' server side of
    push) confirmed by the proxy, then an md-command pushed to it through the
    REST API, answered from the foreign CPU, and a configure carried to its end."""
    needs("libarms/agent.py", "libarms/push.py", "libarms/testserver/pushservice.py")
    import socket

    from libarms.testserver.pushservice import PushService
    from libarms.testserver.server import TestServer

    did = {"armhf": "0001-0000-0000-0000-0000-0000-00A7-5001",
           "mipsel": "0001-0000-0000-0000-0000-0000-00A7-5002"}[foreign.arch]
    with socket.socket() as s:                       # a free loopback port for the listener
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with TestServer(str(tmp_path / "server")) as srv:
        svc = PushService(str(tmp_path / "server"), methods=("https-simple",),
                          connect_timeout=60, push_timeout=60)
        srv.add_component(svc)
        srv.add_device(did, "ls-sa-key-s", service={
            "modules": [{"id": 1, "version": "1.0", "info": "mod1", "config": "boot config\n"}]})
        dev = foreign.spawn({
            "distribution_id": did, "ls_sa_key": "ls-sa-key-s", "ca_pem": srv.ca_path,
            "initial_config": srv.initial_config(), "push": True, "pull_timeout": 120,
            "push_port": port,
            "agent_options": {"ls_retry_interval_factor": 0.1, "line_poll_interval": 0.05}},
            cwd=tmp_path)
        try:
            dev.state("PUSH_WAIT", 120)
            svc.call(svc.proxy.wait_reachable(did, 90), 100)
            # configure: the answer on the listener's connection, the done report sent by the
            # device on a connection of its own
            md_command_and_configure(svc, dev, did, foreign.arch, "simple", "hostname simple")
        finally:
            dev.stop()
            print("device events:", *dev.events, sep="\n  ")       # shown when the test fails
            print("device stderr:", dev.stderr[-6000:])
