"""broute-bridge: poll a B-route smart meter, queue every reading durably, upload, back-fill.

:class:`Bridge` is the poller (broute.md §5, §8): one thread drives the :class:`Session`
(join, supervision, requests), polls E7/E8 every ``poll_interval`` and E0/E3 every
``energy_interval``, stores the 30-minute EA/EB notifications, back-fills missed half hours from
the meter's history (EC/ED or E2/E4 with E5) after every (re)join, and serves on-demand reads
(:meth:`Bridge.read_now`) for the md-command handler. Every reading is committed to the SQLite
queue before anything else; :class:`~bridge.upload.Uploader` ships the queue.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime as dt
import json
import logging
import os
import queue
import signal
import socket
import sys
import threading
import time
from typing import Optional, Sequence

from . import meter as m
from . import sk
from .config import BridgeConfig, load
from .echonet import Esv, Frame
from .errors import (BridgeError, ConfigError, FrameError, NotJoined, PortGone, RequestFailed,
                     UnsupportedModule)
from .session import Session, State
from .store import Store, halfhour_reading, instant_reading
from .upload import Uploader

log = logging.getLogger("bridge.service")

SLOT = dt.timedelta(minutes=30)
FAST = (m.POWER, m.CURRENTS)
SLOW = (m.ENERGY_NORMAL, m.ENERGY_REVERSE)


class Bridge:
    def __init__(self, config: BridgeConfig, session: Optional[Session] = None):
        self.cfg = config
        os.makedirs(config.state_dir, exist_ok=True)
        self.store = Store(config.queue_path)
        self.stop = threading.Event()
        self.session = session or Session(config.session, on_notification=self._notification,
                                          stop=self.stop)
        if session is not None:
            session.on_notification = self._notification
            session.stop = self.stop
        self.uploader = None
        if config.collector_url:
            self.uploader = Uploader(self.store, config.collector_url, config.device_id,
                                     config.collector_token, config.upload_batch,
                                     backoff=config.upload_backoff, stop=self.stop, idle_wait=2.0)
        self._ondemand: "queue.Queue" = queue.Queue()
        self._next_fast = 0.0
        self._next_slow = 0.0
        self._next_prune = 0.0
        self._clock_checked = None
        # Back-fill owed since the last join, and the newest half hour stored before it (kept
        # until a back-fill completes, so a failed one is retried over the same gap).
        self._backfill_due = False
        self._gap: Optional[tuple] = None
        self._reload_from: Optional[str] = None
        self.session.interrupt = lambda: self._reload_from is not None
        self.polls = 0
        self.exit_code = 0
        self.joined_event = threading.Event()
        self.last_values: dict = {}

    # -- readings ------------------------------------------------------------------------------

    def _instant(self, frame: Frame, source: str) -> list:
        dev, sc = self.cfg.device_id, self.session.meter.scaling
        out = []
        for p in frame.props:
            edt = p.edt or None
            try:
                if p.epc == m.POWER:
                    out.append(instant_reading(dev, "power_w", m.decode_power(edt) if edt else None,
                                               source))
                elif p.epc == m.CURRENTS:
                    r, t = m.decode_currents(edt) if edt else (None, None)
                    out.append(instant_reading(dev, "current_r_a", None if r is None else str(r), source))
                    out.append(instant_reading(dev, "current_t_a", None if t is None else str(t), source))
                elif p.epc in (m.ENERGY_NORMAL, m.ENERGY_REVERSE):
                    raw = m.decode_u32(edt) if edt else None
                    kwh = sc.kwh(raw)
                    kind = "energy_normal_kwh" if p.epc == m.ENERGY_NORMAL else "energy_reverse_kwh"
                    out.append(instant_reading(dev, kind, None if kwh is None else str(kwh), source))
                elif p.epc in (m.FIXED_NORMAL, m.FIXED_REVERSE) and edt:
                    out.extend(self._fixed(p.epc, edt, source))
            except FrameError as exc:
                log.warning("meter sent a bad EDT for %02X: %s", p.epc, exc)
        return out

    def _fixed(self, epc: int, edt: bytes, source: str) -> list:
        when, raw = m.decode_fixed_time(edt)
        if when is None or raw is None:
            return []                     # missing half hours stay missing, never 0
        kind = "halfhour_normal_kwh" if epc == m.FIXED_NORMAL else "halfhour_reverse_kwh"
        return [halfhour_reading(self.cfg.device_id, kind, when,
                                 str(self.session.meter.scaling.kwh(raw)), source)]

    def _save(self, readings: list) -> None:
        if readings:
            n = self.store.add(*readings)
            for r in readings:
                self.last_values[r.kind] = (r.ts, r.value)
            log.info("stored %d new reading(s): %s", n,
                     ", ".join(f"{r.kind}={r.value}" for r in readings[:6]))

    def _notification(self, frame: Frame) -> None:
        self._save(self._instant(frame, "notification"))

    # -- back-fill (§5.2 rule 7) -------------------------------------------------------------------

    def backfill(self) -> int:
        """Fetch half hours missing since the last stored one from the meter's history.

        When a request fails (BridgeError), the gap is remembered and the next call retries it,
        even though the newest half hour was stored meanwhile."""
        got = self._backfill()
        self._gap = None
        return got

    def _backfill(self) -> int:
        info = self.session.meter
        latest_frame = self.session.initial_values
        latest = None
        if self._gap is None:
            self._gap = (self.store.last_ts("halfhour_normal_kwh"),)   # before the new EA
        last = self._gap[0]
        if latest_frame is not None and latest_frame.get(m.FIXED_NORMAL):
            latest, _ = m.decode_fixed_time(latest_frame.get(m.FIXED_NORMAL))
            self._save(self._instant(latest_frame, "poll"))
        if latest is None or last is None:
            return 0
        last_dt = dt.datetime.fromisoformat(last)
        horizon = latest - dt.timedelta(hours=self.cfg.backfill_max_hours)
        start = max(last_dt, horizon)
        missing = []
        t = latest - SLOT
        for _ in range(100 * 48):
            if t <= start:
                break
            key = halfhour_reading(self.cfg.device_id, "halfhour_normal_kwh", t, None, "x").key
            if not self.store.has(key):
                missing.append(t)
            t -= SLOT
        if not missing:
            return 0
        log.warning("back-filling %d missed half hour(s) from %s to %s", len(missing),
                    missing[-1].isoformat(), missing[0].isoformat())
        if m.HISTORY2 in info.get_map and m.HISTORY2_WINDOW in info.set_map:
            got = self._backfill_ec(missing)
        else:
            got = self._backfill_e2(missing)
        log.info("back-fill stored %d reading(s)", got)
        return got

    def _backfill_ec(self, missing: list) -> int:
        reverse = m.FIXED_REVERSE in self.session.meter.get_map
        got = 0
        todo = sorted(missing, reverse=True)
        sc = self.session.meter.scaling
        for _ in range(len(todo)):
            if not todo:
                break
            newest = todo[0]
            n = min(12, int((newest - todo[-1]) / SLOT) + 1)
            self.session.set([(m.HISTORY2_WINDOW, m.encode_history2_window(newest, n))])
            frame = self.session.get([m.HISTORY2])
            edt = frame.get(m.HISTORY2)
            if frame.esv != Esv.GET_RES or not edt:
                log.warning("meter refused EC; falling back to E2/E4")
                return got + self._backfill_e2(todo)
            when, pairs = m.decode_history2(edt)
            if when != newest:
                log.warning("EC window starts at %s, asked for %s; skipping", when, newest)
                break
            readings = []
            for i, (normal, rev) in enumerate(pairs):
                slot = newest - SLOT * i
                if normal is not None:
                    readings.append(halfhour_reading(self.cfg.device_id, "halfhour_normal_kwh",
                                                     slot, str(sc.kwh(normal)), "backfill"))
                if reverse and rev is not None:
                    readings.append(halfhour_reading(self.cfg.device_id, "halfhour_reverse_kwh",
                                                     slot, str(sc.kwh(rev)), "backfill"))
            got += self.store.add(*readings)
            covered = {newest - SLOT * i for i in range(len(pairs))}
            todo = [t for t in todo if t not in covered]
        return got

    def _backfill_e2(self, missing: list) -> int:
        info = self.session.meter
        reverse = m.HISTORY1_REVERSE in info.get_map
        sc = info.scaling
        got = 0
        by_day: dict = {}
        for t in missing:
            by_day.setdefault(t.date(), []).append(t)
        for day, slots in sorted(by_day.items(), reverse=True):
            today = self._meter_today()
            index = (today - day).days
            if not 0 <= index <= 99:
                continue
            self.session.set([(m.HISTORY1_DAY, bytes((index,)))])
            epcs = [m.HISTORY1_NORMAL] + ([m.HISTORY1_REVERSE] if reverse else [])
            frame = self.session.get(epcs)
            readings = []
            for epc, kind in ((m.HISTORY1_NORMAL, "halfhour_normal_kwh"),
                              (m.HISTORY1_REVERSE, "halfhour_reverse_kwh")):
                edt = frame.get(epc)
                if not edt:
                    continue
                got_day, values = m.decode_history1(edt)
                if got_day != index:
                    log.warning("E2/E4 answered day %s, asked %d (midnight passed?); skipping",
                                got_day, index)
                    continue
                midnight = dt.datetime(day.year, day.month, day.day, tzinfo=m.JST)
                for t in slots:
                    raw = values[int((t - midnight) / SLOT)]
                    if raw is not None:
                        readings.append(halfhour_reading(self.cfg.device_id, kind, t,
                                                         str(sc.kwh(raw)), "backfill"))
            got += self.store.add(*readings)
        return got

    def _meter_today(self) -> dt.date:
        frame = self.session.initial_values
        if frame is not None and frame.get(m.FIXED_NORMAL):
            when, _ = m.decode_fixed_time(frame.get(m.FIXED_NORMAL))
            if when is not None:
                return when.date()
        return dt.datetime.now(m.JST).date()

    def check_clock(self) -> Optional[float]:
        """Compare the meter's clock (97/98) with ours once per session and log drift (§4.6)."""
        if not {m.CURRENT_TIME, m.CURRENT_DATE} <= self.session.meter.get_map:
            return None
        frame = self.session.get([m.CURRENT_TIME, m.CURRENT_DATE])
        t, d = frame.get(m.CURRENT_TIME), frame.get(m.CURRENT_DATE)
        if not t or not d or len(t) != 2 or len(d) != 4:
            return None
        try:
            meter_now = dt.datetime(int.from_bytes(d[:2], "big"), d[2], d[3], t[0], t[1],
                                    tzinfo=m.JST)
        except ValueError:
            log.warning("meter reports an invalid date/time %s %s", d.hex(), t.hex())
            return None
        drift = (meter_now - dt.datetime.now(m.JST).replace(second=0, microsecond=0)).total_seconds()
        self.session.metrics["clock_drift_s"] = drift
        if abs(drift) > 120:
            log.warning("meter clock differs from ours by %+.0f s; half-hour values carry the "
                        "meter's time", drift)
        return drift

    # -- on-demand reads (md-command) --------------------------------------------------------------

    def read_now(self, epcs: Sequence[int], timeout: float = 60.0) -> dict:
        """Read ``epcs`` live from the meter (thread-safe); EPC -> decoded value or None."""
        state = self.session.state
        if state not in (State.JOINED, State.REAUTH, State.THROTTLED):
            raise NotJoined(f"no B-route session at the moment (state {state.value}); "
                            f"the bridge is reconnecting")
        fut: concurrent.futures.Future = concurrent.futures.Future()
        self._ondemand.put((tuple(epcs), fut))
        try:
            return fut.result(timeout)
        except concurrent.futures.TimeoutError:
            fut.cancel()
            raise BridgeError(f"the meter did not answer within {timeout:g} s "
                              f"(session state {self.session.state.value})") from None

    def _serve_ondemand(self) -> None:
        for _ in range(100):
            try:
                epcs, fut = self._ondemand.get_nowait()
            except queue.Empty:
                return
            if not fut.set_running_or_notify_cancel():
                continue
            try:
                get_map = self.session.meter.get_map
                absent = [e for e in epcs if get_map and e not in get_map]
                asked = [e for e in epcs if e not in absent]
                result = {e: None for e in absent}
                if asked:
                    frame = self.session.get(asked)
                    for e in asked:
                        result[e] = m.describe(e, frame.get(e), self.session.meter.scaling)
                    self._save(self._instant(frame, "command"))
                fut.set_result(result)
            except Exception as exc:
                fut.set_exception(exc)

    # -- main loop ------------------------------------------------------------------------------------

    def poll_once(self, epcs: Sequence[int]) -> None:
        get_map = self.session.meter.get_map
        epcs = [e for e in epcs if not get_map or e in get_map]
        if not epcs:
            return
        frame = self.session.get(epcs)
        if frame.esv == Esv.GET_SNA:
            log.warning("meter refused part of %s (Get_SNA)", " ".join(f"{e:02X}" for e in epcs))
        self._save(self._instant(frame, "poll"))
        self.polls += 1

    def run(self) -> int:
        if self.uploader:
            self.uploader.start()
        log.info("bridge for device %s on %s", self.cfg.device_id, self.cfg.session.port)
        for _ in range(10 ** 9):
            if self.stop.is_set():
                break
            if self._reload_from is not None:
                self._reload()
            try:
                if not self.session.joined and self.session.state not in (State.REAUTH,
                                                                            State.THROTTLED):
                    self.joined_event.clear()
                    self.session.connect()
                    self.joined_event.set()
                    self._backfill_due = True
                    self._next_fast = self._next_slow = 0.0
                if self._backfill_due:
                    # Retried on the next turn when a request fails: the gap is kept meanwhile.
                    self.backfill()
                    self._backfill_due = False
                self._serve_ondemand()
                now = time.monotonic()
                if now >= self._next_fast:
                    self._next_fast = now + self.cfg.poll_interval
                    self.poll_once(FAST)
                if now >= self._next_slow:
                    self._next_slow = now + self.cfg.energy_interval
                    self.poll_once(SLOW)
                    if self._clock_checked != self.session.metrics["session_since"]:
                        self._clock_checked = self.session.metrics["session_since"]
                        self.check_clock()
                if now >= self._next_prune:
                    self._next_prune = now + 3600
                    self.store.prune(self.cfg.keep_uploaded_days * 86400)
                wait = min(self._next_fast, self._next_slow) - time.monotonic()
                self.session.pump(max(0.0, min(wait, 0.2)))
            except UnsupportedModule as exc:
                log.error("%s", exc)
                self.exit_code = 3
                break
            except (NotJoined, RequestFailed, PortGone) as exc:
                if not self.stop.is_set():
                    log.warning("poll interrupted: %s", exc)
            except BridgeError as exc:
                log.warning("poll failed: %s", exc)
        self._fail_ondemand()
        self.session.close()
        if self.uploader:
            self.stop.set()
            self.uploader.join()
        return self.exit_code

    # -- SIGHUP: reload the config file ------------------------------------------------------------

    #: Session settings whose change needs a new session (port reopened, module re-initialised).
    RECONNECT_KEYS = ("port", "baudrate", "family", "rbid", "password", "output_mode")

    def request_reload(self, path: str) -> None:
        """Ask run() to re-read ``path`` (signal-safe); a bad file is logged and ignored."""
        self._reload_from = path
        self.session.kick()

    def _reload(self) -> None:
        path, self._reload_from = self._reload_from, None
        try:
            new = load(path)
        except ConfigError as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        old = self.cfg
        new.session.pan_cache = old.session.pan_cache
        if not new.session.port:
            new.session.port = old.session.port          # a discovered or --port device stays
        reconnect = [k for k in self.RECONNECT_KEYS
                     if getattr(new.session, k) != getattr(old.session, k)]
        for key in ("poll_interval", "energy_interval", "backfill_max_hours", "keep_uploaded_days",
                    "collector_url", "collector_token", "upload_batch", "upload_backoff"):
            setattr(old, key, getattr(new, key))
        old.session = new.session
        self.session.cfg = new.session
        d = self.session.driver
        d.port, d.baudrate = new.session.port, new.session.baudrate
        d.command_timeout, d.drain_time = new.session.command_timeout, new.session.drain_time
        if self.uploader is not None:
            self.uploader.url, self.uploader.token = old.collector_url, old.collector_token
            self.uploader.batch, self.uploader.backoff = old.upload_batch, old.upload_backoff
        logging.getLogger().setLevel(getattr(logging, new.log_level, logging.INFO))
        self._next_fast = self._next_slow = 0.0
        if reconnect:
            log.warning("config reloaded; %s changed: starting a new session", ", ".join(reconnect))
            self.session.family_fixed = new.session.family in ("A", "C")
            self.session.dialect = (self.session.dialect if not self.session.family_fixed
                                    else sk.Dialect(new.session.family))
            if "family" in reconnect and not self.session.family_fixed:
                self.session.dialect = None
            self.session.close()
        else:
            log.info("config reloaded from %s", path)

    def shutdown(self) -> None:
        """Ask run() to return (thread- and signal-safe)."""
        self.stop.set()
        self.session.kick()

    def hotplug(self, action: str, port) -> None:
        """pyudev hint: a Wi-SUN dongle appeared; retry the port now instead of after the backoff."""
        if action == "add" and not self.session.joined:
            if self.cfg.discover and port.device != self.session.driver.port:
                log.info("switching to newly plugged dongle %s", port.device)
                self.session.driver.port = port.device
            self.session.kick()

    def _fail_ondemand(self) -> None:
        for _ in range(1000):
            try:
                _, fut = self._ondemand.get_nowait()
            except queue.Empty:
                return
            if fut.set_running_or_notify_cancel():
                fut.set_exception(NotJoined("bridge stopping"))

    def status(self) -> dict:
        s = self.session
        return {"device": self.cfg.device_id, "state": s.state.value,
                "family": s.dialect.family if s.dialect else None,
                "pan": None if s.pan is None else {"channel": f"{s.pan.channel:02X}",
                                                   "pan_id": f"{s.pan.pan_id:04X}",
                                                   "addr": s.pan.addr},
                "meter_serial": s.meter.serial, "polls": self.polls, "queue": self.store.counts(),
                "metrics": s.metrics}


# -- control socket (for armsd hook scripts: `broute-bridge --query "meter get E7"`) -------------

class ControlServer:
    def __init__(self, path: str, handler):
        self.path = path
        self.handler = handler
        if os.path.exists(path):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        os.chmod(path, 0o660)
        self.sock.listen(4)
        self._thread = threading.Thread(target=self._serve, name="bridge-control", daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(120)
                try:
                    line = conn.recv(4096)
                    ok, out = True, self.handler(line.strip())
                except Exception as exc:
                    ok, out = False, getattr(exc, "output", "") or str(exc)
                if isinstance(out, str):
                    out = out.encode()
                try:
                    conn.sendall((b"OK\n" if ok else b"ERR\n") + out)
                except OSError:
                    pass

    def close(self):
        self.sock.close()
        try:
            os.unlink(self.path)
        except OSError:
            pass


def query(path: str, command: str, timeout: float = 120.0) -> tuple[bool, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(command.encode() + b"\n")
        s.shutdown(socket.SHUT_WR)
        data = b""
        for _ in range(100000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\n")
    return head == b"OK", body.decode("utf-8", "replace")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(
        prog="broute-bridge",
        description="B-route smart-meter bridge: reads a low-voltage smart meter through a "
                    "Wi-SUN module (SKSTACK-IP, families A and C), queues every reading durably "
                    "and uploads it to a collector.")
    ap.add_argument("-c", "--config", default="/etc/broute-bridge.conf",
                    help="config file (INI; see bridge/broute-bridge.conf.sample)")
    ap.add_argument("--port", help="serial device; overrides [serial] port and discovery")
    ap.add_argument("--query", metavar="COMMAND",
                    help="send an md-command such as 'meter get E7 E8' to the running bridge "
                         "through its control socket, print the answer and exit (exit 1 on error)")
    ap.add_argument("--hook", nargs=3, metavar=("MODULE_ID", "REQUESTFILE", "RESULTFILE"),
                    help="armsd script-command hook: run the md-command in REQUESTFILE on the "
                         "running bridge, write the answer to RESULTFILE; exit 1 if it failed")
    ap.add_argument("--list-ports", action="store_true",
                    help="list Wi-SUN dongles pyudev can see and exit")
    ap.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = ap.parse_args(argv)

    if args.list_ports:
        from .discovery import find_ports
        for p in find_ports():
            print(f"{p.device}\t{p.vid}:{p.pid}\t{p.description}")
        return 0
    try:
        cfg = load(args.config)
    except ConfigError as exc:
        print(f"broute-bridge: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.DEBUG if args.verbose else getattr(logging, cfg.log_level,
                                                                         logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.query or args.hook:
        if not cfg.control_socket:
            print("broute-bridge: no [bridge] control_socket configured", file=sys.stderr)
            return 2
        try:
            if args.hook:
                with open(args.hook[1], "rb") as fh:
                    command = fh.read(4096).decode("ascii", "replace").strip()
            else:
                command = args.query
            ok, out = query(cfg.control_socket, command)
        except OSError as exc:
            out = json.dumps({"error": f"cannot reach the running bridge at "
                                       f"{cfg.control_socket}: {exc}"})
            ok = False
            print(f"broute-bridge: {out}", file=sys.stderr)
        if args.hook:
            with open(args.hook[2], "w", encoding="ascii", errors="replace") as fh:
                fh.write(out)
        else:
            print(out)
        return 0 if ok else 1
    if getattr(cfg, "secrets_exposed", False):
        log.warning("%s is readable by group/others but holds the B-route password; chmod 600 it",
                    args.config)
    if args.port:
        cfg.session.port = args.port
    elif cfg.discover or not cfg.session.port:
        from .discovery import find_ports
        ports = find_ports()
        if not ports:
            print("broute-bridge: no Wi-SUN dongle found by pyudev; set [serial] port or --port",
                  file=sys.stderr)
            return 2
        cfg.session.port = ports[0].device
        log.info("discovered %s (%s)", ports[0].device, ports[0].description)
    bridge = Bridge(cfg)
    if cfg.discover and not args.port:
        from .discovery import find_ports

        def resolve():
            found = find_ports()
            return found[0].device if found else None
        bridge.session.resolve_port = resolve
    from .mdcommand import MeterCommands
    control = None
    if cfg.control_socket:
        control = ControlServer(cfg.control_socket, MeterCommands(bridge)).start()
    signal.signal(signal.SIGTERM, lambda *a: bridge.shutdown())
    signal.signal(signal.SIGINT, lambda *a: bridge.shutdown())
    signal.signal(signal.SIGHUP, lambda *a: bridge.request_reload(args.config))
    from .discovery import Watcher
    watcher = Watcher(bridge.hotplug)
    watcher.start()
    try:
        return bridge.run()
    finally:
        watcher.stop()
        if control:
            control.close()
