"""Messages between the application and Raft processes: round trips and truncation."""

import pytest

from pyraftkv.node import ringproto as rp
from pyraftkv.raft.types import Entry, EntryType


def test_committed_entries_round_trip():
    entries = [
        Entry(1, 1, EntryType.CONF_CHANGE, b"conf"),
        Entry(2, 2, EntryType.NORMAL, b""),
        Entry(2, 3, EntryType.NORMAL, b"x" * 5000),
    ]
    message = rp.encode_entries(entries)
    assert message[0] == rp.COMMITTED
    assert rp.decode_entries(message) == entries


@pytest.mark.parametrize("cut", [1, 5, 21, 22, 30])
def test_truncated_committed_messages_are_refused(cut):
    message = rp.encode_entries([Entry(1, 1, EntryType.NORMAL, b"abcdefghijklmnop")])
    with pytest.raises(rp.RingProtocolError):
        rp.decode_entries(message[: len(message) - cut])


def test_fixed_messages_and_their_tails():
    message = rp.pack(rp.SNAPSHOT_READY, rp.U64x2, 7, 3, tail=b"/some/path")
    assert rp.unpack(message, rp.U64x2) == (7, 3)
    assert rp.tail(message, rp.U64x2) == b"/some/path"
    with pytest.raises(rp.RingProtocolError):
        rp.unpack(message[:10], rp.U64x2)


def test_sync_latency_round_trip_and_truncation():
    latency = rp.SyncLatency(5, 0.0123, ((0.000125, 2), (0.004, 3)))
    message = rp.encode_sync_latency(latency)
    assert message[0] == rp.WAL_SYNC_LATENCY
    assert rp.decode_sync_latency(message) == latency
    assert rp.decode_sync_latency(rp.encode_sync_latency(rp.SyncLatency(0, 0.0, ()))).count == 0
    with pytest.raises(rp.RingProtocolError):
        rp.decode_sync_latency(message[:-1])
