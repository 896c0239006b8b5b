"""protocol/header_block.py: HPACK decoding, checked against the hpack library's encoder
and decoder over sequences of blocks that share one dynamic table."""

from __future__ import annotations

import random

import pytest
from hpack import Decoder, Encoder

from pyraftkv.protocol.header_block import HeaderBlockError, HeaderDecoder

NAMES = [":path", ":method", "content-type", "te", "grpc-timeout", "token", "user-agent", "x-a"]


def random_fields(rng: random.Random) -> list[tuple[str, str]]:
    fields = []
    for _ in range(rng.randint(0, 12)):
        name = rng.choice(NAMES) if rng.random() < 0.8 else f"x-{rng.randrange(50)}"
        value = rng.choice(["", "POST", "application/grpc", "trailers", f"{rng.randrange(10**6)}m"])
        if rng.random() < 0.2:
            value = "".join(chr(rng.randrange(32, 127)) for _ in range(rng.randint(0, 300)))
        fields.append((name, value))
    return fields


@pytest.mark.parametrize("seed", range(6))
def test_blocks_decode_as_the_hpack_library_decodes_them(seed):
    rng = random.Random(seed)
    encoder, reference, ours = Encoder(), Decoder(), HeaderDecoder()
    for _ in range(400):
        if rng.random() < 0.05:
            encoder.header_table_size = rng.choice([0, 256, 1024, 4096])  # an update
        fields = random_fields(rng)
        sensitive = rng.random() < 0.2
        block = encoder.encode(
            [(n, v, sensitive) for n, v in fields] if sensitive else fields,
            huffman=rng.random() < 0.5,
        )
        expected = [(bytes(n), bytes(v)) for n, v in reference.decode(block, raw=True)]
        assert ours.decode(block) == expected
        assert expected == [(n.encode(), v.encode()) for n, v in fields]


def test_a_block_resolves_entries_the_table_evicted_correctly():
    """A small table: each new entry pushes the oldest out, so stale indexes would show."""
    encoder, ours = Encoder(), HeaderDecoder(max_table_size=4096)
    encoder.header_table_size = 100
    for i in range(50):
        fields = [("x-key", f"value-{i}"), ("x-key", f"value-{i}")]
        assert ours.decode(encoder.encode(fields)) == [(b"x-key", b"value-%d" % i)] * 2


@pytest.mark.parametrize(
    "block",
    [
        b"\x80",  # index 0
        b"\xbe",  # index 62: the dynamic table is empty
        b"\xff\xff\xff\xff\xff\xff\x01",  # an integer past 2^32
        b"\xff",  # a truncated integer
        b"\x40\x05ab",  # a truncated name
        b"\x40\x01a",  # no value
        b"\x3f\xe2\x1f",  # a table size update to 4,097, over the 4,096 allowed
        b"\x82\x20",  # a table size update after a field
        b"\x40\x81\xff\x00",  # a bad Huffman code (EOS bits as a symbol)
    ],
)
def test_broken_blocks_are_refused(block):
    with pytest.raises(HeaderBlockError):
        HeaderDecoder().decode(block)


def test_a_block_decoding_to_more_than_the_list_limit_is_refused():
    """Small on the wire, large decoded: one entry referenced over and over."""
    ours = HeaderDecoder(max_list_size=10_000)
    block = Encoder().encode([("x-big", "v" * 1000)])  # added to the table as entry 62
    assert ours.decode(block) == [(b"x-big", b"v" * 1000)]
    assert ours.decode(b"\xbe" * 8) == [(b"x-big", b"v" * 1000)] * 8
    with pytest.raises(HeaderBlockError):
        ours.decode(b"\xbe" * 10)
