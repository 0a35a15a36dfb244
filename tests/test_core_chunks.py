"""Tunnel chunk codec: the Python reference and the C-backed codec replay the libarms 5.33
tunnel captures, split at every byte boundary, and agree with each other on any input."""

from __future__ import annotations

import glob
import os

import pytest
from hypothesis import given, settings, strategies as st

from libarms.errors import ProtocolError
from libarms.protocol import chunks as pychunks
from libarms.protocol.chunks import Chunk, ChunkKind
from _vectors import VECTORS_DIR  # noqa: E402

VEC = VECTORS_DIR + "/tunnel"


def _impls():
    impls = [pytest.param(pychunks, id="python")]
    try:
        from libarms import chunkcodec
    except ImportError:  # the C-backed face is not there yet
        return impls
    if chunkcodec.HAVE_CORE:
        impls.append(pytest.param(chunkcodec, id="c"))
    return impls


IMPLS = _impls()


def _read(name: str) -> bytes:
    with open(os.path.join(VEC, name), "rb") as f:
        return f.read()


def _stream_body(name: str) -> bytes:
    raw = _read(name)
    head_end = raw.index(b"\r\n\r\n") + 4
    return raw[head_end:]


def _chunk_files():
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(VEC, "*.chunks")))


def _messages(chunks: list[Chunk]) -> list[bytes]:
    """Join DATA chunks into messages the way a tunnel peer does (same id, up to ;trail)."""
    msgs, cur, cur_id = [], b"", None
    for c in chunks:
        if c.kind is not ChunkKind.DATA:
            continue
        assert cur_id in (None, c.id), "chunks of two messages interleaved"
        cur += c.data
        cur_id = c.id
        if c.trail:
            msgs.append(cur)
            cur, cur_id = b"", None
    assert cur == b"", "message without a ;trail chunk"
    return msgs


@pytest.mark.parametrize("codec", IMPLS)
@pytest.mark.parametrize("name", _chunk_files())
def test_chunk_file_decodes_and_reencodes_byte_for_byte(codec, name):
    raw = _read(name)
    got = codec.ChunkDecoder().feed(raw)
    assert got, name
    if "echo-request" in name:
        assert got == [Chunk(ChunkKind.ECHO_REQUEST, 0, True, b"echo")]
        assert raw == codec.ECHO_REQUEST_CHUNK
        return
    if "echo-response" in name:
        assert got == [Chunk(ChunkKind.ECHO_RESPONSE, 0, True, b"echo")]
        assert raw == codec.ECHO_RESPONSE_CHUNK
        return
    assert all(c.kind is ChunkKind.DATA for c in got)
    assert len({c.id for c in got}) == 1 and got[0].id != 0
    assert [c.trail for c in got] == [False] * (len(got) - 1) + [True]
    msg = b"".join(c.data for c in got)
    assert msg.startswith(b"<arms-message>") and msg.endswith(b"</arms-message>")
    assert b"".join(codec.encode_chunk(c.data, c.id, c.trail) for c in got) == raw


def test_multi_chunk_messages_match_the_capture_counts():
    dec = pychunks.ChunkDecoder()
    assert len(dec.feed(_read("14-tunnel-c2s-md-command-response.chunks"))) == 3
    assert len(pychunks.ChunkDecoder().feed(_read("17-tunnel-c2s-read-status-done-request.chunks"))) == 4


def test_zero_chunk_vector_is_the_end_of_stream():
    got = pychunks.ChunkDecoder().feed(_read("27-tunnel-c2s-after-reboot-zero-chunk.raw"))
    assert got == [Chunk(ChunkKind.END, 0, False, b"")]
    assert _read("27-tunnel-c2s-after-reboot-zero-chunk.raw") == pychunks.END_CHUNK


def _expected_stream(direction: str) -> list[Chunk]:
    files = [f for f in _chunk_files() if f"-tunnel-{direction}-" in f]
    out = []
    for f in files:
        out += pychunks.ChunkDecoder().feed(_read(f))
    if direction == "c2s":
        out.append(Chunk(ChunkKind.END, 0, False, b""))
    return out


@pytest.mark.parametrize("codec", IMPLS)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_stream_split_at_every_byte_boundary_gives_the_same_chunks(codec, direction):
    body = _stream_body(f"tunnel-stream-{direction}.raw")
    expected = _expected_stream(direction)
    assert len(_messages(expected)) >= 5
    for cut in range(len(body) + 1):
        dec = codec.ChunkDecoder()
        got = dec.feed(body[:cut]) + dec.feed(body[cut:])
        assert got == expected, f"split at {cut}"


@pytest.mark.parametrize("codec", IMPLS)
@pytest.mark.parametrize("direction", ["c2s", "s2c"])
def test_stream_fed_one_byte_at_a_time_gives_the_same_chunks(codec, direction):
    body = _stream_body(f"tunnel-stream-{direction}.raw")
    dec = codec.ChunkDecoder()
    got = []
    for i in range(len(body)):
        got += dec.feed(body[i:i + 1])
    assert got == _expected_stream(direction)


@pytest.mark.parametrize("codec", IMPLS)
@pytest.mark.parametrize("header, kind, cid, trail", [
    (b"4;echo;trail", ChunkKind.ECHO_RESPONSE, 0, True),
    (b"4;echo-response", ChunkKind.ECHO_RESPONSE, 0, False),
    (b"4;echo-request;trail", ChunkKind.ECHO_REQUEST, 0, True),
    (b"0004;ID=3;x-ext=1;;id=17", ChunkKind.DATA, 17, False),
    (b"4", ChunkKind.DATA, 0, False),
    (b"4;id=4294967295;trail", ChunkKind.DATA, 2**32 - 1, True),
])
def test_accepted_header_forms(codec, header, kind, cid, trail):
    got = codec.ChunkDecoder().feed(header + b"\r\nabcd\r\n")
    assert got == [Chunk(kind, cid, trail, b"abcd")]


@pytest.mark.parametrize("codec", IMPLS)
def test_uppercase_hex_size_with_leading_zeros(codec):
    data = b"x" * 0xAB
    assert codec.ChunkDecoder().feed(b"00aB;id=9\r\n" + data + b"\r\n") == [
        Chunk(ChunkKind.DATA, 9, False, data)]


@pytest.mark.parametrize("codec", IMPLS)
@pytest.mark.parametrize("bad", [
    b"zz;id=1\r\nab\r\n",                 # size not hex
    b";id=1\r\nab\r\n",                   # empty size
    b"2;id=\r\nab\r\n",                   # empty id
    b"2;id=1x\r\nab\r\n",                 # id not decimal
    b"2;id=4294967296\r\nab\r\n",         # id beyond 32 bits
    b"2;id=1\r\nabXY",                    # data not followed by CR LF
    b"2;id=1\nab\r\n",                    # header ends in bare LF
    b"2 ;id=1\r\nab\r\n",                 # white space in size
    b"10001\r\n",                         # larger than max_chunk (65536)
    b"ffffffffffffffffff\r\n",            # absurd size
    b"0\r\nX-Trailer: 1\r\n\r\n",         # trailers
    b"0\r\n\r\n4;id=1\r\nabcd\r\n",       # bytes after the end chunk
    b"1" + b";x" * 200 + b"\r\na\r\n",    # header of 401 bytes
])
def test_malformed_input_raises_protocol_error(codec, bad):
    with pytest.raises(ProtocolError):
        codec.ChunkDecoder().feed(bad)


@pytest.mark.parametrize("codec", IMPLS)
def test_header_limit_is_255_bytes(codec):
    ok = b"1;" + b"x" * 253  # 255 bytes
    assert codec.ChunkDecoder().feed(ok + b"\r\na\r\n") == [Chunk(ChunkKind.DATA, 0, False, b"a")]
    with pytest.raises(ProtocolError):
        codec.ChunkDecoder().feed(ok + b"y\r\na\r\n")


@pytest.mark.parametrize("codec", IMPLS)
def test_oversized_chunk_is_refused_before_its_data_is_buffered(codec):
    dec = codec.ChunkDecoder(max_chunk=1024)
    assert dec.feed(b"400;id=1\r\n" + b"a" * 1024 + b"\r\n")[0].data == b"a" * 1024
    with pytest.raises(ProtocolError):
        dec.feed(b"401;id=1\r\n")


@pytest.mark.parametrize("codec", IMPLS)
def test_decoder_stays_failed_after_an_error(codec):
    dec = codec.ChunkDecoder()
    with pytest.raises(ProtocolError):
        dec.feed(b"g\r\n")
    with pytest.raises(ProtocolError):
        dec.feed(b"4;id=1\r\nabcd\r\n")


@pytest.mark.parametrize("codec", IMPLS)
def test_split_message_pieces_share_the_id_and_only_the_last_has_trail(codec):
    xml = b"<arms-message>" + b"a" * 20000 + b"</arms-message>"
    pieces = codec.split_message(xml, 1234)
    assert len(pieces) == 3
    assert pieces[0].startswith(b"2000;id=1234\r\n") and pieces[2].startswith(b"")
    assert pieces[-1].split(b"\r\n")[0].endswith(b";trail")
    got = codec.ChunkDecoder().feed(b"".join(pieces))
    assert _messages(got) == [xml] and {c.id for c in got} == {1234}
    assert codec.split_message(b"<a/>", 7) == [b"4;id=7;trail\r\n<a/>\r\n"]


@pytest.mark.parametrize("codec", IMPLS)
def test_encoder_refuses_what_cannot_be_framed(codec):
    with pytest.raises(ValueError):
        codec.encode_chunk(b"", 1, True)
    with pytest.raises(ValueError):
        codec.encode_chunk(b"a" * 65536, 1, True)
    with pytest.raises(ValueError):
        codec.encode_chunk(b"a", -1, True)
    with pytest.raises(ValueError):
        codec.split_message(b"", 1)


@pytest.mark.parametrize("codec", IMPLS)
@settings(max_examples=150, deadline=None)
@given(pieces=st.lists(st.tuples(st.binary(min_size=1, max_size=300),
                                 st.integers(0, 2**32 - 1), st.booleans()), max_size=8),
       cuts=st.lists(st.integers(0, 4000), max_size=6))
def test_encode_then_decode_roundtrips_at_any_split(codec, pieces, cuts):
    stream = b"".join(codec.encode_chunk(d, i, t) for d, i, t in pieces) + codec.END_CHUNK
    bounds = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
    dec = codec.ChunkDecoder()
    got = []
    for a, b in zip(bounds, bounds[1:]):
        got += dec.feed(stream[a:b])
    assert got == [Chunk(ChunkKind.DATA, i, t, d) for d, i, t in pieces] + [
        Chunk(ChunkKind.END, 0, False, b"")]


@settings(max_examples=400, deadline=None)
@given(data=st.one_of(
    st.binary(max_size=600),
    st.lists(st.sampled_from([b"4", b"0", b"a", b"F", b";", b"id=", b"12", b"trail", b"echo",
                              b"\r\n", b"\r", b"\n", b"abcd", b"echo-request", b"\x00", b"-"]),
             max_size=60).map(b"".join)),
    cut=st.integers(0, 600))
def test_random_bytes_decode_or_raise_protocol_error_alike_in_every_codec(data, cut):
    results = []
    for p in IMPLS:
        codec = p.values[0]
        dec = codec.ChunkDecoder(max_chunk=4096)
        try:
            got = dec.feed(data[:cut]) + dec.feed(data[cut:])
            results.append(("ok", got))
        except ProtocolError:
            results.append(("error", None))
    assert all(r == results[0] for r in results), results
