"""Bridge benchmark: pty open -> first E7 reading, and codec throughput.

* open-to-E7: the simulator (zero simulated radio delay; output in 1-24 byte chunks with 0.1 ms
  gaps, like a USB serial bridge) behind a real pty;
  the clock runs from opening the port (drain of 20 ms included) through SKVER, SKRESET, echo off,
  SKINFO, ROPT, credentials, active scan, join, the two attribute reads, to the decoded E7 value.
  Each run starts cold (no PAN cache), alternating module families A and C.
* codec: ECHONET Lite Get_Res (E7+E8) encode+decode per second, and SKSTACK ERXUDP hex lines
  parsed + ECHONET-decoded per second.
* queue: readings committed one by one to the durable queue (fsync each) per second.

Usage: python bench/bridge.py [--runs N]. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from bridge import echonet as el  # noqa: E402
from bridge import meter as m  # noqa: E402
from bridge import sk  # noqa: E402
from bridge.session import Session, SessionConfig  # noqa: E402
from bridge.sim import MeterConfig, Simulator  # noqa: E402

RBID = "0123456789ABCDEF0123456789ABCDEF"


def open_to_e7(runs: int) -> list[float]:
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            profile = ("bp35a1", "bp35c2")[i % 2]
            sim = Simulator(profile, path=os.path.join(tmp, f"wisun{i}"), time_scale=0.0,
                            meter=MeterConfig(power_override=500 + i)).start()
            cfg = SessionConfig(port=sim.path, rbid=RBID, password="0A1B2C3D4E5F", drain_time=0.02,
                                request_timeout=2, min_request_gap=0, retry_gap=0.05,
                                instance_list_wait=0.5, output_mode="keep", backoff=(0.05,))
            s = Session(cfg)
            try:
                t0 = time.perf_counter()
                s.connect()
                watts = m.decode_power(s.get([m.POWER]).get(m.POWER))
                elapsed = time.perf_counter() - t0
            finally:
                s.close()
                sim.stop()
            assert watts == 500 + i, watts
            out.append(elapsed * 1000)
    return out


def codec_rate(seconds: float = 1.0) -> float:
    frame = el.Frame(3, el.METER, el.CONTROLLER, el.Esv.GET_RES,
                     (el.Property(0xE7, m.encode_power(500)),
                      el.Property(0xE8, bytes.fromhex("001E0032"))))
    n = 0
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        for _ in range(1000):
            f = el.decode(frame.encode())
            m.decode_power(f.props[0].edt)
        n += 1000
    return n / (time.perf_counter() - t0)


def erxudp_rate(seconds: float = 1.0) -> float:
    line = (b"ERXUDP FE80:0000:0000:0000:C2F9:4500:AABB:CCDD FE80:0000:0000:0000:021D:1290:1234:5678"
            b" 0E1A 0E1A C0F94500AABBCCDD 1 0018 1081000302880105FF017202E704000001F4E804001E0032\r\n")
    block = line * 100
    reader = sk.Reader("hex")
    n = 0
    deadline = time.perf_counter() + seconds
    t0 = time.perf_counter()
    while time.perf_counter() < deadline:
        for rec in reader.feed(block):
            el.decode(rec.data)
        n += 100
    return n / (time.perf_counter() - t0)


def queue_rate(seconds: float = 1.0) -> float:
    """Durable queue: single-reading commits (WAL + fsync) per second in a temp directory."""
    from bridge.store import Store, instant_reading
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(os.path.join(tmp, "q.sqlite"))
        n = 0
        deadline = time.perf_counter() + seconds
        t0 = time.perf_counter()
        while time.perf_counter() < deadline:
            store.add(instant_reading("bench", "power_w", n))
            n += 1
        rate = n / (time.perf_counter() - t0)
        store.close()
    return rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()
    times = sorted(open_to_e7(args.runs))
    median = statistics.median(times)
    p99 = times[min(len(times) - 1, int(round(0.99 * (len(times) - 1))))]
    codec = codec_rate()
    lines = erxudp_rate()
    commits = queue_rate()
    print(f"pty open -> first E7 (zero radio delay, cold, A/C alternating): "
          f"median {median:.1f} ms, p99 {p99:.1f} ms, min {times[0]:.1f} ms over {len(times)} runs")
    print(f"ECHONET Get_Res encode+decode: {codec:,.0f} frames/s")
    print(f"ERXUDP hex line parse + ECHONET decode: {lines:,.0f} lines/s")
    print(f"durable queue (SQLite WAL, fsync per commit): {commits:,.0f} readings/s")
    print(json.dumps({"bench": "bridge", "median_ms": round(median, 2), "p99_ms": round(p99, 2),
                      "runs": len(times), "codec_frames_per_s": round(codec),
                      "erxudp_lines_per_s": round(lines),
                      "queue_commits_per_s": round(commits)}))


if __name__ == "__main__":
    main()
