"""The simulated smart meter: ECHONET Lite objects 0x028801 and 0x0EF001 (broute.md §7.5).

Deterministic for a given seed: power is a function of the meter clock, piecewise constant per
half hour (plus per-minute noise on E7 that does not change the energy), so the cumulative
counters, the EA/EB snapshots, the E2/E4 day history and the EC windows all agree with each other
whatever the order they are read in. The meter clock is the host clock plus an offset that a test
can move forward (``advance``) to make half hours pass.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from decimal import Decimal
from typing import Optional, Sequence

from .. import echonet as el
from .. import meter as m
from ..echonet import Esv, Frame, Property

SLOT = 1800  # seconds in a half hour
BASE_MAP = {0x80, 0x81, 0x82, 0x88, 0x8A, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F, 0xD3, 0xD7, 0xE0,
            0xE1, 0xE2, 0xE3, 0xE4, 0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED}
SECOND_GEN = {0xC0, 0xD0, 0xEE, 0xEF}
REVERSE_ONLY = {0xE3, 0xE4, 0xEB}


@dataclasses.dataclass
class MeterConfig:
    """Everything about the simulated meter a test may want to choose."""

    mac: str = "C0F94500AABBCCDD"
    channel: int = 0x3B
    pan_id: int = 0x1A2B
    lqi: int = 0x8C
    rbid: str = "0123456789ABCDEF0123456789ABCDEF"
    password: str = "0A1B2C3D4E5F"
    seed: int = 1
    base_power: int = 400           # W
    power_swing: int = 300          # W, daily sine
    solar_peak: int = 0             # W; > 0 makes E7 negative around noon (export)
    reverse: bool = True            # reverse measurement exists (E3/E4/EB)
    two_wire: bool = False          # single-phase 2-wire: E8 T = 7FFE
    coefficient: Optional[int] = 1  # D3; None = D3 unsupported
    unit_code: int = 0x01           # E1 (0.1 kWh)
    digits: int = 6                 # D7
    initial_raw: int = 65000        # counter value at the start of history
    history_days: int = 100
    serial: str = "F24G366505"
    nul_padded_serial: bool = True
    maker: bytes = b"\x00\x00\x16"
    unsupported: frozenset = frozenset()
    second_generation: bool = False
    notify_esv: int = 0x74          # 0x73 INF or 0x74 INFC
    infc_retry: int = 1
    clock_offset: float = 0.0       # seconds added to the host clock
    power_override: Optional[int] = None   # fixed E7 (None = model)
    no_data: frozenset = frozenset()       # EPCs answered with their no-data value


class MeterModel:
    def __init__(self, config: MeterConfig, clock=time.time):
        self.cfg = config
        self._clock = clock
        self.offset = config.clock_offset
        now = self.now()
        origin_day = (now - dt.timedelta(days=config.history_days + 1)).replace(
            hour=0, minute=0, second=0, microsecond=0)
        self.origin = origin_day
        self._prefix_fwd = [0.0]    # Wh at slot boundary k after origin
        self._prefix_rev = [0.0]
        self.e5 = 0xFF
        self.ed = None              # (datetime, n) or None (year FFFF)
        self.ef = None
        self.operation = 0x30

    # -- clock and power model --------------------------------------------------------------

    def now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock() + self.offset, m.JST)

    def advance(self, seconds: float) -> None:
        self.offset += seconds

    def _noise(self, k: int, salt: int) -> float:
        x = (k * 2654435761 + self.cfg.seed * 40503 + salt * 97) & 0xFFFFFFFF
        x ^= x >> 13
        x = (x * 1274126177) & 0xFFFFFFFF
        return (x / 0xFFFFFFFF) - 0.5

    def _slot_power(self, k: int) -> float:
        """Net power (W) of half-hour slot k after the origin: + import, - export."""
        if self.cfg.power_override is not None:
            return float(self.cfg.power_override)
        hour = (k % 48) / 2.0
        p = self.cfg.base_power + self.cfg.power_swing * math.sin(2 * math.pi * (hour - 9) / 24)
        p += 100 * self._noise(k, 1)
        if self.cfg.solar_peak and 6 <= hour < 18:
            p -= self.cfg.solar_peak * math.sin(math.pi * (hour - 6) / 12)
        return p

    def _extend(self, k: int) -> None:
        while len(self._prefix_fwd) <= k:
            j = len(self._prefix_fwd) - 1
            p = self._slot_power(j)
            self._prefix_fwd.append(self._prefix_fwd[-1] + max(p, 0.0) * 0.5)
            self._prefix_rev.append(self._prefix_rev[-1] + max(-p, 0.0) * 0.5)

    def _wh(self, when: dt.datetime, reverse: bool) -> Optional[float]:
        secs = (when - self.origin).total_seconds()
        if secs < 0:
            return None
        k, frac = divmod(secs, SLOT)
        k = int(k)
        self._extend(k + 1)
        prefix = self._prefix_rev if reverse else self._prefix_fwd
        return prefix[k] + (prefix[k + 1] - prefix[k]) * (frac / SLOT)

    def raw(self, when: dt.datetime, reverse: bool = False) -> Optional[int]:
        """Cumulative counter (raw, wrapped at 10^D7) at ``when``; None before the history."""
        if when > self.now() + dt.timedelta(seconds=1):
            return None
        wh = self._wh(when, reverse)
        if wh is None:
            return None
        kwh_per_count = float(m.UNITS[self.cfg.unit_code]) * (self.cfg.coefficient or 1)
        counts = int(wh / 1000.0 / kwh_per_count + 1e-9)
        start = 0 if reverse else self.cfg.initial_raw
        return (start + counts) % (10 ** self.cfg.digits)

    def power(self) -> int:
        now = self.now()
        k = int((now - self.origin).total_seconds() // SLOT)
        minute = int((now - self.origin).total_seconds() // 60)
        if self.cfg.power_override is not None:
            return self.cfg.power_override
        return int(round(self._slot_power(k) + 40 * self._noise(minute, 2)))

    # -- property values --------------------------------------------------------------------

    @property
    def get_map(self) -> set[int]:
        props = set(BASE_MAP)
        if self.cfg.second_generation:
            props |= SECOND_GEN
        if not self.cfg.reverse:
            props -= REVERSE_ONLY
        if self.cfg.coefficient is None:
            props.discard(0xD3)
        return props - set(self.cfg.unsupported)

    @property
    def set_map(self) -> set[int]:
        return {0x81, 0xE5, 0xED, 0xEF} & self.get_map | {0x81}

    def value(self, epc: int) -> Optional[bytes]:
        if epc not in self.get_map:
            return None
        cfg = self.cfg
        now = self.now()
        if epc in cfg.no_data:
            return {0xE7: m.encode_power(None), 0xE8: m.encode_currents(None, None),
                    0xE0: m.encode_u32(None), 0xE3: m.encode_u32(None)}.get(epc)
        if epc == 0x80:
            return bytes((self.operation,))
        if epc == 0x81:
            return b"\x61"
        if epc == 0x82:
            return b"\x00\x00\x46\x00"
        if epc == 0x88:
            return b"\x42"
        if epc == 0x8A:
            return cfg.maker
        if epc == 0x8D:
            s = cfg.serial.encode()[:12]
            return s.ljust(12, b"\x00" if cfg.nul_padded_serial else b" ")
        if epc == 0x97:
            return bytes((now.hour, now.minute))
        if epc == 0x98:
            return now.year.to_bytes(2, "big") + bytes((now.month, now.day))
        if epc == 0x9D:
            return el.encode_property_map({0x80, 0x81, 0x88})
        if epc == 0x9E:
            return el.encode_property_map(self.set_map)
        if epc == 0x9F:
            return el.encode_property_map(self.get_map)
        if epc == 0xD3:
            return cfg.coefficient.to_bytes(4, "big")
        if epc == 0xD7:
            return bytes((cfg.digits,))
        if epc == 0xE1:
            return bytes((cfg.unit_code,))
        if epc in (0xE0, 0xE3):
            return m.encode_u32(self.raw(now, reverse=epc == 0xE3))
        if epc == 0xE7:
            return m.encode_power(self.power())
        if epc == 0xE8:
            p = self.power()
            amps = Decimal(abs(p)) / 100  # 100 V
            sign = -1 if p < 0 else 1
            if cfg.two_wire:
                return m.encode_currents(sign * amps.quantize(Decimal("0.1")), None)
            half = (amps / 2).quantize(Decimal("0.1"))
            return m.encode_currents(sign * half, sign * (amps - half).quantize(Decimal("0.1")))
        if epc in (0xEA, 0xEB):
            b = m.half_hour_floor(now)
            return m.encode_fixed_time(b, self.raw(b, reverse=epc == 0xEB))
        if epc == 0xE5:
            return bytes((self.e5,))
        if epc in (0xE2, 0xE4):
            return self._history1(reverse=epc == 0xE4)
        if epc == 0xED:
            if self.ed is None:
                return b"\xff\xff\x00\x00\x00\x00\x01"
            return m.encode_history2_window(*self.ed)
        if epc == 0xEC:
            return self._history2()
        if epc == 0xEF:
            if self.ef is None:
                return b"\xff\xff\x00\x00\x00\x00\x01"
            when, n = self.ef
            return m.encode_fixed_time(when, 0)[:6] + bytes((n,))
        if epc == 0xEE:
            when, n = self.ef or (now.replace(second=0, microsecond=0), 1)
            pairs = [(self.raw(when - dt.timedelta(minutes=i)),
                      self.raw(when - dt.timedelta(minutes=i), True)) for i in range(n)]
            return m.encode_history2(when, pairs)
        if epc == 0xD0:
            t = now.replace(second=0, microsecond=0)
            return (m.encode_fixed_time(t, self.raw(t))
                    + m.encode_u32(self.raw(t, True)))
        if epc == 0xC0:
            return b"\x00" + cfg.maker + b"\x00" * 12
        return None

    def _history1(self, reverse: bool) -> bytes:
        day = 0 if self.e5 == 0xFF else self.e5
        start = self.now().replace(hour=0, minute=0, second=0, microsecond=0) - dt.timedelta(days=day)
        slots = [self.raw(start + dt.timedelta(seconds=SLOT * i), reverse) for i in range(48)]
        return m.encode_history1(self.e5 if self.e5 == 0xFF else day, slots)

    def _history2(self) -> bytes:
        if self.ed is None:
            when, n = m.half_hour_floor(self.now()), 1
        else:
            when, n = self.ed
        pairs = [(self.raw(when - dt.timedelta(seconds=SLOT * i)),
                  self.raw(when - dt.timedelta(seconds=SLOT * i), True) if self.cfg.reverse else None)
                 for i in range(n)]
        return m.encode_history2(when, pairs)

    def set_value(self, epc: int, edt: bytes) -> bool:
        try:
            if epc == 0xE5 and len(edt) == 1 and (edt[0] <= 99) and epc in self.get_map:
                self.e5 = edt[0]
                return True
            if epc == 0xED and len(edt) == 7 and epc in self.get_map:
                when, n = m.decode_history2_window(edt)
                if when is None or when.minute not in (0, 30) or not 1 <= n <= 12:
                    return False
                self.ed = (when, n)
                return True
            if epc == 0xEF and len(edt) == 7 and epc in self.get_map:
                when, n = m.decode_history2_window(edt)
                if when is None or not 1 <= n <= 10:
                    return False
                self.ef = (when, n)
                return True
            if epc == 0x81 and len(edt) == 1:
                return True
        except Exception:
            return False
        return False

    # -- ECHONET handling ---------------------------------------------------------------------

    def handle(self, frame: Frame) -> list[Frame]:
        """Answer one received frame (possibly with nothing)."""
        if frame.deoj == el.METER:
            return self._handle_meter(frame)
        if frame.deoj in (el.NODE_PROFILE, 0x0EF000):
            return self._handle_node(frame)
        return []

    def _reply(self, frame: Frame, esv: int, props: Sequence[Property]) -> Frame:
        return Frame(frame.tid, frame.deoj, frame.seoj, esv, tuple(props))

    def _handle_meter(self, f: Frame) -> list[Frame]:
        if f.esv == Esv.GET:
            props, ok = [], True
            for p in f.props:
                v = self.value(p.epc)
                if v is None:
                    ok = False
                    props.append(Property(p.epc))
                else:
                    props.append(Property(p.epc, v))
            return [self._reply(f, Esv.GET_RES if ok else Esv.GET_SNA, props)]
        if f.esv in (Esv.SETC, Esv.SETI):
            props, ok = [], True
            for p in f.props:
                if self.set_value(p.epc, p.edt):
                    props.append(Property(p.epc))
                else:
                    ok = False
                    props.append(p)
            if f.esv == Esv.SETI:
                return [] if ok else [self._reply(f, Esv.SETI_SNA, props)]
            return [self._reply(f, Esv.SET_RES if ok else Esv.SETC_SNA, props)]
        if f.esv == Esv.SETGET:
            return [self._reply(f, Esv.SETGET_SNA, [Property(p.epc) for p in f.props])]
        return []

    def _handle_node(self, f: Frame) -> list[Frame]:
        values = {0xD5: b"\x01\x02\x88\x01", 0xD6: b"\x01\x02\x88\x01", 0x80: b"\x30",
                  0x82: b"\x01\x0d\x01\x00", 0x8A: self.cfg.maker,
                  0xD3: b"\x00\x00\x01", 0xD4: b"\x00\x02", 0xD7: b"\x01\x02\x88"}
        if f.esv == Esv.INF_REQ:
            props = [Property(p.epc, values.get(p.epc, b"")) for p in f.props]
            ok = all(p.edt for p in props)
            return [Frame(f.tid, el.NODE_PROFILE, f.seoj, Esv.INF if ok else Esv.INF_SNA,
                          tuple(props))]
        if f.esv == Esv.GET:
            props = [Property(p.epc, values.get(p.epc, b"")) for p in f.props]
            ok = all(p.edt for p in props)
            return [self._reply(f, Esv.GET_RES if ok else Esv.GET_SNA, props)]
        return []

    def instance_list(self, tid: int = 0) -> Frame:
        return Frame(tid, el.NODE_PROFILE, el.NODE_PROFILE, Esv.INF,
                     (Property(0xD5, b"\x01\x02\x88\x01"),))

    def notification(self, tid: int) -> Frame:
        """The 30-minute EA (+EB) notification for the latest boundary."""
        props = [Property(0xEA, self.value(0xEA))]
        if self.cfg.reverse and 0xEB in self.get_map:
            props.append(Property(0xEB, self.value(0xEB)))
        return Frame(tid, el.METER, el.CONTROLLER, self.cfg.notify_esv, tuple(props))
