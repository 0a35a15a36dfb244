"""Join and read over a real pty against the simulator: both families, both output modes, quirks."""

from __future__ import annotations

import json

import pytest

from bridge import meter as m
from bridge.echonet import Esv
from bridge.errors import UnsupportedModule
from bridge.session import State
from bridge.sim import MeterConfig


@pytest.mark.parametrize("profile,family", [("bp35a1", "A"), ("bp35c2", "C")])
@pytest.mark.parametrize("hex_output", [True, False], ids=["hex", "binary"])
def test_join_and_read_power_in_both_families_and_output_modes(make_sim, make_session, profile,
                                                              family, hex_output):
    sim = make_sim(profile, output_hex=hex_output, meter=MeterConfig(power_override=-1126))
    s = make_session(sim)
    s.connect()
    assert s.state is State.JOINED
    assert s.dialect.family == family
    assert s.driver.reader.mode == ("hex" if hex_output else "binary")
    assert m.POWER in s.meter.get_map and s.meter.serial == "F24G366505"
    frame = s.get([m.POWER, m.CURRENTS, m.ENERGY_NORMAL])
    assert frame.esv == Esv.GET_RES
    assert m.decode_power(frame.get(m.POWER)) == -1126          # export is negative
    r, t = m.decode_currents(frame.get(m.CURRENTS))
    assert r < 0 and t < 0
    assert sim.stats["replies"] >= 3
    assert sim.module.wopt_writes == 0          # output_mode=keep never writes flash


def test_binary_module_is_switched_to_hex_once_when_hex_is_wanted(make_sim, make_session):
    sim = make_sim("bp35c2", output_hex=False)
    s = make_session(sim, output_mode="hex")
    s.connect()
    assert s.driver.reader.mode == "hex" and sim.module.hex_output
    assert sim.module.wopt_writes == 1
    s.close()
    s2 = make_session(sim, output_mode="hex")
    s2.connect()
    assert sim.module.wopt_writes == 1          # ROPT already says 01: no second flash write
    assert s2.get([m.POWER]).esv == Esv.GET_RES


def test_module_without_ropt_is_read_with_per_record_detection(make_sim, make_session):
    sim = make_sim("bp35c2", ropt_unsupported=True)
    s = make_session(sim, output_mode="hex")
    s.connect()
    assert s.driver.reader.mode is None
    assert s.get([m.POWER]).esv == Esv.GET_RES


@pytest.mark.parametrize("profile,wrong", [("bp35a1", "C"), ("bp35c2", "A")])
def test_wrong_family_guess_is_corrected_on_fail_er05(make_sim, make_session, profile, wrong):
    sim = make_sim(profile)
    s = make_session(sim)
    s.dialect = __import__("bridge.sk", fromlist=["Dialect"]).Dialect(wrong)   # a wrong hint
    s.connect()
    assert s.dialect.family != wrong
    assert s.get([m.POWER]).esv == Esv.GET_RES
    assert sim.stats["fail"] >= 1                # the ER05 really happened


def test_quirks_leading_crlf_and_neighbour_solicitation_events_are_tolerated(make_sim, make_session):
    sim = make_sim("bp35a1", sendto_leading_crlf=True, event21_ns_first=True, echo_default=1)
    s = make_session(sim)
    s.connect()
    assert [s.get([m.POWER]).esv for _ in range(3)] == [Esv.GET_RES] * 3


def test_missing_optional_properties_stay_out_of_the_frames(make_sim, make_session):
    sim = make_sim("bp35a1", meter=MeterConfig(coefficient=None, unsupported=frozenset({0xEC, 0xED}),
                                               reverse=False, two_wire=True))
    s = make_session(sim)
    s.connect()
    assert 0xD3 not in s.meter.get_map and s.meter.scaling.coefficient == 1
    assert s.initial_values.esv == Esv.GET_RES             # D3/EB not asked: no Get_SNA
    frame = s.get([m.CURRENTS])
    assert m.decode_currents(frame.get(m.CURRENTS))[1] is None     # T phase: no data


def test_no_data_values_come_out_as_none(make_sim, make_session):
    sim = make_sim("bp35c2", meter=MeterConfig(no_data=frozenset({0xE7, 0xE0})))
    s = make_session(sim)
    s.connect()
    frame = s.get([m.POWER, m.ENERGY_NORMAL])
    assert m.decode_power(frame.get(m.POWER)) is None
    assert s.meter.scaling.kwh(m.decode_u32(frame.get(m.ENERGY_NORMAL))) is None


def test_unsupported_property_in_a_request_gives_get_sna_not_a_crash(make_sim, make_session):
    sim = make_sim("bp35a1", meter=MeterConfig(unsupported=frozenset({0x97})))
    s = make_session(sim)
    s.connect()
    frame = s.get([m.POWER, 0x97])
    assert frame.esv == Esv.GET_SNA and frame.get(0x97) is None
    assert m.decode_power(frame.get(m.POWER)) is not None


def test_cached_pan_skips_the_scan_and_a_stale_cache_falls_back_to_scanning(make_sim, make_session,
                                                                          tmp_path):
    sim = make_sim("bp35a1")
    s = make_session(sim)
    s.connect()
    scans = s.metrics["rescans"]
    cache = json.loads((tmp_path / "pan.json").read_text())
    assert cache["channel"] == "3B" and cache["pan_id"] == "1A2B" and "password" not in cache
    s.close()
    s2 = make_session(sim)
    s2.connect()
    assert s2.metrics["rescans"] == 0 and scans == 1
    s2.close()
    cache["channel"] = "21"                     # the meter moved channel
    (tmp_path / "pan.json").write_text(json.dumps(cache))
    s3 = make_session(sim)
    s3.connect()
    assert s3.pan.channel == 0x3B and s3.metrics["rescans"] == 1


def test_j11_binary_module_is_refused_with_a_clear_message(make_sim, make_session):
    sim = make_sim("bp35c2", family_j=True)
    s = make_session(sim)
    with pytest.raises(UnsupportedModule, match="J11"):
        s.connect()


def test_wrong_password_never_joins_and_keeps_escalating(make_sim, make_session):
    import time
    sim = make_sim("bp35a1", meter=MeterConfig(password="ZZZZZZZZZZZZ"))
    s = make_session(sim)
    with pytest.raises(Exception, match="in time"):
        s.connect(deadline=time.monotonic() + 3.0)
    assert s.state is not State.JOINED
    assert s.ladder >= 2 and sim.stats["joins"] >= 2
