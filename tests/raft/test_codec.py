"""The binary codec: exact round trips, and a clear CodecError for every bad buffer."""

from __future__ import annotations

import struct

import pytest

from pyraftkv.raft import (
    CodecError,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Membership,
    Message,
    MessageType,
    SnapshotMeta,
    decode_conf_change,
    decode_hard_state,
    decode_message,
    decode_snapshot_meta,
    encode_conf_change,
    encode_hard_state,
    encode_message,
    encode_snapshot_meta,
)

BIG = (1 << 64) - 1
MEMBERS = Membership(frozenset({1, 2, BIG}), frozenset({7}))
SAMPLES = [
    Message(
        MessageType.APP,
        2,
        1,
        5,
        4,
        10,
        9,
        (
            Entry(5, 11, EntryType.NORMAL, b"a" * 300),
            Entry(5, 12, EntryType.CONF_CHANGE, b""),
            Entry(6, 13, EntryType.NORMAL, b"\x00\xff"),
        ),
    ),
    Message(MessageType.APP_RESP, 1, 2, 5, 3, 10, reject=True, reject_hint=7),
    Message(MessageType.VOTE, 3, BIG, BIG, BIG, BIG, context=b"transfer"),
    Message(MessageType.HEARTBEAT, 2, 1, 5, commit=9, index=42),
    Message(MessageType.SNAP, 2, 1, 5, snapshot=SnapshotMeta(100, 4, MEMBERS)),
    Message(MessageType.READ_INDEX_RESP, 2, 1, 5, index=77, context=b"req-1"),
] + [Message(t, 1, 2, 3) for t in MessageType]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: m.type.name)
def test_round_trip_is_exact(msg: Message) -> None:
    decoded = decode_message(encode_message(msg))
    assert decoded == msg
    assert type(decoded.type) is MessageType
    assert all(type(e.type) is EntryType for e in decoded.entries)


@pytest.mark.parametrize("msg", SAMPLES[:5], ids=lambda m: m.type.name)
def test_every_truncation_is_refused(msg: Message) -> None:
    data = encode_message(msg)
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode_message(data[:cut])


def test_trailing_bytes_are_refused() -> None:
    with pytest.raises(CodecError, match="trailing"):
        decode_message(encode_message(SAMPLES[0]) + b"\x00")


def header(**fields: int) -> bytes:
    values = dict(
        version=1,
        type=1,
        flags=0,
        to=2,
        sender=1,
        term=1,
        log_term=0,
        index=0,
        commit=0,
        hint=0,
        context=0,
        count=0,
    )
    values.update(fields)
    return struct.pack("<BBBQQQQQQQII", *values.values())


@pytest.mark.parametrize(
    "data, error",
    [
        (header(version=2), "version"),
        (header(type=99), "unknown message type"),
        (header(flags=8), "flags"),
        (header(to=0), "recipient is 0"),
        (header(sender=0), "sender is 0"),
        (header(count=1 << 31), "cannot fit"),
        (header(context=1 << 30), "truncated context"),
        (header(count=1) + struct.pack("<QQBI", 1, 1, 5, 0), "entry type"),
        (header(count=1) + struct.pack("<QQBI", 0, 1, 0, 0), "first entry index"),
        (header(flags=2) + struct.pack("<QQII", 1, 1, 1, 0) + struct.pack("<Q", 0), "id 0"),
        (header(flags=2) + struct.pack("<QQII", 1, 1, 2, 0) + struct.pack("<QQ", 3, 3), "repeated"),
    ],
)
def test_malformed_buffers_are_refused(data: bytes, error: str) -> None:
    with pytest.raises(CodecError, match=error):
        decode_message(data)


def test_entries_must_be_consecutive_to_encode() -> None:
    msg = Message(MessageType.APP, 2, 1, 1, entries=(Entry(1, 1, 0, b""), Entry(1, 3, 0, b"")))
    with pytest.raises(ValueError):
        encode_message(msg)


def test_conf_change_round_trip_and_errors() -> None:
    change = ConfChange(ConfChangeType.PROMOTE_LEARNER, BIG, b"name=x urls=http://y")
    assert decode_conf_change(encode_conf_change(change)) == change
    with pytest.raises(CodecError):
        decode_conf_change(b"\x00" * 8)
    with pytest.raises(CodecError, match="type"):
        decode_conf_change(b"\x09" + b"\x01" * 8)
    with pytest.raises(CodecError, match="node id"):
        decode_conf_change(b"\x00" + b"\x00" * 8)


def test_hard_state_and_snapshot_meta_round_trip() -> None:
    state = HardState(BIG, 3, 1 << 40)
    assert decode_hard_state(encode_hard_state(state)) == state
    with pytest.raises(CodecError):
        decode_hard_state(encode_hard_state(state)[:-1])
    meta = SnapshotMeta(10, 2, MEMBERS)
    assert decode_snapshot_meta(encode_snapshot_meta(meta)) == meta
    with pytest.raises(CodecError):
        decode_snapshot_meta(encode_snapshot_meta(meta) + b"x")
