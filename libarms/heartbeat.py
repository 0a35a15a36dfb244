"""Heartbeat sender: the Python face of the C sender thread (``csrc/arms_hb_sender.h``).

The agent starts a :class:`HeartbeatSender` when it enters PUSH_WAIT and stops it when it leaves
(``arms-agent.md`` 1.6-1.7)::

    hb = HeartbeatSender(distribution_id, [HbServer("192.0.2.9", 16000, "pass")], interval=60,
                         on_statistics=callbacks.hb_store_statistics)
    hb.start()      # first datagram right away (after ``lead`` seconds), then every interval
    hb.pause()      # configure running: statistics still asked, nothing sent (arms_hb_stop)
    hb.resume()     # arms_hb_start
    hb.stop()

``on_statistics(hb)`` fills the next datagram with ``hb.set_cpu_usage(idx, pct)``,
``set_cpu_detail_usage``, ``set_mem_usage``, ``set_disk_usage``, ``set_traffic_count``,
``set_traffic_rate`` and ``set_radiowave`` (libarms' ``arms_hb_set_*``; each raises
:class:`~libarms.errors.ArmsError` with ``Err.EEXIST`` for a repeated kind and index and
``Err.ESIZE`` past 1024 bytes). Items are cleared before every call, so a datagram carries what
the last call set.

Timing: the C thread owns the UDP sockets and the schedule and never needs the GIL. ``lead``
seconds before each deadline it asks for statistics; a Python thread runs ``on_statistics`` and
publishes the result; the datagram leaves at the deadline with the latest published metrics,
so a late callback (GIL held elsewhere) delays the metrics, never the heartbeat. An exception
from ``on_statistics`` is logged, counted in ``stats.callback_errors`` and handed to
``on_callback_error`` (libarms redoes the push confirmation, ``ARMS_EPUSH``); that round keeps
the previous metrics.

Without the C core (``HAVE_CORE`` false) :class:`PyHeartbeatSender`, a pure-Python thread with
the same interface, is used instead; it is also the baseline of ``bench/heartbeat.py``.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import threading
import time

from libarms._record import Record, field
from libarms.errors import ArmsError, ConfigError
from libarms.protocol import heartbeat as _proto
from libarms.protocol.heartbeat import DistributionId, PacketBuilder

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: typing stays unloaded at run time (footprint)
    from typing import Callable, Iterable

try:
    from libarms._core import ffi as _ffi, lib as _lib
    HAVE_CORE = True
except ImportError:
    _ffi = _lib = None
    HAVE_CORE = False

__all__ = ["HbServer", "HeartbeatStats", "HeartbeatItems", "HeartbeatSender",
           "CHeartbeatSender", "PyHeartbeatSender", "HAVE_CORE", "MAX_SERVERS"]

log = logging.getLogger("libarms.heartbeat")

MAX_SERVERS = 5
MAX_HOST = 255
MAX_PASSPHRASE = 1024
DEFAULT_LEAD = 0.1


class HbServer(Record):
    """One ``heartbeat-info`` entry: numeric host, UDP port and HMAC passphrase."""

    host: str
    port: int
    passphrase: str = field(repr=False)


class HeartbeatStats(Record):
    rounds: int = 0            #: deadlines reached
    sent: int = 0              #: datagrams handed to the kernel
    errors: int = 0            #: failed sends and unusable (non-numeric) servers, per round
    paused: int = 0            #: rounds not sent because of pause()
    requests: int = 0          #: statistics requests
    publishes: int = 0         #: statistics published by the callback thread
    late: int = 0              #: rounds sent before their callback had finished
    callback_errors: int = 0   #: on_statistics raised


def _passphrase_bytes(p: str | bytes) -> bytes:
    return p.encode("utf-8") if isinstance(p, str) else bytes(p)


def _as_server(s) -> HbServer:
    """An HbServer from anything with host / port / passphrase (e.g. protocol.pull's
    HeartbeatInfo) or a dict with those keys."""
    if isinstance(s, HbServer):
        return s
    try:
        if isinstance(s, dict):
            return HbServer(str(s["host"]), int(s["port"]), s["passphrase"])
        return HbServer(str(s.host), int(s.port), s.passphrase)
    except (AttributeError, KeyError, TypeError, ValueError):
        raise ConfigError(f"heartbeat server needs host, port and passphrase: {s!r}") from None


def _check_config(distribution_id, servers, interval):
    if isinstance(distribution_id, DistributionId):
        dist = distribution_id
    else:
        try:
            dist = DistributionId.parse(distribution_id)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    servers = list(servers)
    if len(servers) > MAX_SERVERS:
        raise ConfigError(f"{len(servers)} heartbeat servers given; at most {MAX_SERVERS}")
    servers = [_as_server(s) for s in servers]
    for s in servers:
        if not 0 <= int(s.port) <= 65535:
            raise ConfigError(f"heartbeat server port {s.port} outside 0..65535")
        if len(s.host.encode("utf-8")) > MAX_HOST:
            raise ConfigError("heartbeat server host longer than 255 bytes")
        if len(_passphrase_bytes(s.passphrase)) > MAX_PASSPHRASE:
            raise ConfigError("heartbeat passphrase longer than 1024 bytes")
    if not interval or interval <= 0:
        raise ConfigError(f"heartbeat interval must be positive, not {interval!r}")
    return dist, servers, float(interval)


def _is_numeric(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        return False


class HeartbeatItems:
    """The metric setters handed to ``on_statistics`` (a C ``struct arms_hb_packet``).

    Also usable on its own to build a datagram: ``HeartbeatItems(dist_id)``, ``set_*`` calls,
    then :meth:`build` with a passphrase.
    """

    def __init__(self, distribution_id: DistributionId | str):
        if not HAVE_CORE:
            raise RuntimeError("libarms._core is not built")
        if isinstance(distribution_id, str):
            distribution_id = DistributionId.parse(distribution_id)
        self._p = _ffi.new("struct arms_hb_packet *")
        _lib.arms_hb_set_distribution_id(self._p, distribution_id.to_bytes())

    @staticmethod
    def _check(rc: int, what: str) -> None:
        if rc:
            raise ArmsError(rc, f"heartbeat {what}")

    def _call(self, fn, what, *args):
        try:
            rc = fn(self._p, *args)
        except OverflowError as exc:
            raise ValueError(f"heartbeat {what}: value out of range ({exc})") from None
        self._check(rc, what)

    def clear(self) -> None:
        _lib.arms_hb_clear(self._p)

    def __len__(self) -> int:
        return max(int(self._p.len), _proto.PREFIX_LEN)

    def set_cpu_usage(self, idx: int, utilization: int) -> None:
        self._call(_lib.arms_hb_set_cpu_usage, "cpu usage", idx, utilization)

    def set_cpu_detail_usage(self, idx, idle, interrupt, user, sys, other) -> None:
        self._call(_lib.arms_hb_set_cpu_detail_usage, "cpu detail", idx, idle, interrupt,
                   user, sys, other)

    def set_mem_usage(self, idx: int, used: int, avail: int) -> None:
        self._call(_lib.arms_hb_set_mem_usage, "memory usage", idx, used, avail)

    def set_disk_usage(self, idx: int, used: int, avail: int) -> None:
        self._call(_lib.arms_hb_set_disk_usage, "disk usage", idx, used, avail)

    def set_traffic_count(self, ifidx, in_octet, out_octet, in_packet, out_packet, in_error,
                          out_error) -> None:
        self._call(_lib.arms_hb_set_traffic_count, "traffic count", ifidx, in_octet,
                   out_octet, in_packet, out_packet, in_error, out_error)

    def set_traffic_rate(self, ifidx, in_octet, out_octet, in_packet, out_packet, in_error,
                         out_error) -> None:
        self._call(_lib.arms_hb_set_traffic_rate, "traffic rate", ifidx, in_octet, out_octet,
                   in_packet, out_packet, in_error, out_error)

    def set_radiowave(self, ifidx, status, max, min, avg) -> None:  # noqa: A002
        self._call(_lib.arms_hb_set_radiowave, "radio wave", ifidx, status, max, min, avg)

    def build(self, passphrase: str | bytes) -> bytes:
        """The datagram signed with ``passphrase`` (HMAC-SHA1 through libcrypto)."""
        key = _passphrase_bytes(passphrase)
        self._check(_lib.arms_hb_sign(self._p, key, len(key)), "signing")
        return bytes(_ffi.buffer(self._p.buf, self._p.len))


class CHeartbeatSender:
    """Heartbeats from the C sender thread. See the module docstring."""

    def __init__(self, distribution_id: DistributionId | str, servers: Iterable[HbServer],
                 interval: float, on_statistics: Callable[[HeartbeatItems], None] | None = None,
                 *, lead: float = DEFAULT_LEAD, family: int | None = None,
                 on_callback_error: Callable[[BaseException], None] | None = None):
        if not HAVE_CORE:
            raise RuntimeError("libarms._core is not built; use PyHeartbeatSender")
        self.distribution_id, self.servers, self.interval = _check_config(
            distribution_id, servers, interval)
        self.on_statistics = on_statistics
        self.on_callback_error = on_callback_error
        self.lead = float(lead)
        self.family = family
        raw = _ffi.new("struct arms_hb_sender *")
        rc = _lib.arms_hb_sender_init(raw)
        if rc:
            raise OSError(rc, "cannot initialise the heartbeat sender")
        self._s = _ffi.gc(raw, _lib.arms_hb_sender_destroy)
        self._items = HeartbeatItems(self.distribution_id)
        self._lock = threading.Lock()
        self._stats_thread: threading.Thread | None = None
        self._running = False
        self._callback_errors = 0
        self._apply_config()

    def _apply_config(self) -> None:
        fam = {None: socket.AF_UNSPEC, socket.AF_INET: socket.AF_INET,
               socket.AF_INET6: socket.AF_INET6}.get(self.family)
        if fam is None:
            raise ConfigError(f"address family {self.family!r} is not AF_INET or AF_INET6")
        interval_ms = max(1, round(self.interval * 1000))
        lead_ms = max(0, round(self.lead * 1000)) if self.on_statistics else 0
        rc = _lib.arms_hb_sender_configure(self._s, self.distribution_id.to_bytes(),
                                           interval_ms, lead_ms, fam)
        if rc:
            raise ConfigError(f"heartbeat sender rejected interval {self.interval}")
        _lib.arms_hb_sender_clear_servers(self._s)
        for srv in self.servers:
            key = _passphrase_bytes(srv.passphrase)
            rc = _lib.arms_hb_sender_add_server(self._s, srv.host.encode("utf-8"), srv.port,
                                                key, len(key))
            if rc == 1:
                log.warning("heartbeat server %r is not a numeric address: nothing will be "
                            "sent to it", srv.host)
            elif rc:
                raise ConfigError(f"heartbeat server {srv.host!r} rejected")

    def update(self, servers: Iterable[HbServer], interval: float) -> None:
        """Replace the server list and interval (a new RS pull); applies from the next round."""
        with self._lock:
            _, self.servers, self.interval = _check_config(self.distribution_id, servers,
                                                           interval)
            self._apply_config()

    def start(self) -> None:
        """Start sending (first datagram after ``lead`` s); also clears a pause."""
        with self._lock:
            if self._running:
                _lib.arms_hb_sender_pause(self._s, 0)
                return
            rc = _lib.arms_hb_sender_start(self._s)
            if rc:
                raise OSError(rc, "cannot start the heartbeat thread")
            self._running = True
            if self.on_statistics is not None:
                self._stats_thread = threading.Thread(
                    target=self._stats_loop, name="libarms-heartbeat-stats", daemon=True)
                self._stats_thread.start()
        log.info("heartbeat started: interval %gs, %d server(s), distribution id %s",
                 self.interval, len(self.servers), self.distribution_id)

    def stop(self) -> None:
        with self._lock:
            if not self._running:
                return
            self._running = False
            _lib.arms_hb_sender_stop(self._s)  # wakes the statistics thread
            th, self._stats_thread = self._stats_thread, None
        if th is not None and th is not threading.current_thread():
            th.join(timeout=10)
        log.info("heartbeat stopped")

    def pause(self, ask_statistics: bool = True) -> None:
        """Stop sending (``arms_hb_stop``): ``on_statistics`` is still called every interval.

        ``ask_statistics=False`` also skips the callback, as libarms does while a configure
        runs (A 1.6 step 1). :meth:`resume` undoes either; the schedule keeps running.
        """
        _lib.arms_hb_sender_pause(self._s, 1 if ask_statistics else 2)

    def resume(self) -> None:
        """Send again (``arms_hb_start``)."""
        _lib.arms_hb_sender_pause(self._s, 0)

    @property
    def is_running(self) -> bool:
        """Started and not paused (``arms_hb_is_running``)."""
        return bool(_lib.arms_hb_sender_is_running(self._s))

    @property
    def stats(self) -> HeartbeatStats:
        st = _ffi.new("struct arms_hb_sender_stats *")
        _lib.arms_hb_sender_get_stats(self._s, st)
        return HeartbeatStats(st.rounds, st.sent, st.errors, st.paused, st.requests,
                              st.publishes, st.late, self._callback_errors)

    def _stats_loop(self) -> None:
        seen = 0
        s = self._s
        items = self._items
        while self._running:
            seq = _lib.arms_hb_sender_wait_request(s, seen, 1000)  # GIL released inside
            if seq == 0 or seq == seen:
                continue  # stopped (the loop condition ends it) or timed out
            seen = seq
            items.clear()
            try:
                self.on_statistics(items)
            except Exception as exc:  # the application's callback failed
                self._callback_errors += 1
                log.error("heartbeat statistics callback failed: %s", exc)
                if self.on_callback_error is not None:
                    try:
                        self.on_callback_error(exc)
                    except Exception:
                        log.exception("heartbeat callback-error handler failed")
                continue
            _lib.arms_hb_sender_publish(s, items._p, seq)

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


class PyHeartbeatSender:
    """Pure-Python sender with the same interface (fallback and benchmark baseline).

    Runs callback, build and send in one Python thread, so it needs the GIL on time: a thread
    that holds the GIL delays its datagrams.
    """

    def __init__(self, distribution_id: DistributionId | str, servers: Iterable[HbServer],
                 interval: float, on_statistics: Callable | None = None, *,
                 lead: float = DEFAULT_LEAD, family: int | None = None,
                 on_callback_error: Callable[[BaseException], None] | None = None):
        self.distribution_id, self.servers, self.interval = _check_config(
            distribution_id, servers, interval)
        self.on_statistics = on_statistics
        self.on_callback_error = on_callback_error
        self.family = family
        self._builder = PacketBuilder(self.distribution_id)
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None
        self._running = False
        self._paused = 0
        self._counts = dict(rounds=0, sent=0, errors=0, paused=0, requests=0, publishes=0,
                            late=0, callback_errors=0)

    def update(self, servers: Iterable[HbServer], interval: float) -> None:
        with self._cv:
            _, self.servers, self.interval = _check_config(self.distribution_id, servers,
                                                           interval)
            self._cv.notify_all()

    def start(self) -> None:
        with self._cv:
            self._paused = 0
            if self._running:
                return
            self._running = True
            self._thread = threading.Thread(target=self._loop, name="libarms-heartbeat-py",
                                            daemon=True)
            self._thread.start()

    def stop(self) -> None:
        with self._cv:
            if not self._running:
                return
            self._running = False
            self._cv.notify_all()
            th, self._thread = self._thread, None
        if th is not None and th is not threading.current_thread():
            th.join(timeout=10)

    def pause(self, ask_statistics: bool = True) -> None:
        with self._cv:
            self._paused = 1 if ask_statistics else 2

    def resume(self) -> None:
        with self._cv:
            self._paused = 0

    @property
    def is_running(self) -> bool:
        return self._running and not self._paused

    @property
    def stats(self) -> HeartbeatStats:
        return HeartbeatStats(**self._counts)

    def _send(self, sockets: dict) -> None:
        unsigned = self._builder.unsigned()
        for srv in self.servers:
            if not _is_numeric(srv.host):
                self._counts["errors"] += 1
                continue
            fam = socket.AF_INET6 if ":" in srv.host else socket.AF_INET
            if self.family is not None and fam != self.family:
                continue
            try:
                sock = sockets.get(fam)
                if sock is None:
                    sock = sockets[fam] = socket.socket(fam, socket.SOCK_DGRAM)
                    sock.setblocking(False)
                sock.sendto(_proto.sign_packet(unsigned, srv.passphrase), (srv.host, srv.port))
                self._counts["sent"] += 1
            except OSError:
                self._counts["errors"] += 1

    def _loop(self) -> None:
        sockets: dict = {}
        deadline = time.monotonic()
        try:
            while True:
                with self._cv:
                    while self._running and time.monotonic() < deadline:
                        self._cv.wait(deadline - time.monotonic())
                    if not self._running:
                        return
                    paused = self._paused
                self._counts["rounds"] += 1
                if paused == 2:  # configure running: no callback, no datagram
                    self._counts["paused"] += 1
                    paused = None
                else:
                    self._builder.clear()
                if paused is not None and self.on_statistics is not None:
                    self._counts["requests"] += 1
                    try:
                        self.on_statistics(self._builder)
                        self._counts["publishes"] += 1
                    except Exception as exc:
                        self._counts["callback_errors"] += 1
                        log.error("heartbeat statistics callback failed: %s", exc)
                        if self.on_callback_error is not None:
                            self.on_callback_error(exc)
                if paused == 1:
                    self._counts["paused"] += 1
                elif paused is not None:
                    self._send(sockets)
                deadline += self.interval
                now = time.monotonic()
                if now > deadline + self.interval:
                    deadline = now
        finally:
            for s in sockets.values():
                s.close()

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()


HeartbeatSender = CHeartbeatSender if HAVE_CORE else PyHeartbeatSender
