"""End to end: an Agent provisioned by the test server enters push wait over the https-tunnel,
and its heartbeats (C sender, the application's statistics, the RS-issued passphrase) are
accepted and stored by the test server's heartbeat receiver; they stop when the loop ends."""

from __future__ import annotations

import threading

from libarms.errors import Err
from libarms.states import State
from libarms.testserver.heartbeat import HeartbeatReceiver
from libarms.testserver.pushservice import PushService
from tests.conftest_pull import DIST, Recorder, make_agent, new_server, pull_pki  # noqa: F401
from tests.conftest_push import free_port, wait_for


class Device(Recorder):
    def __init__(self):
        super().__init__()
        self.hb_calls = 0

    def hb_store_statistics(self, hb):
        self.hb_calls += 1
        hb.set_cpu_usage(0, 42)
        hb.set_mem_usage(0, 65536, 32768)
        hb.set_traffic_rate(1, 2048, 1024, 2, 1, 0, 0)


def _hb_threads():
    return [t for t in threading.enumerate() if t.name == "libarms-heartbeat-stats" and t.is_alive()]


def test_agent_heartbeats_reach_the_test_server_receiver_and_stop_with_the_loop(tmp_path, pull_pki):
    srv = new_server(tmp_path / "server", pull_pki).start()
    try:
        rx = HeartbeatReceiver(str(tmp_path / "hb.db"))
        srv.add_component(rx)
        srv.add_device(DIST, "ls-presharedkey-0123456789", rs_key="rs-presharedkey-abcdef",
                       service={"modules": [{"id": 1001, "version": "1.0.0", "info": "m",
                                             "config": "hostname sa\n"}],
                                "heartbeat": [{"host": "127.0.0.1", "port": rx.port,
                                               "passphrase": "rs-issued-hb-pass", "interval": 1}]})
        srv.add_component(PushService(str(tmp_path / "server"), token="tok",
                                      methods=("https-tunnel",), echo_interval=5,
                                      connect_timeout=10, push_timeout=10))
        cb = Device()
        agent = make_agent(srv, cb)
        agent.pull()
        assert agent.push_method_query() == Err.OK
        result = {}
        t = threading.Thread(target=lambda: result.setdefault("rc", agent.run(free_port())),
                             daemon=True)
        t.start()
        wait_for(lambda: agent.state == State.PUSH_WAIT, 15, "PUSH_WAIT")
        assert rx.wait_for(DIST, 2, timeout=15), rx.counters
        m = rx.latest_metrics(DIST)
        assert m["cpu_usage/0"]["utilization"] == 42
        assert m["mem_usage/0"]["used"] == 65536
        assert m["traffic_rate/1"]["in_octets"] == 2048
        assert rx.counters["bad_digest"] == 0 and rx.counters["unknown_device"] == 0
        assert cb.hb_calls >= 2 and _hb_threads()
        assert agent.stop()
        t.join(15)
        assert not t.is_alive() and result["rc"] == Err.EPULL
        assert not _hb_threads()  # the heartbeat stopped with the event loop
    finally:
        srv.stop()
