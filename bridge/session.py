"""B-route session: join, supervision with an escalation ladder, and ECHONET requests (broute.md §2, §3.5, §5).

Theory of operation
-------------------
One :class:`Session` owns one module (through :class:`~bridge.driver.SkDriver`) and is driven by
one thread (the poller's). Everything it waits for comes through :meth:`Session.pump`, which
takes asynchronous records off the driver's event queue and dispatches each one: PANA events move
the state machine, ERXUDP datagrams either complete the pending ECHONET request (TID, EOJs, ESV,
sender all match, §3.5) or go to the notification handler (INF/INFC, answered with INFC_Res at
once) or are dropped as stale/garbage. Nothing else completes a request.

The state machine is the table ``TRANSITIONS`` below (§2.6); ``ANY`` lists transitions valid from
every state. :meth:`Session.connect` walks the escalation ladder
(rejoin -> terminate+rejoin -> rescan -> reset -> reopen) with capped exponential backoff and
jitter until the session is up, resetting the ladder on success.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import logging
import os
import random
import threading
import time
from typing import Callable, Optional, Sequence

from . import echonet as el
from . import meter as m
from . import sk
from .driver import SkDriver
from .echonet import Esv, Frame
from .errors import (BridgeError, ConfigError, FrameError, ModuleError, NotJoined, PortGone,
                     RequestFailed, RequestTimeout, UnsupportedModule)
from .store import atomic_write

log = logging.getLogger("bridge.session")


class State(enum.Enum):
    CLOSED = "closed"
    PORT_OPEN = "port_open"
    IDLE = "idle"
    PAN_KNOWN = "pan_known"
    JOINING = "joining"
    JOINED = "joined"
    REAUTH = "reauth"
    THROTTLED = "throttled"
    BACKOFF = "backoff"


class Ev(enum.Enum):
    OPENED = "port opened"
    INIT_OK = "module initialised"
    PAN_FOUND = "PAN known (scan or cache)"
    SCAN_EMPTY = "active scan found no meter"
    JOIN_SENT = "SKJOIN sent"
    AUTH_OK = "EVENT 25"
    AUTH_FAIL = "EVENT 24"
    JOIN_TIMEOUT = "no EVENT 24/25 in time"
    PEER_TERMINATED = "EVENT 26"
    TERMINATED = "EVENT 27/28"
    EXPIRED = "EVENT 29"
    REAUTH_TIMEOUT = "no EVENT 25 after EVENT 29"
    TX_LIMIT = "EVENT 32"
    TX_RESUME = "EVENT 33"
    REQUEST_FAILURES = "consecutive request failures"
    MODULE_RESET = "module reset detected"
    FAILED = "init/command failed"
    RETRY_JOIN = "ladder: rejoin"
    RETRY_SCAN = "ladder: rescan"
    RETRY_RESET = "ladder: reset"
    RETRY_REOPEN = "ladder: reopen"
    IO_ERROR = "serial I/O error"


S, E = State, Ev
TRANSITIONS = {
    S.CLOSED: {E.OPENED: S.PORT_OPEN},
    S.PORT_OPEN: {E.INIT_OK: S.IDLE, E.FAILED: S.BACKOFF},
    S.IDLE: {E.PAN_FOUND: S.PAN_KNOWN, E.SCAN_EMPTY: S.BACKOFF, E.FAILED: S.BACKOFF},
    S.PAN_KNOWN: {E.JOIN_SENT: S.JOINING, E.FAILED: S.BACKOFF},
    S.JOINING: {E.AUTH_OK: S.JOINED, E.AUTH_FAIL: S.BACKOFF, E.JOIN_TIMEOUT: S.BACKOFF,
                E.FAILED: S.BACKOFF},
    S.JOINED: {E.EXPIRED: S.REAUTH, E.PEER_TERMINATED: S.BACKOFF, E.TERMINATED: S.BACKOFF,
               E.AUTH_FAIL: S.BACKOFF, E.REQUEST_FAILURES: S.BACKOFF, E.TX_LIMIT: S.THROTTLED,
               E.AUTH_OK: S.JOINED, E.FAILED: S.BACKOFF},
    S.REAUTH: {E.AUTH_OK: S.JOINED, E.AUTH_FAIL: S.BACKOFF, E.REAUTH_TIMEOUT: S.BACKOFF,
               E.PEER_TERMINATED: S.BACKOFF, E.TERMINATED: S.BACKOFF},
    S.THROTTLED: {E.TX_RESUME: S.JOINED, E.EXPIRED: S.REAUTH, E.PEER_TERMINATED: S.BACKOFF,
                  E.TERMINATED: S.BACKOFF, E.AUTH_FAIL: S.BACKOFF},
    S.BACKOFF: {E.RETRY_JOIN: S.PAN_KNOWN, E.RETRY_SCAN: S.IDLE, E.RETRY_RESET: S.PORT_OPEN,
                E.RETRY_REOPEN: S.CLOSED, E.TX_LIMIT: S.BACKOFF, E.TX_RESUME: S.BACKOFF},
}
#: Valid from every state.
ANY = {E.IO_ERROR: S.CLOSED, E.MODULE_RESET: S.BACKOFF}

#: Escalation ladder (§2.6), in order.
LADDER = ("rejoin", "terminate+rejoin", "rescan", "reset", "reopen")

EVENT_TO_EV = {0x24: E.AUTH_FAIL, 0x25: E.AUTH_OK, 0x26: E.PEER_TERMINATED, 0x27: E.TERMINATED,
               0x28: E.TERMINATED, 0x29: E.EXPIRED, 0x32: E.TX_LIMIT, 0x33: E.TX_RESUME}


def next_state(state: State, event: Ev) -> Optional[State]:
    """The table lookup; None when ``event`` means nothing in ``state``."""
    return TRANSITIONS.get(state, {}).get(event) or ANY.get(event)


@dataclasses.dataclass
class SessionConfig:
    port: str = "/dev/ttyUSB0"
    baudrate: int = 115200
    family: str = "auto"                 # auto | A | C
    rbid: str = ""
    password: str = dataclasses.field(default="", repr=False)
    output_mode: str = "hex"             # hex: WOPT 01 if needed | keep: use what ROPT says
    reset_on_start: bool = True
    scan_durations: tuple = (6, 7, 8)
    join_timeout: float = 60.0
    reauth_timeout: float = 30.0
    command_timeout: float = 5.0
    drain_time: float = 1.5
    request_timeout: float = 20.0
    request_retries: int = 3
    retry_gap: float = 5.0
    min_request_gap: float = 5.0
    failures_before_rejoin: int = 3
    backoff: tuple = (10.0, 30.0, 60.0, 300.0, 600.0)
    jitter: float = 0.2
    instance_list_wait: float = 5.0
    pan_cache: Optional[str] = None
    accept_unsecured: bool = False
    scan_time_unit: float = 0.01          # seconds per (2^D + 1) per channel, for scan timeouts

    def validate(self) -> None:
        if len(self.rbid) != 32 or " " in self.rbid:
            raise ConfigError("the B-route ID must be exactly 32 characters without spaces "
                              f"(got {len(self.rbid)})")
        if not 1 <= len(self.password) <= 32 or " " in self.password:
            raise ConfigError("the B-route password must be 1..32 characters (normally 12)")
        if len(self.password) != 12:
            log.warning("B-route password is %d characters; utilities issue 12", len(self.password))
        if self.family not in ("auto", "A", "C"):
            raise ConfigError(f"family must be auto, A or C (got {self.family!r})")
        if self.output_mode not in ("hex", "keep"):
            raise ConfigError(f"output_mode must be hex or keep (got {self.output_mode!r})")


@dataclasses.dataclass(frozen=True)
class Pan:
    channel: int
    pan_id: int
    addr: str                  # meter ADDR64
    lqi: int = 0
    pair_id: Optional[str] = None

    @property
    def ipaddr(self) -> str:
        return sk.link_local_from_mac(self.addr)


class PanCache:
    """PAN cache file (§2.7): JSON, atomically replaced, no secrets."""

    def __init__(self, path: Optional[str]):
        self.path = path

    def load(self) -> Optional[Pan]:
        if not self.path or not os.path.exists(self.path):
            return None
        try:
            with open(self.path, encoding="utf-8") as fh:
                d = json.load(fh)
            return Pan(int(d["channel"], 16), int(d["pan_id"], 16), d["addr"], int(d.get("lqi", 0)),
                       d.get("pair_id"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring unreadable PAN cache %s: %s", self.path, exc)
            return None

    def save(self, pan: Pan, family: str) -> None:
        if not self.path:
            return
        d = {"channel": f"{pan.channel:02X}", "pan_id": f"{pan.pan_id:04X}", "addr": pan.addr,
             "ipaddr": pan.ipaddr, "pair_id": pan.pair_id, "lqi": pan.lqi, "family": family,
             "timestamp": time.time()}
        atomic_write(self.path, json.dumps(d, indent=1).encode())

    def drop(self) -> None:
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)


@dataclasses.dataclass
class MeterInfo:
    """What the attribute reads of §2.5 told us; re-read on every new session."""

    get_map: frozenset = frozenset()
    set_map: frozenset = frozenset()
    scaling: m.Scaling = m.Scaling()
    serial: Optional[str] = None
    version: Optional[str] = None


class JoinFailed(BridgeError):
    pass


class ScanEmpty(BridgeError):
    pass


class Session:
    def __init__(self, config: SessionConfig, driver: Optional[SkDriver] = None,
                 on_notification: Optional[Callable[[Frame], None]] = None,
                 stop: Optional[threading.Event] = None, rng: Optional[random.Random] = None):
        self.cfg = config
        self.driver = driver or SkDriver(config.port, config.baudrate, config.command_timeout,
                                         config.drain_time)
        self.driver.on_unexpected_echo = self._unexpected_echo
        self.on_notification = on_notification
        self.stop = stop or threading.Event()
        self.rng = rng or random.Random()
        self.state = State.CLOSED
        self.dialect: Optional[sk.Dialect] = None
        self.family_fixed = config.family in ("A", "C")
        if self.family_fixed:
            self.dialect = sk.Dialect(config.family)
        self.own_ip: Optional[str] = None
        self.pan: Optional[Pan] = None
        self.cache = PanCache(config.pan_cache)
        self.meter = MeterInfo()
        self.tids = el.TidCounter()
        self.ladder = 0
        self._reset_suspected = False
        self._pending: Optional[tuple] = None       # (tid, esv, epcs, deoj)
        self._response: Optional[Frame] = None
        self._send_failed = False
        self._last_request = 0.0
        self._consecutive_failures = 0
        self._reauth_deadline = 0.0
        self._kick = threading.Event()
        self._opened_once = False
        #: Optional callable: True makes connect() give up at once (a config reload is pending).
        self.interrupt: Optional[Callable[[], bool]] = None
        #: Optional callable giving the device path to (re)open (pyudev discovery), or None.
        self.resolve_port: Optional[Callable[[], Optional[str]]] = None
        self.instance_list_seen = False
        self.initial_values: Optional[Frame] = None
        self.metrics = {"rejoins": 0, "rescans": 0, "resets": 0, "reopens": 0, "joins": 0,
                        "request_timeouts": 0, "stale_responses": 0, "event21_failures": 0,
                        "tx_limited": 0, "notifications": 0, "infc_answered": 0,
                        "dropped_frames": 0, "port_errors": 0, "last_lqi": None, "session_since": None}

    # -- state machine --------------------------------------------------------------------------

    def fire(self, event: Ev) -> None:
        new = next_state(self.state, event)
        if new is None:
            log.debug("event %s ignored in state %s", event.value, self.state.value)
            return
        if new is not self.state:
            level = logging.WARNING if new in (S.BACKOFF, S.CLOSED) and self.state is S.JOINED \
                else logging.INFO
            log.log(level, "session %s -> %s (%s)", self.state.value, new.value, event.value)
            if new is S.JOINED:
                self.metrics["session_since"] = time.time()
            elif self.state is S.JOINED:
                self.metrics["session_since"] = None
        self.state = new

    @property
    def joined(self) -> bool:
        return self.state is S.JOINED

    def _unexpected_echo(self, text: str) -> None:
        # Called from the reader thread; the flag is read by the session thread.
        if not self._reset_suspected:
            log.warning("module echoed %r although echo is off: it has reset", text[:40])
        self._reset_suspected = True

    # -- pumping asynchronous records ------------------------------------------------------------

    def pump(self, timeout: float, until: Optional[Callable[[object], bool]] = None):
        """Dispatch asynchronous records for up to ``timeout`` s; return the first that satisfies
        ``until`` (None on timeout). Raises PortGone when the port fails."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            if self._reset_suspected and self.state in (S.JOINED, S.REAUTH, S.THROTTLED, S.JOINING):
                self._reset_suspected = False
                self.driver.echo_off = False
                self.fire(E.MODULE_RESET)
                self.ladder = max(self.ladder, LADDER.index("reset"))
                return None
            remaining = deadline - time.monotonic()
            if remaining < 0 or self.stop.is_set():
                return None
            try:
                rec = self.driver.next_event(min(remaining, 0.25))
            except PortGone:
                self.fire(E.IO_ERROR)
                raise
            if rec is None:
                if self.state is S.REAUTH and time.monotonic() > self._reauth_deadline:
                    self.fire(E.REAUTH_TIMEOUT)
                continue
            self._dispatch(rec)
            if until is not None and until(rec):
                return rec
        return None

    def _dispatch(self, rec) -> None:
        if isinstance(rec, sk.Event):
            ev = EVENT_TO_EV.get(rec.num)
            if rec.num == 0x21 and rec.param == 0x01 and self._pending is not None \
                    and self.pan is not None and rec.addr == self.pan.ipaddr:
                self._send_failed = True
                self.metrics["event21_failures"] += 1
            if ev is not None and rec.num in (0x24, 0x25, 0x26, 0x27, 0x28, 0x29) \
                    and self.pan is not None and rec.addr not in (None, self.pan.ipaddr):
                log.debug("EVENT %02X for another peer %s ignored", rec.num, rec.addr)
                return
            if ev is E.EXPIRED:
                self._reauth_deadline = time.monotonic() + self.cfg.reauth_timeout
                log.warning("PANA session expired (EVENT 29): sends paused until re-authentication")
            if ev is E.TX_LIMIT:
                self.metrics["tx_limited"] += 1
                log.warning("ARIB transmission-time limit reached (EVENT 32): sends paused")
            if ev is not None:
                self.fire(ev)
            return
        if isinstance(rec, sk.RxUdp):
            self._datagram(rec)

    def _datagram(self, rx: sk.RxUdp) -> None:
        if rx.side not in (None, 0):
            return
        if rx.rport != el.PORT or rx.lport != el.PORT:
            return                     # PANA (716) and anything else: noise here
        if rx.rssi is not None:
            self.metrics["last_lqi"] = rx.rssi
        if self.pan is not None and rx.sender != self.pan.ipaddr:
            self.metrics["dropped_frames"] += 1
            log.debug("ERXUDP from %s (not our meter) dropped", rx.sender)
            return
        if rx.secured != 1 and not self.cfg.accept_unsecured:
            self.metrics["dropped_frames"] += 1
            log.info("unsecured ECHONET frame from the meter dropped")
            return
        try:
            frame = el.decode(rx.data)
        except FrameError as exc:
            self.metrics["dropped_frames"] += 1
            log.debug("bad ECHONET frame dropped: %s", exc)
            return
        log.debug("<- ECHONET %s", frame.hex())
        multicast = rx.dest.startswith("FF02")
        if multicast:
            if frame.seoj == el.NODE_PROFILE and frame.esv == Esv.INF:
                self.instance_list_seen = True
            return
        pending = self._pending
        if pending is not None and self._matches(frame, pending):
            self._response = frame
            self._pending = None
            return
        if frame.esv in (Esv.INF, Esv.INFC):
            if frame.seoj == el.NODE_PROFILE:
                self.instance_list_seen = True
                return
            if frame.seoj != el.METER:
                return
            self.metrics["notifications"] += 1
            if frame.esv == Esv.INFC:
                self._answer_infc(frame)
            if self.on_notification is not None:
                try:
                    self.on_notification(frame)
                except Exception:
                    log.exception("notification handler failed")
            return
        if frame.esv in (Esv.GET_RES, Esv.GET_SNA, Esv.SET_RES, Esv.SETC_SNA, Esv.INF_SNA):
            self.metrics["stale_responses"] += 1
            log.info("stale response TID %04X dropped (no request pending with that TID)", frame.tid)
            return
        self.metrics["dropped_frames"] += 1

    @staticmethod
    def _matches(frame: Frame, pending) -> bool:
        tid, esv, epcs, deoj = pending
        if frame.tid != tid or frame.seoj != deoj or frame.deoj != el.CONTROLLER:
            return False
        if frame.esv not in el.ANSWERS.get(esv, ()):
            return False
        if frame.epcs != tuple(epcs):
            if sorted(frame.epcs) != sorted(epcs):
                return False
            log.info("meter answered TID %04X with the properties reordered", tid)
        return True

    def _answer_infc(self, frame: Frame) -> None:
        res = el.infc_response(frame)
        try:
            self._sendto(res.encode())
            self.metrics["infc_answered"] += 1
        except (ModuleError, RequestTimeout) as exc:
            log.warning("INFC_Res for TID %04X not sent: %s", frame.tid, exc)

    # -- SK level helpers ----------------------------------------------------------------------------

    def _cmd(self, *parts: str, timeout: Optional[float] = None, **kw):
        """One SK command; FAIL ER09 (UART input error, §1.9) is retried once."""
        for attempt in range(2):
            try:
                return self.driver.command(sk.command(*parts), timeout=timeout, **kw)
            except ModuleError as exc:
                if exc.code != 9 or attempt:
                    raise
                log.warning("%s: UART input error (ER09); sending it again", parts[0])

    def _sendto(self, data: bytes) -> None:
        """SKSENDTO to the meter (handle 1, port 3610, SEC 1); flips family once on ER05."""
        assert self.pan is not None and self.dialect is not None
        for attempt in range(2):
            header = self.dialect.sendto_header(self.pan.ipaddr, len(data))
            try:
                self.driver.command(header + data, timeout=self.cfg.command_timeout + 5,
                                    log_as=header.decode() + data.hex().upper())
                return
            except ModuleError as exc:
                if exc.code == 5 and attempt == 0 and not self.family_fixed:
                    self._flip_family("SKSENDTO")
                    continue
                raise

    def _flip_family(self, what: str) -> None:
        old = self.dialect.family
        self.dialect = self.dialect.other()
        log.warning("%s answered FAIL ER05 with family %s syntax: switching to family %s",
                    what, old, self.dialect.family)

    def initialise(self, reset: bool) -> None:
        """§2.2 steps 1-8: liveness, optional reset, echo off, family, output mode, credentials."""
        evers = self.driver.payload(self._cmd("SKVER"), "EVER")
        version = evers[0] if evers else ""
        log.info("module firmware %s", version)
        if reset:
            self.driver.echo_off = False         # SKRESET turns echo back on: expected now
            self._cmd("SKRESET")
            self.metrics["resets"] += 1
        self._cmd("SKSREG", "SFE", "0")
        self.driver.echo_off = True
        self._reset_suspected = False
        info = self.driver.payload(self._cmd("SKINFO"), "EINFO")
        if len(info) >= 5:
            self.own_ip = info[0].upper()
        if not self.family_fixed and self.dialect is None:
            fifth = info[4] if len(info) >= 5 else ""
            if sk._is_hex(fifth, 4):
                family = "A"
            elif len(fifth) == 1 and fifth.isdigit():
                family = "C"
            elif version.startswith("1.2."):
                family = "A"
            else:
                family = "C"
                log.warning("cannot tell the module family from SKINFO %r / SKVER %r; assuming C",
                            info, version)
            self.dialect = sk.Dialect(family)
            log.info("module family %s (EINFO 5th field %r, firmware %s)", family, fifth, version)
        self._output_mode()
        if self.dialect.family == "C":
            try:
                self._cmd("SKSREG", "SA2", "0")     # pin the 10-token ERXUDP layout
            except ModuleError as exc:
                # Not fatal: the reader accepts ERXUDP with or without the RSSI token.
                log.info("module refused SKSREG SA2 0 (%s); ERXUDP may carry RSSI", exc)
        pwd = self.cfg.password
        self._cmd("SKSETPWD", f"{len(pwd):X}", pwd)
        self._cmd("SKSETRBID", self.cfg.rbid)

    def _output_mode(self) -> None:
        try:
            recs = self.driver.command(sk.product_command("ROPT"))
        except ModuleError as exc:
            if exc.code == 4:
                log.info("module does not support ROPT: deciding hex/binary per ERXUDP")
                self.driver.reader.mode = None
                return
            raise
        value = next((r.value for r in recs if isinstance(r, sk.Ok)), None) or "00"
        hex_mode = bool(int(value, 16) & 1)
        if not hex_mode and self.cfg.output_mode == "hex":
            self.driver.command(sk.product_command("WOPT", "01"))
            log.warning("wrote WOPT 01 to the module's flash (ERXUDP output was binary)")
            hex_mode = True
        self.driver.reader.mode = "hex" if hex_mode else "binary"
        log.info("ERXUDP data format: %s", self.driver.reader.mode)

    def scan(self) -> list:
        """Active scan with widening duration (§1.7.7): the PANs heard, best first (our pairing
        ID first, then by LQI; HAN-side beacons dropped)."""
        expected = self.cfg.rbid[-8:]
        for duration in self.cfg.scan_durations:
            if self.stop.is_set():
                break
            found = self._scan_once(duration)
            found = [p for p in found if p.side in (None, 0)]
            if found:
                found.sort(key=lambda p: (p.pair_id != expected, -p.lqi))
                best = found[0]
                log.info("scan D=%X found %d PAN(s); best: channel %02X PAN %04X meter %s LQI %02X",
                         duration, len(found), best.channel, best.pan_id, best.addr, best.lqi)
                return [Pan(p.channel, p.pan_id, p.addr, p.lqi, p.pair_id) for p in found]
            log.info("scan D=%X found no meter", duration)
        raise ScanEmpty("no meter answered the active scan; check the B-route ID, distance, and "
                        "that B-route service is activated")

    def scan_and_join(self, max_candidates: int = 3) -> None:
        """Scan, then join the candidates in order: if one answers EVENT 24, try the next
        before rescanning (§2.2, PAN selection)."""
        failure: Optional[JoinFailed] = None
        for pan in self.scan()[:max_candidates]:
            self.pan = pan
            try:
                self.join()
                return
            except JoinFailed as exc:
                failure = exc
                log.warning("join with PAN %04X on channel %02X (meter %s) failed: %s",
                            pan.pan_id, pan.channel, pan.addr, exc)
        raise failure if failure is not None else ScanEmpty("no PAN to join")

    def _scan_once(self, duration: int) -> list:
        self.metrics["rescans"] += 1
        for attempt in range(2):
            try:
                self.driver.command(self.dialect.scan(duration))
                break
            except ModuleError as exc:
                if exc.code == 5 and attempt == 0 and not self.family_fixed:
                    self._flip_family("SKSCAN")
                    continue
                raise
        budget = self.cfg.scan_time_unit * (2 ** duration + 1) * 28 + 5
        found = []

        def until(rec):
            if isinstance(rec, sk.PanDesc):
                found.append(rec)
            return isinstance(rec, sk.Event) and rec.num == 0x22

        if self.pump(budget, until) is None and not self.stop.is_set():
            raise RequestTimeout(f"active scan D={duration:X} did not finish within {budget:.0f} s")
        return found

    def join(self) -> None:
        """§2.2 steps 11-16 with the current PAN."""
        pan = self.pan
        self._cmd("SKSREG", "S2", f"{pan.channel:02X}")
        self._cmd("SKSREG", "S3", f"{pan.pan_id:04X}")
        if self.state is S.IDLE:
            self.fire(E.PAN_FOUND)
        elif self.state is S.BACKOFF:
            self.fire(E.RETRY_JOIN)
        self.instance_list_seen = False
        self.metrics["joins"] += 1
        self._cmd("SKJOIN", pan.ipaddr)
        self.fire(E.JOIN_SENT)
        rec = self.pump(self.cfg.join_timeout,
                        lambda r: isinstance(r, sk.Event) and r.num in (0x24, 0x25)
                        and r.addr in (None, pan.ipaddr))
        if rec is None:
            self.fire(E.JOIN_TIMEOUT)
            raise JoinFailed(f"no EVENT 24/25 within {self.cfg.join_timeout:g} s after SKJOIN")
        if rec.num == 0x24:
            raise JoinFailed("PANA authentication failed (EVENT 24): wrong B-route ID/password, "
                             "or the meter is not ready")
        self.cache.save(pan, self.dialect.family)
        if self.cfg.instance_list_wait > 0 and not self.instance_list_seen:
            self.pump(self.cfg.instance_list_wait, lambda r: self.instance_list_seen)
        self.read_attributes()

    def read_attributes(self) -> None:
        """§2.5: 82 9D 9E 9F, then 8D D3 D7 E1 EA EB (D3/EB only when in 9F)."""
        first = self.request(Esv.GET, (0x82, 0x9D, 0x9E, 0x9F))
        get_map = el.decode_property_map(first.get(0x9F)) if first.get(0x9F) else frozenset()
        set_map = el.decode_property_map(first.get(0x9E)) if first.get(0x9E) else frozenset()
        second_epcs = [e for e in (0x8D, 0xD3, 0xD7, 0xE1, 0xEA, 0xEB)
                       if e in get_map or e in (0xD7, 0xE1)]
        second = self.request(Esv.GET, second_epcs)
        coefficient = 1
        if second.get(0xD3):
            coefficient = m.decode_coefficient(second.get(0xD3)) or 1
        scaling = m.Scaling(unit=m.decode_unit(second.get(0xE1)) if second.get(0xE1) else m.Scaling.unit,
                            coefficient=coefficient,
                            digits=m.decode_digits(second.get(0xD7)) if second.get(0xD7) else 6)
        serial = m.decode_serial(second.get(0x8D)) if second.get(0x8D) else None
        version = m.decode_standard_version(first.get(0x82)) if first.get(0x82) else None
        if self.meter.serial and serial and serial != self.meter.serial:
            log.warning("meter serial changed from %s to %s (meter replaced?)", self.meter.serial, serial)
        self.meter = MeterInfo(get_map, set_map, scaling, serial, version)
        log.info("meter %s (%s): unit %s kWh, coefficient %d, %d digits, %d readable properties",
                 serial, version, scaling.unit, scaling.coefficient, scaling.digits, len(get_map))
        self.initial_values = second

    # -- connect: the escalation ladder ---------------------------------------------------------------

    def connect(self, deadline: Optional[float] = None) -> None:
        """Bring the session up, escalating on failure, until joined, ``stop`` or ``deadline``."""
        failures = 0
        for _ in range(1_000_000):
            if self.joined:
                return
            if self.stop.is_set():
                raise NotJoined("stopping")
            if self.interrupt is not None and self.interrupt():
                raise NotJoined("interrupted (new settings to apply)")
            if deadline is not None and time.monotonic() > deadline:
                raise NotJoined("could not establish a B-route session in time")
            try:
                self._attempt()
                if self.joined:
                    if failures:
                        log.warning("session recovered after %d failed attempt(s)", failures)
                    self.ladder = 0
                    self._consecutive_failures = 0
                    return
            except UnsupportedModule:
                raise
            except PortGone as exc:
                log.warning("serial port problem: %s", exc)
                self.metrics["port_errors"] += 1
                self.state = S.CLOSED
                self.ladder = LADDER.index("reopen")
            except (ModuleError, RequestTimeout, JoinFailed, ScanEmpty, RequestFailed,
                    FrameError, NotJoined) as exc:
                if self.stop.is_set():
                    raise NotJoined("stopping") from exc
                log.warning("recovery step %r failed: %s", LADDER[self.ladder], exc)
                if self.state is not S.CLOSED:
                    self.state = S.BACKOFF
                self.ladder = min(self.ladder + 1, len(LADDER) - 1)
            failures += 1
            delay = self.cfg.backoff[min(failures - 1, len(self.cfg.backoff) - 1)]
            delay *= 1 + self.cfg.jitter * (2 * self.rng.random() - 1)
            log.info("next recovery step %r in %.2f s", LADDER[self.ladder], delay)
            self._kick.wait(max(0.0, delay))
            self._kick.clear()

    def _attempt(self) -> None:
        step = LADDER[self.ladder]
        if self.state is S.CLOSED or step == "reopen":
            self.driver.close()
            if self._opened_once:
                self.metrics["reopens"] += 1
            self.state = S.CLOSED
            if self.resolve_port is not None:
                port = self.resolve_port()
                if port and port != self.driver.port:
                    log.info("serial port is now %s (was %s)", port, self.driver.port)
                    self.driver.port = port
            self.driver.open()
            self._opened_once = True
            self.fire(E.OPENED)
            self._initialise_and_join(reset=self.cfg.reset_on_start or step == "reopen")
            return
        if self.state in (S.JOINED, S.REAUTH, S.THROTTLED):
            return
        if self.state is not S.BACKOFF:
            self.state = S.BACKOFF
        if step == "reset":
            self.fire(E.RETRY_RESET)
            self._initialise_and_join(reset=True, rescan=True)
            return
        if step == "rescan":
            self.fire(E.RETRY_SCAN)
            self.cache.drop()
            self.scan_and_join()
            return
        self.fire(E.RETRY_JOIN)
        if self.pan is None:
            self.ladder = LADDER.index("rescan")
            raise ScanEmpty("no PAN known yet")
        if step == "terminate+rejoin":
            try:
                self._cmd("SKTERM")
                self.pump(5.0, lambda r: isinstance(r, sk.Event) and r.num in (0x27, 0x28))
            except ModuleError as exc:
                if exc.code != 10:
                    raise
        self.metrics["rejoins"] += 1
        self.join()

    def _initialise_and_join(self, reset: bool, rescan: bool = False) -> None:
        try:
            self.initialise(reset)
        except (ModuleError, RequestTimeout):
            self.fire(E.FAILED)
            raise
        self.fire(E.INIT_OK)
        cached = None if rescan else self.cache.load()
        if rescan:
            self.cache.drop()
        if cached is not None:
            log.info("using cached PAN: channel %02X PAN %04X meter %s", cached.channel,
                     cached.pan_id, cached.addr)
            self.pan = cached
            try:
                self.join()
                return
            except JoinFailed:
                log.warning("join with the cached PAN failed: dropping the cache and scanning")
                self.cache.drop()
                self.fire(E.RETRY_SCAN)
        elif self.pan is not None and not rescan:
            try:
                self.join()
                return
            except JoinFailed:
                self.fire(E.RETRY_SCAN)
        self.scan_and_join()

    def kick(self) -> None:
        """Cut the current backoff wait short (stop requested, or the dongle was plugged back)."""
        self._kick.set()

    def close(self) -> None:
        self.driver.close()
        self.state = S.CLOSED

    # -- ECHONET requests ----------------------------------------------------------------------------

    def _wait_usable(self) -> None:
        """Wait while re-authenticating / throttled; raise NotJoined if the session is down."""
        if self.state in (S.REAUTH, S.THROTTLED):
            limit = self.cfg.reauth_timeout + 1 if self.state is S.REAUTH else 3600
            self.pump(limit, lambda r: self.state not in (S.REAUTH, S.THROTTLED))
        if not self.joined:
            raise NotJoined(f"no B-route session (state {self.state.value})")

    def request(self, esv: int, epcs: Sequence[int], values: Sequence[bytes] = (),
                deoj: int = el.METER) -> Frame:
        """One ECHONET request with retries (new TID each time, §3.5); the matching answer."""
        if values:
            props = tuple(el.Property(e, v) for e, v in zip(epcs, values))
        else:
            props = tuple(el.Property(e) for e in epcs)
        for attempt in range(self.cfg.request_retries):
            self._wait_usable()
            gap = self._last_request + self.cfg.min_request_gap - time.monotonic()
            if gap > 0:
                self.pump(gap)
                self._wait_usable()
            tid = self.tids.next()
            frame = Frame(tid, el.CONTROLLER, deoj, esv, props)
            self._pending = (tid, esv, tuple(epcs), deoj)
            self._response = None
            self._send_failed = False
            self._last_request = time.monotonic()
            log.debug("-> ECHONET %s", frame.hex())
            try:
                self._sendto(frame.encode())
                self.pump(self.cfg.request_timeout,
                          lambda r: self._response is not None or self._send_failed
                          or not self.joined)
            except ModuleError as exc:
                log.warning("SKSENDTO failed: %s", exc)
            except PortGone:
                if self.state is not S.CLOSED:
                    self.fire(E.IO_ERROR)
                raise
            finally:
                self._pending = None
            if self.stop.is_set():
                raise NotJoined("bridge stopping")
            if self._response is not None:
                self._consecutive_failures = 0
                return self._response
            if self.state in (S.REAUTH, S.THROTTLED):
                continue                        # not the link's fault: wait and resend
            self._consecutive_failures += 1
            if self._send_failed:
                log.warning("send of TID %04X failed (EVENT 21 01): no MAC ACK from the meter", tid)
            elif self.joined:
                self.metrics["request_timeouts"] += 1
                log.warning("no answer to TID %04X within %g s (attempt %d of %d)", tid,
                            self.cfg.request_timeout, attempt + 1, self.cfg.request_retries)
            if self._consecutive_failures >= self.cfg.failures_before_rejoin and self.joined:
                self.fire(E.REQUEST_FAILURES)
                raise RequestFailed(f"{self._consecutive_failures} consecutive request failures: "
                                    "the link is suspect")
            if not self.joined and self.state not in (S.REAUTH, S.THROTTLED):
                raise NotJoined(f"session lost during the request (state {self.state.value})")
            if attempt + 1 < self.cfg.request_retries:
                self.pump(self.cfg.retry_gap)
        raise RequestFailed(f"no answer after {self.cfg.request_retries} attempts")

    def get(self, epcs: Sequence[int]) -> Frame:
        return self.request(Esv.GET, epcs)

    def set(self, values: Sequence[tuple[int, bytes]]) -> Frame:
        """SetC; only idempotent properties (E5/ED/EF) are set by this bridge (§2.6)."""
        return self.request(Esv.SETC, [e for e, _ in values], [v for _, v in values])
