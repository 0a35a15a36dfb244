"""Push over the https-tunnel: real TLS on loopback, the real event loop, the test proxy."""

from __future__ import annotations

import pytest

from libarms.callbacks import ConfigAction, ConfigKind
from libarms.errors import Err
from libarms.protocol import push as P
from libarms.states import State
from tests.conftest_push import DIST, RecordingCallbacks, make_device, make_proxy, pki, wait_for  # noqa: F401


@pytest.fixture
def tunnel(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=2)
    dev = make_device(proxy).start()
    proxy.wait_reachable()
    return proxy, dev


def test_tunnel_confirms_and_device_reaches_push_wait(tunnel):
    proxy, dev = tunnel
    assert dev.ctx.methods == ("https-tunnel",)
    assert dev.ctx.tunnel_urls == (proxy.proxy.tunnel_url,)
    assert dev.ctx.echo_interval == 2
    wait_for(lambda: (State.PUSH_SENDREADY, State.PUSH_WAIT) in dev.cb.states, what="PUSH_WAIT")


def test_md_command_round_trip_over_tunnel(tunnel):
    proxy, dev = tunnel
    out = proxy.push("md-command", P.md_command_body(1, "show status"))
    assert out.via == "tunnel"
    assert out.result_code == 100
    assert out.response.modules == (P.ModuleResult(1, 100, b"ran show status on 1"),)


def test_md_command_errors_map_to_102_and_402_and_agent_keeps_serving(tunnel):
    proxy, _ = tunnel
    out = proxy.push("md-command", P.md_command_body(1, "fail"))
    assert out.result_code == 102 and out.response.modules[0].data == b"exit status 1"
    out = proxy.push("md-command", P.md_command_body(1, "crash"))
    assert out.result_code == 402 and out.response.modules == ()
    out = proxy.push("md-command", P.md_command_body(2, "bin"))
    assert out.response.modules == (P.ModuleResult(2, 100, bytes(range(256)), True),)


def test_async_methods_round_trip_with_done_requests(tunnel):
    proxy, dev = tunnel
    out = proxy.push("read-status", P.status_body([(1, "interface lan0"), (7, b"\x00bin")]))
    assert out.done is not None and out.done.transaction_id == out.response.transaction_id
    assert [(m.id, m.result, m.data) for m in out.done.modules] == [
        (1, 100, b"status of 1: interface lan0"), (7, 100, b"status of 7: \x00bin".replace(b"\x00", b"?"))]
    out = proxy.push("clear-status", P.status_body([(3, "")]))
    assert out.done.modules == (P.ModuleResult(3, 100, b"counters cleared"),)
    out = proxy.push("ping", P.ping_body("192.0.2.1", 4, 64))
    assert (out.result_code, out.done.success, out.done.failure) == (100, 4, 0)
    out = proxy.push("traceroute", P.traceroute_body("198.51.100.1", 3, 30))
    assert out.done.hops == ((1, "192.0.2.254"), (2, "198.51.100.1"))
    out = proxy.push("read-storage", P.read_storage_body("backup"))
    assert out.done.modules == (P.ModuleResult(1, 100, b"config 1 backup"),)
    assert ("read_config", 1, ConfigKind.BACKUP) in dev.cb.calls


def test_sync_methods_answer_from_agent_data(tunnel):
    proxy, _ = tunnel
    out = proxy.push("read-module-list")
    assert out.response.module_list == (P.ModuleInfo(1, "1.0", "mod1"),)
    out = proxy.push("check-transaction")
    assert out.response.transaction_ids[0] == 0
    out = proxy.push("dump-debug")
    assert out.response.modules[0].data == b"debug: all fine"


def test_malformed_push_gets_error_result_and_agent_stays_alive(tunnel):
    proxy, _ = tunnel
    out = proxy.push("md-command", b'<md-command id="1">a</md-command><md-command id="2">b</md-command>')
    assert out.result_code == 422
    out = proxy.push("ping", b"<count>3</count>")
    assert out.result_code == 203 and out.response.transaction_id
    out = proxy.push("md-command", P.md_command_body(1, "still alive"))
    assert out.result_code == 100


def test_configure_stores_commits_and_reconfirms(tunnel):
    proxy, dev = tunnel
    before = proxy.confirmations()
    body = P.configure_body([P.ModuleInfo(1, "1.1", "mod1"), P.ModuleInfo(2, "2.0", "mod2")],
                            [(1, "hostname gw1"), (2, b"\x01\x02")])
    out = proxy.push("configure", body)
    assert out.result_code == 100 and out.done.result_code == 100
    calls = [c for c in dev.cb.calls if c[0] == "config"]
    assert calls[:3] == [("config", 1, ConfigAction.PUSH_STORE_CONFIG, b"hostname gw1", 3),
                         ("config", 2, ConfigAction.PUSH_STORE_CONFIG, b"\x01\x02", 3),
                         ("config", 0, ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", 0)]
    proxy.wait_reachable()
    # a successful configure re-runs the confirmation
    import time
    deadline = time.monotonic() + 10
    while proxy.confirmations() <= before and time.monotonic() < deadline:
        proxy.wait_reachable(1)
        time.sleep(0.05)
    assert proxy.confirmations() > before
    out = proxy.push("read-module-list")
    assert [m.id for m in out.response.module_list] == [1, 2]


def test_failed_commit_rolls_back_and_reports_414(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",))
    cb = RecordingCallbacks()
    cb.exec_fails = True
    make_device(proxy, cb).start()
    proxy.wait_reachable()
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "9")], [(1, "bad")]))
    assert out.done.result_code == 414
    actions = [c[2] for c in cb.calls if c[0] == "config"]
    assert actions[-2:] == [ConfigAction.PUSH_EXEC_STORED_CONFIG, ConfigAction.PUSH_REVERT_CONFIG]
    assert proxy.push("md-command", P.md_command_body(1, "x")).result_code == 100


def test_reboot_ends_loop_with_ereboot_and_closes_tunnel(tunnel):
    proxy, dev = tunnel
    out = proxy.push("reboot")
    assert out.result_code == 100
    assert dev.wait() == Err.EREBOOT
    assert dev.ctx.trigger == "Reboot requested by RS"
    assert dev.cb.states[-1][1] == State.PUSH_REBOOT


def test_pull_config_ls_ends_loop_with_epull(tunnel):
    proxy, dev = tunnel
    proxy.push("pull-config", P.pull_config_body("LS"))
    assert dev.wait() == Err.EPULL
    assert dev.ctx.clear_rs_endpoint is True


def test_commit_needing_module_sync_reports_303_then_loop_returns_ereboot(make_proxy, make_device):
    from libarms.errors import ModSyncRequired

    class Sync(RecordingCallbacks):
        def config(self, module_id, version, info, action, data, flags):
            super().config(module_id, version, info, action, data, flags)
            if action == ConfigAction.PUSH_EXEC_STORED_CONFIG:
                raise ModSyncRequired()
    proxy = make_proxy(methods=("https-tunnel",))
    dev = make_device(proxy, Sync()).start()
    proxy.wait_reachable()
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2.0", "new firmware")], [(1, "x")]))
    assert out.done.result_code == 303
    assert dev.wait() == Err.EREBOOT


def test_app_event_pull_ends_the_loop_and_push_reconfirms(make_proxy, make_device):
    class App(RecordingCallbacks):
        answers = [Err.EPUSH, Err.EPULL]

        def app_event(self):
            return self.answers.pop(0) if self.answers else 0
    proxy = make_proxy(methods=("https-tunnel",))
    dev = make_device(proxy, App(), app_event_interval=0.3).start()
    assert dev.wait() == Err.EPULL
    assert proxy.confirmations() >= 2      # EPUSH re-ran the confirmation before EPULL ended it


def test_tunnel_through_web_proxy_and_simple_not_offered(make_proxy, make_device):
    from tests.conftest_pull import ConnectProxy
    web = ConnectProxy()
    try:
        proxy = make_proxy(methods=("https-simple", "https-tunnel"), echo_interval=5)
        dev = make_device(proxy, https_proxy=web.url).start()
        proxy.wait_reachable()
        assert proxy.push("md-command", P.md_command_body(1, "via proxy")).via == "tunnel"
        port = proxy.proxy.port
        assert all(r.startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
                   for r in web.requests) and len(web.requests) >= 2   # method query + tunnel
        mq = [e for e, _ in proxy.proxy.events if e == "method-query"]
        assert mq and dev.ctx.methods == ("https-simple", "https-tunnel")
    finally:
        web.close()


def test_big_config_and_big_output_span_many_chunks(make_proxy, make_device):
    class Big(RecordingCallbacks):
        def md_command(self, module_id, command):
            return "x" * 50_000 if command == b"big-text" else bytes(range(256)) * 200
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = Big()
    make_device(proxy, cb).start()
    proxy.wait_reachable()
    cfg = bytes(range(256)) * 400                      # 100 KiB binary config
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, cfg)]))
    assert out.done.result_code == 100
    assert [c[3] for c in cb.calls if c[0] == "config" and c[2] == ConfigAction.PUSH_STORE_CONFIG] == [cfg]
    out = proxy.push("md-command", P.md_command_body(1, "big-text"))
    assert out.response.modules[0].data == b"x" * 50_000
    out = proxy.push("md-command", P.md_command_body(1, "big-bin"))
    assert out.response.modules[0].data == bytes(range(256)) * 200 and out.response.modules[0].binary


def test_proxy_holds_tunnels_of_many_devices_and_pushes_to_each(make_proxy, make_device):
    import asyncio
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    dists = [f"0001-0000-0000-0000-0000-0000-0000-{i:04X}" for i in range(1, 13)]
    for d in dists:
        make_device(proxy, dist=d).start()

    async def all_devices():
        for d in dists:
            await proxy.proxy.wait_reachable(d, 20)
        return await asyncio.gather(*(proxy.proxy.push(d, "md-command", P.md_command_body(1, d), timeout=20)
                                      for d in dists))
    outs = proxy.lt.call(all_devices(), 60)
    assert [o.response.modules[0].data for o in outs] == [f"ran {d} on 1".encode() for d in dists]


def test_operations_in_flight_show_in_check_transaction_while_a_callback_runs(make_proxy, make_device):
    import asyncio
    import threading

    class SlowPing(RecordingCallbacks):
        gate = threading.Event()
        started = threading.Event()

        def ping(self, dst, count, size):
            self.started.set()
            self.gate.wait(20)
            return super().ping(dst, count, size)
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = SlowPing()
    make_device(proxy, cb).start()
    proxy.wait_reachable()
    from tests.conftest_push import DIST as D

    async def scenario():
        ping = asyncio.ensure_future(proxy.proxy.push(D, "ping", P.ping_body("192.0.2.1", 2, 56), timeout=20))
        while not cb.started.is_set():
            await asyncio.sleep(0.01)
        listed = await proxy.proxy.push(D, "check-transaction", timeout=10)
        modules = await proxy.proxy.push(D, "read-module-list", timeout=10)
        cb.gate.set()
        return listed, modules, await ping
    listed, modules, ping = proxy.lt.call(scenario(), 40)
    assert ping.response.transaction_id in listed.response.transaction_ids
    assert modules.result_code == 100 and ping.done.success == 2


def test_callbacks_api_version_4_makes_the_loop_run_the_method_query(make_proxy, make_device):
    from libarms import push

    class Old(RecordingCallbacks):
        version = 4
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    dev = make_device(proxy, Old())
    import threading
    t = threading.Thread(target=lambda: setattr(dev, "result", push.event_loop(dev.ctx)), daemon=True)
    dev.thread = t
    t.start()
    proxy.wait_reachable()
    assert dev.ctx.methods == ("https-tunnel",)
    proxy.push("reboot")
    t.join(15)
    dev.done.set()
    assert dev.result == Err.EREBOOT


def test_several_tunnels_are_independent(make_proxy, make_device):
    a = make_proxy(methods=("https-tunnel",), echo_interval=5)
    b = make_proxy(methods=("https-tunnel",), echo_interval=5)
    a.proxy.extra_tunnel_urls.append(b.proxy.tunnel_url)
    dev = make_device(a).start()
    a.wait_reachable()
    b.wait_reachable()
    assert dev.ctx.tunnel_urls == (a.proxy.tunnel_url, b.proxy.tunnel_url)
    a.proxy.refuse_tunnels = True
    a.lt.call(_cut(a))
    # tunnel 0 is down and being retried; tunnel 1 still carries pushes
    assert b.push("md-command", P.md_command_body(1, "via b")).response.modules[0].data == b"ran via b on 1"
    a.proxy.refuse_tunnels = False
    a.wait_reachable(15)
    assert a.push("md-command", P.md_command_body(1, "via a")).result_code == 100


async def _cut(h):
    h.proxy.cut_tunnels(DIST)
