"""The simulator itself, sans-I/O: module command handling (§7.2-7.3) and the meter (§7.5)."""

from __future__ import annotations

import datetime as dt
import heapq
import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import echonet as el
from bridge import meter as m
from bridge import sk
from bridge.echonet import Esv
from bridge.sim import MeterConfig, MeterModel, ModuleSim, Timing, make_profile

METER_IP = "FE80:0000:0000:0000:C2F9:4500:AABB:CCDD"


class Harness:
    """A ModuleSim with a virtual clock: ``run()`` fires every due timer in order."""

    def __init__(self, profile="bp35a1", meter=None, **quirks):
        self.out = bytearray()
        self.timers = []
        self.seq = itertools.count()
        self.now = 0.0
        self.meter = MeterModel(meter or MeterConfig())
        self.mod = ModuleSim(make_profile(profile, **quirks), self.meter, self.out.extend,
                             self.schedule, timing=Timing())

    def schedule(self, delay, fn, scaled=True):
        heapq.heappush(self.timers, (self.now + delay, next(self.seq), fn))

    def run(self, until=1e9):
        while self.timers and self.timers[0][0] <= until:
            t, _, fn = heapq.heappop(self.timers)
            self.now = t
            fn()

    def cmd(self, line: bytes, run=True) -> str:
        self.out.clear()
        self.mod.feed(line)
        if run:
            self.run(self.now + 100)
        return self.out.decode("latin-1")


def joined(profile="bp35a1", **kw):
    h = Harness(profile, **kw)
    for line in (b"SKSREG SFE 0\r\n", b"SKSETPWD C 0A1B2C3D4E5F\r\n",
                 b"SKSETRBID 0123456789ABCDEF0123456789ABCDEF\r\n", b"SKSREG S2 3B\r\n",
                 b"SKSREG S3 1A2B\r\n", f"SKJOIN {METER_IP}\r\n".encode()):
        h.cmd(line)
    assert h.mod.session
    return h


@pytest.mark.parametrize("line,reply", [
    (b"SKFOO\r\n", "FAIL ER04"),
    (b"SKVER 1\r\n", "FAIL ER05"),
    (b"SKSETRBID 0123\r\n", "FAIL ER06"),
    (b"SKSETPWD 5 0A1B2C3D4E5F\r\n", "FAIL ER06"),
    (b"SKSREG S2 20\r\n", "FAIL ER06"),
    (b"SKSCAN 2 FFFFFFFF F\r\n", "FAIL ER06"),
    (b"SKSCAN 2 FFFFFFFF 6 0\r\n", "FAIL ER05"),          # family A takes 3 arguments
    (b"SKTERM\r\n", "FAIL ER10"),
    (b"SKREJOIN\r\n", "FAIL ER10"),
    (b"SKVER\x01\r\n", "FAIL ER09"),
    (b"SK" + b"X" * 300 + b"\r\n", "FAIL ER09"),
])
def test_module_errors_follow_the_command_reference(line, reply):
    h = Harness()
    h.cmd(b"SKSREG SFE 0\r\n")
    assert h.cmd(line).strip().endswith(reply)


def test_echo_is_on_after_power_up_and_after_skreset():
    h = Harness()
    assert h.cmd(b"SKVER\r\n") == "SKVER\r\nEVER 1.2.10\r\nOK\r\n"
    assert h.cmd(b"SKSREG SFE 0\r\n") == "SKSREG SFE 0\r\nOK\r\n"
    assert h.cmd(b"SKVER\r\n") == "EVER 1.2.10\r\nOK\r\n"
    h.cmd(b"SKRESET\r\n")
    assert h.cmd(b"SKVER\r\n").startswith("SKVER\r\n")


def test_product_commands_answer_with_cr_only_and_wopt_has_a_flash_budget():
    h = Harness(wopt_write_budget=1)
    h.cmd(b"SKSREG SFE 0\r\n")
    assert h.cmd(b"ROPT\r") == "OK 00\r"
    assert h.cmd(b"WOPT 01\r") == "OK\r"
    assert h.cmd(b"ROPT\r") == "OK 01\r"
    assert h.cmd(b"WOPT 00\r") == "FAIL ER10\r"


def test_diagnostic_tables_have_the_documented_shapes():
    a, c = Harness("bp35a1"), Harness("bp35c2")
    for h in (a, c):
        h.cmd(b"SKSREG SFE 0\r\n")
    assert a.cmd(b"SKTABLE E\r\n") == "EPORT\r\n3610\r\n716\r\n0\r\n0\r\n0\r\n0\r\n\r\n3610\r\n0\r\n0\r\n0\r\nOK\r\n"
    assert c.cmd(b"SKTABLE E\r\n").endswith("0\r\n0\r\nOK\r\n") and "\r\n\r\n" not in c.out.decode()
    assert a.cmd(b"SKLL64 C0F94500AABBCCDD\r\n") == METER_IP + "\r\n"        # no OK
    out = a.cmd(b"SKSCAN 0 FFFFFFFF 2\r\n")
    assert out.startswith("OK\r\n") and "EVENT 1F" in out and "EEDSCAN" in out


def test_scan_and_join_in_family_c_carry_side_tokens():
    h = Harness("bp35c2")
    for line in (b"SKSREG SFE 0\r\n", b"SKSETPWD C 0A1B2C3D4E5F\r\n",
                 b"SKSETRBID 0123456789ABCDEF0123456789ABCDEF\r\n"):
        h.cmd(line)
    out = h.cmd(b"SKSCAN 2 FFFFFFFF 6 0\r\n")
    assert "  Side:0\r\n" in out and "  PairID:89ABCDEF\r\n" in out and out.rstrip().endswith(" 0")
    h.cmd(b"SKSREG S2 3B\r\n")
    h.cmd(b"SKSREG S3 1A2B\r\n")
    out = h.cmd(f"SKJOIN {METER_IP}\r\n".encode())
    assert f"EVENT 25 {METER_IP} 0\r\n" in out
    assert h.cmd(f"SKJOIN {METER_IP}\r\n".encode()) == "FAIL ER10\r\n"     # already joined


def test_scan_with_the_wrong_pairing_id_finds_nothing():
    h = Harness()
    h.cmd(b"SKSREG SFE 0\r\n")
    h.cmd(b"SKSETRBID 0123456789ABCDEF0123456789ABCDEE\r\n")
    out = h.cmd(b"SKSCAN 2 FFFFFFFF 6\r\n")
    assert "EPANDESC" not in out and "EVENT 22" in out
    assert "EPANDESC" in h.cmd(b"SKSCAN 3 FFFFFFFF 6\r\n")          # mode 3: no pairing


def test_wrong_password_gives_event_24():
    h = Harness()
    for line in (b"SKSREG SFE 0\r\n", b"SKSETPWD C 0A1B2C3D4E5X\r\n",
                 b"SKSETRBID 0123456789ABCDEF0123456789ABCDEF\r\n", b"SKSREG S2 3B\r\n",
                 b"SKSREG S3 1A2B\r\n"):
        h.cmd(line)
    assert f"EVENT 24 {METER_IP}" in h.cmd(f"SKJOIN {METER_IP}\r\n".encode())


def test_sendto_without_session_is_accepted_and_sends_nothing():
    h = Harness()
    h.cmd(b"SKSREG SFE 0\r\n")
    frame = el.request(1, Esv.GET, [0xE7]).encode()
    out = h.cmd(f"SKSENDTO 1 {METER_IP} 0E1A 1 {len(frame):04X} ".encode() + frame)
    assert out == "OK\r\n"


def test_sendto_header_of_the_other_family_is_er05_and_the_data_is_swallowed():
    for profile, header in (("bp35a1", "0E1A 1 0 000E "), ("bp35c2", "0E1A 1 000E ")):
        h = joined(profile)
        frame = el.request(1, Esv.GET, [0xE7]).encode()
        out = h.cmd(f"SKSENDTO 1 {METER_IP} {header}".encode() + frame)
        assert out == "FAIL ER05\r\n"
        assert h.cmd(b"SKVER\r\n").startswith("EVER")           # still in sync afterwards


def test_meter_answers_get_with_get_sna_when_one_epc_is_unsupported():
    mm = MeterModel(MeterConfig(unsupported=frozenset({0xD3})))
    (res,) = mm.handle(el.request(7, Esv.GET, [0xE7, 0xD3, 0xE1]))
    assert res.esv == Esv.GET_SNA and res.tid == 7
    assert res.epcs == (0xE7, 0xD3, 0xE1) and res.get(0xD3) is None and res.get(0xE1) == b"\x01"
    assert 0xD3 not in el.decode_property_map(mm.value(0x9F))


def test_meter_set_refusals_echo_the_refused_value():
    mm = MeterModel(MeterConfig())
    (res,) = mm.handle(el.set_request(1, [(0xE5, b"\x01"), (0xE7, b"\x00\x00\x00\x01")]))
    assert res.esv == Esv.SETC_SNA
    assert res.props == (el.Property(0xE5), el.Property(0xE7, b"\x00\x00\x00\x01"))
    assert mm.e5 == 1


def test_meter_history_is_consistent_with_the_counters_and_future_slots_have_no_data():
    mm = MeterModel(MeterConfig(seed=3))
    now = mm.now()
    mm.set_value(0xE5, b"\x00")
    day, slots = m.decode_history1(mm.value(0xE2))
    assert day == 0
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    past = int((now - midnight).total_seconds() // 1800)
    assert all(v is not None for v in slots[:past + 1]) and all(v is None for v in slots[past + 1:])
    assert slots == sorted(slots[:past + 1]) + slots[past + 1:]      # cumulative never decreases
    when, raw = m.decode_fixed_time(mm.value(0xEA))
    assert raw == slots[past] and when == midnight + dt.timedelta(minutes=30 * past)
    mm.set_value(0xED, m.encode_history2_window(when, 3))
    start, pairs = m.decode_history2(mm.value(0xEC))
    assert start == when and pairs[0][0] == raw


def test_meter_counter_wraps_at_the_effective_digits():
    mm = MeterModel(MeterConfig(initial_raw=999_990, digits=6, power_override=20000))
    early = mm.raw(mm.origin + dt.timedelta(hours=1))
    assert early < 999_990                         # 20 kW for an hour = 200 counts: wrapped
    assert m.Scaling(digits=6).delta(999_990, early) == m.Scaling().kwh(200)


def test_two_wire_meter_reports_no_data_for_the_t_phase():
    mm = MeterModel(MeterConfig(two_wire=True, power_override=500))
    assert m.decode_currents(mm.value(0xE8)) == (m.Decimal("5.0"), None)


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.sampled_from(["bp35a1", "bp35c2"]),
       st.booleans(), st.booleans(), st.lists(st.integers(1, 13), max_size=25))
def test_simulator_erxudp_output_parses_back_in_every_layout(data, profile, hex_output, rssi,
                                                             chunks):
    h = Harness(profile)
    h.mod.hex_output = hex_output
    h.mod.regs["SA2"] = "1" if rssi else "0"
    h.mod.erxudp(METER_IP, h.mod.own_ip, 3610, 3610, "C0F94500AABBCCDD", 1, data)
    raw = bytes(h.out) + b"OK\r\n"
    reader = sk.Reader("hex" if hex_output else "binary")
    recs, pos = [], 0
    for n in chunks:
        recs += reader.feed(raw[pos:pos + n])
        pos += n
    recs += reader.feed(raw[pos:])
    c = profile == "bp35c2"
    assert recs == [sk.RxUdp(METER_IP, h.mod.own_ip, 3610, 3610, "C0F94500AABBCCDD", 1,
                             0 if c else None, 0x8C if (c and rssi) else None, data,
                             not hex_output), sk.Ok()]
