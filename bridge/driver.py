"""SKSTACK-IP driver over pyserial: the I/O edge of broute.md §1.

One reader thread owns the port and feeds :class:`~bridge.sk.Reader`; records go to two queues
(§1.11 step 5): asynchronous records (EVENT, EPANDESC, ERXUDP) to ``events``, everything else to
the single in-flight command. Commands are serialised. A serial error, EOF or hang-up makes every
waiter raise :class:`~bridge.errors.PortGone`; the supervisor then reopens the port.

The driver knows SKSTACK-IP, not B-route: join policy, recovery and ECHONET live in
:mod:`bridge.session`.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Callable, Optional

import serial

from . import sk
from .errors import ModuleError, PortGone, RequestTimeout, UnsupportedModule

log = logging.getLogger("bridge.driver")

_GONE = object()
#: Bound on records kept for a slow consumer (a module cannot legitimately produce more).
MAX_QUEUE = 10000

J11_MESSAGE = ("the module answers with binary J11 frames (ROHM BP35C0-J11 / Ratoc RS-WSUHA-J11 "
               "class); this bridge speaks SKSTACK-IP text only (families A and C: BP35A1, "
               "BP35C0/C2, RL7023 Stick-D/IPS or D/DSS)")


def open_serial(port: str, baudrate: int = 115200) -> serial.Serial:
    """115200 8N1, no flow control, exclusive (§1.2; two processes on one port corrupt both)."""
    ser = serial.Serial()
    ser.port = port
    ser.baudrate = baudrate
    ser.bytesize, ser.parity, ser.stopbits = serial.EIGHTBITS, serial.PARITY_NONE, serial.STOPBITS_ONE
    ser.xonxoff = ser.rtscts = ser.dsrdtr = False
    ser.timeout = 0.1
    ser.write_timeout = 5
    ser.exclusive = True
    ser.dtr = False            # DTR left deasserted; RTS only matters with flow control (§1.2)
    ser.rts = False
    ser.open()
    return ser


class SkDriver:
    """Commands and events of one SKSTACK-IP module on one serial port."""

    def __init__(self, port: str, baudrate: int = 115200, command_timeout: float = 5.0,
                 drain_time: float = 1.5, opener: Callable[..., serial.Serial] = open_serial):
        self.port = port
        self.baudrate = baudrate
        self.command_timeout = command_timeout
        self.drain_time = drain_time
        self._opener = opener
        self.reader = sk.Reader()
        self.events: "queue.Queue" = queue.Queue(MAX_QUEUE)
        self._responses: "queue.Queue" = queue.Queue(MAX_QUEUE)
        self._cmd_lock = threading.Lock()
        self._ser: Optional[serial.Serial] = None
        self._thread: Optional[threading.Thread] = None
        self._closing = threading.Event()
        self.gone: Optional[str] = None
        self.echo_off = False
        #: Called (from the reader thread) when an echo shows up although SFE is 0: the module
        #: has reset by itself.
        self.on_unexpected_echo: Optional[Callable[[str], None]] = None
        self.counters = {"garbage": 0, "commands": 0, "fail": 0, "timeouts": 0}

    # -- open / close --------------------------------------------------------------------------

    def open(self) -> None:
        self.close()
        self._closing.clear()
        self.gone = None
        self.echo_off = False
        self.reader = sk.Reader(self.reader.mode)
        self.events = queue.Queue(MAX_QUEUE)
        self._responses = queue.Queue(MAX_QUEUE)
        try:
            ser = self._opener(self.port, self.baudrate)
        except (serial.SerialException, OSError) as exc:
            raise PortGone(f"cannot open {self.port}: {exc}") from exc
        self._ser = ser
        try:
            ser.reset_input_buffer()
            ser.write(sk.CRLF)
            self._drain(ser)
        except UnsupportedModule:
            self.close()
            raise
        except Exception as exc:                # SerialException, OSError, termios.error
            self.close()
            raise PortGone(f"{self.port}: {exc}") from exc
        self._thread = threading.Thread(target=self._read_loop, name=f"sk-reader {self.port}",
                                        daemon=True)
        self._thread.start()
        log.info("opened %s at %d baud", self.port, self.baudrate)

    def _drain(self, ser: serial.Serial) -> None:
        """Discard what a previous process left on the line (§1.2): until quiet or drain_time."""
        deadline = time.monotonic() + self.drain_time
        quiet_since = time.monotonic()
        dropped = 0
        for _ in range(1000):
            now = time.monotonic()
            if now >= deadline or now - quiet_since >= min(0.2, self.drain_time):
                break
            ser.timeout = max(0.0, min(0.05, deadline - now))
            data = ser.read(4096)
            if data:
                dropped += len(data)
                quiet_since = time.monotonic()
                if sk.J11_MAGIC in data:
                    raise UnsupportedModule(J11_MESSAGE)
        ser.timeout = 0.1
        if dropped:
            log.debug("drained %d stale bytes from %s", dropped, self.port)

    def close(self) -> None:
        self._closing.set()
        ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except Exception:
                pass
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(2)
        self._thread = None

    @property
    def is_open(self) -> bool:
        return self._ser is not None and self.gone is None

    # -- reader thread -------------------------------------------------------------------------------

    def _read_loop(self) -> None:
        ser = self._ser
        while not self._closing.is_set():
            try:
                data = ser.read(ser.in_waiting or 1)
            except Exception as exc:        # SerialException, OSError, termios.error
                if not self._closing.is_set():
                    self._port_gone(str(exc))
                return
            if not data:
                continue
            for rec in self.reader.feed(data):
                self._route(rec)

    def _port_gone(self, why: str) -> None:
        self.gone = why or "port closed"
        log.warning("serial port %s gone: %s", self.port, self.gone)
        for q in (self.events, self._responses):
            try:
                q.put_nowait(_GONE)
            except queue.Full:
                pass

    def _route(self, rec) -> None:
        if isinstance(rec, sk.Garbage):
            self.counters["garbage"] += 1
            log.debug("dropped module output (%s): %r", rec.reason, rec.raw[:120])
            return
        if isinstance(rec, sk.Echo):
            if self.echo_off and self.on_unexpected_echo is not None:
                self.on_unexpected_echo(rec.text)
            return
        if isinstance(rec, sk.J11Frame):
            for q in (self.events, self._responses):
                q.put(rec)
            return
        target = self.events if isinstance(rec, sk.ASYNC) else self._responses
        try:
            target.put_nowait(rec)
        except queue.Full:
            log.warning("dropping %s: consumer is not keeping up", type(rec).__name__)

    # -- commands -------------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.gone is not None or self._ser is None:
            raise PortGone(self.gone or f"{self.port} is not open")
        try:
            self._ser.write(data)
            self._ser.flush()
        except Exception as exc:            # SerialException, OSError, termios.error (EIO)
            self._port_gone(str(exc))
            raise PortGone(f"write to {self.port} failed: {exc}") from exc

    def command(self, line: bytes, timeout: Optional[float] = None,
                until_address: bool = False, log_as: Optional[str] = None) -> list:
        """Send one command; return its response records up to and including ``Ok``.

        ``until_address``: complete on the IPADDR line (SKLL64 has no OK). ``log_as``: what to
        log instead of the raw bytes (SKSENDTO carries binary data). Raises
        :class:`ModuleError` on FAIL, :class:`RequestTimeout`, :class:`PortGone`,
        :class:`UnsupportedModule`.
        """
        name = line.split(b" ", 1)[0].strip().decode("ascii", "replace")
        timeout = self.command_timeout if timeout is None else timeout
        with self._cmd_lock:
            for _ in range(MAX_QUEUE):                  # stale answers of an earlier timeout
                try:
                    stale = self._responses.get_nowait()
                except queue.Empty:
                    break
                if stale is _GONE:
                    raise PortGone(self.gone or "port closed")
                log.debug("stale response dropped before %s: %r", name, stale)
            log.debug("-> %s", log_as or sk.masked(line))
            self.counters["commands"] += 1
            self._write(line)
            deadline = time.monotonic() + timeout
            out = []
            for _ in range(MAX_QUEUE):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    rec = self._responses.get(timeout=remaining)
                except queue.Empty:
                    break
                if rec is _GONE:
                    raise PortGone(self.gone or "port closed")
                if isinstance(rec, sk.J11Frame):
                    raise UnsupportedModule(J11_MESSAGE)
                out.append(rec)
                if isinstance(rec, sk.Ok):
                    return out
                if isinstance(rec, sk.Fail):
                    self.counters["fail"] += 1
                    raise ModuleError(name, rec.code)
                if until_address and isinstance(rec, sk.Payload) and rec.name == "IPADDR":
                    return out
            self.counters["timeouts"] += 1
            raise RequestTimeout(f"{name}: no answer from the module on {self.port} within "
                                 f"{timeout:g} s (port dead, wrong baud rate, or not an "
                                 f"SKSTACK-IP module?)")

    @staticmethod
    def payload(records: list, name: str) -> tuple[str, ...]:
        for rec in records:
            if isinstance(rec, sk.Payload) and rec.name == name:
                return rec.args
        raise ModuleError(name, None)

    def next_event(self, timeout: float):
        """The next asynchronous record, or None on timeout. Raises PortGone / UnsupportedModule."""
        try:
            rec = self.events.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if rec is _GONE:
            raise PortGone(self.gone or "port closed")
        if isinstance(rec, sk.J11Frame):
            raise UnsupportedModule(J11_MESSAGE)
        return rec
