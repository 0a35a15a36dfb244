"""The simulator's I/O edge: a pseudo-terminal, a timer heap with a time scale, faults on demand.

:class:`Simulator` runs :class:`~bridge.sim.module.ModuleSim` in one thread behind a pty and
publishes the device side under a symlink (``path``), which a bridge opens like a USB serial
port. Every public method is thread-safe: it runs under the loop's lock and wakes the loop.

Fault durations given to this API are real seconds (not time-scaled). Fault API (broute.md §7.4): ``terminate_session``, ``expire_session``, ``link_down``,
``link_up``, ``tx_limit``, ``garbage_line``, ``module_reset``, ``unplug``, ``replug``,
``late_reply``, ``drop_replies``, ``set_fault`` (rates), ``advance_clock``.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import os
import random
import select
import socket
import threading
import time
import tty
from typing import Callable, Optional

from .meter import MeterConfig, MeterModel
from .module import Faults, ModuleSim, Timing, make_profile

log = logging.getLogger("bridge.sim")

#: Cap on output kept while nobody reads the pty (bytes); older output is dropped.
MAX_BACKLOG = 256 * 1024


class Simulator:
    def __init__(self, profile: str = "bp35a1", path: Optional[str] = None,
                 time_scale: float = 1.0, meter: Optional[MeterConfig] = None,
                 timing: Optional[Timing] = None, faults: Optional[Faults] = None,
                 chunked: bool = True, seed: int = 0, control: Optional[str] = None,
                 neighbours=(), chunk_delay: float = 0.0001, **quirks):
        self.profile = make_profile(profile, **quirks)
        self.time_scale = float(time_scale)
        self.meter = MeterModel(meter or MeterConfig())
        self.chunked = chunked
        self.chunk_delay = chunk_delay
        self.rng = random.Random(seed ^ 0x5EED)
        self.link_path = path
        self.control_path = control
        self._lock = threading.RLock()
        self._timers: list = []
        self._seq = itertools.count()
        self._out = bytearray()
        self._master = self._slave = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._ctl: Optional[socket.socket] = None
        self.plugged = False
        self.module = ModuleSim(self.profile, self.meter, self._emit, self._schedule,
                                timing=timing, faults=faults, seed=seed, neighbours=neighbours)
        self.rx_log = bytearray()          # everything the host wrote (bounded)

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def path(self) -> str:
        """The device path a bridge should open."""
        return self.link_path or self._slave_name

    def start(self) -> "Simulator":
        self._open_pty()
        if self.control_path:
            if os.path.exists(self.control_path):
                os.unlink(self.control_path)
            self._ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            self._ctl.bind(self.control_path)
            self._ctl.listen(4)
            self._ctl.setblocking(False)
        self._thread = threading.Thread(target=self._run, name="broute-sim", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        if self._thread:
            self._thread.join(5)
        with self._lock:
            self._close_pty()
        for fd in (self._wake_r, self._wake_w):
            try:
                os.close(fd)
            except OSError:
                pass
        if self._ctl:
            self._ctl.close()
            try:
                os.unlink(self.control_path)
            except OSError:
                pass

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _open_pty(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        os.set_blocking(master, False)
        self._master, self._slave = master, slave
        self._slave_name = os.ttyname(slave)
        if self.link_path:
            tmp = f"{self.link_path}.tmp{os.getpid()}"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(self._slave_name, tmp)
            os.replace(tmp, self.link_path)
        self.plugged = True
        self._out.clear()
        log.info("module %s on %s", self.profile.name, self.path)

    def _close_pty(self) -> None:
        for fd in (self._master, self._slave):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._master = self._slave = None
        if self.link_path and os.path.lexists(self.link_path):
            os.unlink(self.link_path)
        self.plugged = False

    # -- loop ------------------------------------------------------------------------------------

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass

    def _emit(self, data: bytes) -> None:
        self._out += data
        if len(self._out) > MAX_BACKLOG:
            del self._out[:len(self._out) - MAX_BACKLOG]

    def _schedule(self, delay: float, fn: Callable[[], None], scaled: bool = True) -> None:
        due = time.monotonic() + max(0.0, delay) * (self.time_scale if scaled else 1.0)
        heapq.heappush(self._timers, (due, next(self._seq), fn))

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                now = time.monotonic()
                for _ in range(10000):
                    if not self._timers or self._timers[0][0] > now:
                        break
                    _, _, fn = heapq.heappop(self._timers)
                    try:
                        fn()
                    except Exception:
                        log.exception("simulator timer failed")
                self.module.tick()
                timeout = 0.05
                if self._timers:
                    timeout = max(0.0, min(timeout, self._timers[0][0] - time.monotonic()))
                master = self._master
                rlist = [self._wake_r] + ([master] if master is not None else [])
                if self._ctl:
                    rlist.append(self._ctl)
                wlist = [master] if (master is not None and self._out) else []
            try:
                readable, writable, _ = select.select(rlist, wlist, [], timeout)
            except (OSError, ValueError):
                continue
            with self._lock:
                if self._wake_r in readable:
                    try:
                        os.read(self._wake_r, 4096)
                    except OSError:
                        pass
                if self._ctl is not None and self._ctl in readable:
                    self._control()
                if self._master is None or master != self._master:
                    continue
                if master in readable:
                    try:
                        data = os.read(master, 4096)
                    except (BlockingIOError, InterruptedError):
                        data = None
                    except OSError:
                        data = None
                    if data:
                        self.rx_log += data
                        del self.rx_log[:max(0, len(self.rx_log) - 65536)]
                        try:
                            self.module.feed(data)
                        except Exception:
                            log.exception("simulator failed on input %r", data[:80])
                wrote = master in writable and bool(self._out)
                if wrote:
                    self._flush(master)
            if wrote and self.chunked and self.chunk_delay:
                time.sleep(self.chunk_delay)      # the gap between two USB/UART deliveries

    def _flush(self, master: int) -> None:
        n = len(self._out)
        if self.chunked:
            n = min(n, self.rng.randint(1, 24))
        try:
            written = os.write(master, bytes(self._out[:n]))
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            return
        del self._out[:written]

    # -- control socket (broute-sim --control) -------------------------------------------------

    def _control(self) -> None:
        try:
            conn, _ = self._ctl.accept()
        except OSError:
            return
        with conn:
            conn.settimeout(2)
            try:
                line = conn.recv(1024).decode("utf-8", "replace").strip()
                reply = self.control(line)
            except Exception as exc:          # a bad control line must not kill the simulator
                reply = f"error {exc}"
            try:
                conn.sendall(reply.encode() + b"\n")
            except OSError:
                pass

    def control(self, line: str) -> str:
        """Run one text command (``link_down 30``, ``unplug``, ``set loss_rate 0.2`` ...)."""
        parts = line.split()
        if not parts:
            return "error empty command"
        name, args = parts[0], parts[1:]
        if name == "set" and len(args) == 2:
            self.set_fault(**{args[0]: float(args[1])})
            return "ok"
        if name == "stats":
            return repr(self.module.stats)
        fn = getattr(self, name, None)
        if name.startswith("_") or name not in self.FAULTS or fn is None:
            return f"error unknown command {name!r} (known: {', '.join(sorted(self.FAULTS))}, set, stats)"
        fn(*[float(a) for a in args])
        return "ok"

    FAULTS = {"terminate_session", "expire_session", "link_down", "link_up", "tx_limit",
              "garbage_line", "module_reset", "unplug", "replug", "late_reply", "drop_replies",
              "advance_clock"}

    # -- faults --------------------------------------------------------------------------------------

    def _locked(self, fn) -> None:
        with self._lock:
            fn()
        self._wake()

    def terminate_session(self) -> None:
        self._locked(self.module.terminate_session)

    def expire_session(self) -> None:
        self._locked(self.module.expire_session)

    def link_down(self, duration: Optional[float] = None) -> None:
        """Radio link lost: sends fail with EVENT 21 ... 01, no replies, joins fail."""
        def go():
            self.module.f.link_down = True
            if duration is not None:
                self._schedule(duration, lambda: setattr(self.module.f, "link_down", False),
                               scaled=False)
        self._locked(go)

    def link_up(self) -> None:
        self._locked(lambda: setattr(self.module.f, "link_down", False))

    def tx_limit(self, duration: float = 60.0) -> None:
        def go():
            self.module.tx_limit(True)
            self._schedule(duration, lambda: self.module.tx_limit(False), scaled=False)
        self._locked(go)

    def garbage_line(self, raw: Optional[bytes] = None) -> None:
        raw = raw if raw is not None else b"\x00\xffGARBAGE \x1b[0m EVENT ZZ\r\n"
        self._locked(lambda: self.module.garbage(raw))

    def module_reset(self) -> None:
        """The module reboots by itself: session, credentials and registers lost, echo on."""
        self._locked(self.module.power_on)

    def late_reply(self, count: float = 1) -> None:
        self._locked(lambda: setattr(self.module.f, "late_replies", int(count)))

    def drop_replies(self, count: float = 1) -> None:
        self._locked(lambda: setattr(self.module.f, "drop_replies", int(count)))

    def set_fault(self, **rates) -> None:
        def go():
            for key, value in rates.items():
                if not hasattr(self.module.f, key):
                    raise ValueError(f"unknown fault knob {key!r}")
                setattr(self.module.f, key, type(getattr(self.module.f, key))(value))
        self._locked(go)

    def advance_clock(self, seconds: float) -> None:
        """Move the meter's clock forward (half hours pass without waiting)."""
        self._locked(lambda: self.meter.advance(float(seconds)))

    def unplug(self) -> None:
        """The USB dongle is pulled: the pty closes (EOF/EIO), the device node disappears."""
        def go():
            self._close_pty()
            self._timers.clear()
        self._locked(go)

    def replug(self) -> None:
        """Plugged back: a new pty under the same name, module at power-on defaults."""
        def go():
            if self.plugged:
                return
            self.module.power_on()
            self._open_pty()
        self._locked(go)

    # -- introspection --------------------------------------------------------------------------

    @property
    def stats(self) -> dict:
        with self._lock:
            return dict(self.module.stats)

    @property
    def session_up(self) -> bool:
        with self._lock:
            return self.module.session
