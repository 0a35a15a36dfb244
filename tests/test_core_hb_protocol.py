"""Heartbeat datagram decoder, verifier and pure-Python builder against the libarms 5.33
heartbeat vectors (arms-agent.md 1.3-1.5)."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings, strategies as st

from conftest_core import (SPEC_DIST_ID, SPEC_EMPTY, SPEC_FULL, SPEC_FULL_CALLS, hb_vector_files,
                           load_hb_vector)
from libarms.errors import ArmsError, Err, ProtocolError
from libarms.protocol import heartbeat as hbp
from _vectors import VECTORS_DIR  # noqa: E402

VECTORS = [load_hb_vector(p) for p in hb_vector_files()]
IDS = [v["name"] for v in VECTORS]


def _build(calls, dist):
    b = hbp.PacketBuilder(dist)
    for name, args, eexist in calls:
        if eexist:
            with pytest.raises(ArmsError) as ei:
                getattr(b, name)(*args)
            assert ei.value.code == Err.EEXIST
        else:
            getattr(b, name)(*args)
    return b


def test_vector_set_covers_every_item_kind_and_the_long_key():
    kinds = {type(i) for v in VECTORS for i in hbp.parse_packet(v["packet"]).items}
    assert kinds == {hbp.CpuUsage, hbp.CpuDetailUsage, hbp.MemUsage, hbp.DiskUsage,
                     hbp.TrafficCount, hbp.TrafficRate, hbp.RadioWave}
    assert any(len(v["passphrase"]) > 64 for v in VECTORS)
    assert len(VECTORS) == 10


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_python_builder_rebuilds_vector_byte_for_byte(vec):
    b = _build(vec["calls"], vec["distribution_id"])
    assert b.build(vec["passphrase"]) == vec["packet"]


@pytest.mark.parametrize("vec", VECTORS, ids=IDS)
def test_receiver_verifies_every_vector_and_rejects_any_one_bit_flip(vec):
    pkt = vec["packet"]
    assert hbp.verify_packet(pkt, vec["passphrase"])
    parsed = hbp.parse_packet(pkt)
    assert str(parsed.distribution_id) == vec["distribution_id"]
    assert parsed.digest == pkt[4:24]
    assert len(parsed.items) == sum(1 for c in vec["calls"] if not c[2])
    for bit in range(len(pkt) * 8):
        flipped = bytearray(pkt)
        flipped[bit // 8] ^= 1 << (bit % 8)
        assert not hbp.verify_packet(bytes(flipped), vec["passphrase"]), bit
    assert not hbp.verify_packet(pkt, vec["passphrase"] + "x")


def test_spec_vectors_rebuild_and_decode():
    assert hbp.PacketBuilder(SPEC_DIST_ID).build("secret") == SPEC_EMPTY
    assert _build(SPEC_FULL_CALLS, SPEC_DIST_ID).build(b"secret") == SPEC_FULL
    items = hbp.parse_packet(SPEC_FULL).items
    assert items[0] == hbp.CpuUsage(0, 42)
    assert items[2] == hbp.MemUsage(0, 0x0102030405060708, 0x1112131415161718)
    assert items[-1] == hbp.RadioWave(4, 0, 90, 10, 55)


def test_two_servers_get_the_same_body_with_different_digests():
    a1, a2 = (load_hb_vector(os.path.join(hbp_dir(), f"hb-B-server{i}.json")) for i in (1, 2))
    assert a1["packet"][24:] == a2["packet"][24:]
    assert a1["packet"][4:24] != a2["packet"][4:24]


def hbp_dir():
    return VECTORS_DIR + "/heartbeat-harness"


def test_builder_capacity_is_140_cpu_items_then_esize():
    b = hbp.PacketBuilder(SPEC_DIST_ID)
    for i in range(140):
        b.set_cpu_usage(i, 1)
    assert len(b) == 1024
    with pytest.raises(ArmsError) as ei:
        b.set_cpu_usage(140, 1)
    assert ei.value.code == Err.ESIZE
    b.clear()
    assert len(b) == 44
    b.set_cpu_usage(0, 1)


def test_same_index_in_another_kind_is_not_a_duplicate():
    b = hbp.PacketBuilder(SPEC_DIST_ID)
    b.set_mem_usage(0, 1, 2)
    b.set_disk_usage(0, 1, 2)
    with pytest.raises(ArmsError):
        b.set_disk_usage(0, 3, 4)


@pytest.mark.parametrize("mutate, why", [
    (lambda p: p[:43], "short"),
    (lambda p: p + bytes(1024), "long"),
    (lambda p: b"\x00\x02" + p[2:], "no hmac tlv"),
    (lambda p: p[:24] + b"\x00\x12" + p[26:], "no dist id tlv"),
    (lambda p: p + b"\x00\x33\x00", "stray bytes"),
    (lambda p: p + b"\x00\x33\x00\x09\x00", "overrun"),
    (lambda p: p + b"\x00\x33\x00\x02\x00\x01", "wrong item length"),
])
def test_malformed_datagrams_raise_protocol_error(mutate, why):
    with pytest.raises(ProtocolError):
        hbp.parse_packet(mutate(SPEC_FULL))


def test_unknown_item_types_are_kept_uninterpreted():
    pkt = SPEC_EMPTY + b"\x00\x99\x00\x02ab"
    assert hbp.parse_packet(pkt).items == (hbp.UnknownItem(0x99, b"ab"),)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=1100))
def test_random_datagrams_parse_or_raise_protocol_error(data):
    try:
        hbp.parse_packet(SPEC_EMPTY[:24] + data)
    except ProtocolError:
        pass
    assert not hbp.verify_packet(data, "secret") or data[4:24] == hbp.compute_digest(data, "secret")


def test_distribution_id_text_roundtrip_and_errors():
    d = hbp.DistributionId.parse("0001-1234-5678-9abc-DEF0-1122-3344-5566")
    assert str(d) == "0001-1234-5678-9ABC-DEF0-1122-3344-5566"
    assert d.vendor_code == 0x12345678 and d.sa_code == 0xDEF0112233445566
    for bad in ("", "0001-1234", "0001-1234-5678-9ABC-DEF0-1122-3344-556G"):
        with pytest.raises(ValueError):
            hbp.DistributionId.parse(bad)
