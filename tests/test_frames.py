"""The native protocol's frame codec: round trips, split reads, and every malformed case."""

import struct

import pytest

from pyraftkv.protocol.frames import (
    ERROR,
    HEADER_BYTES,
    MESSAGE,
    REPLY,
    REPLY_KINDS,
    FrameDecoder,
    ProtocolError,
    decode_error,
    encode_error,
    encode_frame,
)
from pyraftkv.protocol.methods import BY_NAME, METHOD_NUMBERS, METHODS


def test_round_trip_many_frames_fed_byte_by_byte():
    frames = [(i + 1, REPLY if i % 2 else MESSAGE, 0, bytes([i]) * i) for i in range(50)]
    data = b"".join(encode_frame(s, c, b, f) for s, c, f, b in frames)
    decoder = FrameDecoder(1024)
    got = []
    for i in range(len(data)):
        got.extend(decoder.feed(data[i : i + 1]))
    assert [tuple(f) for f in got] == frames
    assert decoder.buffered == 0


def test_several_frames_in_one_read_and_a_partial_tail():
    data = encode_frame(1, 2, b"abc") + encode_frame(2, 2, b"defg")
    decoder = FrameDecoder(1024)
    first = decoder.feed(data + data[:5])
    assert [f.body for f in first] == [b"abc", b"defg"]
    assert decoder.buffered == 5
    assert decoder.feed(data[5:])[0].body == b"abc"


def test_oversized_frame_is_refused_before_its_body_arrives():
    decoder = FrameDecoder(100)
    header_only = struct.pack("!IQBB", 10 + 101, 1, 2, 0)
    with pytest.raises(ProtocolError, match="outside"):
        decoder.feed(header_only)


def test_frame_at_the_limit_is_accepted():
    decoder = FrameDecoder(100)
    assert decoder.feed(encode_frame(7, 2, b"x" * 100))[0].body == b"x" * 100


def test_length_shorter_than_the_header_is_refused():
    with pytest.raises(ProtocolError):
        FrameDecoder(100).feed(struct.pack("!IQBB", 3, 1, 2, 0))


def test_unknown_code_is_refused():
    decoder = FrameDecoder(100, REPLY_KINDS)
    with pytest.raises(ProtocolError, match="unknown frame code 9"):
        decoder.feed(encode_frame(1, 9, b""))


def test_error_frames_carry_code_message_and_leader():
    frame = FrameDecoder(1000).feed(encode_error(5, 14, "etcdserver: not leader", "http://x:1"))[0]
    assert (frame.stream, frame.code) == (5, ERROR)
    assert decode_error(frame.body) == (14, "etcdserver: not leader", "http://x:1")


@pytest.mark.parametrize("body", [b"", b"\x00", struct.pack("!HH", 3, 10) + b"short"])
def test_malformed_error_bodies(body):
    with pytest.raises(ProtocolError):
        decode_error(body)


def test_header_is_fourteen_bytes():
    assert HEADER_BYTES == 14
    assert len(encode_frame(1, 1)) == 14


def test_method_numbers_are_unique_and_named_like_etcd():
    assert len(METHOD_NUMBERS) == len(METHODS)
    assert BY_NAME["Range"].grpc_name == "/etcdserverpb.KV/Range"
    assert BY_NAME["Watch"].streaming and not BY_NAME["Put"].streaming
