"""SKSTACK-IP reader and dialects: every record shape of §1.8-1.10, garbage never crashes."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge import sk
from bridge.errors import ConfigError

METER = "FE80:0000:0000:0000:C2F9:4500:AABB:CCDD"
OWN = "FE80:0000:0000:0000:021D:1290:1234:5678"
FRAME = bytes.fromhex("1081000302880105FF017202E704000001F4E804001E0032")


def feed_all(reader, data: bytes, chunks=None):
    out = []
    if chunks is None:
        return reader.feed(data)
    pos = 0
    for n in chunks:
        out += reader.feed(data[pos:pos + n])
        pos += n
    out += reader.feed(data[pos:])
    return out


def test_status_payload_and_echo_lines():
    recs = sk.Reader().feed(b"SKVER\r\nEVER 1.2.10\r\nOK\r\nFAIL ER05\r\nFAIL\r\nOK 01\r")
    assert recs == [sk.Echo("SKVER"), sk.Payload("EVER", ("1.2.10",)), sk.Ok(), sk.Fail(5),
                    sk.Fail(None), sk.Ok("01")]


def test_events_of_both_families_parse_by_token_shape():
    recs = sk.Reader().feed(
        f"EVENT 21 {METER} 00\r\nEVENT 25 {METER} 0\r\nEVENT 21 {METER} 0 02\r\nEVENT 32\r\n"
        f"EVENT C0\r\nEVENT 25 {METER.lower()}\r\n".encode())
    assert recs == [sk.Event(0x21, METER, None, 0), sk.Event(0x25, METER, 0, None),
                    sk.Event(0x21, METER, 0, 2), sk.Event(0x32), sk.Event(0xC0),
                    sk.Event(0x25, METER, None, None)]


@pytest.mark.parametrize("side_line", [b"", b"  Side:0\r\n"])
def test_epandesc_block_is_keyed_by_name(side_line):
    data = (f"EVENT 20 {OWN}\r\nEPANDESC\r\n  Channel:3B\r\n  Channel Page:09\r\n  Pan ID:1A2B\r\n"
            f"  Addr:C0F94500AABBCCDD\r\n  LQI:8C\r\n").encode() + side_line + (
        f"  PairID:89ABCDEF\r\nEVENT 22 {OWN}\r\n").encode()
    recs = sk.Reader().feed(data)
    assert recs[1] == sk.PanDesc(0x3B, "09", 0x1A2B, "C0F94500AABBCCDD", 0x8C,
                                 0 if side_line else None, "89ABCDEF")
    assert recs[2] == sk.Event(0x22, OWN)


def test_two_epandesc_blocks_back_to_back_both_come_out():
    block = ("EPANDESC\r\n  Channel:{0:02X}\r\n  Channel Page:09\r\n  Pan ID:1A2B\r\n"
             "  Addr:C0F94500AABBCCDD\r\n  LQI:8C\r\n")
    recs = sk.Reader().feed((block.format(0x21) + block.format(0x22) + "OK\r\n").encode())
    assert [r.channel for r in recs if isinstance(r, sk.PanDesc)] == [0x21, 0x22]


def test_epandesc_missing_mandatory_key_is_garbage_not_a_crash():
    recs = sk.Reader().feed(b"EPANDESC\r\n  Channel:3B\r\nOK\r\n")
    assert isinstance(recs[0], sk.Garbage) and recs[1] == sk.Ok()


@pytest.mark.parametrize("shorts,side,rssi", [("1", None, None), ("1 0", 0, None),
                                               ("8C 1 0", 0, 0x8C)])
def test_hex_erxudp_of_9_10_and_11_tokens(shorts, side, rssi):
    line = (f"ERXUDP {METER} {OWN} 0E1A 0E1A C0F94500AABBCCDD {shorts} 0018 "
            f"{FRAME.hex().upper()}\r\n").encode()
    (rec,) = sk.Reader("hex").feed(line)
    assert rec == sk.RxUdp(METER, OWN, 3610, 3610, "C0F94500AABBCCDD", 1, side, rssi, FRAME, False)


@settings(max_examples=60)
@given(st.binary(min_size=1, max_size=60), st.lists(st.integers(1, 9), max_size=30),
       st.sampled_from(["binary", None]))
def test_binary_erxudp_with_crlf_inside_is_read_by_length(payload, chunks, mode):
    payload = b"\x10" + payload          # ECHONET frames start with 0x10 (auto mode relies on it)
    head = f"ERXUDP {METER} {OWN} 0E1A 0E1A C0F94500AABBCCDD 1 0 {len(payload):04X} ".encode()
    recs = feed_all(sk.Reader(mode), head + payload + b"\r\nOK\r\n", chunks)
    assert recs == [sk.RxUdp(METER, OWN, 3610, 3610, "C0F94500AABBCCDD", 1, 0, None, payload, True),
                    sk.Ok()]


def test_unknown_mode_tells_hex_from_binary_per_record():
    r = sk.Reader(None)
    hex_line = f"ERXUDP {METER} {OWN} 0E1A 0E1A C0F94500AABBCCDD 1 0018 {FRAME.hex()}\r\n".encode()
    bin_line = f"ERXUDP {METER} {OWN} 0E1A 0E1A C0F94500AABBCCDD 1 0018 ".encode() + FRAME + b"\r\n"
    recs = r.feed(hex_line + bin_line)
    assert [x.data for x in recs] == [FRAME, FRAME]
    assert [x.binary for x in recs] == [False, True]


def test_hex_erxudp_with_wrong_length_is_garbage_and_the_next_line_survives():
    line = f"ERXUDP {METER} {OWN} 0E1A 0E1A C0F94500AABBCCDD 1 0019 {FRAME.hex()}\r\nOK\r\n"
    recs = sk.Reader("hex").feed(line.encode())
    assert isinstance(recs[0], sk.Garbage) and recs[1] == sk.Ok()


def test_ipaddr_line_is_the_skll64_answer():
    assert sk.Reader().feed(f"{METER}\r\n".encode()) == [sk.Payload("IPADDR", (METER,))]


def test_j11_binary_frame_is_recognised():
    recs = sk.Reader().feed(b"\xd0\xf9\xee\x5d\x2f\xff\x00\x04\x03\x8b\x00\x00")
    assert isinstance(recs[0], sk.J11Frame)


def test_long_line_without_terminator_is_dropped_with_a_bound():
    r = sk.Reader()
    recs = r.feed(b"X" * (sk.MAX_LINE + 10))
    assert isinstance(recs[0], sk.Garbage)
    assert r.feed(b"OK\r\n") == [sk.Ok()]


@settings(max_examples=200)
@given(st.binary(max_size=300), st.lists(st.integers(1, 50), max_size=20),
       st.sampled_from(["hex", "binary", None]))
def test_garbage_never_crashes_and_a_following_ok_is_still_seen(noise, chunks, mode):
    r = sk.Reader(mode)
    feed_all(r, noise, chunks)
    # Whatever state the noise left, a terminator plus OK comes through within a bounded input.
    recs = r.feed(b"\r\n" + b"\r\n" * 3 + b"OK\r\n")
    if sk.Ok() not in recs:
        # Binary ERXUDP header in the noise may be waiting for its DATALEN bytes; feed them.
        recs += r.feed(b"\r\n" * (2 * sk.MAX_DATALEN + 4) + b"OK\r\n")
    assert sk.Ok() in recs


@given(st.lists(st.sampled_from([
    b"EVENT 21 " + METER.encode() + b" 00\r\n", b"OK\r\n", b"FAIL ER10\r\n", b"\r\n",
    b"EVER 1.5.2\r\n", b"  Channel:3B\r\n", b"EPANDESC\r\n", b"\xff\xfe\r\n", b"SKSCAN 2\r\n",
    b"ERXUDP " + METER.encode() + b" X\r\n"]), max_size=30), st.lists(st.integers(1, 7), max_size=40))
def test_line_sequences_parse_the_same_in_any_chunking(lines, chunks):
    data = b"".join(lines)
    whole = sk.Reader("hex").feed(data)
    assert feed_all(sk.Reader("hex"), data, chunks) == whole


def test_dialects_format_scan_and_sendto():
    a, c = sk.Dialect("A"), sk.Dialect("C")
    assert a.scan(6) == b"SKSCAN 2 FFFFFFFF 6\r\n"
    assert c.scan(7) == b"SKSCAN 2 FFFFFFFF 7 0\r\n"
    assert a.sendto_header("fe80::c2f9:4500:aabb:ccdd", 14) == \
        f"SKSENDTO 1 {METER} 0E1A 1 000E ".encode()
    assert c.sendto_header(METER, 14) == f"SKSENDTO 1 {METER} 0E1A 1 0 000E ".encode()
    assert a.other() == c
    with pytest.raises(ConfigError):
        sk.Dialect("J")


def test_link_local_address_from_mac_and_back():
    assert sk.link_local_from_mac("C0F94500AABBCCDD") == METER
    assert sk.link_local_from_mac("001D129012345678") == OWN
    assert sk.mac_from_link_local(METER) == "C0F94500AABBCCDD"


def test_secrets_are_masked_in_logged_commands():
    assert sk.masked(b"SKSETPWD C 0A1B2C3D4E5F\r\n") == "SKSETPWD C ****"
    assert sk.masked(b"SKSETRBID 0123456789ABCDEF0123456789ABCDEF\r\n") == "SKSETRBID ****"
    assert sk.masked(b"SKVER\r\n") == "SKVER"
