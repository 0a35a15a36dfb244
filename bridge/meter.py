"""The low-voltage smart electric energy meter (class 0x0288) property model (broute.md §4).

Pure decoders and encoders. Missing values are ``None`` — never 0 and never a scaled sentinel
(§4.3). Energies use :class:`decimal.Decimal`. Every decoder raises
:class:`~bridge.errors.FrameError` on an EDT of the wrong size; encoders are the inverse and are
used by the simulator.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Optional, Sequence

from .errors import FrameError

JST = dt.timezone(dt.timedelta(hours=9), "JST")

# EPCs
OPERATION_STATUS = 0x80
INSTALLATION_LOCATION = 0x81
STANDARD_VERSION = 0x82
FAULT_STATUS = 0x88
MAKER_CODE = 0x8A
SERIAL_NUMBER = 0x8D
CURRENT_TIME = 0x97
CURRENT_DATE = 0x98
ANNOUNCE_MAP = 0x9D
SET_MAP = 0x9E
GET_MAP = 0x9F
COEFFICIENT = 0xD3
DIGITS = 0xD7
ENERGY_NORMAL = 0xE0
UNIT = 0xE1
HISTORY1_NORMAL = 0xE2
ENERGY_REVERSE = 0xE3
HISTORY1_REVERSE = 0xE4
HISTORY1_DAY = 0xE5
POWER = 0xE7
CURRENTS = 0xE8
FIXED_NORMAL = 0xEA
FIXED_REVERSE = 0xEB
HISTORY2 = 0xEC
HISTORY2_WINDOW = 0xED

#: EPC names used in readings, logs and the md-command output.
NAMES = {
    0x80: "operation_status", 0x81: "installation_location", 0x82: "standard_version",
    0x88: "fault_status", 0x8A: "maker_code", 0x8D: "serial_number", 0x97: "current_time",
    0x98: "current_date", 0x9D: "announce_map", 0x9E: "set_map", 0x9F: "get_map",
    0xD3: "coefficient", 0xD7: "digits", 0xE0: "energy_normal_kwh", 0xE1: "energy_unit",
    0xE2: "history1_normal", 0xE3: "energy_reverse_kwh", 0xE4: "history1_reverse",
    0xE5: "history1_day", 0xE7: "power_w", 0xE8: "current_a", 0xEA: "fixed_normal_kwh",
    0xEB: "fixed_reverse_kwh", 0xEC: "history2", 0xED: "history2_window",
}

NO_DATA_U32 = 0xFFFFFFFE
NO_DATA_S32 = 0x7FFFFFFE
NO_DATA_S16 = 0x7FFE
_INVALID_S32 = {0x7FFFFFFE, 0x7FFFFFFF, 0x80000000}
_INVALID_S16 = {0x7FFE, 0x7FFF, 0x8000}

#: E1 code -> kWh per count (§4.2 table).
UNITS = {0x00: Decimal("1"), 0x01: Decimal("0.1"), 0x02: Decimal("0.01"), 0x03: Decimal("0.001"),
         0x04: Decimal("0.0001"), 0x0A: Decimal("10"), 0x0B: Decimal("100"),
         0x0C: Decimal("1000"), 0x0D: Decimal("10000")}


def _need(edt: bytes, size: int, what: str) -> None:
    if len(edt) != size:
        raise FrameError(f"{what}: EDT of {len(edt)} bytes, expected {size}")


# -- instantaneous values ----------------------------------------------------------------------

def decode_power(edt: bytes) -> Optional[int]:
    """E7: signed watts; None for no data / overflow / underflow."""
    _need(edt, 4, "E7")
    raw = int.from_bytes(edt, "big")
    if raw in _INVALID_S32:
        return None
    return raw - (1 << 32) if raw & 0x80000000 else raw


def encode_power(watts: Optional[int]) -> bytes:
    if watts is None:
        return NO_DATA_S32.to_bytes(4, "big")
    if not -2147483647 <= watts <= 2147483645:
        raise ValueError("E7 out of range")
    return (watts & 0xFFFFFFFF).to_bytes(4, "big")


def _s16(raw: int) -> Optional[Decimal]:
    if raw in _INVALID_S16:
        return None
    value = raw - 0x10000 if raw & 0x8000 else raw
    return Decimal(value).scaleb(-1)


def decode_currents(edt: bytes) -> tuple[Optional[Decimal], Optional[Decimal]]:
    """E8: (R, T) in amperes, each signed 0.1 A; None per phase for no data (T on 2-wire)."""
    _need(edt, 4, "E8")
    return _s16(int.from_bytes(edt[:2], "big")), _s16(int.from_bytes(edt[2:], "big"))


def encode_currents(r: Optional[Decimal], t: Optional[Decimal]) -> bytes:
    out = b""
    for v in (r, t):
        if v is None:
            out += NO_DATA_S16.to_bytes(2, "big")
            continue
        tenths = int(Decimal(v) * 10)
        if not -32767 <= tenths <= 32765:
            raise ValueError("E8 phase current out of range")
        out += (tenths & 0xFFFF).to_bytes(2, "big")
    return out


# -- scaling (§4.4) ------------------------------------------------------------------------------

def decode_u32(edt: bytes, what: str = "energy") -> Optional[int]:
    """E0/E3: raw counter; None for 0xFFFFFFFE."""
    _need(edt, 4, what)
    raw = int.from_bytes(edt, "big")
    return None if raw == NO_DATA_U32 else raw


def encode_u32(raw: Optional[int]) -> bytes:
    return (NO_DATA_U32 if raw is None else raw).to_bytes(4, "big")


def decode_coefficient(edt: bytes) -> int:
    _need(edt, 4, "D3")
    return int.from_bytes(edt, "big")


def decode_digits(edt: bytes) -> int:
    _need(edt, 1, "D7")
    if not 1 <= edt[0] <= 8:
        raise FrameError(f"D7 effective digits {edt[0]} outside 1..8")
    return edt[0]


def decode_unit(edt: bytes) -> Decimal:
    _need(edt, 1, "E1")
    try:
        return UNITS[edt[0]]
    except KeyError:
        raise FrameError(f"E1 unit code {edt[0]:02X} is not defined; refusing to scale") from None


def encode_unit(unit: Decimal) -> bytes:
    for code, value in UNITS.items():
        if value == unit:
            return bytes((code,))
    raise ValueError(f"no E1 code for {unit}")


@dataclasses.dataclass(frozen=True)
class Scaling:
    """Per-session constants: D3 coefficient (1 when unsupported), E1 unit, D7 digits."""

    unit: Decimal = Decimal("0.1")
    coefficient: int = 1
    digits: int = 6

    def kwh(self, raw: Optional[int]) -> Optional[Decimal]:
        if raw is None:
            return None
        value = Decimal(raw) * self.coefficient * self.unit
        exponent = min(self.unit.as_tuple().exponent, 0)
        return value.quantize(Decimal(1).scaleb(exponent))

    def delta(self, old: Optional[int], new: Optional[int]) -> Optional[Decimal]:
        """kWh consumed between two raw readings, honouring the 10^D7 wrap (§4.4).

        None when either is missing or when the counter went back by half the range or more
        (meter replaced or reset: start a new series rather than emit a huge delta).
        """
        if old is None or new is None:
            return None
        modulus = 10 ** self.digits
        diff = (new - old) % modulus
        if diff >= modulus // 2:
            return None
        return self.kwh(diff)


# -- date-time values (§4.6) ------------------------------------------------------------------

def _decode_dt7(edt: bytes, what: str) -> Optional[dt.datetime]:
    year = int.from_bytes(edt[0:2], "big")
    month, day, hour, minute, second = edt[2], edt[3], edt[4], edt[5], edt[6]
    if year == 0xFFFF:
        return None
    try:
        return dt.datetime(year, month, day, hour, minute, second, tzinfo=JST)
    except ValueError:
        raise FrameError(f"{what}: invalid date-time {edt[:7].hex().upper()}") from None


def _encode_dt7(when: dt.datetime) -> bytes:
    when = when.astimezone(JST)
    return when.year.to_bytes(2, "big") + bytes((when.month, when.day, when.hour, when.minute,
                                                  when.second))


def decode_fixed_time(edt: bytes) -> tuple[Optional[dt.datetime], Optional[int]]:
    """EA/EB: (boundary time in JST, raw counter or None)."""
    _need(edt, 11, "EA/EB")
    return _decode_dt7(edt, "EA/EB"), decode_u32(edt[7:], "EA/EB")


def encode_fixed_time(when: dt.datetime, raw: Optional[int]) -> bytes:
    return _encode_dt7(when) + encode_u32(raw)


def decode_history1(edt: bytes) -> tuple[Optional[int], list[Optional[int]]]:
    """E2/E4: (day or None for the 0x00FF default, 48 raw slots with None for no data)."""
    _need(edt, 194, "E2/E4")
    day = int.from_bytes(edt[:2], "big")
    slots = [decode_u32(edt[2 + 4 * i:6 + 4 * i], "E2/E4") for i in range(48)]
    return (None if day > 99 else day), slots


def encode_history1(day: int, slots: Sequence[Optional[int]]) -> bytes:
    if len(slots) != 48:
        raise ValueError("E2/E4 carry 48 slots")
    return day.to_bytes(2, "big") + b"".join(encode_u32(s) for s in slots)


def decode_history2(edt: bytes) -> tuple[Optional[dt.datetime],
                                          list[tuple[Optional[int], Optional[int]]]]:
    """EC: (time of the first pair, [(normal, reverse)] each next pair 30 min earlier)."""
    if len(edt) < 7:
        raise FrameError(f"EC: EDT of {len(edt)} bytes, need at least 7")
    n = edt[6]
    if not 1 <= n <= 12:
        raise FrameError(f"EC: {n} pairs announced (1..12)")
    _need(edt, 7 + 8 * n, "EC")
    when = _decode_dt7(edt[:6] + b"\x00", "EC")
    pairs = [(decode_u32(edt[7 + 8 * i:11 + 8 * i], "EC"),
              decode_u32(edt[11 + 8 * i:15 + 8 * i], "EC")) for i in range(n)]
    return when, pairs


def encode_history2(when: dt.datetime, pairs: Sequence[tuple[Optional[int], Optional[int]]]) -> bytes:
    return (_encode_dt7(when)[:6] + bytes((len(pairs),))
            + b"".join(encode_u32(a) + encode_u32(b) for a, b in pairs))


def encode_history2_window(when: dt.datetime, n: int) -> bytes:
    """ED: year, month, day, hour, minute (0/30), n."""
    if when.astimezone(JST).minute not in (0, 30) or not 1 <= n <= 12:
        raise ValueError("ED takes a :00/:30 time and 1..12 pairs")
    return _encode_dt7(when)[:6] + bytes((n,))


def decode_history2_window(edt: bytes) -> tuple[Optional[dt.datetime], int]:
    _need(edt, 7, "ED")
    return _decode_dt7(edt[:6] + b"\x00", "ED"), edt[6]


def decode_serial(edt: bytes) -> str:
    """8D: ASCII, trailing NUL/space stripped."""
    return edt.rstrip(b"\x00 ").decode("ascii", "replace")


def decode_standard_version(edt: bytes) -> str:
    """82: 'Release F rev 0' style text."""
    _need(edt, 4, "82")
    letter = chr(edt[2]) if 0x41 <= edt[2] <= 0x5A else f"0x{edt[2]:02X}"
    return f"Release {letter} rev {edt[3]}"


def half_hour_floor(when: dt.datetime) -> dt.datetime:
    when = when.astimezone(JST)
    return when.replace(minute=30 if when.minute >= 30 else 0, second=0, microsecond=0)


# -- one place that turns an EDT into something printable --------------------------------------

def describe(epc: int, edt: Optional[bytes], scaling: Scaling = Scaling()):
    """A JSON-friendly value for ``epc``; None when the meter has no data for it."""
    if edt is None:
        return None
    if epc == POWER:
        return decode_power(edt)
    if epc == CURRENTS:
        r, t = decode_currents(edt)
        return {"r": None if r is None else str(r), "t": None if t is None else str(t)}
    if epc in (ENERGY_NORMAL, ENERGY_REVERSE):
        v = scaling.kwh(decode_u32(edt))
        return None if v is None else str(v)
    if epc in (FIXED_NORMAL, FIXED_REVERSE):
        when, raw = decode_fixed_time(edt)
        v = scaling.kwh(raw)
        return {"time": when.isoformat() if when else None, "kwh": None if v is None else str(v)}
    if epc == COEFFICIENT:
        return decode_coefficient(edt)
    if epc == DIGITS:
        return decode_digits(edt)
    if epc == UNIT:
        return str(decode_unit(edt))
    if epc == SERIAL_NUMBER:
        return decode_serial(edt)
    if epc == STANDARD_VERSION:
        return decode_standard_version(edt)
    if epc in (ANNOUNCE_MAP, SET_MAP, GET_MAP):
        from .echonet import decode_property_map
        return " ".join(f"{e:02X}" for e in sorted(decode_property_map(edt)))
    if epc == HISTORY1_DAY:
        return None if edt[0] > 99 else edt[0]
    return edt.hex().upper()
