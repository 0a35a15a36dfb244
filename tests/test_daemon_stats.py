"""Built-in Linux heartbeat statistics (§5.5), from a fake /proc tree and from the real one."""

import os

from conftest_daemon import RecordingHeartbeat

from libarms.daemon.stats import (DummyStats, LinuxStats, apply_hook_output, cpu_percentages,
                                  parse_meminfo, parse_net_dev, parse_proc_stat_cpu)

NET_DEV = """Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: {lo_rx} 10 0 0 0 0 0 0 {lo_tx} 10 0 0 0 0 0 0
  eth0: {rx} {rxp} 1 0 0 0 0 0 {tx} {txp} 2 0 0 0 0 0
"""


class Clock:
    def __init__(self):
        self.t = 100.0

    def __call__(self):
        return self.t


def write_proc(root, cpu, mem_free_kb, rx, tx):
    (root / "net").mkdir(parents=True, exist_ok=True)
    (root / "stat").write_text("cpu  " + " ".join(map(str, cpu)) + "\ncpu0 1 2 3 4 5 6 7 8\n")
    (root / "meminfo").write_text(f"MemTotal: 1000 kB\nMemFree: {mem_free_kb} kB\n"
                                  "Buffers: 100 kB\nCached: 200 kB\nSwapCached: 7 kB\n")
    (root / "net" / "dev").write_text(NET_DEV.format(lo_rx=0, lo_tx=0, rx=rx, rxp=rx // 100,
                                                     tx=tx, txp=tx // 100))


def test_first_call_sends_memory_and_disk_but_no_cpu_or_traffic(tmp_path):
    write_proc(tmp_path, [0] * 8, 300, 1000, 2000)
    hb = RecordingHeartbeat()
    LinuxStats(disks=[str(tmp_path)], interfaces=["eth0"], proc=str(tmp_path)).collect(hb)
    assert hb.by_name("mem_usage") == [(0, 400 * 1024, 600 * 1024)]
    assert len(hb.by_name("disk_usage")) == 1
    assert hb.by_name("cpu_usage") == [] and hb.by_name("traffic_rate") == []


def test_second_call_sends_cpu_split_and_traffic_rates_per_second(tmp_path):
    clock = Clock()
    write_proc(tmp_path, [0] * 8, 300, 1000, 2000)
    stats = LinuxStats(disks=["/"], interfaces=["eth0", "eth9"], proc=str(tmp_path), clock=clock)
    stats.collect(RecordingHeartbeat())
    # user 20+10, sys 10, idle 40, iowait 5, irq 5+softirq 5, steal 5 (other = iowait+steal)
    write_proc(tmp_path, [20, 10, 10, 40, 5, 5, 5, 5], 300, 1000 + 4000, 2000 + 800)
    clock.t += 2.0
    hb = RecordingHeartbeat()
    stats.collect(hb)
    assert hb.by_name("cpu_detail_usage") == [(0, 40, 10, 30, 10, 10)]
    assert hb.by_name("cpu_usage") == [(0, 60)]
    # in_oct, out_oct, in_pkt, out_pkt, in_err, out_err per second; eth9 is absent: skipped
    assert hb.by_name("traffic_rate") == [(0, 2000, 400, 20, 4, 0, 0)]


def test_a_failing_source_does_not_stop_the_others(tmp_path):
    write_proc(tmp_path, [0] * 8, 300, 0, 0)
    os.unlink(tmp_path / "meminfo")
    hb = RecordingHeartbeat()
    LinuxStats(disks=["/nonexistent-disk", "/"], proc=str(tmp_path)).collect(hb)
    assert hb.by_name("mem_usage") == []
    assert [c[0] for c in hb.by_name("disk_usage")] == [1]


def test_real_proc_gives_sane_values():
    stats = LinuxStats(disks=["/"], interfaces=["lo"])
    stats.collect(RecordingHeartbeat())
    sum(i * i for i in range(200_000))   # burn a little CPU so the two samples differ
    hb = RecordingHeartbeat()
    stats.collect(hb)
    (idx, used, free), = hb.by_name("mem_usage")
    assert idx == 0 and used > 0 and free > 0
    (_, dused, dfree), = hb.by_name("disk_usage")
    assert dused + dfree > 0
    for (_, *pct) in hb.by_name("cpu_detail_usage"):
        assert sum(pct) == 100 and all(0 <= p <= 100 for p in pct)


def test_cpu_percentages_add_up_to_100_and_ignore_no_progress():
    assert sum(cpu_percentages((0,) * 8, (1, 1, 1, 1, 1, 1, 1, 0))) == 100
    assert cpu_percentages((5,) * 8, (5,) * 8) is None


def test_parsers_read_kernel_formats():
    assert parse_proc_stat_cpu("cpu  1 2 3 4\n") == (1, 2, 3, 4, 0, 0, 0, 0)
    assert parse_meminfo("MemTotal: 10 kB\nMemFree: 4 kB\n") == (6 * 1024, 4 * 1024)
    assert parse_net_dev(NET_DEV.format(lo_rx=5, lo_tx=6, rx=1, rxp=2, tx=3, txp=4))["lo"] == \
        (5, 10, 0, 6, 10, 0)


def test_hook_output_lines_become_setter_calls_and_bad_lines_are_skipped():
    hb = RecordingHeartbeat()
    n = apply_hook_output(hb, "cpu_usage 0 42\nmem-usage 0 100 200\n# comment\n"
                              "bogus 1 2\ncpu_usage 0\ntraffic_rate 1 1 2 3 4 5 6\n"
                              "disk_usage 0 -1 5\nradiowave 0 1 90 10 50\n")
    assert n == 4
    assert hb.calls == [("cpu_usage", 0, 42), ("mem_usage", 0, 100, 200),
                        ("traffic_rate", 1, 1, 2, 3, 4, 5, 6), ("radiowave", 0, 1, 90, 10, 50)]


def test_dummy_statistics_cover_every_metric_type():
    hb = RecordingHeartbeat()
    DummyStats(seed=1).collect(hb)
    assert {c[0] for c in hb.calls} == set(RecordingHeartbeat.NAMES)
    assert len(hb.by_name("cpu_usage")) == 4 and len(hb.by_name("traffic_count")) == 3


def test_collectors_fill_a_real_heartbeat_datagram(tmp_path):
    import pytest
    hbmod = pytest.importorskip("libarms.heartbeat")
    from libarms.protocol.heartbeat import parse_packet, verify_packet
    if not hbmod.HAVE_CORE:
        pytest.skip("C core not built")
    items = hbmod.HeartbeatItems("0001-0000-0000-0000-0000-0000-0000-0001")
    DummyStats(seed=3).collect(items)
    data = items.build("pass")
    assert verify_packet(data, "pass")
    kinds = [type(i).__name__ for i in parse_packet(data).items]
    assert kinds.count("CpuUsage") == 4 and kinds.count("TrafficCount") == 3
    assert "RadioWave" in kinds
    items = hbmod.HeartbeatItems("0001-0000-0000-0000-0000-0000-0000-0001")
    stats = LinuxStats(disks=["/"], interfaces=["lo"])
    stats.collect(items)
    sum(i * i for i in range(100_000))
    items.clear()                     # each heartbeat starts empty (as the sender does)
    stats.collect(items)
    kinds = [type(i).__name__ for i in parse_packet(items.build("pass")).items]
    assert "MemUsage" in kinds and "DiskUsage" in kinds
