"""Push loop details: state sequence of re-confirmations (A 2.2), heartbeat during a configure
(A 1.6), no unretrieved task exceptions, the app-event interval API, big pushes from the proxy."""

from __future__ import annotations

import asyncio
import gc
import logging
import socket
import threading

import pytest

from libarms.agent import Agent
from libarms.callbacks import ConfigAction
from libarms.errors import ArmsError, Err
from libarms.heartbeat import HbServer
from libarms.protocol import push as P
from libarms.states import State
from tests.conftest_push import (DIST, RecordingCallbacks, free_port, make_device,  # noqa: F401
                                 make_proxy, pki, wait_for)

W, R, S = State.PUSH_WAIT, State.PUSH_REBOOT, State.PUSH_SENDREADY
RECONFIRM = [(W, R), (R, S), (S, W)]


def _never_retrieved(caplog) -> list[str]:
    gc.collect()                              # unretrieved exceptions are reported on collection
    return [r.getMessage() for r in caplog.records if "never retrieved" in r.getMessage()]


class AppEventOnce(RecordingCallbacks):
    """app_event asks for one re-confirmation, then nothing."""

    def __init__(self):
        super().__init__()
        self.answers = [Err.EPUSH]

    def app_event(self):
        return self.answers.pop(0) if self.answers else 0


@pytest.mark.parametrize("method", ["https-tunnel", "https-simple"])
def test_app_event_epush_reconfirms_through_push_reboot_and_sendready(make_proxy, make_device,
                                                                     caplog, method):
    caplog.set_level(logging.ERROR, logger="asyncio")
    proxy = make_proxy(methods=(method,), echo_interval=5)
    cb = AppEventOnce()
    dev = make_device(proxy, cb, port=free_port(), app_event_interval=0.2).start()
    wait_for(lambda: len(cb.states) >= 5 and cb.states[-1][1] == W, 15,
             "push wait after the re-confirmation")
    assert cb.states == [(State.PULLDONE, S), (S, W)] + RECONFIRM
    assert proxy.push("md-command", P.md_command_body(1, "after")).result_code == 100
    assert not dev.done.is_set()
    assert _never_retrieved(caplog) == []


def test_configure_over_simple_reconfirms_through_push_reboot_and_sendready(make_proxy, make_device):
    proxy = make_proxy(methods=("https-simple",))
    cb = RecordingCallbacks()
    make_device(proxy, cb, port=free_port()).start()
    proxy.wait_reachable()
    wait_for(lambda: cb.states == [(State.PULLDONE, S), (S, W)], 10, "push wait")
    before = list(cb.states)
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "new")]))
    assert out.done.result_code == 100
    # the proxy knows the device re-confirms: the next push waits for it, never a dead listener
    assert proxy.push("md-command", P.md_command_body(1, "x")).result_code == 100
    wait_for(lambda: len(cb.states) >= len(before) + 3, 10, "re-confirmation states")
    assert cb.states[len(before):] == RECONFIRM


def test_configure_over_tunnel_keeps_push_wait_while_tunnels_reconfirm(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    make_device(proxy, cb).start()
    proxy.wait_reachable()
    wait_for(lambda: cb.states == [(State.PULLDONE, S), (S, W)], 10, "push wait")
    before, confirmed = list(cb.states), proxy.confirmations()
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "new")]))
    assert out.done.result_code == 100
    assert proxy.push("md-command", P.md_command_body(1, "x")).result_code == 100
    assert proxy.confirmations() > confirmed          # re-confirmed on the tunnel ...
    assert cb.states == before == [(State.PULLDONE, S), (S, W)]   # ... without a state change


class SlowConfigure(RecordingCallbacks):
    """Counts statistics requests; PUSH_STORE_CONFIG waits until the test lets it go."""

    def __init__(self):
        super().__init__()
        self.stats_calls = 0
        self.in_store = threading.Event()
        self.release = threading.Event()

    def hb_store_statistics(self, hb):
        with self.lock:
            self.stats_calls += 1

    def config(self, module_id, version, info, action, data, flags):
        super().config(module_id, version, info, action, data, flags)
        if action == ConfigAction.PUSH_STORE_CONFIG:
            self.in_store.set()
            assert self.release.wait(20)


def test_heartbeat_skips_the_statistics_callback_while_a_configure_runs(make_proxy, make_device):
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.bind(("127.0.0.1", 0))
    try:
        proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
        cb = SlowConfigure()
        dev = make_device(proxy, cb, heartbeat_servers=[HbServer("127.0.0.1", sink.getsockname()[1], "pw")],
                          heartbeat_interval=0.05).start()
        proxy.wait_reachable()
        wait_for(lambda: cb.stats_calls >= 2, 10, "heartbeat statistics requests")
        hb = dev.ctx._running[1].ls.hb
        fut = asyncio.run_coroutine_threadsafe(
            proxy.proxy.push(DIST, "configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "c")]),
                             timeout=20), proxy.lt.loop)
        assert cb.in_store.wait(10)
        paused0 = hb.stats.paused
        with cb.lock:
            calls0 = cb.stats_calls
        wait_for(lambda: hb.stats.paused >= paused0 + 4, 10, "skipped heartbeat rounds")
        with cb.lock:
            during = cb.stats_calls - calls0
        cb.release.set()
        assert fut.result(20).done.result_code == 100
        assert during <= 1        # at most one request already under way when the pause began
        wait_for(lambda: cb.stats_calls > calls0 + during, 10, "statistics again after the configure")
    finally:
        sink.close()


def test_app_event_interval_api_checks_range_and_reaches_the_push_loop():
    agent = Agent(DIST)
    assert agent.get_app_event_interval() == 60.0
    agent.set_app_event_interval(0.1)
    agent.set_app_event_interval(600)
    assert agent.get_app_event_interval() == 600.0
    for bad in (0.05, 600.5, 0, -1, "soon"):
        with pytest.raises(ArmsError) as e:
            agent.set_app_event_interval(bad)
        assert e.value.code == Err.EINVAL
    assert agent.get_app_event_interval() == 600.0
    agent.set_app_event_interval(2.5)
    assert agent.push_context().app_event_interval == 2.5
    agent.set_app_event_interval(7)              # also reaches a context handed out before
    assert agent._push_ctx.app_event_interval == 7.0


def test_proxy_pushes_a_message_over_64_kib_through_the_tunnel(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    make_device(proxy, cb).start()
    proxy.wait_reachable()
    cfg = bytes(range(256)) * 1200                    # one configure request of ~300 KiB
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, cfg)]))
    assert out.result_code == 100 and out.done.result_code == 100
    assert [c[3] for c in cb.calls if c[0] == "config" and c[2] == ConfigAction.PUSH_STORE_CONFIG] == [cfg]


@pytest.mark.parametrize("method", ["https-tunnel", "https-simple"])
def test_fatal_confirmation_start_answer_goes_boot_fail_then_push_reboot(make_proxy, make_device, method):
    proxy = make_proxy(methods=(method,), echo_interval=5)
    proxy.proxy.confirm_result = 503
    cb = RecordingCallbacks()
    dev = make_device(proxy, cb, port=free_port()).start()
    assert dev.wait() == Err.EREBOOT
    assert cb.states == [(State.PULLDONE, S), (S, State.BOOT_FAIL), (State.BOOT_FAIL, R)]
