"""The peer message codec's cost per message: every AppendEntries and acknowledgement a
member sends or takes passes through it.

Run: pytest bench/test_bench_codec.py --benchmark-only
"""

from __future__ import annotations

import pytest

from pyraftkv.raft import codec
from pyraftkv.raft.types import Entry, EntryType, Message, MessageType

APPEND = Message(
    MessageType.APP, 2, 1, 5, 5, 100, 99, (Entry(5, 101, EntryType.NORMAL, b"x" * 200),)
)
APPEND_64 = Message(
    MessageType.APP,
    2,
    1,
    5,
    5,
    100,
    99,
    tuple(Entry(5, 101 + i, EntryType.NORMAL, b"x" * 200) for i in range(64)),
)
ACK = Message(MessageType.APP_RESP, 1, 2, 5, 0, 101, 0)
MESSAGES = pytest.mark.parametrize(
    "message", [APPEND, APPEND_64, ACK], ids=["append-1", "append-64", "ack"]
)


@MESSAGES
def test_encode(benchmark, message: Message) -> None:
    assert benchmark(codec.encode_message, message) == codec.encode_message(message)


@MESSAGES
def test_decode(benchmark, message: Message) -> None:
    data = codec.encode_message(message)
    assert benchmark(codec.decode_message, data) == message
