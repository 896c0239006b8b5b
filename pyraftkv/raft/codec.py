"""Strict binary codec for messages, conf changes, hard state and snapshot metadata.

Little-endian throughout. A message is a fixed header, then its variable parts:

    header  <BBBQQQQQQQII : version, type, flags, to, sender, term, log_term, index,
                            commit, reject_hint, len(context), len(entries)
    context  bytes
    entries  (when count > 0) first index u64, then count terms (u64), count types (u8),
             count data lengths (u32), then the data of every entry concatenated;
             the entries of a message always have consecutive indexes.
    snapshot (when flags has HAS_SNAPSHOT) index u64, term u64, membership

A membership is u32 voter count, u32 learner count, then the ids as u64.
Decoding checks every length against the buffer before using it, checks ids, types and
that nothing trails, and raises CodecError without building anything on a bad buffer.
"""

from __future__ import annotations

import struct
import sys
from array import array
from functools import lru_cache

from .errors import CodecError
from .types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Membership,
    Message,
    MessageType,
    SnapshotMeta,
)

VERSION = 1
FLAG_REJECT = 1
FLAG_HAS_SNAPSHOT = 2
_KNOWN_FLAGS = FLAG_REJECT | FLAG_HAS_SNAPSHOT
_U64_MAX = (1 << 64) - 1

_HEADER = struct.Struct("<BBBQQQQQQQII")
_TWO_U32 = struct.Struct("<II")
_TWO_U64 = struct.Struct("<QQ")
_CONF_CHANGE = struct.Struct("<BQ")
_HARD_STATE = struct.Struct("<QQQ")
_MESSAGE_TYPES = {int(t): t for t in MessageType}
_ENTRY_TYPES = (EntryType.NORMAL, EntryType.CONF_CHANGE)
_SWAP = sys.byteorder != "little"


def _array_bytes(typecode: str, values: list[int]) -> bytes:
    arr = array(typecode, values)
    if _SWAP:
        arr.byteswap()
    return arr.tobytes()


def _encode_membership(membership: Membership) -> bytes:
    voters, learners = sorted(membership.voters), sorted(membership.learners)
    return _TWO_U32.pack(len(voters), len(learners)) + _array_bytes("Q", voters + learners)


def _encode_snapshot(snapshot: SnapshotMeta) -> bytes:
    return _TWO_U64.pack(snapshot.index, snapshot.term) + _encode_membership(snapshot.membership)


@lru_cache(maxsize=64)
def _entries_head(count: int) -> struct.Struct:
    """The first index, then the terms, types and data lengths of ``count`` entries."""
    return struct.Struct(f"<Q{count}Q{count}B{count}I")


def encode_message(msg: Message) -> bytes:
    """Encode msg to bytes; raises ValueError (or struct.error) for out-of-range fields."""
    entries = msg.entries
    flags = (FLAG_REJECT if msg.reject else 0) | (FLAG_HAS_SNAPSHOT if msg.snapshot else 0)
    parts = [
        _HEADER.pack(
            VERSION,
            msg.type,
            flags,
            msg.to,
            msg.sender,
            msg.term,
            msg.log_term,
            msg.index,
            msg.commit,
            msg.reject_hint,
            len(msg.context),
            len(entries),
        ),
        msg.context,
    ]
    if entries:
        first = entries[0].index
        if entries[-1].index != first + len(entries) - 1:
            raise ValueError("entries of a message must have consecutive indexes")
        datas = [e.data for e in entries]
        parts.append(
            _entries_head(len(entries)).pack(
                first, *[e.term for e in entries], *[e.type for e in entries], *map(len, datas)
            )
        )
        parts.extend(datas)
    if msg.snapshot is not None:
        parts.append(_encode_snapshot(msg.snapshot))
    return b"".join(parts)


class _Reader:
    """A cursor over a buffer that refuses to read past its end."""

    __slots__ = ("buf", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf = buf
        self.pos = pos

    def take(self, size: int, what: str) -> memoryview:
        end = self.pos + size
        if size < 0 or end > len(self.buf):
            raise CodecError(
                f"truncated {what}: need {size} bytes at offset {self.pos}, "
                f"buffer has {len(self.buf)}"
            )
        view = memoryview(self.buf)[self.pos : end]
        self.pos = end
        return view

    def unpack(self, fmt: struct.Struct, what: str) -> tuple:
        return fmt.unpack(self.take(fmt.size, what))

    def array(self, typecode: str, count: int, what: str) -> array:
        arr = array(typecode)
        arr.frombytes(self.take(count * arr.itemsize, what))
        if _SWAP:
            arr.byteswap()
        return arr

    def finish(self, what: str) -> None:
        if self.pos != len(self.buf):
            raise CodecError(f"{len(self.buf) - self.pos} trailing bytes after {what}")


def _node_id(value: int, what: str) -> int:
    if value == 0:
        raise CodecError(f"{what} is 0 (node ids are nonzero)")
    return value


def _decode_membership(reader: _Reader) -> Membership:
    n_voters, n_learners = reader.unpack(_TWO_U32, "membership counts")
    ids = reader.array("Q", n_voters + n_learners, "membership ids")
    if 0 in ids:
        raise CodecError("membership holds node id 0")
    voters, learners = frozenset(ids[:n_voters]), frozenset(ids[n_voters:])
    if len(voters) != n_voters or len(learners) != n_learners or voters & learners:
        raise CodecError("membership ids are repeated or both voter and learner")
    return Membership(voters, learners)


def _decode_snapshot(reader: _Reader) -> SnapshotMeta:
    index, term = reader.unpack(_TWO_U64, "snapshot")
    return SnapshotMeta(index, term, _decode_membership(reader))


def decode_message(buf: bytes) -> Message:
    """Decode one message; raises CodecError on anything but a whole, valid message.
    (Every message a member takes passes here: offsets and one struct per part, no
    reader object, keep it cheap.)"""
    size = len(buf)
    if size < _HEADER.size:
        raise CodecError(f"truncated message header: {size} bytes")
    (
        version,
        type_,
        flags,
        to,
        sender,
        term,
        log_term,
        index,
        commit,
        reject_hint,
        context_len,
        count,
    ) = _HEADER.unpack_from(buf)
    if version != VERSION:
        raise CodecError(f"unknown message version {version}")
    msg_type = _MESSAGE_TYPES.get(type_)
    if msg_type is None:
        raise CodecError(f"unknown message type {type_}")
    if flags & ~_KNOWN_FLAGS:
        raise CodecError(f"unknown message flags {flags:#x}")
    _node_id(to, "recipient")
    _node_id(sender, "sender")
    pos = _HEADER.size + context_len
    if pos > size:
        raise CodecError(f"truncated context: {context_len} bytes past the buffer's {size}")
    context = bytes(buf[_HEADER.size : pos])
    entries: tuple[Entry, ...] = ()
    if count:
        # 13 bytes per entry at least: refuse absurd counts before allocating anything.
        if count * 13 + 8 > size - pos:
            raise CodecError(f"truncated entries: {count} entries cannot fit")
        head = _entries_head(count)
        values = head.unpack_from(buf, pos)  # fits: checked against 13 bytes per entry
        first = values[0]
        if first == 0 or first + count - 1 > _U64_MAX:
            raise CodecError(f"bad first entry index {first}")
        types = values[count + 1 : 2 * count + 1]
        if max(types) > 1:
            raise CodecError(f"unknown entry type {max(types)}")
        lengths = values[2 * count + 1 :]
        pos += head.size
        if pos + sum(lengths) > size:
            raise CodecError(f"truncated entry data: {sum(lengths)} bytes past the buffer")
        built = []
        kinds = _ENTRY_TYPES
        for i in range(count):
            end = pos + lengths[i]
            built.append(Entry(values[i + 1], first + i, kinds[types[i]], bytes(buf[pos:end])))
            pos = end
        entries = tuple(built)
    snapshot = None
    if flags & FLAG_HAS_SNAPSHOT:
        reader = _Reader(buf, pos)
        snapshot = _decode_snapshot(reader)
        pos = reader.pos
    if pos != size:
        raise CodecError(f"{size - pos} trailing bytes after message")
    return Message(
        msg_type,
        to,
        sender,
        term,
        log_term,
        index,
        commit,
        entries,
        bool(flags & FLAG_REJECT),
        reject_hint,
        context,
        snapshot,
    )


def encode_conf_change(change: ConfChange) -> bytes:
    """Encode a membership change (the data of a CONF_CHANGE entry)."""
    return _CONF_CHANGE.pack(change.type, change.node_id) + change.context


def decode_conf_change(data: bytes) -> ConfChange:
    """Decode a CONF_CHANGE entry's data; raises CodecError when malformed."""
    if len(data) < _CONF_CHANGE.size:
        raise CodecError(f"truncated conf change: {len(data)} bytes")
    type_, node_id = _CONF_CHANGE.unpack_from(data)
    if type_ > max(ConfChangeType):
        raise CodecError(f"unknown conf change type {type_}")
    return ConfChange(
        ConfChangeType(type_),
        _node_id(node_id, "conf change node id"),
        bytes(data[_CONF_CHANGE.size :]),
    )


def encode_hard_state(state: HardState) -> bytes:
    """Encode a hard state (term, vote, commit) for the WAL."""
    return _HARD_STATE.pack(state.term, state.vote, state.commit)


def decode_hard_state(data: bytes) -> HardState:
    """Decode a hard state; raises CodecError unless data is exactly one."""
    if len(data) != _HARD_STATE.size:
        raise CodecError(f"hard state is {len(data)} bytes, expected {_HARD_STATE.size}")
    return HardState(*_HARD_STATE.unpack(data))


def encode_snapshot_meta(meta: SnapshotMeta) -> bytes:
    """Encode snapshot metadata (index, term, membership) for the WAL or a transfer."""
    return _encode_snapshot(meta)


def decode_snapshot_meta(data: bytes) -> SnapshotMeta:
    """Decode snapshot metadata; raises CodecError unless data is exactly one."""
    reader = _Reader(data)
    meta = _decode_snapshot(reader)
    reader.finish("snapshot metadata")
    return meta
