"""Every simulator fault of broute.md §7.4 is recovered by the same Session, without a restart."""

from __future__ import annotations

import threading

import pytest

from bridge import meter as m
from bridge.echonet import Esv
from bridge.errors import NotJoined, PortGone, RequestFailed
from bridge.session import LADDER, State
from bridge.sim import MeterConfig, Timing
from bridge_testlib import wait_for

DOWN = (NotJoined, RequestFailed, PortGone)


def read_power(s):
    """What the poller does: (re)connect when needed, then Get E7."""
    for _ in range(5):
        if not s.joined and s.state not in (State.REAUTH, State.THROTTLED):
            s.connect()
        try:
            frame = s.get([m.POWER])
        except DOWN:
            continue
        assert frame.esv == Esv.GET_RES
        return m.decode_power(frame.get(m.POWER))
    raise AssertionError("no reading after 5 attempts")


@pytest.fixture(params=["bp35a1", "bp35c2"])
def joined(request, make_sim, make_session):
    def start(timing=None, meter=None, **session_over):
        sim = make_sim(request.param, timing=timing, meter=meter or MeterConfig(power_override=321))
        s = make_session(sim, **session_over)
        s.connect()
        assert read_power(s) == 321
        return sim, s
    return start


def test_session_expiry_with_automatic_reauthentication_keeps_the_session(joined):
    sim, s = joined()
    joins = s.metrics["joins"]
    sim.expire_session()
    assert s.pump(5, lambda r: s.state is State.REAUTH) is not None
    assert read_power(s) == 321
    assert s.state is State.JOINED and s.metrics["joins"] == joins   # no SKJOIN was needed


def test_session_expiry_with_failed_reauthentication_rejoins(joined):
    sim, s = joined()
    sim.set_fault(reauth_fail=True)
    sim.expire_session()
    s.pump(5, lambda r: s.state is State.BACKOFF)
    assert s.state is State.BACKOFF
    sim.set_fault(reauth_fail=False)
    assert read_power(s) == 321
    assert s.metrics["rejoins"] >= 1


def test_meter_terminating_the_session_is_followed_by_a_rejoin(joined):
    sim, s = joined()
    sim.terminate_session()
    s.pump(5, lambda r: s.state is State.BACKOFF)
    assert read_power(s) == 321 and s.metrics["rejoins"] == 1


def test_link_loss_escalates_and_recovers_when_the_radio_returns(joined):
    sim, s = joined()
    sim.link_down(1.5)
    with pytest.raises(DOWN):
        for _ in range(5):
            s.get([m.POWER])
    assert s.metrics["event21_failures"] >= 1
    assert read_power(s) == 321
    assert s.joined


def test_late_reply_is_dropped_as_stale_and_the_retry_gets_the_answer(joined):
    sim, s = joined(timing=Timing(late_reply_delay=2.5))      # request_timeout is 1 s
    sim.late_reply(1)
    tid_before = s.tids._next
    assert read_power(s) == 321
    assert s.tids._next >= tid_before + 2          # a new TID for the retransmission
    s.pump(5, lambda r: s.metrics["stale_responses"] >= 1)
    assert s.metrics["stale_responses"] >= 1 and s.metrics["request_timeouts"] >= 1


def test_lost_reply_is_retransmitted_with_a_new_tid(joined):
    sim, s = joined()
    sim.drop_replies(2)
    assert read_power(s) == 321
    assert s.metrics["request_timeouts"] >= 2


def test_duplicate_replies_are_dropped_as_stale(joined):
    sim, s = joined()
    sim.set_fault(duplicate_rate=1.0)
    assert [read_power(s) for _ in range(3)] == [321] * 3
    s.pump(0.3)
    assert s.metrics["stale_responses"] >= 2


def test_garbage_lines_from_the_module_do_not_disturb_the_session(joined):
    sim, s = joined()
    for raw in (None, b"\xff\xfe\xfd\r\n", b"ERXUDP broken\r\n", b"EVENT\r\n", b"  Channel:zz\r\n"):
        sim.garbage_line(raw)
    assert read_power(s) == 321
    assert s.driver.counters["garbage"] >= 3 and s.joined


def test_spontaneous_module_reset_is_detected_and_the_module_reinitialised(joined):
    sim, s = joined()
    resets = s.metrics["resets"]
    sim.module_reset()
    assert read_power(s) == 321
    assert s.metrics["resets"] == resets + 1 and sim.session_up


def test_transmission_limit_pauses_sends_until_lifted(joined):
    sim, s = joined()
    sim.tx_limit(0.5)
    s.pump(3, lambda r: s.state is State.THROTTLED)
    assert s.state is State.THROTTLED
    assert read_power(s) == 321                    # waits for EVENT 33, then sends
    assert s.metrics["tx_limited"] == 1 and s.joined


def test_unplug_and_replug_reopen_the_port(joined):
    sim, s = joined()
    sim.unplug()
    with pytest.raises(DOWN):
        s.get([m.POWER])
    errors = []
    t = threading.Thread(target=lambda: errors.append(read_power(s)), daemon=True)
    t.start()
    assert wait_for(lambda: s.metrics["port_errors"] >= 2, 5)     # reopen tried while unplugged
    assert s.ladder == LADDER.index("reopen")
    sim.replug()
    t.join(15)
    assert errors == [321]
    assert s.joined and s.metrics["reopens"] >= 2


def test_infc_notification_is_answered_and_delivered(joined):
    sim, s = joined()
    notes = []
    s.on_notification = notes.append
    sim.advance_clock(1800)
    s.pump(5, lambda r: s.metrics["infc_answered"] >= 1)
    assert wait_for(lambda: sim.stats["infc_res"] == 1, 5)
    when, raw = m.decode_fixed_time(notes[0].get(m.FIXED_NORMAL))
    assert when.minute in (0, 30) and raw is not None


def test_dongle_coming_back_under_another_device_name_is_found_again(joined, make_sim):
    sim, s = joined()
    sim.unplug()
    other = make_sim(sim.profile.name, meter=MeterConfig(power_override=321))   # e.g. ttyUSB1
    s.resolve_port = lambda: other.path
    assert read_power(s) == 321
    assert s.driver.port == other.path


def test_a_notification_never_completes_a_pending_get(joined):
    sim, s = joined(timing=Timing(late_reply_delay=2.5))
    notes = []
    s.on_notification = notes.append
    sim.late_reply(1)                      # the answer to the first Get EA comes too late...
    sim.advance_clock(1800)                # ...while the meter's EA notification arrives
    frame = s.get([m.FIXED_NORMAL])
    assert frame.esv == Esv.GET_RES and frame.tid not in {n.tid for n in notes}
    assert len(notes) >= 1 and s.metrics["request_timeouts"] >= 1
    assert notes[0].esv == Esv.INFC and s.metrics["infc_answered"] >= 1
