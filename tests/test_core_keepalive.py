"""Tunnel keepalive bookkeeping (W 5.6): the C core and its pure-Python twin give the same
actions for any sequence of events, and the rules of the spec hold."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from libarms import chunkcodec
from libarms.chunkcodec import Keepalive, KeepaliveAction as A

IMPLS = [pytest.param(False, id="python")]
if chunkcodec.HAVE_CORE:
    IMPLS.append(pytest.param(True, id="c"))


@pytest.mark.parametrize("use_core", IMPLS)
def test_echo_every_interval_and_a_missed_answer_kills_the_tunnel(use_core):
    k = Keepalive(use_core)
    assert k.next_deadline() is None and k.poll(10**6) is A.NONE
    k.start(1000, 3000)                      # HTTP 200 at t=1 s, E = 3 s
    assert k.next_deadline() == 4000
    assert k.poll(3999) is A.NONE
    k.confirmed(2000)
    assert k.poll(4000, writing=True) is A.NONE   # a message is being written: 1 s later
    assert k.next_deadline() == 5000
    assert k.poll(5000) is A.SEND_ECHO and k.echo_outstanding
    k.echo_answered()
    assert k.poll(8000) is A.SEND_ECHO
    assert k.poll(11000) is A.DEAD           # still unanswered at the next tick
    k.stop()
    assert k.poll(10**9) is A.NONE


@pytest.mark.parametrize("use_core", IMPLS)
def test_inactivity_is_10_s_after_confirmation_then_e(use_core):
    k = Keepalive(use_core)
    k.start(0, 60000)
    k.confirmed(0)
    assert k.poll(9999) is A.NONE and k.poll(10000) is A.IDLE
    k.activity(20000)
    assert k.next_deadline() == 60000        # the echo tick comes first
    assert k.poll(60000) is A.SEND_ECHO
    assert k.poll(80000) is A.IDLE           # 60 s after the last activity


def test_default_interval_is_60_s():
    for use_core in (False, True):
        k = Keepalive(use_core)
        k.start(5, 0)
        assert k.next_deadline() == 60005


EVENTS = st.lists(st.tuples(st.sampled_from(["start", "confirmed", "activity", "answered",
                                             "poll", "poll_writing", "stop"]),
                            st.integers(0, 5000), st.sampled_from([0, 1000, 3000, 60000])),
                  max_size=40)


@pytest.mark.skipif(not chunkcodec.HAVE_CORE, reason="libarms._core not built")
@settings(max_examples=200, deadline=None)
@given(EVENTS)
def test_c_and_python_keepalive_agree_on_any_event_sequence(events):
    c, py = Keepalive(True), Keepalive(False)
    now = 0
    for ev, dt, interval in events:
        now += dt
        outs = []
        for k in (c, py):
            if ev == "start":
                k.start(now, interval)
            elif ev == "confirmed":
                k.confirmed(now)
            elif ev == "activity":
                k.activity(now)
            elif ev == "answered":
                k.echo_answered()
            elif ev == "stop":
                k.stop()
            else:
                outs.append(k.poll(now, writing=ev == "poll_writing"))
            outs.append((k.next_deadline(), k.echo_outstanding))
        assert outs[:len(outs) // 2] == outs[len(outs) // 2:], (ev, now)
