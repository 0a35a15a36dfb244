"""The agent's LS-skip state blob (version 2: line records + CRC-32) and the line format under it
(libarms/_lines.py): round trips of awkward values, every damage refused, version 1 blobs (JSON +
SHA-256, written by earlier releases) still restored."""

import hashlib
import json
import struct

import pytest
from hypothesis import given, settings, strategies as st

from libarms import Agent, ArmsError, Err, Line
from libarms import _lines
from libarms.agent import STATE_MAGIC
from libarms.callbacks import LineType

DIST = "0001-0000-0000-0000-0000-0000-0000-0A01"
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\tx\\y\r\n-----END CERTIFICATE-----\n"


def filled_agent() -> Agent:
    a = Agent(DIST)
    c = a.ctx
    c.rs_endpoint, c.rs_key = "https://127.0.0.1:1/rs.cgi", "k\tey\\ä"
    c.rs_urls = ["https://127.0.0.1:1/rs.cgi", "https://[::1]:2/rs\n.cgi", "https://x/3"]
    c.rs_certs = [PEM, None, ""]
    c.rs_retry_max, c.rs_retry_interval, c.ll_timeout = 4, 17, 90
    c.rs_lines = [Line(LineType.PPPOE, 1, "id@isp", "pa\tss\nword"),
                  Line(LineType.MOBILE, 2, "", "", "*99#", 3, "apn.example", "IP", "10.0.0.1")]
    c.last_line, c.current_rs, c.last_result = 1, 2, 200
    c.time_floor += 86400.123456              # above the build-time floor a new agent has
    return a


def context_fields(a: Agent) -> tuple:
    c = a.ctx
    return (c.rs_endpoint, c.rs_key, c.rs_urls, c.rs_certs, c.rs_retry_max, c.rs_retry_interval,
            c.ll_timeout, c.rs_lines, c.last_line, c.current_rs, c.last_result, c.time_floor)


def test_state_blob_round_trips_tabs_newlines_none_and_empty_certs():
    a = filled_agent()
    blob = a.dump_state()
    assert blob.startswith(STATE_MAGIC) and struct.unpack(">H", blob[17:19]) == (2,)
    b = Agent(DIST)
    b.restore_state(blob)
    assert context_fields(b) == context_fields(a)


def test_every_flipped_byte_of_a_state_blob_is_refused_and_the_context_kept():
    blob = filled_agent().dump_state()
    b = Agent(DIST)
    for i in range(len(blob)):
        bad = bytearray(blob)
        bad[i] ^= 0x20
        with pytest.raises(ArmsError) as e:
            b.restore_state(bytes(bad))
        assert e.value.code == Err.EINVAL
    assert b.ctx.rs_urls == [] and b.ctx.rs_endpoint == ""


def v1_blob(a: Agent) -> bytes:
    """The version-1 layout, as releases before the line format wrote it."""
    c = a.ctx
    payload = {"distribution_id": str(c.distribution_id), "rs_endpoint": c.rs_endpoint,
               "rs_urls": c.rs_urls, "rs_certs": c.rs_certs, "rs_key": c.rs_key,
               "rs_retry_max": c.rs_retry_max, "rs_retry_interval": c.rs_retry_interval,
               "ll_timeout": c.ll_timeout, "last_line": c.last_line, "current_rs": c.current_rs,
               "result": c.last_result, "time_floor": c.time_floor,
               "rs_lines": [{"type": int(l.type), "ifindex": l.ifindex, "pppoe_id": l.pppoe_id,
                             "pppoe_pass": l.pppoe_pass, "telno": l.telno, "cid": l.cid,
                             "apn": l.apn, "pdp": l.pdp, "ipaddr": l.ipaddr} for l in c.rs_lines]}
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode("ascii")
    head = STATE_MAGIC + struct.pack(">HI", 1, len(data))
    return head + data + hashlib.sha256(head + data).digest()


def test_a_version_1_blob_from_an_earlier_release_is_still_restored():
    a = filled_agent()
    b = Agent(DIST)
    b.restore_state(v1_blob(a))
    assert context_fields(b) == context_fields(a)
    damaged = bytearray(v1_blob(a))
    damaged[40] ^= 1
    with pytest.raises(ArmsError):
        Agent(DIST).restore_state(bytes(damaged))


def test_a_blob_of_another_device_or_an_unknown_version_is_refused():
    blob = filled_agent().dump_state()
    with pytest.raises(ArmsError, match="belongs to"):
        Agent("0001-0000-0000-0000-0000-0000-0000-0A02").restore_state(blob)
    v9 = blob[:17] + struct.pack(">H", 9) + blob[19:]
    with pytest.raises(ArmsError, match="state version 9"):
        Agent(DIST).restore_state(v9)


fields = st.text(st.characters(blacklist_categories=("Cs",)), max_size=30)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(fields, min_size=1, max_size=5), max_size=8))
def test_line_records_round_trip_any_strings(records):
    data = _lines.dump(records)
    assert data.count(b"\n") == len(records)
    assert _lines.load(data) == records


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_line_records_load_any_bytes_or_refuse_them_with_line_format_error(data):
    try:
        recs = _lines.load(data)
    except _lines.LineFormatError:
        return
    assert all(isinstance(f, str) for r in recs for f in r)


@pytest.mark.parametrize("data, words", [
    (b"a\\qb\n", "bad escape"), (b"ab\\\n", "bad escape"), (b"\xff\n", "not UTF-8"),
    (b"a\tb", "truncated"), (b"x" * 65 + b"\n", "more than the 64"),
])
def test_line_records_refuse_bad_escapes_bad_utf8_truncation_and_size(data, words):
    with pytest.raises(_lines.LineFormatError, match=words):
        _lines.load(data, limit=64)
