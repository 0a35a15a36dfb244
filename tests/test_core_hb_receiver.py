"""The test server's UDP heartbeat receiver: accepts every libarms 5.33 vector, drops and
counts short, malformed, unknown-device and bad-digest datagrams, stores metrics in SQLite,
and takes passphrases from the test server's service config when mounted as a component."""

from __future__ import annotations

import os
import socket

import pytest

from conftest_core import hb_vector_files, load_hb_vector
from libarms import heartbeat as hbmod
from libarms.protocol import heartbeat as hbp
from libarms.testserver.heartbeat import HeartbeatReceiver

VECTORS = [load_hb_vector(p) for p in hb_vector_files()]


@pytest.fixture
def rx(tmp_path):
    r = HeartbeatReceiver(str(tmp_path / "hb.db")).start()
    yield r
    r.stop()


def _send(rx, data: bytes):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.sendto(data, rx.address)


def _register_all(rx):
    for v in VECTORS:
        rx.set_passphrase(v["distribution_id"], v["passphrase"])


def test_receiver_accepts_every_vector_over_udp_and_stores_its_items(rx):
    _register_all(rx)
    for v in VECTORS:
        _send(rx, v["packet"])
    assert rx.wait_for(count=len(VECTORS), timeout=10)
    assert rx.counters["accepted"] == len(VECTORS) and rx.counters["bad_digest"] == 0
    full = next(v for v in VECTORS if v["name"].endswith("hb-B-server2.json"))
    metrics = rx.latest_metrics(full["distribution_id"])
    assert metrics["cpu_usage/0"] == {"kind": "cpu_usage", "index": 0, "utilization": 7}
    assert metrics["cpu_usage/1"]["utilization"] == 100
    assert metrics["traffic_rate/4"]["in_octets"] == 2**64 - 1
    assert metrics["radiowave/5"] == {"kind": "radiowave", "index": 5, "status": 1, "max": 31,
                                      "min": 0, "avg": 15}
    tunnel = rx.packets("0001-1234-5678-9abc-def0-1122-3344-5566")
    assert len(tunnel) == 6 and tunnel[0]["size"] == 181
    assert [i["kind"] for i in tunnel[0]["items"]] == ["cpu_usage", "mem_usage", "traffic_rate",
                                                      "traffic_rate"]


def test_every_single_bit_flip_is_dropped(rx):
    _register_all(rx)
    outcomes = {}
    total = 0
    for v in VECTORS:
        pkt = v["packet"]
        for i in range(len(pkt)):
            flipped = bytearray(pkt)
            flipped[i] ^= 1 << (i % 8)
            out = rx.handle(bytes(flipped))
            assert out != "accepted", (v["name"], i)
            outcomes[out] = outcomes.get(out, 0) + 1
            total += 1
    assert rx.counters["accepted"] == 0 and rx.counters["received"] == total
    # flips in the digest or the items are bad digests; in the id, unknown devices; in the TL
    # headers, malformed
    assert outcomes["bad_digest"] > outcomes["unknown_device"] > 0 and outcomes["malformed"] > 0


def test_short_malformed_unknown_and_bad_digest_are_counted_over_udp(rx):
    v = VECTORS[-1]
    rx.set_passphrase(v["distribution_id"], v["passphrase"])
    good = v["packet"]
    _send(rx, good[:43])                                     # short
    _send(rx, good + b"\x00\x33\x00\x09")                    # malformed: TLV overruns
    other = hbp.PacketBuilder("0001-0000-0000-0000-0000-0000-0000-0001").build("x")
    _send(rx, other)                                         # unknown device
    bad = hbp.PacketBuilder(v["distribution_id"]).build("not-the-passphrase")
    _send(rx, bad)                                           # bad digest
    _send(rx, good)
    assert rx.wait_for(v["distribution_id"], 1, timeout=10)
    c = rx.counters
    assert (c["short"], c["malformed"], c["unknown_device"], c["bad_digest"], c["accepted"]) == (
        1, 1, 1, 1, 1)
    assert c["received"] == 5


def test_counters_and_metrics_survive_a_restart(tmp_path):
    path = str(tmp_path / "hb.db")
    v = VECTORS[0]
    with HeartbeatReceiver(path) as rx:
        rx.set_passphrase(v["distribution_id"], v["passphrase"])
        assert rx.handle(v["packet"]) == "accepted"
        assert rx.handle(b"x") == "short"
    with HeartbeatReceiver(path) as rx:
        assert rx.counters["accepted"] == 1 and rx.counters["short"] == 1
        assert rx.handle(v["packet"]) == "accepted"
        assert len(rx.packets(v["distribution_id"])) == 2


def test_passphrase_lookup_callable_may_give_several_keys(tmp_path):
    v = next(v for v in VECTORS if v["name"].endswith("hb-A-server2.json"))
    keys = {v["distribution_id"]: ["wrong", v["passphrase"]]}
    with HeartbeatReceiver(str(tmp_path / "hb.db"), passphrases=keys.get) as rx:
        assert rx.handle(v["packet"]) == "accepted"
        assert rx.handle(VECTORS[-1]["packet"]) == "unknown_device"


def test_c_sender_to_receiver_mounted_on_the_test_server(tmp_path):
    from libarms.testserver.server import TestServer
    dist = "0001-0000-1234-0005-0000-0000-0000-002A"
    with TestServer(str(tmp_path / "ts")) as ts:
        rx = HeartbeatReceiver()
        ts.add_component(rx)
        ts.add_device(dist, "ls-key")
        ts.db.set_service(dist, heartbeat=[
            {"host": "127.0.0.1", "port": rx.port, "passphrase": "hb-secret", "interval": 1}])
        assert rx.db_path == os.path.join(ts.state_dir, "heartbeats.db")

        def stats(hb):
            hb.set_cpu_usage(0, 33)
            hb.set_disk_usage(1, 10, 20)

        sender = hbmod.HeartbeatSender(dist, [hbmod.HbServer("127.0.0.1", rx.port, "hb-secret")],
                                       0.05, stats, lead=0.01)
        with sender:
            assert rx.wait_for(dist, 3, timeout=10)
        m = rx.latest_metrics(dist)
        assert m["cpu_usage/0"]["utilization"] == 33
        assert m["disk_usage/1"] == {"kind": "disk_usage", "index": 1, "used": 10,
                                     "available": 20}
        assert rx.devices()[0]["distribution_id"] == dist.upper()
    assert rx.counters["bad_digest"] == 0


def test_arms_testserver_serve_receives_heartbeats_and_reports_them(tmp_path):
    """The real process: serve --heartbeat-port 0, a device whose service config names the
    receiver, heartbeats from the C sender, then the 'heartbeats' command prints them."""
    import json
    import select
    import subprocess
    import sys
    import time

    state = str(tmp_path / "ts")
    dist = "0001-0000-1234-0005-0000-0000-0000-002B"

    def cli(*args):
        r = subprocess.run([sys.executable, "-m", "libarms.testserver", *args, "--state-dir",
                            state], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        return r.stdout

    proc = subprocess.Popen([sys.executable, "-m", "libarms.testserver", "serve", "--state-dir",
                             state, "--heartbeat-port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "server did not come up"
        info = json.loads(proc.stdout.readline())
        host, port = info["heartbeat"].rsplit(":", 1)
        cli("add-device", dist, "--ls-key", "k")
        cli("set-service", dist, "--heartbeat", f"{host}:{port}:cli-pass:1")
        sender = hbmod.HeartbeatSender(dist, [hbmod.HbServer(host, int(port), "cli-pass")], 0.05,
                                       lambda hb: hb.set_cpu_usage(3, 77), lead=0.01)
        out = {}
        with sender:
            end = time.monotonic() + 20
            while time.monotonic() < end:
                r = subprocess.run([sys.executable, "-m", "libarms.testserver", "heartbeats",
                                    "--state-dir", state], capture_output=True, text=True,
                                   timeout=60)
                if r.returncode == 0:
                    out = json.loads(r.stdout)
                    if out["devices"].get(dist, {}).get("packets", 0) >= 2:
                        break
                select.select([], [], [], 0.2)  # bounded poll of another process's file
        dev = out["devices"][dist]
        assert dev["metrics"]["cpu_usage/3"]["utilization"] == 77
        assert out["counters"]["accepted"] >= 2 and out["counters"].get("bad_digest", 0) == 0
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert proc.returncode == 0
