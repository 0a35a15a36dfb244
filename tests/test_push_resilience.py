"""Push under trouble: NAT, cut tunnels, lost echoes, slow callbacks, load, rollback."""

from __future__ import annotations

import asyncio

import pytest

from libarms.callbacks import ConfigAction
from libarms.errors import Err
from libarms.protocol import push as P
from libarms.testserver.proxy import PushFailed
from tests.conftest_push import (DIST, RecordingCallbacks, free_port, make_device,  # noqa: F401
                                 make_proxy, pki, wait_for)


def _events(proxy, what):
    return [e for e, d in list(proxy.proxy.events) if e == what]


def test_device_not_reachable_inbound_falls_back_to_the_tunnel(make_proxy, make_device):
    proxy = make_proxy(methods=("https-simple", "https-tunnel"), echo_interval=5)
    proxy.proxy.block_inbound = True          # the device sits behind NAT
    dev = make_device(proxy, port=free_port(), confirm_timeout=1).start()
    proxy.wait_reachable()
    assert _events(proxy, "endpoint unreachable")
    out = proxy.push("md-command", P.md_command_body(1, "behind nat"))
    assert out.via == "tunnel" and out.response.modules[0].data == b"ran behind nat on 1"
    assert dev.ctx.methods == ("https-simple", "https-tunnel")


def test_tunnel_cut_mid_operation_gives_clean_error_then_reconnects(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    dev = make_device(proxy, cb).start()
    proxy.wait_reachable()
    before = proxy.confirmations()
    lt = proxy.lt

    async def cut_during_slow_command():
        task = asyncio.ensure_future(proxy.proxy.push(DIST, "md-command", P.md_command_body(1, "slow"), timeout=10))
        while not any(c[0] == "md_command" for c in cb.calls):
            await asyncio.sleep(0.01)
        assert proxy.proxy.cut_tunnels(DIST) == 1
        with pytest.raises(PushFailed, match="tunnel closed"):
            await task
    lt.call(cut_during_slow_command())
    cb.md_event.set()
    wait_for(lambda: proxy.confirmations() > before, what="re-confirmation after the cut")
    out = proxy.push("md-command", P.md_command_body(1, "after"))
    assert out.result_code == 100 and out.response.modules[0].data == b"ran after on 1"
    assert not dev.done.is_set()


def test_unanswered_echo_drops_and_rebuilds_the_tunnel(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=1)
    proxy.proxy.answer_echo = False
    dev = make_device(proxy).start()
    proxy.wait_reachable()
    wait_for(lambda: len(_events(proxy, "tunnel closed")) >= 1, 10, "tunnel dropped for the echo")
    proxy.proxy.answer_echo = True
    wait_for(lambda: proxy.confirmations() >= 2, 10, "tunnel rebuilt")
    closes = len(_events(proxy, "tunnel closed"))
    echoes = len(_events(proxy, "echo"))
    wait_for(lambda: len(_events(proxy, "echo")) >= echoes + 2, 10, "two answered echoes")
    assert len(_events(proxy, "tunnel closed")) == closes     # answered echoes keep it up
    assert proxy.push("check-transaction").result_code == 100


def test_reconnect_never_gives_up_once_confirmed(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    dev = make_device(proxy, rs_retry_max=1).start()
    proxy.wait_reachable()
    proxy.proxy.refuse_tunnels = True
    proxy.lt.call(_cut(proxy))
    wait_for(lambda: proxy.proxy.refused >= 5, 20, "five refused reconnects")   # > rs_retry_max
    proxy.proxy.refuse_tunnels = False
    proxy.wait_reachable(20)
    assert proxy.push("md-command", P.md_command_body(1, "back")).result_code == 100
    assert not dev.done.is_set()


async def _cut(proxy):
    proxy.proxy.cut_tunnels(DIST)


def test_unconfirmed_tunnel_gives_up_after_retry_max_and_loop_returns_epull(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",))
    proxy.proxy.refuse_tunnels = True
    dev = make_device(proxy, rs_retry_max=2).start()
    assert dev.wait(20) == Err.EPULL
    assert proxy.proxy.refused == 3
    assert dev.ctx.trigger == "retry is over"


def test_overrunning_callback_gets_402_and_agent_keeps_serving(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    make_device(proxy, cb, callback_timeout=0.5).start()
    proxy.wait_reachable()
    out = proxy.push("md-command", P.md_command_body(1, "slow"))
    assert out.result_code == 402
    out = proxy.push("read-status", P.status_body([(1, "x")]))
    assert out.done.modules[0].data == b"status of 1: x"
    cb.md_event.set()


def test_hundred_concurrent_md_commands_to_one_device_all_answered(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    make_device(proxy).start()
    proxy.wait_reachable()

    async def burst():
        return await asyncio.gather(*(proxy.proxy.push(DIST, "md-command", P.md_command_body(1, f"cmd {i}"), timeout=30)
                                      for i in range(100)))
    outs = proxy.lt.call(burst(), 60)
    assert [o.response.modules[0].data for o in outs] == [f"ran cmd {i} on 1".encode() for i in range(100)]


def test_server_refusing_configure_done_makes_device_roll_back_and_report_414(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    proxy.proxy.done_script["configure"] = [401]
    cb = RecordingCallbacks()
    dev = make_device(proxy, cb, state_dir=None).start()
    proxy.wait_reachable()
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "hostname new")]))
    assert out.done.result_code == 414
    assert _events(proxy, "configure-done 100") and _events(proxy, "configure-done 414")
    actions = [c[2] for c in cb.calls if c[0] == "config"]
    assert actions[-2:] == [ConfigAction.PUSH_EXEC_STORED_CONFIG, ConfigAction.PUSH_REVERT_CONFIG]
    proxy.wait_reachable()
    assert not dev.done.is_set()


def test_rollback_failure_ends_loop_with_epull(make_proxy, make_device):
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    cb.exec_fails = cb.revert_fails = True
    dev = make_device(proxy, cb).start()
    proxy.wait_reachable()
    with pytest.raises(PushFailed):
        proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "x")]), timeout=3)
    assert dev.wait() == Err.EPULL
    assert dev.ctx.trigger == "rollback failure"


def test_configs_are_kept_on_disk_candidate_running_backup(make_proxy, make_device, tmp_path):
    from libarms.configstore import ConfigStore
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    make_device(proxy, state_dir=str(tmp_path)).start()
    proxy.wait_reachable()
    proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "first")]))
    proxy.wait_reachable()
    proxy.push("configure", P.configure_body([P.ModuleInfo(1, "3")], [(1, "second")]))
    st = ConfigStore(str(tmp_path))
    assert st.get("running", 1) == b"second" and st.get("backup", 1) == b"first"
    assert st.modules("candidate") == []
    assert not [p for p in tmp_path.rglob("*.tmp.*")]


def test_configure_that_cuts_the_device_off_is_rolled_back_when_confirmation_fails(make_proxy, make_device, tmp_path):
    from libarms.configstore import ConfigStore
    proxy = make_proxy(methods=("https-tunnel",), echo_interval=5)
    cb = RecordingCallbacks()
    make_device(proxy, cb, confirm_timeout=1, rs_retry_max=1, state_dir=str(tmp_path)).start()
    proxy.wait_reachable()
    before = proxy.confirmations()
    proxy.push("configure", P.configure_body([P.ModuleInfo(1, "1")], [(1, "good")]))
    wait_for(lambda: proxy.confirmations() > before, what="confirmation after the first configure")
    proxy.proxy.cut_after_done.add("configure")
    out = proxy.push("configure", P.configure_body([P.ModuleInfo(1, "2")], [(1, "breaks the wan")]))
    assert out.done.result_code == 100
    wait_for(lambda: any(c[0] == "config" and c[2] == ConfigAction.PUSH_REVERT_CONFIG for c in cb.calls),
             10, "rollback after the failed confirmation")
    wait_for(lambda: ConfigStore(str(tmp_path)).get("running", 1) == b"good", 5, "old config running again")
    proxy.proxy.refuse_tunnels = False           # the old config works again
    n = proxy.confirmations()
    wait_for(lambda: proxy.confirmations() > n, 15, "confirmation with the old config")
    assert proxy.push("md-command", P.md_command_body(1, "x")).result_code == 100
