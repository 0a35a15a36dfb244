"""Pull-phase protocol against the libarms 5.33 captures, both ways, and parser hardening."""

import json
import pathlib

import pytest
from hypothesis import given, settings, strategies as st

from libarms import Line, LineType, ProtocolError
from libarms.errors import ConfigError
from libarms.protocol import (DistributionId, HeartbeatInfo, Module, ModuleConfig, ResponseParser,
                              build_config_solicitation_request, build_config_solicitation_response,
                              build_http_response, build_location_config, build_post,
                              build_rs_solicitation_request, build_rs_solicitation_response,
                              parse_config_solicitation_response, parse_http_response,
                              parse_initial_config, parse_location_config,
                              parse_rs_solicitation_response, parse_solicitation_request, parse_url)
from libarms.protocol.pull import FatalAnswer
from _vectors import VECTORS_DIR  # noqa: E402

V = pathlib.Path(VECTORS_DIR)
P = json.loads((V / "parameters.json").read_text())
DIST = P["distribution_id"]
DESC = P["description_sent"]
FW = P["firmware_info_sent"]


def vec(name, scenario="tunnel"):
    return next((V / scenario).glob(name + "-*.http")).read_bytes()


def ls_response():
    return parse_rs_solicitation_response(parse_http_response(vec("02")).body)


def rs_response():
    return parse_config_solicitation_response(parse_http_response(vec("04")).body)


@pytest.mark.parametrize("scenario", ["tunnel", "simple"])
def test_rs_solicitation_request_is_byte_identical_to_libarms(scenario):
    body = build_rs_solicitation_request(DIST, description=DESC)
    assert build_post(parse_url(P["ls_url"]).path, DIST, P["ls_sa_key"], body) == vec("01", scenario)


@pytest.mark.parametrize("scenario", ["tunnel", "simple"])
def test_config_solicitation_request_is_byte_identical_to_libarms(scenario):
    body = build_config_solicitation_request(DIST, description=DESC, firmware_info=FW)
    assert build_post("/rs.cgi", DIST, P["rs_preshared_key"], body) == vec("03", scenario)


def test_ls_response_vector_parses_to_documented_values():
    r = ls_response()
    assert r.result_code == 100
    assert r.rs_urls == (P["rs_url"],)
    assert r.rs_preshared_key == P["rs_preshared_key"]
    assert (r.ll_timeout, r.rs_retry_max, r.rs_retry_interval, r.lifetime) == (30, 1, 2, 0)
    assert r.lines == (Line(LineType.DHCP, 1),)
    assert r.rs_ca_pem.strip() == (V / "certs/ca.pem").read_text().strip()


def test_rs_response_vector_parses_to_documented_values():
    r = rs_response()
    assert r.result_code == 100
    assert r.modules == (Module(1001, "1.0.0", "module-1001-location"),)
    assert [(c.id, c.data) for c in r.configs] == [
        (1001, b"hostname fake-sa\ninterface lan0 address 192.0.2.1/24\n")]
    assert r.heartbeat == (HeartbeatInfo("127.0.0.1", 16000, "hb-passphrase-xyz", 2, ("hmac-sha1",)),)
    assert r.heartbeat[0].passphrase == P["heartbeat_passphrase"]
    assert (r.push_port, r.push_timeout) == (10443, 60)
    assert r.rs_pull_server_urls == (P["rs_url"],)
    assert r.rs_push_server_addresses == ("127.0.0.1",)
    assert r.sa_certificate.strip() == (V / "certs/sa.pem").read_text().strip()
    assert r.sa_private_key.startswith("-----BEGIN PRIVATE KEY-----\n")


def test_server_builders_reproduce_the_captured_ls_and_rs_answers():
    r = ls_response()
    info = r.rs_info[0]
    # the location-config text we write is the one the fake LS wrote
    assert build_location_config(info.location.lines, info.location.rs_certificate) == info.md_config
    body = build_rs_solicitation_response(100, rs_preshared_key=r.rs_preshared_key,
                                          rs_info=[(info.url, info.md_config)], ll_timeout=30,
                                          rs_retry_max=1, rs_retry_interval=2, lifetime=0)
    assert build_http_response(body) == vec("02")
    s = rs_response()
    body = build_config_solicitation_response(
        100, sa_certificate=s.sa_certificate, sa_private_key=s.sa_private_key,
        push_port=s.push_port, push_timeout=s.push_timeout, heartbeat=s.heartbeat,
        rs_push_server_addresses=s.rs_push_server_addresses,
        rs_pull_server_urls=s.rs_pull_server_urls, modules=s.modules, configs=s.configs)
    assert build_http_response(body) == vec("04")


def test_server_parses_the_captured_requests():
    q = parse_solicitation_request(parse_http_request_body(vec("01")))
    assert (q.type, q.distribution_id, q.description, q.trigger) == (
        "rs-solicitation", DIST, DESC, "power on boot")
    q = parse_solicitation_request(parse_http_request_body(vec("03")))
    assert (q.type, q.protocol_version, q.firmware_info) == ("config-solicitation", "4.0", FW)


def parse_http_request_body(raw):
    return raw.split(b"\r\n\r\n", 1)[1]


def test_response_parser_takes_the_answer_one_byte_at_a_time():
    raw = vec("04")
    p = ResponseParser()
    done = [p.feed(raw[i:i + 1]) for i in range(len(raw))]
    assert done.index(True) == len(raw) - 1
    assert p.response.status == 200 and p.response.body == parse_http_response(raw).body


def test_response_parser_ends_an_unframed_body_at_the_closing_tag_and_reads_chunks():
    body = b"<arms-message><arms-response type=\"x\"></arms-response></arms-message>"
    p = ResponseParser()
    assert p.feed(b"HTTP/1.1 200 OK\r\n\r\n" + body + b"\r\n")
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x\r\n world\r\n0\r\n\r\n"
    assert parse_http_response(chunked).body == b"hello world"


@given(st.binary(max_size=300))
@settings(max_examples=200, deadline=None)
def test_response_parser_either_parses_or_raises_protocol_error(data):
    try:
        parse_http_response(b"HTTP/1.0 200 OK\r\n" + data)
    except ProtocolError:
        pass


def test_distribution_id_text_binary_round_trip_and_upper_case():
    d = DistributionId.parse(DIST.lower())
    assert str(d) == DIST
    assert (d.version, d.vendor_code, d.sa_type, d.sa_code) == (1, 0x12345678, 0x9ABC, 0xDEF0112233445566)
    assert DistributionId.from_bytes(d.to_bytes()) == d
    assert str(DistributionId(1, 0x1234, 5, 42)) == "0001-0000-1234-0005-0000-0000-0000-002A"
    with pytest.raises(ConfigError):
        DistributionId.parse("0001-0000-1234")


def test_initial_config_of_the_capture_parses():
    text = P["initial_config_file_bytes"].encode().decode("unicode_escape")
    c = parse_initial_config(text)
    assert (c.ls_urls, c.retry_interval, c.retry_max) == ((P["ls_url"],), 1, 1)
    assert parse_initial_config(c.to_text()) == c


def test_initial_config_with_accounts_and_its_errors():
    full = ("https://127.0.0.1/a\n\n3\n3\n\nanon@isp\npw\nv6@isp\npw6\n\n"
            "0120\n1\napn.example\nip\nmob\nmpw\n")
    c = parse_initial_config(full)
    assert c.pppoe == ("anon@isp", "pw") and c.pppoe_ipv6 == ("v6@isp", "pw6")
    assert c.mobile.apn == "apn.example" and c.mobile.cid == 1
    five = "".join(f"https://127.0.0.{i}/\n" for i in range(5)) + "\n1\n1\n"
    for bad, why in [(five, "at most 4"), ("https://127.0.0.1/\n1\n1\n", "line 2: not an http"),
                     ("https://example.com/\n\n1\n1\n", "numeric"), ("https://127.0.0.1/\n\nx\n1\n", "decimal")]:
        with pytest.raises(ConfigError, match=why):
            parse_initial_config(bad)


def test_location_config_lines_and_certificate_round_trip():
    lines = (Line(LineType.PPPOE, 1, pppoe_id="user@example.jp", pppoe_pass="pass1234"),
             Line(LineType.MOBILE, 2, pppoe_id="m", pppoe_pass="p", telno="0120", cid=3, apn="a.b",
                  pdp="ip", ipaddr="10.0.0.1"),
             Line(LineType.STATIC, 3, ipaddr="192.0.2.9"), Line(LineType.RA, 4))
    pem = (V / "certs/ca.pem").read_text()
    c = parse_location_config(build_location_config(lines, pem))
    assert c.lines == lines and c.rs_certificate.strip() == pem.strip()
    # the spec's own example form: semicolons, indentation, "};"
    c = parse_location_config("line-dhcp {\n    ifindex 0;\n};\nline-pppoe { ifindex 2; account a; password b; };\n")
    assert c.lines == (Line(LineType.DHCP, 0), Line(LineType.PPPOE, 2, pppoe_id="a", pppoe_pass="b"))
    with pytest.raises(ProtocolError):
        parse_location_config("x" * 3000)


ENTITY = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY e "boom">]>'
          b'<arms-message><arms-response type="rs-solicitation"><result-code>100</result-code>'
          b'</arms-response></arms-message>')


@pytest.mark.parametrize("data,why", [
    (ENTITY, "DTD|entity"),
    (b"<arms-message><arms-response>", "well-formed"),
    (b"<arms-message><arms-response type=\"rs-solicitation\"><description>\xc3\xa9</description>"
     b"</arms-response></arms-message>", "ASCII"),
    (b"<arms-message>" + b" " * (70 * 1024) + b"</arms-message>", "too large"),
    (b"<other/>", "root element"),
    (b"<arms-message><arms-request type=\"rs-solicitation\"></arms-request></arms-message>", "arms-response"),
])
def test_bad_ls_answers_raise_a_clear_protocol_error(data, why):
    with pytest.raises(ProtocolError, match=why):
        parse_rs_solicitation_response(data)


def test_too_many_rs_entries_or_empty_location_config_is_a_fatal_answer():
    many = build_rs_solicitation_response(100, rs_info=[("https://127.0.0.1/", "x {\n}\n")] * 5)
    assert len(parse_rs_solicitation_response(many).rs_info) == 5
    six = many.replace(b"<rs-info>", b"<rs-info><url>https://127.0.0.2/</url></rs-info><rs-info>", 1)
    with pytest.raises(FatalAnswer):
        parse_rs_solicitation_response(six)
    with pytest.raises(FatalAnswer):
        parse_rs_solicitation_response(build_rs_solicitation_response(100, rs_info=[("https://127.0.0.1/", "")]))


def test_integer_with_trailing_space_counts_as_absent_and_non_success_has_no_body():
    data = build_rs_solicitation_response(100, rs_info=[("https://127.0.0.1/", None)], rs_retry_max=4)
    r = parse_rs_solicitation_response(data.replace(b"<rs-retry-max>4<", b"<rs-retry-max>4 <"))
    assert r.rs_retry_max == 0
    r = parse_rs_solicitation_response(build_rs_solicitation_response(503))
    assert r.result_code == 503 and r.rs_info == ()


def test_rs_answer_with_config_for_unknown_module_or_bad_base64_is_refused():
    ok = build_config_solicitation_response(100, modules=[Module(1, "1", "m")],
                                            configs=[ModuleConfig(1, b"\x00\xffbin", encoding="base64")])
    assert parse_config_solicitation_response(ok).configs[0].data == b"\x00\xffbin"
    with pytest.raises(ProtocolError, match="not in the module list"):
        parse_config_solicitation_response(build_config_solicitation_response(
            100, modules=[Module(1)], configs=[ModuleConfig(2, b"x")]))
    with pytest.raises(ProtocolError, match="base64"):
        parse_config_solicitation_response(ok.replace(b'encoding="base64">', b'encoding="base64"> '))


@given(st.binary(max_size=400))
@settings(max_examples=150, deadline=None)
def test_any_bytes_from_a_server_parse_or_raise_protocol_error(data):
    for parse in (parse_rs_solicitation_response, parse_config_solicitation_response):
        try:
            parse(data)
        except ProtocolError:
            pass


@given(st.text(alphabet=st.sampled_from(list("line-dhcppoe{}; \t\r\nifndx0123rs-certificateBEGINEND-")), max_size=300))
@settings(max_examples=150, deadline=None)
def test_any_location_text_parses_or_raises_protocol_error(text):
    try:
        parse_location_config(text)
    except ProtocolError:
        pass


@given(st.text(max_size=200))
@settings(max_examples=60, deadline=None)
def test_any_initial_config_text_parses_or_raises_config_error(text):
    try:
        c = parse_initial_config(text)
    except ConfigError:
        return
    assert 1 <= len(c.ls_urls) <= 4


_word = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E,
                                       blacklist_characters=";{}"), min_size=1, max_size=20)


@st.composite
def lines(draw):
    t = draw(st.sampled_from([LineType.PPPOE, LineType.PPPOE_IPV6, LineType.DHCP, LineType.MOBILE,
                              LineType.STATIC, LineType.RA]))
    kw = {}
    if t in (LineType.PPPOE, LineType.PPPOE_IPV6, LineType.MOBILE):
        kw.update(pppoe_id=draw(_word), pppoe_pass=draw(_word))
    if t == LineType.MOBILE:
        kw.update(telno=draw(_word), cid=draw(st.integers(0, 99)), apn=draw(_word), pdp="ip")
    if t in (LineType.MOBILE, LineType.STATIC):
        kw["ipaddr"] = draw(_word)
    return Line(t, draw(st.integers(0, 999)), **kw)


@given(st.lists(lines(), max_size=5))
@settings(max_examples=100, deadline=None)
def test_location_config_round_trips_any_lines(ls):
    assert parse_location_config(build_location_config(ls)).lines == tuple(ls)


@given(st.integers(0, 0xFFFF), st.integers(0, 0xFFFFFFFF), st.integers(0, 0xFFFF), st.integers(0, 2**64 - 1))
def test_distribution_id_round_trips_text_and_bytes(v, vendor, t, code):
    d = DistributionId(v, vendor, t, code)
    assert DistributionId.parse(str(d)) == d == DistributionId.from_bytes(d.to_bytes())
    assert len(str(d)) == 39 and str(d) == str(d).upper()
