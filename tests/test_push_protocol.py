"""Push messages replayed against the libarms 5.33 captures, both directions (W 3.5.3-4.14)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from libarms.errors import ProtocolError
from libarms.protocol import push as P
from _vectors import VECTORS_DIR  # noqa: E402

V = Path(VECTORS_DIR)
DIST = "0001-1234-5678-9ABC-DEF0-1122-3344-5566"
DESC = "libarms Test Client"

_CHUNK = re.compile(rb"([0-9a-fA-F]+)((?:;[^\r\n]*)?)\r\n")


def chunks(raw: bytes) -> list[tuple[bytes, bytes]]:
    """Split chunk frames into (extensions, data) (test helper; exact framing is checked)."""
    out, pos = [], 0
    while pos < len(raw):
        m = _CHUNK.match(raw, pos)
        assert m, raw[pos:pos + 40]
        size = int(m.group(1), 16)
        data = raw[m.end():m.end() + size]
        assert raw[m.end() + size:m.end() + size + 2] == b"\r\n"
        out.append((m.group(2), data))
        pos = m.end() + size + 2
    return out


def tunnel_pieces(name: str) -> list[bytes]:
    return [d for _, d in chunks((V / "tunnel" / name).read_bytes())]


def http_body(path: Path) -> bytes:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    if b"Transfer-Encoding: chunked" in head and not head.startswith(b"HTTP/1.0"):
        return b"".join(d for _, d in chunks(body) if d)
    if body.startswith(b"<?xml"):
        body = body.split(b"\n", 1)[1] if b"?>\n" in body[:60] else body.split(b"\r", 1)[1]
    return body


def http_pieces(path: Path) -> list[bytes]:
    raw = path.read_bytes()
    _, _, body = raw.partition(b"\r\n\r\n")
    return [d for _, d in chunks(body) if d]


def sa_response_body(path: Path) -> bytes:
    raw = path.read_bytes()
    head, _, body = raw.partition(b"\r\n\r\n")
    decl = b'<?xml version="1.0" encoding="US-ASCII" ?>\r'
    assert body.startswith(decl)
    return body[len(decl):]


def _tid(data: bytes) -> int:
    return int(re.search(rb"<transaction-id>(\d+)</transaction-id>", data).group(1))


# -- device builders == the bytes libarms wrote ------------------------------------------------

def test_push_method_query_request_matches_vector_byte_for_byte():
    assert P.build_method_query_request(DIST, DESC) == http_body(V / "simple/05-push-method-query-request.http")


def test_simple_confirmation_start_request_matches_vector():
    want = http_pieces(V / "simple/07-push-confirmation-start-request.http")
    got = P.build_confirmation_start_request(DIST, DESC, "https-simple", "https://127.0.0.1:10443/")
    assert [got] == want


def test_tunnel_confirmation_start_request_matches_vector():
    assert [P.build_confirmation_start_request(DIST, DESC, "https-tunnel")] == \
        tunnel_pieces("09-tunnel-c2s-push-confirmation-start-request.chunks")


def test_confirmation_done_response_carries_transaction_id_in_tunnel_mode_only():
    assert P.build_confirmation_done_response(70001) == \
        tunnel_pieces("12-tunnel-c2s-push-confirmation-done-response.chunks")
    assert P.join(P.build_confirmation_done_response()) == \
        sa_response_body(V / "simple/10-sa-push-confirmation-done-response.http")


def test_md_command_response_is_three_pieces_like_libarms():
    want = tunnel_pieces("14-tunnel-c2s-md-command-response.chunks")
    assert len(want) == 3
    assert P.build_md_command_response(100, 1001, "md_command(id=1001): done") == want
    assert P.join(want) == sa_response_body(V / "simple/12-sa-push-md-command-response.http")


def test_read_status_start_response_and_four_piece_done_request_match_vectors():
    start = tunnel_pieces("16-tunnel-c2s-read-status-start-response.chunks")
    tid = _tid(start[0])
    assert P.build_start_response("read-status", tid, 100) == start
    done = tunnel_pieces("17-tunnel-c2s-read-status-done-request.chunks")
    body = P.status_report_pieces(1001, 100, "id=1001: get_status_cb() result")
    assert P.build_done_request("read-status", DIST, DESC, tid, 100, body) == done
    simple = http_pieces(V / "simple/17-read-status-done-request.http")
    tid2 = _tid(simple[0])
    assert P.build_done_request("read-status", DIST, DESC, tid2, 100, body) == simple
    assert P.join(P.build_start_response("read-status", tid2, 100)) == \
        sa_response_body(V / "simple/16-sa-push-read-status-start-response.http")


def test_ping_start_response_and_done_request_match_vectors():
    start = tunnel_pieces("20-tunnel-c2s-ping-start-response.chunks")
    tid = _tid(start[0])
    assert P.build_start_response("ping", tid, 100) == start
    assert P.build_done_request("ping", DIST, DESC, tid, 100, P.ping_done_pieces(3, 0)) == \
        tunnel_pieces("21-tunnel-c2s-ping-done-request.chunks")
    simple = http_pieces(V / "simple/21-ping-done-request.http")
    assert P.build_done_request("ping", DIST, DESC, _tid(simple[0]), 100, P.ping_done_pieces(3, 0)) == simple


def test_reboot_response_matches_vector():
    assert P.build_sync_response("reboot", 100) == tunnel_pieces("26-tunnel-c2s-reboot-response.chunks")
    assert P.join(P.build_sync_response("reboot", 100)) == \
        sa_response_body(V / "simple/24-sa-push-reboot-response.http")


# -- device parsers read what the server sent ---------------------------------------------------

def test_method_query_answers_parse_to_methods_urls_and_echo_interval():
    t = P.parse_method_query_response(http_body(V / "tunnel/06-push-method-query-response.http"))
    assert t == P.MethodQueryAnswer(100, ("https-tunnel",), ("https://127.0.0.1:15443/tunnel.cgi",), 3)
    s = P.parse_method_query_response(http_body(V / "simple/06-push-method-query-response.http"))
    assert s == P.MethodQueryAnswer(100, ("https-simple",), (), 60)


def test_method_query_answer_with_six_methods_is_refused():
    body = P.build_method_query_response(100, ["https-tunnel"] * 6)
    with pytest.raises(P.TooManyEntries):
        P.parse_method_query_response(body)


def test_confirmation_start_answers_parse_with_transaction_id():
    a = P.parse_confirmation_start_response(tunnel_pieces("10-tunnel-s2c-push-confirmation-start-response.chunks")[0])
    assert a == P.ConfirmationStartAnswer(100, 70001)
    b = P.parse_confirmation_start_response(http_body(V / "simple/08-push-confirmation-start-response.http"))
    assert b.transaction_id == 70001
    c = P.parse_confirmation_start_response(P.build_server_response("push-confirmation-start", 100))
    assert c.transaction_id is None


def test_server_push_requests_parse_to_typed_parameters():
    r = P.parse_push_request(tunnel_pieces("11-tunnel-s2c-push-confirmation-done-request.chunks")[0], DIST)
    assert (r.method, r.ok, r.transaction_id) == ("push-confirmation-done", True, 70001)
    r = P.parse_push_request(tunnel_pieces("13-tunnel-s2c-md-command-request.chunks")[0], DIST)
    assert r.params == P.MdCommandParams(1001, b"show version")
    r = P.parse_push_request(tunnel_pieces("15-tunnel-s2c-read-status-start-request.chunks")[0], DIST)
    assert (r.method, r.params) == ("read-status", P.StatusParams((P.StatusRequest(1001, b"interface lan0"),)))
    r = P.parse_push_request(tunnel_pieces("19-tunnel-s2c-ping-start-request.chunks")[0], DIST)
    assert r.params == P.PingParams("127.0.0.1", 3, 64)
    r = P.parse_push_request(tunnel_pieces("25-tunnel-s2c-reboot-request.chunks")[0], DIST)
    assert (r.method, r.ok) == ("reboot", True)
    # https-simple bodies carry an XML declaration: accepted
    r = P.parse_push_request(http_body(V / "simple/11-sa-push-md-command-request.http"), DIST)
    assert r.params == P.MdCommandParams(1001, b"show version")


def test_done_answers_parse_and_wrong_type_is_refused():
    a = P.parse_done_response(tunnel_pieces("18-tunnel-s2c-read-status-done-response.chunks")[0], "read-status")
    assert a.result_code == 100 and a.transaction_id
    a = P.parse_done_response(http_body(V / "simple/22-ping-done-response.http"), "ping")
    assert a.result_code == 100
    with pytest.raises(ProtocolError):
        P.parse_done_response(http_body(V / "simple/22-ping-done-response.http"), "read-status")
    # configure done answers are not type-checked (W 4.1 step 5)
    assert P.parse_done_response(P.build_done_response("ping", 100, 5), "configure").result_code == 100


# -- server builders == the fake server's bytes, server parsers read the device ------------------

def test_server_push_requests_match_vector_bytes():
    assert P.build_push_request("md-command", DIST, P.md_command_body(1001, "show version")) == \
        tunnel_pieces("13-tunnel-s2c-md-command-request.chunks")[0]
    assert P.build_push_request("read-status", DIST, P.status_body([(1001, "interface lan0")])) == \
        tunnel_pieces("15-tunnel-s2c-read-status-start-request.chunks")[0]
    assert P.build_push_request("ping", DIST, P.ping_body("127.0.0.1", 3, 64)) == \
        tunnel_pieces("19-tunnel-s2c-ping-start-request.chunks")[0]
    assert P.build_push_request("reboot", DIST) == tunnel_pieces("25-tunnel-s2c-reboot-request.chunks")[0]
    assert P.build_confirmation_done_request(DIST, 70001) == \
        tunnel_pieces("11-tunnel-s2c-push-confirmation-done-request.chunks")[0]


def test_server_answers_match_vector_bytes():
    assert P.build_confirmation_start_response(100, 70001) == \
        tunnel_pieces("10-tunnel-s2c-push-confirmation-start-response.chunks")[0]
    done = tunnel_pieces("18-tunnel-s2c-read-status-done-response.chunks")[0]
    assert P.build_done_response("read-status", 100, _tid(done)) == done
    assert P.build_method_query_response(100, ["https-tunnel"], ["https://127.0.0.1:15443/tunnel.cgi"], 3) == \
        http_body(V / "tunnel/06-push-method-query-response.http")


def test_server_reads_device_answers():
    a = P.read_push_answer(P.join(tunnel_pieces("14-tunnel-c2s-md-command-response.chunks")))
    assert (a.method, a.result_code, a.modules) == \
        ("md-command", 100, (P.ModuleResult(1001, 100, b"md_command(id=1001): done"),))
    a = P.read_push_answer(P.join(tunnel_pieces("17-tunnel-c2s-read-status-done-request.chunks")))
    assert a.is_done and a.result_code == 100 and a.transaction_id
    assert a.modules == (P.ModuleResult(1001, 100, b"id=1001: get_status_cb() result"),)
    a = P.read_push_answer(P.join(tunnel_pieces("21-tunnel-c2s-ping-done-request.chunks")))
    assert (a.success, a.failure) == (3, 0)
    a = P.read_push_answer(P.join(tunnel_pieces("09-tunnel-c2s-push-confirmation-start-request.chunks")))
    assert a.push_methods == ("https-tunnel",) and a.distribution_id == DIST
    a = P.read_push_answer(http_body(V / "simple/07-push-confirmation-start-request.http"))
    assert a.push_endpoint == "https://127.0.0.1:10443/"


# -- error results --------------------------------------------------------------------------------

def _req(method, body=b"", dist=DIST, **kw):
    return P.parse_push_request(P.build_push_request(method, dist, body, **kw), DIST)


def test_broken_xml_is_201_generic_error():
    r = P.parse_push_request(b"<arms-message><arms-request type='reboot'>", DIST)
    assert (r.method, r.result) == (None, 201)
    assert P.build_error_response(r) == [
        b'<arms-message><arms-response type="generic-error"><result-code>201</result-code>'
        b'<description>Invalid XML</description><generic-error-response></generic-error-response>'
        b'</arms-response></arms-message>']


def test_entity_declarations_and_non_ascii_are_refused_as_invalid_xml():
    bomb = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]>'
            b'<arms-message><arms-request type="reboot"><distribution-id>&b;</distribution-id>'
            b'</arms-request></arms-message>')
    assert P.parse_push_request(bomb, DIST).result == 201
    assert P.parse_push_request(P.build_push_request("reboot", DIST).replace(b"reboot-r", b"reboo\xc3\xa9-r"), DIST).result == 201


def test_unknown_type_is_202_generic_error():
    r = P.parse_push_request(b'<arms-message><arms-request type="format-disk"></arms-request></arms-message>', DIST)
    assert (r.method, r.result) == (None, 202)


def test_foreign_distribution_id_is_423_in_the_methods_own_form():
    r = _req("configure", dist="0001-0000-0000-0000-0000-0000-0000-0001")
    assert (r.method, r.result) == ("configure", 423)
    pieces = P.build_error_response(r, transaction_id=77)
    assert P.join(pieces).startswith(b'<arms-message><arms-response type="configure-start">'
                                     b'<transaction-id>77</transaction-id><result-code>423</result-code>'
                                     b'<description>Distribution ID Mismatch</description>')


@pytest.mark.parametrize("method,body,code", [
    ("md-command", b"", 203),
    ("md-command", P.md_command_body(1, "a") + P.md_command_body(1, "b"), 422),
    ("md-command", P.md_command_body(1, "x" * 8193), 402),
    ("md-command", b'<md-command id="1" encoding="base64">AA A=</md-command>', 402),
    ("ping", b"<count>3</count>", 203),
    ("traceroute", P.traceroute_body("192.0.2.1", 0, 30), 203),
    ("traceroute", P.traceroute_body("192.0.2.1", 3, 257), 203),
    ("read-storage", P.read_storage_body("startup"), 203),
    ("clear-status", b"", 203),
    ("configure", P.configure_body([P.ModuleInfo(1, "1.0")], [(2, "x")]), 415),
    ("configure", P.configure_body([], [(1, "x")]), 415),
])
def test_bad_parameters_map_to_the_spec_result_codes(method, body, code):
    assert _req(method, body).result == code


def test_bad_result_url_is_203():
    assert _req("ping", P.ping_body("192.0.2.1"), result_url="ftp://x/").result == 203
    assert _req("ping", P.ping_body("192.0.2.1"), result_url="https://192.0.2.21/r").ok


def test_parameters_with_defaults_and_quirks():
    assert _req("read-storage", P.read_storage_body("run")).params == P.ReadStorageParams(2)
    assert _req("read-status").params == P.StatusParams((P.StatusRequest(0, b""),))
    assert _req("pull-config", P.pull_config_body("LS")).params == P.PullConfigParams(True)
    assert _req("pull-config", b"<type></type>").params == P.PullConfigParams(True)
    assert _req("pull-config", P.pull_config_body("RS")).params == P.PullConfigParams(False)
    assert _req("pull-config").params == P.PullConfigParams(False)
    assert _req("ping", b"<address>192.0.2.1</address><count>5 </count>").params == P.PingParams("192.0.2.1", 0, 0)
    r = _req("configure", P.configure_body([P.ModuleInfo(1, "1.0", "loc", 1), P.ModuleInfo(2, "2")],
                                           [(1, "hostname gw1"), (2, b"\x00\x01")]))
    assert r.params.configs == (P.ModuleConfig(1, b"hostname gw1"), P.ModuleConfig(2, b"\x00\x01"))
    assert [m.id for m in r.params.modules] == [1, 2]
    r = _req("md-command", P.md_command_body(3, b"\xff\x00bin"))
    assert r.params == P.MdCommandParams(3, b"\xff\x00bin", True)


def test_md_command_error_forms():
    assert P.join(P.build_md_command_response(302)).endswith(
        b"<description>SA Busy</description><md-command-response></md-command-response>"
        b"</arms-response></arms-message>")
    a = P.read_push_answer(P.join(P.build_md_command_response(102, 4, "no such interface")))
    assert (a.result_code, a.modules[0].data) == (102, b"no such interface")


def test_binary_results_are_one_continuous_base64_string_over_several_pieces():
    data = bytes(range(256)) * 20
    pieces = P.build_md_command_response(100, 9, data)
    assert len(pieces) > 3
    a = P.read_push_answer(P.join(pieces))
    assert a.modules == (P.ModuleResult(9, 100, data, True),)


def test_module_list_and_check_transaction_answers_are_one_piece_like_libarms():
    # libarms 5.33 writes these answers whole (one chunk ending in ";trail" on the tunnel), as
    # seen from the real client; md-command, by contrast, is head / output / close (vector 14)
    pieces = P.build_read_module_list_response([P.ModuleInfo(1, "1.0", "a"), P.ModuleInfo(2, "2", "b")])
    assert len(pieces) == 1
    assert pieces[0].startswith(b'<arms-message><arms-response type="read-module-list">')
    assert b'<module id="1" version="1.0">a</module><module id="2" version="2">b</module>' in pieces[0]
    assert pieces[0].endswith(b"</read-module-list-response></arms-response></arms-message>")
    pieces = P.build_check_transaction_response([7, 8])
    assert len(pieces) == 1
    assert b"<transaction-id>7</transaction-id><transaction-id>8</transaction-id>" in pieces[0]
    assert len(P.build_md_command_response(100, 1, "out")) == 3


def test_clear_status_reports_are_one_piece_each_read_status_reports_are_cut_like_vector_17():
    done = P.build_done_request("clear-status", DIST, DESC, 5, 100,
                                P.status_report_pieces(1, 100, "cleared", whole=True)
                                + P.status_report_pieces(2, 402, "", whole=True))
    assert done[1:-1] == [b'<status-report id="1" result="100">cleared</status-report>',
                          b'<status-report id="2" result="402"></status-report>']
    assert len(P.status_report_pieces(1, 100, "x")) == 2     # open+value, close


def test_other_sync_responses_read_back():
    a = P.read_push_answer(P.join(P.build_read_module_list_response(
        [P.ModuleInfo(1, "1.0.4", "http://example.net/fw/mod1"), P.ModuleInfo(2, "2.0", "a<b")])))
    assert a.module_list == (P.ModuleInfo(1, "1.0.4", "http://example.net/fw/mod1"), P.ModuleInfo(2, "2.0", "a<b"))
    a = P.read_push_answer(P.join(P.build_check_transaction_response([0, 1681692777])))
    assert a.transaction_ids == (0, 1681692777)
    a = P.read_push_answer(P.join(P.build_done_request(
        "traceroute", DIST, DESC, 5, 100, P.traceroute_done_pieces([(1, "192.0.2.254"), (2, "198.51.100.1"), (3, "")], 30))))
    assert a.hops == ((1, "192.0.2.254"), (2, "198.51.100.1"))
    a = P.read_push_answer(P.join(P.build_done_request(
        "read-storage", DIST, DESC, 5, 100, P.md_config_pieces(1, "hostname gw1") + P.md_config_pieces(2, b"\x00\x01"))))
    assert [(m.id, m.data, m.binary) for m in a.modules] == [(1, b"hostname gw1", False), (2, b"\x00\x01", True)]


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=3000))
def test_text_results_survive_escaping_with_non_ascii_as_question_marks(text):
    a = P.read_push_answer(P.join(P.build_md_command_response(100, 1, text)))
    want = bytes(b if (0x20 <= b < 0x7F or b in b"\t\r\n") else 0x3F for b in text.encode("utf-8", "replace"))
    # XML normalises CR / CRLF in text content to LF
    want = want.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    assert a.modules[0].data == want


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_to_a_result_never_an_exception(data):
    r = P.parse_push_request(data, DIST)
    assert r.result in P.RESULT_TEXT


def test_url_parser_limits():
    u = P.parse_url("https://[2001:db8::1]:8443/tunnel")
    assert (u.host, u.port, u.path, u.family) == ("2001:db8::1", 8443, "/tunnel", 6)
    assert P.parse_url("https://192.0.2.1").port == 443
    for bad in ("https://example.net/", "https://[2001:db8::1]x", "gopher://1.2.3.4/", "https://1.2.3.4/" + "a" * 90):
        with pytest.raises(ProtocolError):
            P.parse_url(bad)


# -- whole streams: our framing and HTTP heads == the captured bytes --------------------------

def _ids(name: str) -> int:
    return int(re.match(rb"[0-9a-f]+;id=(\d+)", (V / "tunnel" / name).read_bytes()).group(1))


def test_device_tunnel_stream_rebuilt_byte_for_byte():
    from libarms.transport.simple import build_tunnel_head
    from libarms.transport.tunnel import ECHO_REQUEST_CHUNK, END_CHUNK, frame_message
    url = P.parse_url("https://127.0.0.1:15443/tunnel.cgi")
    key = "rs-presharedkey-abcdef"
    rs_tid = _tid(tunnel_pieces("16-tunnel-c2s-read-status-start-response.chunks")[0])
    ping_tid = _tid(tunnel_pieces("20-tunnel-c2s-ping-start-response.chunks")[0])
    messages = [
        ("09-tunnel-c2s-push-confirmation-start-request.chunks", [P.build_confirmation_start_request(DIST, DESC, "https-tunnel")]),
        ("12-tunnel-c2s-push-confirmation-done-response.chunks", P.build_confirmation_done_response(70001)),
        ("14-tunnel-c2s-md-command-response.chunks", P.build_md_command_response(100, 1001, "md_command(id=1001): done")),
        ("16-tunnel-c2s-read-status-start-response.chunks", P.build_start_response("read-status", rs_tid, 100)),
        ("17-tunnel-c2s-read-status-done-request.chunks", P.build_done_request(
            "read-status", DIST, DESC, rs_tid, 100, P.status_report_pieces(1001, 100, "id=1001: get_status_cb() result"))),
        ("20-tunnel-c2s-ping-start-response.chunks", P.build_start_response("ping", ping_tid, 100)),
        ("21-tunnel-c2s-ping-done-request.chunks", P.build_done_request("ping", DIST, DESC, ping_tid, 100, P.ping_done_pieces(3, 0))),
    ]
    stream = build_tunnel_head(url, DIST, key)
    assert stream == (V / "tunnel/07-tunnel-open-request.http").read_bytes()
    for name, pieces in messages:
        framed = frame_message(pieces, _ids(name))
        assert framed == (V / "tunnel" / name).read_bytes(), name
        stream += framed
    stream += ECHO_REQUEST_CHUNK
    assert ECHO_REQUEST_CHUNK == (V / "tunnel/23-tunnel-c2s-echo-request.chunks").read_bytes()
    stream += frame_message(P.build_sync_response("reboot", 100), _ids("26-tunnel-c2s-reboot-response.chunks"))
    stream += END_CHUNK
    assert stream == (V / "tunnel/tunnel-stream-c2s.raw").read_bytes()


def test_server_tunnel_stream_parses_to_the_devices_view():
    from libarms.transport.tunnel import ChunkDecoder, ChunkKind, MessageAssembler
    raw = (V / "tunnel/tunnel-stream-s2c.raw").read_bytes()
    head, _, rest = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200")
    dec, asm = ChunkDecoder(65536), MessageAssembler()
    msgs, echoes = [], 0
    for c in dec.feed(rest):
        if c.kind is ChunkKind.ECHO_RESPONSE:
            echoes += 1
        elif c.kind is ChunkKind.DATA:
            m = asm.feed(c)
            if m is not None:
                msgs.append(P.parse_message(m))
    assert echoes == 1
    assert [(m.kind, m.type) for m in msgs] == [
        ("response", "push-confirmation-start"), ("request", "push-confirmation-done"),
        ("request", "md-command"), ("request", "read-status-start"), ("response", "read-status-done"),
        ("request", "ping-start"), ("response", "ping-done"), ("request", "reboot")]


def test_simple_mode_http_messages_rebuilt_byte_for_byte():
    from libarms.transport.simple import build_form_b, build_sa_error, build_sa_response
    url = P.parse_url("https://127.0.0.1:15443/rs.cgi")
    key = "rs-presharedkey-abcdef"
    f17 = (V / "simple/17-read-status-done-request.http").read_bytes()
    tid = _tid(f17)
    assert build_form_b(url, DIST, key, P.build_done_request(
        "read-status", DIST, DESC, tid, 100, P.status_report_pieces(1001, 100, "id=1001: get_status_cb() result"))) == f17
    assert build_form_b(url, DIST, key, [P.build_confirmation_start_request(
        DIST, DESC, "https-simple", "https://127.0.0.1:10443/")]) == \
        (V / "simple/07-push-confirmation-start-request.http").read_bytes()
    for name, pieces in [("10-sa-push-confirmation-done-response.http", P.build_confirmation_done_response()),
                         ("12-sa-push-md-command-response.http", P.build_md_command_response(100, 1001, "md_command(id=1001): done")),
                         ("24-sa-push-reboot-response.http", P.build_sync_response("reboot", 100))]:
        assert build_sa_response(pieces) == (V / "simple" / name).read_bytes(), name
    assert build_sa_error(400, chunked=True) == \
        (V / "simple/14-sa-push-md-command-chunked-rejected-response.http").read_bytes()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=400), max_size=30))
def test_incremental_parsers_give_the_same_result_for_any_split(cuts):
    from libarms.transport.simple import ResponseReader, SimpleRequestParser
    from libarms.transport.tunnel import ChunkDecoder, ChunkKind, MessageAssembler

    def slices(data):
        out, pos = [], 0
        for c in cuts:
            out.append(data[pos:pos + c])
            pos += c
        out.append(data[pos:])
        return [s for s in out if s]

    req = (V / "simple/11-sa-push-md-command-request.http").read_bytes()
    p = SimpleRequestParser(DIST, "rs-presharedkey-abcdef", 65536)
    for s in slices(req):
        p.feed(s)
    assert p.result.status == 200 and P.parse_push_request(p.result.body, DIST).params.command == b"show version"
    rr = ResponseReader()
    for s in slices((V / "simple/17-read-status-done-request.http").read_bytes().replace(b"POST /rs.cgi HTTP/1.1", b"HTTP/1.1 200 OK")):
        rr.feed(s)
    assert P.read_push_answer(rr.answer().body).modules[0].data == b"id=1001: get_status_cb() result"
    raw = (V / "tunnel/tunnel-stream-c2s.raw").read_bytes().split(b"\r\n\r\n", 1)[1]
    dec, asm, n = ChunkDecoder(65536), MessageAssembler(), 0
    for s in slices(raw):
        for c in dec.feed(s):
            if c.kind is ChunkKind.DATA and asm.feed(c) is not None:
                n += 1
    assert n == 8 and dec.ended


def test_tunnel_assembler_bounds_open_messages_and_bytes():
    from libarms.transport.tunnel import ChunkDecoder, MessageAssembler
    from libarms.transport.tunnel import encode_chunk
    asm = MessageAssembler(max_message=1000)
    dec = ChunkDecoder(65536)
    with pytest.raises(ProtocolError, match="open at once"):
        for i in range(1, 100):
            for c in dec.feed(encode_chunk(b"<arms-message>", i, False)):
                asm.feed(c)
    asm = MessageAssembler(max_message=1000)
    with pytest.raises(ProtocolError, match="exceed"):
        for i in range(1, 30):
            for c in dec.feed(encode_chunk(b"x" * 100, 1000 + i, False)):
                asm.feed(c)
