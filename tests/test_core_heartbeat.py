"""The C heartbeat builder rebuilds every libarms 5.33 vector, and the C sender thread sends
real UDP datagrams on its schedule, even while another Python thread holds the GIL."""

from __future__ import annotations

import select
import socket
import struct
import threading
import time

import pytest
from hypothesis import given, settings, strategies as st

from conftest_core import (SPEC_DIST_ID, SPEC_EMPTY, SPEC_FULL, SPEC_FULL_CALLS, hb_vector_files,
                           load_hb_vector)
from libarms import heartbeat as hbmod
from libarms.errors import ArmsError, ConfigError, Err
from libarms.heartbeat import HbServer
from libarms.protocol import heartbeat as hbp

pytestmark = pytest.mark.skipif(not hbmod.HAVE_CORE, reason="libarms._core not built")

VECTORS = [load_hb_vector(p) for p in hb_vector_files()]
DIST = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"

SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)


class UdpSink:
    """A loopback UDP socket that records datagrams with their kernel receive time."""

    def __init__(self, host: str = "127.0.0.1"):
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                  socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.port = self.sock.getsockname()[1]
        self.packets: list[tuple[float, bytes]] = []

    def collect(self, count: int, timeout: float) -> list[tuple[float, bytes]]:
        """Wait (bounded) until `count` datagrams have arrived in total; return them all."""
        end = time.monotonic() + timeout
        while len(self.packets) < count:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.sock], [], [], left)
            if not r:
                continue
            data, anc, _, _ = self.sock.recvmsg(2048, 64)
            ts = None
            for level, typ, cdata in anc:
                if level == socket.SOL_SOCKET and typ == SO_TIMESTAMPNS:
                    sec, nsec = struct.unpack("qq", cdata[:16])
                    ts = sec + nsec / 1e9
            self.packets.append((ts if ts is not None else time.time(), data))
        return self.packets

    def close(self):
        self.sock.close()


@pytest.fixture
def sinks():
    made = []

    def make(host="127.0.0.1"):
        s = UdpSink(host)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def _apply(items, calls):
    for name, args, eexist in calls:
        if eexist:
            with pytest.raises(ArmsError) as ei:
                getattr(items, name)(*args)
            assert ei.value.code == Err.EEXIST
        else:
            getattr(items, name)(*args)


@pytest.mark.parametrize("vec", VECTORS, ids=[v["name"] for v in VECTORS])
def test_c_builder_rebuilds_vector_byte_for_byte(vec):
    items = hbmod.HeartbeatItems(vec["distribution_id"])
    _apply(items, vec["calls"])
    assert items.build(vec["passphrase"]) == vec["packet"]


def test_c_builder_rebuilds_the_spec_vectors_and_clears():
    items = hbmod.HeartbeatItems(SPEC_DIST_ID)
    assert items.build("secret") == SPEC_EMPTY
    _apply(items, SPEC_FULL_CALLS)
    assert items.build(b"secret") == SPEC_FULL
    items.clear()
    assert items.build("secret") == SPEC_EMPTY


def test_c_builder_limits_match_libarms():
    items = hbmod.HeartbeatItems(SPEC_DIST_ID)
    for i in range(140):
        items.set_cpu_usage(i, 100)
    assert len(items) == 1024
    with pytest.raises(ArmsError) as ei:
        items.set_cpu_usage(999, 1)
    assert ei.value.code == Err.ESIZE
    with pytest.raises(ValueError):
        hbmod.HeartbeatItems(SPEC_DIST_ID).set_cpu_usage(0, 256)
    with pytest.raises(ValueError):
        hbmod.HeartbeatItems(SPEC_DIST_ID).set_mem_usage(-1, 0, 0)


def test_sender_sends_signed_metrics_to_two_servers_with_their_own_passphrases(sinks):
    a, b = sinks(), sinks()
    calls = []

    def stats(hb):
        calls.append(1)
        hb.set_cpu_usage(0, 50)
        hb.set_mem_usage(0, 65536, 32768)
        with pytest.raises(ArmsError):
            hb.set_cpu_usage(0, 51)

    servers = [HbServer("127.0.0.1", a.port, "pass-a"), HbServer("127.0.0.1", b.port, "pass-b")]
    with hbmod.HeartbeatSender(DIST, servers, 0.2, stats, lead=0.05) as hb:
        pa = a.collect(3, 10)
        pb = b.collect(3, 10)
        assert hb.is_running
    assert len(pa) >= 3 and len(pb) >= 3
    for _, pkt in pa:
        assert hbp.verify_packet(pkt, "pass-a") and not hbp.verify_packet(pkt, "pass-b")
    for _, pkt in pb:
        assert hbp.verify_packet(pkt, "pass-b")
    parsed = hbp.parse_packet(pa[-1][1])
    assert str(parsed.distribution_id) == DIST
    assert parsed.items == (hbp.CpuUsage(0, 50), hbp.MemUsage(0, 65536, 32768))
    st = hb.stats
    assert st.sent >= 6 and st.errors == 0 and st.publishes >= 3 and calls
    assert not hb.is_running


def test_first_datagram_is_sent_right_after_start_and_a_repeat_is_byte_identical(sinks):
    a = sinks()
    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.1,
                               lambda h: h.set_cpu_usage(1, 7), lead=0.02)
    hb.start()
    try:
        got = a.collect(2, 10)
    finally:
        hb.stop()
    assert got[0][1] == got[1][1]
    assert hbp.parse_packet(got[0][1]).items == (hbp.CpuUsage(1, 7),)


def test_without_statistics_callback_an_alive_only_datagram_is_sent(sinks):
    a = sinks()
    with hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.1):
        got = a.collect(1, 10)
    assert len(got[0][1]) == 44 and hbp.verify_packet(got[0][1], "k")


def test_pause_stops_datagrams_but_keeps_asking_for_statistics(sinks):
    a = sinks()
    asked = threading.Semaphore(0)

    def stats(hb):
        asked.release()

    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.05, stats,
                               lead=0.01)
    hb.start()
    try:
        a.collect(1, 10)
        hb.pause()
        assert not hb.is_running
        before = hb.stats
        for _ in range(4):
            assert asked.acquire(timeout=10)
        after = hb.stats
        assert after.paused >= 2
        assert after.sent - before.sent <= 1  # at most one round was already under way
        hb.resume()
        assert hb.is_running
        n = len(a.packets)
        a.collect(n + 1, 10)
        assert len(a.packets) > n
    finally:
        hb.stop()


def test_late_callback_does_not_delay_the_heartbeat(sinks):
    """The first callback blocks until three datagrams have arrived: they leave on time
    (alive-only), then the metrics follow once the callback returns."""
    a = sinks()
    release = threading.Event()
    first = [True]

    def stats(hb):
        if first[0]:
            first[0] = False
            assert release.wait(30)
        hb.set_radiowave(0, 0, 90, 10, 55)

    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.1, stats,
                               lead=0.02)
    hb.start()
    try:
        early = a.collect(3, 10)
        assert [len(p) for _, p in early[:3]] == [44, 44, 44]
        release.set()
        end = time.monotonic() + 10
        while time.monotonic() < end:
            a.collect(len(a.packets) + 1, 2)
            if hbp.parse_packet(a.packets[-1][1]).items:
                break
        assert hbp.parse_packet(a.packets[-1][1]).items == (hbp.RadioWave(0, 0, 90, 10, 55),)
        assert hb.stats.late >= 2
    finally:
        hb.stop()


def test_callback_error_is_reported_and_counted(sinks):
    a = sinks()
    errors = []
    got_error = threading.Event()

    def stats(hb):
        raise RuntimeError("no stats today")

    def on_error(exc):
        errors.append(exc)
        got_error.set()

    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.05, stats,
                               lead=0.01, on_callback_error=on_error)
    with hb:
        assert got_error.wait(10)
        a.collect(1, 10)
    assert isinstance(errors[0], RuntimeError) and hb.stats.callback_errors >= 1


def test_non_numeric_host_counts_errors_and_other_family_is_skipped(sinks):
    a = sinks()
    servers = [HbServer("hb.example.invalid", 16000, "k"), HbServer("::1", 9, "k"),
               HbServer("127.0.0.1", a.port, "k")]
    hb = hbmod.HeartbeatSender(DIST, servers, 0.05, family=socket.AF_INET)
    with hb:
        a.collect(2, 10)
    st = hb.stats
    assert st.sent >= 2 and st.errors >= 2
    assert st.sent <= st.rounds  # the IPv6 server was skipped, not sent to


@pytest.mark.parametrize("kwargs", [
    dict(servers=[HbServer("127.0.0.1", 1, "k")] * 6),
    dict(servers=[HbServer("127.0.0.1", 70000, "k")]),
    dict(servers=[HbServer("127.0.0.1", 1, "k" * 1025)]),
    dict(servers=[HbServer("1" * 256, 1, "k")]),
    dict(interval=0),
    dict(distribution_id="not-an-id"),
])
def test_bad_configuration_raises_config_error(kwargs):
    args = dict(distribution_id=DIST, servers=[], interval=1.0)
    args.update(kwargs)
    for cls in (hbmod.CHeartbeatSender, hbmod.PyHeartbeatSender):
        with pytest.raises(ConfigError):
            cls(**args)


def test_update_replaces_servers_while_running(sinks):
    a, b = sinks(), sinks()
    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "ka")], 0.05)
    with hb:
        a.collect(1, 10)
        hb.update([HbServer("127.0.0.1", b.port, "kb")], 0.05)
        got = b.collect(1, 10)
    assert hbp.verify_packet(got[0][1], "kb")


def test_python_fallback_sender_sends_the_same_datagrams(sinks):
    a = sinks()
    hb = hbmod.PyHeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.05,
                                 lambda h: h.set_disk_usage(2, 1000, 2000))
    with hb:
        got = a.collect(2, 10)
    items = hbmod.HeartbeatItems(DIST)
    items.set_disk_usage(2, 1000, 2000)
    assert got[0][1] == items.build("k")
    assert hb.stats.sent >= 2


def _hold_gil(stop: threading.Event):
    # sum() over a range runs in C without releasing the GIL (hundreds of ms per call)
    while not stop.is_set():
        sum(range(3_000_000))


@pytest.mark.slow
def test_cadence_60_packets_at_half_a_second_while_python_holds_the_gil(sinks):
    a = sinks()
    stop = threading.Event()
    hogs = [threading.Thread(target=_hold_gil, args=(stop,), daemon=True) for _ in range(2)]
    calls = [0]

    def stats(hb):
        calls[0] += 1
        hb.set_cpu_usage(0, calls[0] % 101)

    hb = hbmod.HeartbeatSender(DIST, [HbServer("127.0.0.1", a.port, "cadence")], 0.5, stats)
    for t in hogs:
        t.start()
    try:
        hb.start()
        got = a.collect(60, 29.5 + 15)
    finally:
        hb.stop()
        stop.set()
        for t in hogs:
            t.join(10)
    assert len(got) >= 60
    got = got[:60]
    assert all(hbp.verify_packet(p, "cadence") for _, p in got)
    span = got[-1][0] - got[0][0]
    # 59 intervals are 29.5 s; the generous bound only catches a sender that waits for the GIL
    assert span < 29.5 + 2.0, span
    assert any(hbp.parse_packet(p).items for _, p in got)


@pytest.mark.parametrize("cls", [hbmod.CHeartbeatSender, hbmod.PyHeartbeatSender])
def test_hold_for_configure_skips_callback_and_datagram_then_resumes(sinks, cls):
    a = sinks()
    calls = []
    first = threading.Event()

    def stats(hb):
        calls.append(time.monotonic())
        first.set()

    hb = cls(DIST, [HbServer("127.0.0.1", a.port, "k")], 0.05, stats, lead=0.01)
    hb.start()
    try:
        assert first.wait(10)
        a.collect(1, 10)
        hb.pause(ask_statistics=False)
        held_at = time.monotonic()
        base = hb.stats
        end = time.monotonic() + 10
        while hb.stats.paused < base.paused + 4 and time.monotonic() < end:
            a.collect(len(a.packets) + 1, 0.05)
        st = hb.stats
        assert st.paused >= base.paused + 4
        assert st.sent - base.sent <= 1  # a round already under way may still leave
        assert len([t for t in calls if t > held_at]) <= 1
        hb.resume()
        n = len(a.packets)
        a.collect(n + 2, 10)
        assert len(a.packets) >= n + 2
    finally:
        hb.stop()


def test_servers_may_be_given_as_heartbeat_info_from_the_rs_answer(sinks):
    from libarms.protocol.pull import HeartbeatInfo
    a = sinks()
    info = HeartbeatInfo("127.0.0.1", a.port, "from-rs", 1, ("hmac-sha1",))
    with hbmod.HeartbeatSender(DIST, [info], 0.05):
        got = a.collect(1, 10)
    assert hbp.verify_packet(got[0][1], "from-rs")
    with pytest.raises(ConfigError):
        hbmod.HeartbeatSender(DIST, [("127.0.0.1", 1)], 1)


_U8, _U16, _U64 = (st.integers(0, 255), st.integers(0, 65535), st.integers(0, 2**64 - 1))
_CALL = st.one_of(
    st.tuples(st.just("set_cpu_usage"), st.tuples(st.integers(0, 3), _U8)),
    st.tuples(st.just("set_cpu_detail_usage"), st.tuples(st.integers(0, 3), _U8, _U8, _U8, _U8, _U8)),
    st.tuples(st.just("set_mem_usage"), st.tuples(st.integers(0, 3), _U64, _U64)),
    st.tuples(st.just("set_disk_usage"), st.tuples(_U16, _U64, _U64)),
    st.tuples(st.just("set_traffic_count"), st.tuples(st.integers(0, 30), *[_U64] * 6)),
    st.tuples(st.just("set_traffic_rate"), st.tuples(st.integers(0, 30), *[_U64] * 6)),
    st.tuples(st.just("set_radiowave"), st.tuples(st.integers(0, 3), _U8, _U8, _U8, _U8)),
)


@settings(max_examples=100, deadline=None)
@given(calls=st.lists(_CALL, max_size=40), key=st.binary(max_size=100))
def test_c_and_python_builders_agree_on_any_call_sequence(calls, key):
    c = hbmod.HeartbeatItems(DIST)
    py = hbp.PacketBuilder(DIST)
    accepted = 0
    for name, args in calls:
        outcome = []
        for b in (c, py):
            try:
                getattr(b, name)(*args)
                outcome.append(0)
            except ArmsError as e:
                outcome.append(int(e.code))
        assert outcome[0] == outcome[1], (name, args, outcome)
        accepted += outcome[0] == 0
    assert c.build(key) == py.build(key)
    assert len(c) == len(py) <= 1024
    packet = c.build(key)
    assert hbp.verify_packet(packet, key)
    assert len(hbp.parse_packet(packet).items) == accepted


@pytest.mark.skipif(not socket.has_ipv6, reason="no IPv6")
@pytest.mark.parametrize("cls", [hbmod.CHeartbeatSender, hbmod.PyHeartbeatSender])
def test_ipv6_server_and_the_sa_address_family_filter(sinks, cls):
    try:
        v6 = sinks("::1")
    except OSError:
        pytest.skip("::1 not configured")
    v4 = sinks()
    servers = [HbServer("127.0.0.1", v4.port, "k4"), HbServer("::1", v6.port, "k6")]
    hb = cls(DIST, servers, 0.05, family=socket.AF_INET6)
    with hb:
        got = v6.collect(2, 10)
    assert hbp.verify_packet(got[0][1], "k6")
    v4.sock.setblocking(False)
    with pytest.raises(BlockingIOError):
        v4.sock.recv(2048)  # the IPv4 server was skipped: the SA talks IPv6
    assert hb.stats.errors == 0
