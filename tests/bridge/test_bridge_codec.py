"""ECHONET Lite codec and meter model: round trips, sentinels, scaling, spec examples."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import echonet as el
from bridge import meter as m
from bridge.errors import FrameError
from libarms import ProtocolError

props = st.builds(el.Property, st.integers(0, 255), st.binary(max_size=40))
frames = st.builds(el.Frame, st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFF),
                   st.integers(0, 0xFFFFFF), st.integers(0, 255),
                   st.lists(props, min_size=1, max_size=8).map(tuple))


@given(frames)
def test_frame_encode_then_decode_gives_back_the_frame(frame):
    assert el.decode(frame.encode()) == frame


@given(st.binary(max_size=80))
def test_any_bytes_decode_or_raise_frame_error(data):
    try:
        frame = el.decode(data)
    except FrameError as exc:
        assert isinstance(exc, ProtocolError)
        return
    # What decodes re-encodes to a prefix of the input (trailing bytes are ignored, §3.1).
    assert data.startswith(frame.encode())


@given(frames, st.integers(1, 20))
def test_truncated_frames_are_rejected(frame, cut):
    data = frame.encode()
    if cut >= len(data) - 11:
        return
    with pytest.raises(FrameError):
        el.decode(data[:-cut])


def test_oversized_datagram_is_refused():
    with pytest.raises(FrameError, match="exceeds"):
        el.decode(b"\x10\x81" + bytes(2000))


@given(st.sets(st.integers(0x80, 0xFF), max_size=128))
def test_property_map_round_trips_in_list_and_bitmap_form(epcs):
    edt = el.encode_property_map(epcs)
    assert len(edt) == (1 + len(epcs) if len(epcs) < 16 else 17)
    assert el.decode_property_map(edt) == frozenset(epcs)


def test_captured_get_map_bitmap_decodes_to_the_25_properties():
    edt = bytes.fromhex("1941414160404000624300414040430202")
    assert sorted(el.decode_property_map(edt)) == [
        0x80, 0x81, 0x82, 0x88, 0x8A, 0x8D, 0x97, 0x98, 0x9D, 0x9E, 0x9F, 0xD3, 0xD7, 0xE0, 0xE1,
        0xE2, 0xE3, 0xE4, 0xE5, 0xE7, 0xE8, 0xEA, 0xEB, 0xEC, 0xED]


def test_get_example_of_the_spec_encodes_byte_exact():
    frame = el.request(1, el.Esv.GET, [0xE7])
    assert frame.encode() == bytes.fromhex("1081000105FF010288016201E700")


def test_get_res_with_export_and_two_wire_meter_decodes_signs_and_no_data():
    frame = el.decode(bytes.fromhex(
        "1081000202880105FF017203E704FFFFFE0CE804001E7FFEE0040000FE73"))
    assert m.decode_power(frame.get(0xE7)) == -500
    assert m.decode_currents(frame.get(0xE8)) == (Decimal("3.0"), None)
    assert m.Scaling().kwh(m.decode_u32(frame.get(0xE0))) == Decimal("6513.9")


def test_infc_response_swaps_objects_and_keeps_tid():
    infc = el.decode(bytes.fromhex(
        "1081029F02880105FF017402EA0B07E501121200000000FBD2EB0B07E5011212000000000009"))
    assert el.infc_response(infc).encode() == bytes.fromhex("1081029F05FF010288017A02EA00EB00")


def test_appendix_a_attribute_answer_decodes():
    frame = el.decode(bytes.fromhex(
        "1081000202880105FF0172068D0C463234473336363530350000D30400000001D70106E10101EA0B07E8"
        "0A01111E000000FE6AEB0B07E80A01111E0000000009"))
    assert m.decode_serial(frame.get(0x8D)) == "F24G366505"
    scaling = m.Scaling(m.decode_unit(frame.get(0xE1)), m.decode_coefficient(frame.get(0xD3)),
                        m.decode_digits(frame.get(0xD7)))
    when, raw = m.decode_fixed_time(frame.get(0xEA))
    assert when == dt.datetime(2024, 10, 1, 17, 30, tzinfo=m.JST)
    assert scaling.kwh(raw) == Decimal("6513.0")


@pytest.mark.parametrize("raw", ["7FFFFFFE", "7FFFFFFF", "80000000"])
def test_power_sentinels_are_none_never_zero(raw):
    assert m.decode_power(bytes.fromhex(raw)) is None


@pytest.mark.parametrize("raw", ["7FFE", "7FFF", "8000"])
def test_current_sentinels_are_none_per_phase(raw):
    assert m.decode_currents(bytes.fromhex("0032" + raw)) == (Decimal("5.0"), None)
    assert m.decode_currents(bytes.fromhex(raw + "FFCE")) == (None, Decimal("-5.0"))


def test_energy_no_data_is_none_and_scales_to_none():
    assert m.decode_u32(bytes.fromhex("FFFFFFFE")) is None
    assert m.Scaling().kwh(None) is None


@given(st.one_of(st.none(), st.integers(-2147483647, 2147483645)))
def test_power_round_trips(watts):
    assert m.decode_power(m.encode_power(watts)) == watts


@given(st.one_of(st.none(), st.integers(-32767, 32765).map(lambda t: Decimal(t) / 10)),
       st.one_of(st.none(), st.integers(-32767, 32765).map(lambda t: Decimal(t) / 10)))
def test_currents_round_trip(r, t):
    assert m.decode_currents(m.encode_currents(r, t)) == (r, t)


@settings(max_examples=30)
@given(st.integers(0, 99), st.lists(st.one_of(st.none(), st.integers(0, 99999999)),
                                    min_size=48, max_size=48))
def test_history1_round_trips(day, slots):
    assert m.decode_history1(m.encode_history1(day, slots)) == (day, slots)


@settings(max_examples=50)
@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)),
       st.lists(st.tuples(st.one_of(st.none(), st.integers(0, 99999999)),
                          st.one_of(st.none(), st.integers(0, 99999999))), min_size=1, max_size=12))
def test_history2_round_trips(naive, pairs):
    when = naive.replace(minute=30 if naive.minute >= 30 else 0, second=0, microsecond=0,
                         tzinfo=m.JST)
    assert m.decode_history2(m.encode_history2(when, pairs)) == (when, pairs)


@given(st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 1, 1)),
       st.one_of(st.none(), st.integers(0, 99999999)))
def test_fixed_time_round_trips(naive, raw):
    when = naive.replace(microsecond=0, tzinfo=m.JST)
    assert m.decode_fixed_time(m.encode_fixed_time(when, raw)) == (when, raw)


def test_scaling_uses_coefficient_and_unit_exactly():
    s = m.Scaling(unit=Decimal("0.01"), coefficient=10, digits=8)
    assert s.kwh(123) == Decimal("12.30")
    assert m.Scaling(unit=Decimal("10")).kwh(5) == Decimal("50")


def test_delta_wraps_at_effective_digits_and_refuses_a_backwards_jump():
    s = m.Scaling(unit=Decimal("0.1"), digits=6)
    assert s.delta(999_995, 3) == Decimal("0.8")
    assert s.delta(500_000, 10) is None          # meter replaced: new series, no huge delta
    assert s.delta(None, 10) is None


def test_unknown_unit_code_is_refused():
    with pytest.raises(FrameError, match="refusing to scale"):
        m.decode_unit(b"\x05")


def test_wrong_edt_sizes_raise_frame_error():
    for fn in (m.decode_power, m.decode_currents, m.decode_u32, m.decode_fixed_time,
               m.decode_history1):
        with pytest.raises(FrameError):
            fn(b"\x00")


def test_tid_counter_wraps_to_zero():
    tids = el.TidCounter(0xFFFE)
    assert [tids.next(), tids.next(), tids.next()] == [0xFFFF, 0, 1]
