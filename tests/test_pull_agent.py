"""The two-stage pull end to end: real TLS on loopback against the test server."""

import pytest

from conftest_pull import (DIST, LS_KEY, Recorder, closed_port, make_agent, new_server,  # noqa: F401
                           pull_pki, pull_server, utc, write_server_cert)
from libarms import Agent, ArmsError, Err, Line, LineStatus, LineType, State
from libarms.transport import tls as tls_mod


def test_two_stage_pull_switches_lines_in_order_and_delivers_the_config(pull_server):
    pull_server.db.set_location(DIST, lines=[{"type": "dhcp", "ifindex": 2}])
    # stage-1 line needs polling: NEEDPOLL on connect, then NEEDPOLL once more, then up
    cb = Recorder(line_script=[LineStatus.NEEDPOLL, LineStatus.NEEDPOLL, LineStatus.CONNECTED])
    a = make_agent(pull_server, cb)
    a.pull(lines=[Line(LineType.PPPOE, 1, pppoe_id="user@isp", pppoe_pass="pw")])
    assert a.state == State.PULLDONE
    assert cb.events == [
        ("state", "INITIAL", "LSPULL"),
        ("line", "CONNECT", "PPPOE", 1, "NEEDPOLL"),
        ("line", "STATUS", "PPPOE", 1, "NEEDPOLL"),
        ("line", "STATUS", "PPPOE", 1, "CONNECTED"),
        ("line", "DISCONNECT", "PPPOE", 1, "DISCONNECTED"),
        ("state", "LSPULL", "RSPULL"),
        ("line", "CONNECT", "DHCP", 2, "CONNECTED"),
        ("config", 1001, "PULL_STORE_CONFIG", 3),
        ("line", "DISCONNECT", "DHCP", 2, "DISCONNECTED"),
        ("state", "RSPULL", "PULLDONE"),
    ]
    assert cb.configs[0][:3] == (1001, "1.0.0", "module-1001-location")
    assert cb.configs[0][4] == b"hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n"
    c = a.ctx
    assert c.rs_endpoint == pull_server.rs_url and c.rs_key == "rs-presharedkey-abcdef"
    assert c.sa_cert_pem.startswith("-----BEGIN CERTIFICATE-----") and c.sa_key_pem
    assert c.rs_pull_urls == [pull_server.rs_url] and c.rs_pull_1st == 0
    assert c.proposed_push_port == 10443 and c.push_addresses == ["127.0.0.1"]
    assert a.get_rs_url() == [pull_server.rs_url] and a.get_rsinfo() == ["127.0.0.1"]
    assert (a.get_proposed_push_port(), a.get_proposed_push_timeout()) == (10443, 60)
    assert a.get_ls_url() == [pull_server.ls_url] and a.get_hbtinfo() == [] and a.get_rs_tunnel_url() == []
    served = [(r["role"], r["type"], r["trig"]) for r in pull_server.db.requests(DIST)]
    assert served == [("ls", "rs-solicitation", "power on boot"),
                      ("rs", "config-solicitation", "power on boot")]


def test_anonymous_pppoe_line_gets_the_initial_config_account(pull_server):
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.load_config(f"{pull_server.ls_url}\n\n1\n1\n\nanon@isp.example\nanonpw\n")
    seen = []
    orig = cb.line_ctrl
    cb.line_ctrl = lambda action, line: (seen.append(line), orig(action, line))[1]
    a.pull(lines=[Line(LineType.ANONPPPOE, 3)])
    assert seen[0] == Line(LineType.PPPOE, 3, pppoe_id="anon@isp.example", pppoe_pass="anonpw")


def test_config_arrives_in_fragments_with_first_and_finished_flags(pull_server):
    cb = Recorder()
    make_agent(pull_server, cb).pull(fragment=16)
    parts = [(c[4], c[5]) for c in cb.configs]
    assert b"".join(p for p, _ in parts) == b"hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n"
    assert [f for _, f in parts] == [1, 0, 0, 2] and all(len(p) <= 16 for p, _ in parts)


def test_rs_pull_falls_back_to_second_rs_when_first_refuses(pull_server):
    first = pull_server.url("rs", "/rs-a.cgi")
    pull_server.db.set_location(DIST, rs_urls=[first, pull_server.rs_url])
    pull_server.set_override("/rs-a.cgi", result=301)
    a = make_agent(pull_server)
    a.pull()
    assert a.ctx.rs_endpoint == pull_server.rs_url and a.ctx.current_rs == 1
    served = [(r["path"], r["result_code"]) for r in pull_server.db.requests(DIST, "config-solicitation")]
    assert served == [("/rs-a.cgi", 301), ("/rs.cgi", 100)]


def test_unreachable_first_rs_is_skipped_within_the_round(pull_server):
    dead = f"https://127.0.0.1:{closed_port()}/rs.cgi"
    pull_server.db.set_location(DIST, rs_urls=[dead, pull_server.rs_url])
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()
    assert a.ctx.rs_endpoint == pull_server.rs_url
    assert any(code == 103 and dead in m for code, m in cb.logs)


def test_ls_unreachable_retries_every_round_then_fails_with_emaxretry(pull_server):
    cb = Recorder()
    a = make_agent(pull_server, cb, ls_url=f"https://127.0.0.1:{closed_port()}/arms.cgi", retry_max=2,
                   ls_retry_max_factor=1)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == Err.EMAXRETRY
    assert [c for c, _ in cb.logs].count(8) == 2          # "LS retry(i/2)" before rounds 2 and 3
    assert sum(1 for ev in cb.events if ev[:2] == ("line", "CONNECT")) == 3
    assert a.state == State.BOOT_FAIL and cb.states() == ["LSPULL", "BOOT_FAIL"]
    assert "ConnectionRefused" in str(e.value)


def test_rs_that_keeps_failing_sends_the_agent_back_to_the_ls(pull_server):
    pull_server.db.set_location(DIST, rs_retry_max=1, rs_retry_interval=0)
    pull_server.set_override("/rs.cgi", result=401, times=2)     # both RS rounds fail
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()
    assert cb.states() == ["LSPULL", "RSPULL", "LSPULL", "RSPULL", "PULLDONE"]
    assert [r["type"] for r in pull_server.db.requests(DIST)] == [
        "rs-solicitation", "config-solicitation", "config-solicitation",
        "rs-solicitation", "config-solicitation"]


@pytest.mark.parametrize("code,err", [(503, Err.EREBOOT), (501, Err.EDONTRETRY), (502, Err.EPULL),
                                      (507, Err.EREBOOT), (508, Err.EREBOOT), (599, Err.EREBOOT),
                                      (201, Err.EREBOOT)])
def test_ls_stop_results_end_the_pull_with_the_documented_code(pull_server, code, err):
    pull_server.db.set_location(DIST, result=code)
    a = make_agent(pull_server)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == err and a.state == State.BOOT_FAIL


def test_rs_result_503_is_the_reboot_outcome(pull_server):
    pull_server.db.set_service(DIST, result=503)
    cb = Recorder()
    a = make_agent(pull_server, cb)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == Err.EREBOOT
    assert cb.states() == ["LSPULL", "RSPULL", "BOOT_FAIL"]
    assert a.ctx.trigger == "received 503 Need reboot"


def test_rs_result_502_falls_back_to_the_ls(pull_server):
    pull_server.set_override("/rs.cgi", result=502, times=1)
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()
    assert cb.states() == ["LSPULL", "RSPULL", "LSPULL", "RSPULL", "PULLDONE"]
    assert [r["trig"] for r in pull_server.db.requests(DIST, "rs-solicitation")] == [
        "power on boot", "received 502 Push failed"]


ENTITY_BOMB = (b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY x "xxxxxxxx"><!ENTITY y "&x;&x;&x;">]>'
               b'<arms-message><arms-response type="rs-solicitation"><result-code>100</result-code>'
               b'<description>&y;</description></arms-response></arms-message>')


@pytest.mark.parametrize("raw,why", [
    (b"<arms-message><arms-response type=\"rs-solicitation\"><result-code>100", "not complete|well-formed"),
    (ENTITY_BOMB, "DTD|entity"),
    (b"<arms-message>" + b" " * (80 * 1024) + b"</arms-message>", "too large|larger"),
])
def test_malformed_oversized_or_entity_answers_are_protocol_errors_and_agent_goes_on(pull_server, raw, why):
    import re
    pull_server.set_override("/arms.cgi", raw=raw, times=1)
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()                                  # round 1 fails on the bad answer, round 2 succeeds
    assert a.state == State.PULLDONE
    errs = [m for c, m in cb.logs if "ProtocolError" in m]
    assert errs and re.search(why, errs[0]), cb.log_text()


def test_config_rejected_by_the_application_is_retried_with_trigger_invalid_config(pull_server):
    pull_server.db.set_location(DIST, rs_retry_max=1, rs_retry_interval=0)
    cb = Recorder(refuse_config=1)
    a = make_agent(pull_server, cb)
    a.pull()
    assert [r["trig"] for r in pull_server.db.requests(DIST, "config-solicitation")] == [
        "power on boot", "invalid config"]


def test_invalid_line_callback_value_aborts_with_ecallback(pull_server):
    cb = Recorder(line_script=[99])
    a = make_agent(pull_server, cb)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == Err.ECALLBACK and a.state == State.BOOT_FAIL


def test_line_that_fails_authentication_moves_to_the_next_line(pull_server):
    cb = Recorder(line_script=[LineStatus.AUTHFAIL])
    a = make_agent(pull_server, cb)
    a.pull(lines=[Line(LineType.PPPOE, 1), Line(LineType.DHCP, 2)])
    ls_lines = [(e[2], e[4]) for e in cb.events[:5] if e[0] == "line"]
    assert ls_lines[:3] == [("PPPOE", "AUTHFAIL"), ("PPPOE", "DISCONNECTED"), ("DHCP", "CONNECTED")]
    assert any(c == 120 for c, _ in cb.logs)


def test_restore_state_starts_at_the_last_good_rs_and_skips_the_ls(pull_server):
    first = pull_server.url("rs", "/rs-a.cgi")
    pull_server.db.set_location(DIST, rs_urls=[first, pull_server.rs_url])
    pull_server.set_override("/rs-a.cgi", result=301)
    a = make_agent(pull_server)
    a.pull()
    blob = a.dump_state()
    before = len(pull_server.db.requests(DIST))
    cb = Recorder()
    b = make_agent(pull_server, cb)                 # a rebooted device
    b.restore_state(blob)
    b.pull()
    after = [(r["type"], r["path"]) for r in pull_server.db.requests(DIST)[before:]]
    assert after == [("config-solicitation", "/rs.cgi")]
    assert cb.states() == ["RSPULL", "PULLDONE"]
    assert any("Skip LS access" in m for _, m in cb.logs)


def test_restore_state_refuses_a_damaged_or_foreign_blob_and_keeps_the_context(pull_server):
    a = make_agent(pull_server)
    a.pull()
    blob = bytearray(a.dump_state())
    b = make_agent(pull_server)
    edited = bytes(blob).replace(b"rs_retry_max\t1\n", b"rs_retry_max\t7\n")
    assert edited != bytes(blob)
    for bad in (bytes(blob[:-1]) + bytes([blob[-1] ^ 1]), bytes(blob[:40]), b"junk", edited):
        with pytest.raises(ArmsError) as e:
            b.restore_state(bad)
        assert e.value.code == Err.EINVAL
    assert b.ctx.rs_endpoint == "" and b.ctx.rs_urls == []
    other = Agent("0001-0000-0000-0080-0000-0000-0000-0001")
    with pytest.raises(ArmsError):
        other.restore_state(bytes(blob))


def test_ls_certificate_from_another_ca_is_refused(tmp_path, pull_pki):
    s = new_server(tmp_path / "srv")
    write_server_cert(tmp_path / "srv", pull_pki, foreign_ca=True)
    s.start()
    try:
        s.add_device(DIST, LS_KEY)
        cb = Recorder()
        a = make_agent(s, cb, ca_pem=open(f"{pull_pki}/ca.pem").read())
        with pytest.raises(ArmsError) as e:
            a.pull()
        assert e.value.code == Err.EMAXRETRY
        assert "CERTIFICATE_VERIFY_FAILED" in str(e.value) or "certificate verify failed" in str(e.value)
        assert s.db.requests(DIST) == []
    finally:
        s.stop()


def test_expired_ls_certificate_is_refused(tmp_path, pull_pki):
    s = new_server(tmp_path / "srv")
    write_server_cert(tmp_path / "srv", pull_pki, not_before=utc(2020, 1, 1), not_after=utc(2021, 1, 1))
    s.start()
    try:
        s.add_device(DIST, LS_KEY)
        a = make_agent(s)
        with pytest.raises(ArmsError) as e:
            a.pull()
        assert "expired" in str(e.value)
        assert s.db.requests(DIST) == []
    finally:
        s.stop()


def test_ls_certificate_without_location_server_subject_is_refused(tmp_path, pull_pki):
    s = new_server(tmp_path / "srv")
    write_server_cert(tmp_path / "srv", pull_pki, cn="www.example.com")
    s.start()
    try:
        s.add_device(DIST, LS_KEY)
        with pytest.raises(ArmsError) as e:
            make_agent(s).pull()
        assert "Location Server" in str(e.value)
    finally:
        s.stop()


def test_device_booted_in_1970_still_provisions_and_says_so(pull_server, monkeypatch):
    monkeypatch.setattr(tls_mod, "_now", lambda: 86400.0)     # 2 January 1970
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()
    assert a.state == State.PULLDONE
    assert any("behind the last trusted time" in m for _, m in cb.logs)
    assert a.ctx.time_floor == tls_mod.BUILD_TIME             # a bogus clock never raises it


def test_device_booted_in_1970_still_refuses_a_certificate_expired_before_the_floor(tmp_path, pull_pki, monkeypatch):
    monkeypatch.setattr(tls_mod, "_now", lambda: 86400.0)
    s = new_server(tmp_path / "srv")
    write_server_cert(tmp_path / "srv", pull_pki, not_before=utc(2020, 1, 1), not_after=utc(2021, 1, 1))
    s.start()
    try:
        s.add_device(DIST, LS_KEY)
        with pytest.raises(ArmsError) as e:
            make_agent(s).pull()
        assert "expired" in str(e.value) and "last trusted time" in str(e.value)
    finally:
        s.stop()


def test_time_floor_is_persisted_after_a_verified_contact(pull_server, tmp_path):
    path = tmp_path / "floor"
    a = make_agent(pull_server, time_floor_path=str(path))
    a.pull()
    saved = int(path.read_text())
    assert saved >= tls_mod.BUILD_TIME
    b = Agent(DIST, time_floor_path=str(path))
    assert b.ctx.time_floor == saved


def test_time_floor_file_is_rewritten_only_once_it_lags_by_an_hour(pull_server, tmp_path):
    path = tmp_path / "floor"
    a = make_agent(pull_server, time_floor_path=str(path))
    a.pull()                                       # LS and RS contacts: one write
    first = path.stat().st_mtime_ns, path.stat().st_ino
    b = make_agent(pull_server, time_floor_path=str(path))
    b.pull()                                       # a reboot soon after: the file stays
    assert (path.stat().st_mtime_ns, path.stat().st_ino) == first
    assert b.ctx.time_floor > int(path.read_text())  # the agent itself keeps the newer floor
    path.write_text(f"{int(b.ctx.time_floor) - 3601}\n")
    make_agent(pull_server, time_floor_path=str(path)).pull()
    assert int(path.read_text()) >= int(b.ctx.time_floor)


def test_pull_argument_and_registration_errors_are_einval():
    a = Agent(DIST)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == Err.EINVAL                          # no root CA registered
    for call in (lambda: a.pull(timeout=10), lambda: a.register_authkey("k" * 65),
                 lambda: a.register_description("d" * 33), lambda: a.register_cert("not a pem"),
                 lambda: a.set_https_proxy("http://proxy.example:8080/")):
        with pytest.raises(ArmsError) as e:
            call()
        assert e.value.code == Err.EINVAL


def test_pull_goes_through_an_https_proxy_with_the_libarms_connect_request(pull_server):
    from conftest_pull import ConnectProxy
    proxy = ConnectProxy()
    try:
        a = make_agent(pull_server)
        a.set_https_proxy(proxy.url)
        a.pull()
        assert a.state == State.PULLDONE
        ls, rs = f"127.0.0.1:{pull_server.ls_port}", f"127.0.0.1:{pull_server.rs_port}"
        assert proxy.requests == [f"CONNECT {ls} HTTP/1.1\r\nHost: {ls}\r\n\r\n".encode(),
                                  f"CONNECT {rs} HTTP/1.1\r\nHost: {rs}\r\n\r\n".encode()]
    finally:
        proxy.close()


def test_proxy_that_refuses_connect_is_a_failed_attempt(pull_server):
    from conftest_pull import ConnectProxy
    proxy = ConnectProxy(answer=b"HTTP/1.1 403 Forbidden\r\n\r\n")
    try:
        cb = Recorder()
        a = make_agent(pull_server, cb, retry_max=0)
        a.set_https_proxy(proxy.url)
        with pytest.raises(ArmsError) as e:
            a.pull()
        assert e.value.code == Err.EMAXRETRY and "proxy refused CONNECT" in str(e.value)
    finally:
        proxy.close()


def test_no_ls_line_waits_then_asks_to_pull_again(pull_server):
    a = make_agent(pull_server)
    with pytest.raises(ArmsError) as e:
        a.pull(lines=[])
    assert e.value.code == Err.EPULL and a.ctx.trigger == "LS not found"


def test_total_timeout_ends_the_pull_with_etimeout(pull_server, monkeypatch):
    import libarms.agent as agent_mod
    monkeypatch.setattr(agent_mod, "MIN_TIMEOUT", 0.1)      # 60 s minimum is too long for a test
    a = make_agent(pull_server, ls_url=f"https://127.0.0.1:{closed_port()}/arms.cgi",
                   ls_retry_interval_factor=3600)
    with pytest.raises(ArmsError) as e:
        a.pull(timeout=0.3)
    assert e.value.code == Err.ETIMEOUT and a.state == State.BOOT_FAIL


def test_transition_table_refuses_a_transition_the_spec_does_not_have():
    from libarms.states import Event, next_state
    assert next_state(State.INITIAL, Event.LS_START) == State.LSPULL
    assert next_state(State.RSPULL, Event.RS_FALLBACK) == State.LSPULL
    assert next_state(State.PUSH_REBOOT, Event.RS_START) == State.RSPULL
    with pytest.raises(RuntimeError):
        next_state(State.INITIAL, Event.RS_DONE)


def test_pull_over_ipv6_loopback(tmp_path, pull_pki):
    import socket as _s
    if not _s.has_ipv6:
        pytest.skip("no IPv6")
    try:
        s = new_server(tmp_path / "srv6", pull_pki, host="::1").start()
    except OSError as e:
        pytest.skip(f"no ::1 here: {e}")
    try:
        s.add_device(DIST, LS_KEY, location={"lines": [{"type": "ra", "ifindex": 0}]})
        a = make_agent(s)
        assert s.ls_url.startswith("https://[::1]:")
        a.pull(timeout=60, lines=[Line(LineType.RA, 0)])     # IPv6 lines in both stages
        assert a.state == State.PULLDONE and a.ctx.rs_endpoint.startswith("https://[::1]:")
    finally:
        s.stop()


def test_end_from_another_thread_interrupts_a_waiting_pull(pull_server):
    import threading
    cb = Recorder()
    a = make_agent(pull_server, cb, ls_url=f"https://127.0.0.1:{closed_port()}/arms.cgi",
                   ls_retry_interval_factor=3600)               # would wait an hour between rounds
    waiting = threading.Event()
    cb.log = lambda code, msg: waiting.set() if code == 8 else None
    result = []
    t = threading.Thread(target=lambda: result.append(pytest.raises(ArmsError, a.pull)))
    t.start()
    assert waiting.wait(30)
    a.end()
    t.join(30)
    assert not t.is_alive() and result[0].value.code == Err.ETIMEOUT


def _server_with_cert(tmp_path, pull_pki, **cert):
    s = new_server(tmp_path / "srv")
    write_server_cert(tmp_path / "srv", pull_pki, **cert)
    s.start()
    s.add_device(DIST, LS_KEY)
    return s


def test_certificate_naming_other_addresses_is_refused(tmp_path, pull_pki):
    s = _server_with_cert(tmp_path, pull_pki, ips=("127.0.0.2", "::2"))
    try:
        with pytest.raises(ArmsError) as e:
            make_agent(s).pull()
        assert "names 127.0.0.2, ::2, not 127.0.0.1" in str(e.value)
    finally:
        s.stop()


def test_certificate_without_addresses_is_accepted_and_the_log_says_the_name_was_not_checked(tmp_path, pull_pki):
    s = _server_with_cert(tmp_path, pull_pki, ips=())
    try:
        cb = Recorder()
        make_agent(s, cb).pull()
        assert any("host name check could not apply" in m for _, m in cb.logs)
    finally:
        s.stop()


def test_rs_signed_by_another_ca_than_the_ls_rs_certificate_is_refused(tmp_path, pull_pki, pull_server, monkeypatch):
    import libarms.agent as agent_mod
    monkeypatch.setattr(agent_mod, "MIN_TIMEOUT", 0.1)
    rogue = new_server(tmp_path / "rogue")
    write_server_cert(tmp_path / "rogue", pull_pki, foreign_ca=True)
    rogue.start()
    try:
        rogue.add_device(DIST, LS_KEY, rs_key="rs-presharedkey-abcdef")
        pull_server.db.set_location(DIST, rs_urls=[rogue.rs_url], rs_retry_max=0)
        cb = Recorder()
        a = make_agent(pull_server, cb)
        with pytest.raises(ArmsError) as e:
            a.pull(timeout=1.5)
        assert e.value.code == Err.ETIMEOUT                  # RS refused, LS again, ... until the timeout
        assert any(c == 106 and rogue.rs_url in m for c, m in cb.logs), cb.log_text()
        assert rogue.db.requests(DIST) == [] and a.ctx.sa_cert_pem is None
    finally:
        rogue.stop()


def test_a_module_dropped_by_the_rs_is_removed_on_the_next_pull(pull_server):
    mods = [{"id": 1, "version": "1", "info": "a", "config": "one\n"},
            {"id": 2, "version": "1", "info": "b", "config": "two\n"}]
    pull_server.db.set_service(DIST, modules=mods)
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.pull()
    pull_server.db.set_service(DIST, modules=mods[:1])
    cb.events.clear()
    a.pull()                                    # LS skipped: the cached RS answers
    assert [e for e in cb.events if e[0] == "config"] == [
        ("config", 2, "REMOVE_MODULE", 3), ("config", 1, "PULL_STORE_CONFIG", 3)]
    assert [m.id for m in a.ctx.modules] == [1]
    cb.events.clear()
    a.end()
    assert [e for e in cb.events if e[0] == "config"] == [("config", 1, "REMOVE_MODULE", 3)]


def test_the_agent_does_not_import_cryptography_or_requests():
    import subprocess
    import sys
    code = ("import sys, libarms.agent; bad = [m for m in ('cryptography', 'requests', 'tempfile') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_wrong_ls_key_fails_with_a_message_that_says_what_to_check(pull_server):
    a = make_agent(pull_server, retry_max=0)
    a.register_authkey("not-the-key")
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == Err.EMAXRETRY
    assert "HTTP 401" in str(e.value) and "LS-SA key" in str(e.value)
    assert [r["http_status"] for r in pull_server.db.requests(DIST)] == [401]


@pytest.mark.parametrize("code,err", [(501, Err.EDONTRETRY), (508, Err.EREBOOT), (201, Err.EREBOOT)])
def test_rs_stop_results_end_the_pull_with_the_documented_code(pull_server, code, err):
    pull_server.db.set_service(DIST, result=code)
    a = make_agent(pull_server)
    with pytest.raises(ArmsError) as e:
        a.pull()
    assert e.value.code == err and a.state == State.BOOT_FAIL


def test_binary_config_arrives_decoded_from_base64(pull_server):
    import base64
    blob = bytes(range(256)) * 3
    pull_server.db.set_service(DIST, modules=[{"id": 9, "version": "b", "info": "bin",
                                               "config_b64": base64.b64encode(blob).decode()}])
    cb = Recorder()
    make_agent(pull_server, cb).pull(fragment=500)
    assert b"".join(c[4] for c in cb.configs) == blob and [c[5] for c in cb.configs] == [1, 2]


def _c_state_blob(abi, bo, endpoint, urls, ca, key, lines, current, last_line=0):
    """A libarms 5.33 arms_dump_state blob laid out from the spec's offset table (§2.11)."""
    import hashlib
    import struct
    o = {"lp64": dict(size=29456, ll=(144, "q"), lines=152, num=2472, last=2476, key=2480, rs=2545,
                      cur=29432, res=29436),
         "ilp32": dict(size=29448, ll=(140, "i"), lines=144, num=2464, last=2468, key=2472, rs=2537,
                       cur=29424, res=29428)}[abi]
    b = bytearray(o["size"])
    struct.pack_into(bo + "I", b, 0, 2)
    b[4:4 + len(endpoint)] = endpoint.encode()
    struct.pack_into(bo + "ii", b, 132, 3, 1)
    struct.pack_into(bo + o["ll"][1], b, o["ll"][0], 45)
    for i, (t, ifindex, ident, pw) in enumerate(lines):
        base = o["lines"] + i * 464
        struct.pack_into(bo + "ii", b, base, t, ifindex)
        b[base + 8:base + 8 + len(ident)] = ident.encode()
        b[base + 44:base + 44 + len(pw)] = pw.encode()
    struct.pack_into(bo + "ii", b, o["num"], len(lines), last_line)
    b[o["key"]:o["key"] + len(key)] = key.encode()
    for i, u in enumerate(urls):
        base = o["rs"] + i * 5377
        b[base:base + len(u)] = u.encode()
        b[base + 257:base + 257 + len(ca)] = ca.encode()
    struct.pack_into(bo + "ii", b, o["cur"], current, 0)
    b[-16:] = hashlib.md5(bytes(b[:-16])).digest()
    return bytes(b)


@pytest.mark.parametrize("abi,bo", [("lp64", "<"), ("ilp32", ">")])
def test_restore_state_reads_a_c_libarms_blob_and_starts_at_its_rs(pull_server, abi, bo):
    dead = f"https://127.0.0.1:{closed_port()}/rs.cgi"
    blob = _c_state_blob(abi, bo, pull_server.rs_url, [dead, pull_server.rs_url], pull_server.ca_pem,
                         "rs-presharedkey-abcdef", [(2, 1, "user@isp", "secret"), (3, 2, "", "")],
                         current=1, last_line=1)
    cb = Recorder()
    a = make_agent(pull_server, cb)
    a.restore_state(blob)
    assert a.ctx.rs_lines[0] == Line(LineType.PPPOE, 1, pppoe_id="user@isp", pppoe_pass="secret")
    assert (a.ctx.ll_timeout, a.ctx.rs_retry_max, a.ctx.rs_retry_interval) == (45, 3, 1)
    a.pull()
    assert cb.states() == ["RSPULL", "PULLDONE"]
    assert [e[2:4] for e in cb.events if e[:2] == ("line", "CONNECT")] == [("DHCP", 2)]   # last good line
    assert [r["type"] for r in pull_server.db.requests(DIST)] == ["config-solicitation"]
    bad = bytearray(blob)
    bad[200] ^= 1
    with pytest.raises(ArmsError) as e:
        make_agent(pull_server).restore_state(bytes(bad))
    assert e.value.code == Err.EINVAL and "MD5" in str(e.value)


def test_agent_survives_garbage_answers_from_ls_and_rs(pull_server):
    import random
    rnd = random.Random(2026)
    good = b"<arms-message><arms-response type=\"rs-solicitation\"><result-code>100</result-code>"
    bodies = [bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 300))) for _ in range(8)]
    bodies += [good[:rnd.randrange(len(good))] for _ in range(4)]
    bodies += [good + bytes(rnd.randrange(32, 127) for _ in range(50)) for _ in range(4)]
    pull_server.db.set_location(DIST, rs_retry_interval=0)
    a = make_agent(pull_server)
    for i, junk in enumerate(bodies):
        pull_server.set_override("/arms.cgi" if i % 2 else "/rs.cgi", raw=junk, times=1)
        a.ctx.forget_rs()                       # every pull starts at the LS
        a.pull()
        assert a.state == State.PULLDONE, i


def test_stop_before_run_makes_run_return_epull_at_once_and_a_new_pull_clears_it(pull_server):
    a = make_agent(pull_server)
    assert a.stop() is False                    # nothing running
    assert a.run() == Err.EPULL                 # no loop started at all
    a.pull()                                    # a new pull clears the pending stop
    assert a.state == State.PULLDONE and a._stop_pending is False
