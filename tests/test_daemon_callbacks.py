"""armsd's callbacks call the documented hooks with the documented arguments (§5.4)."""

import os

import pytest
from conftest_daemon import DISTID, RecordingHeartbeat, hooks  # noqa: F401

from libarms import (AppExecError, ConfigAction, ConfigKind, Err, Frag, Line, LineAction,
                     LineStatus, LineType, ModSyncRequired, State)
from libarms._record import replace
from libarms.daemon.app import ArmsdCallbacks, HookError, as_text
from libarms.daemon.config import parse_config
from libarms.daemon.hooks import HookRunner
from libarms.daemon.modules import ModuleStore

BOTH = Frag.FIRST | Frag.FINISHED


def make(tmp_path, scripts=None, **extra):
    text = f"distribution-id: {DISTID}\n" + "".join(f"{k}: {v}\n" for k, v in
                                                     (scripts or {}).items())
    text += "".join(f"{k.replace('_', '-')}: {v}\n" for k, v in extra.items())
    cfg = parse_config(text)
    cfg = replace(cfg, path_work_dir=str(tmp_path / "work"))
    store = ModuleStore(cfg.path_work_dir)
    store.prepare()
    return ArmsdCallbacks(cfg, HookRunner(DISTID, cfg.timeout, 0.5), store)


@pytest.mark.parametrize("code, status", [(128, LineStatus.NEEDPOLL), (129, LineStatus.CONNECTED),
                                          (130, LineStatus.DISCONNECTED),
                                          (131, LineStatus.TIMEOUT), (132, LineStatus.AUTHFAIL)])
def test_line_hook_exit_codes_map_to_line_status(tmp_path, hooks, code, status):
    cb = make(tmp_path, {"script-line-ctrl": hooks.make("line", f"exit {code}")})
    assert cb.line_ctrl(LineAction.CONNECT, Line(LineType.DHCP, 3)) == status
    assert hooks.calls("line") == [f"[connect][dhcp][3] env={DISTID}"]


@pytest.mark.parametrize("code", [0, 1, 133])
def test_line_hook_other_exit_codes_abort_the_pull(tmp_path, hooks, code):
    cb = make(tmp_path, {"script-line-ctrl": hooks.make("line", f"exit {code}")})
    with pytest.raises(HookError, match="128..132"):
        cb.line_ctrl(LineAction.STATUS, Line(LineType.RA, 0))


def test_line_hook_gets_pppoe_and_mobile_credentials_in_armsd_order(tmp_path, hooks):
    cb = make(tmp_path, {"script-line-ctrl": hooks.make("line", "exit 130")})
    cb.line_ctrl(LineAction.DISCONNECT, Line(LineType.PPPOE_IPV6, 1, pppoe_id="u@isp",
                                             pppoe_pass="pw1"))
    cb.line_ctrl(LineAction.CONNECT, Line(LineType.MOBILE, 2, pppoe_id="mid", pppoe_pass="mpw",
                                          telno="*99#", cid=3, apn="apn.x", pdp="ip"))
    assert hooks.calls("line") == [
        f"[disconnect][pppoe6][1][u@isp][pw1] env={DISTID}",
        f"[connect][mobile][2][mid][mpw][*99#][3][apn.x][ip] env={DISTID}"]


def test_line_hook_timeout_aborts_the_pull(tmp_path, hooks):
    cb = make(tmp_path, {"script-line-ctrl": hooks.make("line", "sleep 30")}, timeout="0.3")
    with pytest.raises(HookError, match="timeout"):
        cb.line_ctrl(LineAction.CONNECT, Line(LineType.DHCP, 0))


def test_static_lines_and_missing_line_hook_are_taken_as_up(tmp_path, hooks):
    cb = make(tmp_path, {"script-line-ctrl": hooks.make("line", "exit 131")})
    assert cb.line_ctrl(LineAction.CONNECT, Line(LineType.STATIC, 0, ipaddr="192.0.2.1")) \
        == LineStatus.CONNECTED
    assert hooks.calls("line") == []
    bare = make(tmp_path)
    assert bare.line_ctrl(LineAction.CONNECT, Line(LineType.DHCP, 0)) == LineStatus.CONNECTED
    assert bare.line_ctrl(LineAction.DISCONNECT, Line(LineType.DHCP, 0)) == \
        LineStatus.DISCONNECTED


def test_pulled_config_in_fragments_runs_start_hook_then_becomes_running(tmp_path, hooks):
    seen = os.path.join(hooks.dir, "seen")
    cb = make(tmp_path, {"script-start": hooks.make("start", f"cat \"$4\" > '{seen}'")})
    cb.config(1001, "1.0.0", "loc", ConfigAction.PULL_STORE_CONFIG, b"hostname ", Frag.FIRST)
    cb.config(1001, "1.0.0", "loc", ConfigAction.PULL_STORE_CONFIG, b"sa\n", Frag.FINISHED)
    (call,) = hooks.calls("start")
    assert call.startswith("[1001][1.0.0][loc][" + str(tmp_path / "work" / "tmp"))
    assert open(seen, "rb").read() == b"hostname sa\n"
    for kind in ("running", "backup", "startup"):
        assert cb.store.read(kind, 1001) == b"hostname sa\n"
    assert os.listdir(tmp_path / "work" / "tmp") == []


def _with_running(tmp_path, hooks, reconfig_body):
    cb = make(tmp_path, {"script-reconfig": hooks.make("reconfig", reconfig_body),
                         "script-stop": hooks.make("stop")})
    cb.config(5, "1", "i", ConfigAction.PULL_STORE_CONFIG, b"old", BOTH)
    cb.config(5, "2", "i2", ConfigAction.PUSH_STORE_CONFIG, b"new", BOTH)
    assert cb.store.read("candidate", 5) == b"new"
    return cb


def test_commit_runs_reconfig_with_candidate_and_swaps_files(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, "exit 0")
    cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)
    assert hooks.calls("reconfig") == [
        f"[5][2][i2][{cb.store.path('candidate', 5)}] env={DISTID}"]
    assert cb.store.read("running", 5) == b"new" and cb.store.read("backup", 5) == b"old"
    assert cb.store.meta[5] == {"version": "2", "info": "i2"}


def test_reconfig_exit_128_asks_for_module_sync(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, "exit 128")
    with pytest.raises(ModSyncRequired):
        cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)


def test_failed_commit_then_revert_restores_backup_and_calls_reconfig(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, '[ "$2" = 2 ] && exit 1; exit 0')
    with pytest.raises(HookError, match="exit 1"):
        cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)
    cb.config(0, "", "", ConfigAction.PUSH_REVERT_CONFIG, b"", BOTH)
    assert cb.store.read("running", 5) == b"old"
    assert hooks.calls("reconfig")[-1] == \
        f"[5][1][i][{cb.store.path('backup', 5)}] env={DISTID}"


def test_remove_module_runs_stop_and_deletes_files_unless_stopping(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, "exit 0")
    cb.stopping = True
    cb.config(5, "", "", ConfigAction.REMOVE_MODULE, b"", BOTH)
    assert hooks.calls("stop") == [] and cb.store.exists("running", 5)
    cb.stopping = False
    cb.config(5, "", "", ConfigAction.REMOVE_MODULE, b"", BOTH)
    assert hooks.calls("stop") == [f"[5] env={DISTID}"]
    assert cb.store.module_ids() == []


def test_state_change_runs_hook_with_state_names(tmp_path, hooks):
    cb = make(tmp_path, {"script-state-changed": hooks.make("state", "exit 3")})
    cb.state(State.RSPULL, State.PULLDONE)
    cb.state(State.PULLDONE, State.PUSH_SENDREADY)
    assert cb.flush_state_hooks(30)
    assert hooks.calls("state") == [f"[RSPULL][PULLDONE] env={DISTID}",
                                   f"[PULLDONE][PUSH_SENDREADY] env={DISTID}"]
    assert cb.tracker.state == State.PUSH_SENDREADY


def test_a_slow_state_hook_does_not_hold_up_the_agent(tmp_path, hooks):
    # The hook waits for a file the test creates only after state() has returned: were the
    # hook run synchronously, state() would block until the hook timed out and was killed.
    release = os.path.join(hooks.dir, "release")
    body = (f"i=0; while [ ! -e '{release}' ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done; "
            f"[ -e '{release}' ] && echo released >> '{hooks.log}'")
    cb = make(tmp_path, {"script-state-changed": hooks.make("state", body)}, timeout="5")
    cb.state(State.PUSH_SENDREADY, State.PUSH_WAIT)
    open(release, "w").close()
    assert cb.flush_state_hooks(30)
    assert hooks.calls() == [f"state [PUSH_SENDREADY][PUSH_WAIT] env={DISTID}", "released"]


def test_md_command_passes_request_file_and_returns_result_file(tmp_path, hooks):
    body = 'cat "$2" > "$3"; printf " done" >> "$3"; [ "$(cat "$2")" = fail ] && exit 4; exit 0'
    cb = make(tmp_path, {"script-command": hooks.make("cmd", body)})
    assert cb.md_command(9, b"show version") == "show version done"
    with pytest.raises(AppExecError) as e:
        cb.md_command(9, b"fail")
    assert e.value.output == "fail done"
    assert hooks.calls("cmd")[0].startswith("[9][")


def test_md_command_timeout_is_an_error_not_an_exec_error(tmp_path, hooks):
    cb = make(tmp_path, {"script-command": hooks.make("cmd", "sleep 30")}, timeout="0.3")
    with pytest.raises(HookError, match="timeout"):
        cb.md_command(1, b"x")


def test_status_text_mode_replaces_unsafe_bytes_and_binary_mode_keeps_them(tmp_path, hooks):
    body = "printf 'ok\\001\\377\\n' > \"$3\""
    cb = make(tmp_path, {"script-status": hooks.make("status", body)})
    assert cb.get_status(1, b"") == "ok@@\n"
    cb_bin = make(tmp_path, {"script-status": hooks.make("status", body)}, binary=1)
    assert cb_bin.get_status(1, b"") == b"ok\x01\xff\n"


def test_status_and_clear_failures_are_errors(tmp_path, hooks):
    cb = make(tmp_path, {"script-status": hooks.make("status", "exit 1"),
                         "script-clear": hooks.make("clear", "exit 2")})
    with pytest.raises(HookError):
        cb.get_status(1, b"q")
    with pytest.raises(HookError):
        cb.clear_status(1, b"q")


def test_unconfigured_request_hooks_are_reported_as_not_supported(tmp_path, hooks):
    cb = make(tmp_path)
    assert not cb.supports("get_status") and not cb.supports("md_command")
    assert not cb.supports("clear_status") and not cb.supports("app_event")
    assert cb.supports("read_config") and cb.supports("hb_store_statistics")
    assert make(tmp_path, {"script-command": hooks.make("c")}).supports("md_command")


def test_read_config_returns_each_kind_and_fails_for_missing(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, "exit 0")
    assert cb.read_config(5, ConfigKind.CANDIDATE) == "new"
    assert cb.read_config(5, ConfigKind.RUNNING) == "old"
    with pytest.raises(HookError, match="no running config"):
        cb.read_config(77, ConfigKind.RUNNING)


def test_ping_and_traceroute_hooks_are_parsed(tmp_path, hooks):
    cb = make(tmp_path, {
        "script-ping": hooks.make("ping", 'echo "$2 packets transmitted, 2 received, 33% loss"'),
        "script-traceroute": hooks.make("tr", "echo 'traceroute to x'; echo ' 1 192.0.2.1 1 ms'; "
                                              "echo ' 2 198.51.100.1 2 ms'")})
    r = cb.ping("127.0.0.1", 3, 56)
    assert (r.success, r.failure) == (2, 1)
    assert [(h.hop, h.addr) for h in cb.traceroute("::1", 1, 30)] == \
        [(1, "192.0.2.1"), (2, "198.51.100.1")]
    assert hooks.calls("tr") == [f"[::1][1][30] env={DISTID}"]
    with pytest.raises(HookError, match="numeric"):
        cb.ping("example.com", 1, 56)


def test_app_event_failure_asks_to_redo_push_confirmation(tmp_path, hooks):
    assert make(tmp_path, {"script-app-event": hooks.make("ev", "exit 0")}).app_event() == 0
    assert make(tmp_path, {"script-app-event": hooks.make("ev", "exit 1")}).app_event() \
        == Err.EPUSH
    assert make(tmp_path).app_event() == 0


def test_heartbeat_hook_output_fills_the_heartbeat(tmp_path, hooks):
    cb = make(tmp_path, {"script-heartbeat": hooks.make("hb", "echo 'cpu_usage 0 12'")})
    hb = RecordingHeartbeat()
    cb.hb_store_statistics(hb)
    assert hb.calls == [("cpu_usage", 0, 12)]


def test_without_heartbeat_hook_the_linux_collector_reports_memory(tmp_path):
    hb = RecordingHeartbeat()
    make(tmp_path).hb_store_statistics(hb)
    assert len(hb.by_name("mem_usage")) == 1


def test_text_mode_keeps_tabs_and_newlines():
    assert as_text(b"a\tb\r\nc\x7f") == "a\tb\r\nc@"


def test_commit_applies_only_the_candidates_of_this_configure(tmp_path, hooks):
    cb = _with_running(tmp_path, hooks, "exit 0")
    cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)
    # a candidate file nobody stored in this push (left over) is not committed
    cb.store.install(cb.store.new_tmp(b"stale"), "candidate", 5)
    cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)
    assert len(hooks.calls("reconfig")) == 1 and cb.store.read("running", 5) == b"new"


def test_rollback_of_a_module_added_by_the_push_stops_and_removes_it(tmp_path, hooks):
    cb = make(tmp_path, {"script-reconfig": hooks.make("reconfig", "exit 1"),
                         "script-stop": hooks.make("stop")})
    cb.config(9, "1", "new", ConfigAction.PUSH_STORE_CONFIG, b"fresh", BOTH)
    with pytest.raises(HookError):
        cb.config(0, "", "", ConfigAction.PUSH_EXEC_STORED_CONFIG, b"", BOTH)
    cb.config(0, "", "", ConfigAction.PUSH_REVERT_CONFIG, b"", BOTH)
    assert hooks.calls("stop") == [f"[9] env={DISTID}"]
    assert not cb.store.exists("running", 9) and 9 not in cb.store.module_ids()


def test_a_candidate_left_by_a_killed_armsd_is_dropped_on_start(tmp_path):
    st = ModuleStore(str(tmp_path / "w"))
    st.prepare()
    st.install(st.new_tmp(b"half-pushed"), "candidate", 3)
    again = ModuleStore(str(tmp_path / "w"))
    again.prepare()
    assert not again.exists("candidate", 3)
