"""The push loop on plain threads: a stop signal caught by any thread ends a loop that runs in
the main thread (as armsd runs it), push wait holds one round thread, and a callback that runs
long does not hold up the tunnel's echo keepalive."""

from __future__ import annotations

import asyncio
import signal
import threading

from libarms import push
from libarms.errors import Err
from libarms.protocol import push as P
from tests.conftest_push import (DIST, RecordingCallbacks, make_device, make_proxy,  # noqa: F401
                                 pki, wait_for)


def _push_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if t.name.startswith("libarms-"))


def _echoes(proxy) -> int:
    return sum(1 for what, dist in list(proxy.proxy.events) if what == "echo" and dist == DIST)


def test_stop_signal_caught_by_another_thread_ends_a_loop_running_in_the_main_thread(make_proxy,
                                                                                     make_device):
    # armsd runs Agent.run() in the main thread and stops it from its SIGTERM handler; the
    # kernel may hand the signal to any thread, Python runs the handler in the main thread
    # only: the loop must wake up for it (signal wake-up pipe), not sleep through it
    assert threading.current_thread() is threading.main_thread()
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    dev = make_device(proxy)
    assert dev.method_query() == Err.OK
    handled, late = threading.Event(), threading.Event()

    def on_signal(signum, frame):
        handled.set()
        push.stop_event_loop(dev.ctx, Err.EPULL)

    def poke():
        proxy.wait_reachable()
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)   # to this thread
        if not handled.wait(20):                 # bounded: end the loop anyway, and say so
            late.set()
            push.stop_event_loop(dev.ctx, Err.EPULL)

    old = signal.signal(signal.SIGUSR1, on_signal)
    try:
        threading.Thread(target=poke, daemon=True, name="poke").start()
        assert push.event_loop(dev.ctx) == Err.EPULL
    finally:
        signal.signal(signal.SIGUSR1, old)
    assert handled.is_set() and not late.is_set()
    assert signal.set_wakeup_fd(-1) == -1          # the loop put the wake-up fd back


def test_push_wait_holds_one_round_thread_and_a_callback_thread_once_a_callback_ran(make_proxy,
                                                                                    make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    make_device(proxy).start()
    proxy.wait_reachable()
    wait_for(lambda: _push_threads() == ["libarms-push-round"], 10, "push wait on the round thread")
    out = proxy.push("md-command", P.md_command_body(1, "threads"))
    assert out.response.modules[0].data == b"ran threads on 1"
    # the push's own thread is gone once it answered; the callback thread stays for the next
    wait_for(lambda: _push_threads() == ["libarms-callbacks", "libarms-push-round"], 10,
             "the push thread to end")


def test_a_long_callback_does_not_hold_up_the_tunnel_echo(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    dev = make_device(proxy, cb)
    query = dev.method_query

    def fast_echo_query():
        rc = query()
        dev.ctx.echo_interval = 0.1      # echo every 0.1 s (the proxy offers whole seconds)
        return rc
    dev.method_query = fast_echo_query
    dev.start()
    proxy.wait_reachable()
    slow = asyncio.run_coroutine_threadsafe(
        proxy.proxy.push(DIST, "md-command", P.md_command_body(1, "slow"), timeout=30), proxy.lt.loop)
    wait_for(lambda: ("md_command", 1, b"slow") in cb.calls, 10, "the slow md-command callback")
    before = _echoes(proxy)
    wait_for(lambda: _echoes(proxy) >= before + 5, 10, "echoes while the callback runs")
    cb.md_event.set()
    assert slow.result(30).response.modules[0].data == b"late"
    assert proxy.confirmations() == 1            # one tunnel all along: never rebuilt
    assert not dev.done.is_set()


class AppEventReconfirms(RecordingCallbacks):
    """app_event asks for ``n`` re-confirmations, one per call, then nothing."""

    def __init__(self, n: int):
        super().__init__()
        self.left = n

    def app_event(self):
        with self.lock:
            if self.left:
                self.left -= 1
                return Err.EPUSH
        return 0


def test_rounds_after_rounds_leave_no_descriptor_behind(make_proxy, make_device):
    import os
    from libarms.states import State
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = AppEventReconfirms(8)
    make_device(proxy, cb, app_event_interval=0.1).start()
    wait_for(lambda: cb.states[-1:] == [(State.PUSH_SENDREADY, State.PUSH_WAIT)], 10, "push wait")
    first = len(os.listdir("/proc/self/fd"))
    waits = lambda: sum(1 for _, new in cb.states if new == State.PUSH_WAIT)   # noqa: E731
    wait_for(lambda: cb.left == 0 and waits() == 9, 30, "eight re-confirmations")
    proxy.wait_reachable()
    # each round had a wake-up pipe and a tunnel: both gone with it (a little slack for the
    # proxy's own connections, far below the 16 of eight leaked pipes)
    assert len(os.listdir("/proc/self/fd")) <= first + 4
