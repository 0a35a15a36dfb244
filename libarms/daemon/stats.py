"""Heartbeat statistics of a Linux host, read from /proc and statvfs (``spec/arms-agent.md`` §5.5).

:class:`LinuxStats` is called before every heartbeat with the agent's heartbeat object and calls
its ``set_*`` methods:

* CPU 0, from the ``cpu`` line of ``/proc/stat`` (x0..x7): idle = x3, interrupt = x5 + x6,
  user = x0 + x1, system = x2, other = x4 + x7, as percentages of the change since the previous
  call; sent as CPU detail and as CPU usage (100 - idle). Nothing on the first call.
* Memory 0, from ``/proc/meminfo``: free = MemFree + Buffers + Cached, used = MemTotal - free,
  in bytes.
* Disks 0..2 (``hb-disk-usage0..2``): statvfs of the path:
  used = f_frsize × (f_blocks − f_bfree), free = f_frsize × f_bavail.
* Traffic rate per configured interface (``hb-traffic-if0..3``), per second, of in/out octets,
  packets and errors from ``/proc/net/dev`` since the previous call; absent interfaces are
  skipped; nothing on the first call.

A source that fails (file missing, odd format, a setter refusing a value) is logged once and
skipped; the others and the heartbeat itself go on.
"""

from __future__ import annotations

import logging
import os
import time

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Callable, Optional, Sequence

log = logging.getLogger("libarms.daemon.stats")

_MAX_PROC_READ = 1 << 20


def _read(path: str) -> str:
    with open(path, "rb") as f:
        return f.read(_MAX_PROC_READ).decode("ascii", "replace")


def parse_proc_stat_cpu(text: str) -> tuple:
    """The eight first counters of the aggregate ``cpu`` line (missing ones are 0)."""
    for line in text.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            vals = [int(x) for x in fields[1:9]]
            return tuple(vals + [0] * (8 - len(vals)))
    raise ValueError("no 'cpu' line in /proc/stat")


def cpu_percentages(prev: tuple, cur: tuple) -> Optional[tuple]:
    """(idle, interrupt, user, sys, other) in whole percent of the delta; None if no time
    passed."""
    d = [max(0, c - p) for p, c in zip(prev, cur)]
    total = sum(d)
    if total <= 0:
        return None
    parts = (d[3], d[5] + d[6], d[0] + d[1], d[2], d[4] + d[7])
    pct = [p * 100 // total for p in parts]
    # Integer division loses up to 4 %; give it to idle so that the five add up to 100.
    pct[0] += 100 - sum(pct)
    return tuple(pct)


def parse_meminfo(text: str) -> tuple:
    """(used, free) bytes with free = MemFree + Buffers + Cached."""
    kb = {}
    for line in text.splitlines():
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            kb[name.strip()] = int(parts[0])
    if "MemTotal" not in kb or "MemFree" not in kb:
        raise ValueError("MemTotal/MemFree missing in /proc/meminfo")
    free = kb["MemFree"] + kb.get("Buffers", 0) + kb.get("Cached", 0)
    free = min(free, kb["MemTotal"])
    return (kb["MemTotal"] - free) * 1024, free * 1024


def parse_net_dev(text: str) -> dict:
    """{ifname: (in_octets, in_packets, in_errors, out_octets, out_packets, out_errors)}."""
    out = {}
    for line in text.splitlines()[2:]:
        name, sep, rest = line.partition(":")
        if not sep:
            continue
        f = rest.split()
        if len(f) < 11:
            continue
        out[name.strip()] = (int(f[0]), int(f[1]), int(f[2]), int(f[8]), int(f[9]), int(f[10]))
    return out


def disk_usage(path: str) -> tuple:
    st = os.statvfs(path)
    return st.f_frsize * (st.f_blocks - st.f_bfree), st.f_frsize * st.f_bavail


class LinuxStats:
    """The built-in collector used when no ``script-heartbeat`` is configured."""

    def __init__(self, disks: Sequence[str] = ("/",), interfaces: Sequence[str] = ("eth0",),
                 proc: str = "/proc", clock: Callable[[], float] = time.monotonic):
        self.disks = tuple(disks)[:3]
        self.interfaces = tuple(interfaces)[:4]
        self.proc = proc
        self.clock = clock
        self._cpu_prev: Optional[tuple] = None
        self._net_prev: Optional[tuple] = None      # (time, {ifname: counters})
        self._warned: set = set()

    def collect(self, hb) -> None:
        for name, fn in (("cpu", self._cpu), ("memory", self._mem), ("disk", self._disk),
                         ("traffic", self._traffic)):
            try:
                fn(hb)
            except Exception as e:  # one source failing never stops the others
                if name not in self._warned:
                    self._warned.add(name)
                    log.warning("heartbeat %s statistics unavailable: %s", name, e)

    def _cpu(self, hb) -> None:
        cur = parse_proc_stat_cpu(_read(os.path.join(self.proc, "stat")))
        prev, self._cpu_prev = self._cpu_prev, cur
        if prev is None:
            return
        pct = cpu_percentages(prev, cur)
        if pct is None:
            return
        idle, intr, user, sys_, other = pct
        hb.set_cpu_detail_usage(0, idle, intr, user, sys_, other)
        hb.set_cpu_usage(0, 100 - idle)

    def _mem(self, hb) -> None:
        used, free = parse_meminfo(_read(os.path.join(self.proc, "meminfo")))
        hb.set_mem_usage(0, used, free)

    def _disk(self, hb) -> None:
        errors = []
        for idx, path in enumerate(self.disks):
            try:
                used, free = disk_usage(path)
            except OSError as e:
                errors.append(f"{path}: {e.strerror}")
                continue
            hb.set_disk_usage(idx, used, free)
        if errors:
            raise OSError("; ".join(errors))

    def _traffic(self, hb) -> None:
        now = self.clock()
        counters = parse_net_dev(_read(os.path.join(self.proc, "net", "dev")))
        prev, self._net_prev = self._net_prev, (now, counters)
        if prev is None:
            return
        dt = now - prev[0]
        if dt <= 0:
            return
        for idx, ifname in enumerate(self.interfaces):
            a, b = prev[1].get(ifname), counters.get(ifname)
            if a is None or b is None:
                continue
            # A counter that went backwards (wrap, interface re-created) counts as 0 this time.
            r = [int(max(0, y - x) / dt) for x, y in zip(a, b)]
            # set_traffic_rate(ifidx, in_oct, out_oct, in_pkt, out_pkt, in_err, out_err)
            hb.set_traffic_rate(idx, r[0], r[3], r[1], r[4], r[2], r[5])


class DummyStats:
    """``hb-dummy``: random figures for every metric type, to test a server's graphs."""

    def __init__(self, seed: Optional[int] = None):
        import random
        self.rng = random.Random(seed)

    def collect(self, hb) -> None:
        r = self.rng.randint
        for i in range(4):
            parts = [r(0, 25) for _ in range(4)]
            idle = 100 - sum(parts)
            hb.set_cpu_detail_usage(i, idle, *parts)
            hb.set_cpu_usage(i, 100 - idle)
        for i in range(2):
            hb.set_mem_usage(i, r(0, 1 << 30), r(0, 1 << 30))
            hb.set_disk_usage(i, r(0, 1 << 34), r(0, 1 << 34))
        for i in range(3):
            hb.set_traffic_rate(i, *(r(0, 1 << 20) for _ in range(6)))
            hb.set_traffic_count(i, *(r(0, 1 << 40) for _ in range(6)))
        hb.set_radiowave(0, r(0, 1), r(50, 100), r(0, 50), r(25, 75))


#: Lines a ``script-heartbeat`` hook may print: name → number of integer arguments.
HOOK_SETTERS = {
    "cpu_usage": 2, "cpu_detail_usage": 6, "mem_usage": 3, "disk_usage": 3,
    "traffic_count": 7, "traffic_rate": 7, "radiowave": 5,
}


def apply_hook_output(hb, text: str) -> int:
    """Feed ``script-heartbeat`` output to the heartbeat: one ``<name> <int>...`` per line.

    ``name`` is a setter without its ``set_`` (``cpu_usage 0 23``; ``-`` may replace ``_``).
    Bad lines are logged and skipped. Returns the number of values set.
    """
    done = 0
    for n, line in enumerate(text.splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        name = words[0].lower().replace("-", "_")
        want = HOOK_SETTERS.get(name)
        try:
            if want is None:
                raise ValueError(f"unknown item {words[0]!r} (known: {', '.join(HOOK_SETTERS)})")
            if len(words) - 1 != want:
                raise ValueError(f"{name} takes {want} integers, got {len(words) - 1}")
            args = [int(w, 10) for w in words[1:]]
            if any(a < 0 for a in args):
                raise ValueError("negative value")
            getattr(hb, "set_" + name)(*args)
            done += 1
        except Exception as e:
            log.warning("script-heartbeat output line %d skipped: %s", n, e)
    return done
