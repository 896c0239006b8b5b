"""Messages between the application process and the Raft process, carried by the shm rings.

Each ring message is one u8 kind followed by a fixed struct and, for some kinds, bytes.
Down (application -> Raft): proposals, read-index requests, conf changes, leader moves,
snapshot notices, stop. Up (Raft -> application): committed entries, read states,
leadership and progress, refused proposals, snapshot requests and installs.
"""

from __future__ import annotations

import struct
from typing import NamedTuple

from ..errors import PyraftkvError
from ..raft.types import Entry, EntryType


class RingProtocolError(PyraftkvError):
    """A ring message is malformed: a bug in one of the two processes, never user input."""


# ---- down: application -> raft ----------------------------------------------------------
PROPOSE = 1  # data: one Raft entry payload (a RequestBatch)
READ_INDEX = 2  # u64 context
CONF_CHANGE = 3  # u8 change type, u64 node id, u64 request id, context bytes
MOVE_LEADER = 4  # u64 target member id, u64 request id
SNAPSHOT_SAVED = 5  # u64 index, u64 term: the state machine is durable up to index
SNAPSHOT_READY = 6  # u64 index, u64 term, path: a snapshot file a follower asked for
SNAPSHOT_INSTALLED = 7  # u64 index: the state machine now holds the received snapshot
STOP = 9  # flush and exit
MEMBERS = 10  # MemberAttributesList: every member's peer URLs (at start, after a snapshot)
PROPOSE_TRACED = 11  # i64 received, i64 batched (monotonic ns), data: as PROPOSE, traced
HASH_KV_ANSWER = 12  # u64 query id, data: the answer to HASH_KV_WANTED (peer_transport)

# ---- up: raft -> application -------------------------------------------------------------
COMMITTED = 101  # a run of committed entries (see encode_entries)
READ_STATE = 102  # u64 index, u64 context
STATUS = 103  # u64 leader, u64 term, u64 commit, u8 role, u8 flags(learner)
REFUSED = 104  # u8 reason, u64 id (0 for proposals), data: the refused payload
SNAPSHOT_WANTED = 105  # u64 peer: make a snapshot file for a lagging follower
INSTALL_SNAPSHOT = 106  # u64 index, u64 term, path: replace the state machine with this
MOVE_LEADER_DONE = 107  # u64 request id, u8 ok
CONF_CHANGE_APPLIED = 108  # u64 index, u64 request id, u8 outcome (CONF_*)
WAL_SYNC_LATENCY = 109  # the WAL's fdatasync histogram (see encode_sync_latency)
TRACE = 110  # u64 index, u8 forwarded, 8 x i64 readings: a traced proposal's entry (write_trace.py)
PEER_RTT = 111  # (u64 peer, f64 seconds) pairs: heartbeat round trips measured
HASH_KV_WANTED = 112  # u64 query id, data: a HashKVRequest a peer sent (corrupt_check.py)
PEERS_HEARD = 113  # u64 member ids: peers a Raft message came from since the last report
HEARTBEATS_LATE = 114  # u64 count: heartbeats this leader sent later than twice their interval

# outcomes of a membership change (CONF_CHANGE_APPLIED)
CONF_REFUSED = 0
CONF_APPLIED_OK = 1
CONF_NOT_LEADER = 2
CONF_LEARNER_NOT_READY = 3  # a promote of a learner far behind the leader

# reasons for REFUSED
NO_LEADER = 1
NOT_LEADER = 2
DROPPED = 3  # e.g. a leader transfer is in progress

_U64 = struct.Struct("<Q")
_U64x2 = struct.Struct("<QQ")
_CONF = struct.Struct("<BQQ")
_STATUS = struct.Struct("<QQQBB")
_REFUSED = struct.Struct("<BQ")
_ENTRY = struct.Struct("<QQBI")  # term, index, type, data length
_MOVE_DONE = struct.Struct("<QB")
_CONF_APPLIED = struct.Struct("<QQB")
_LATENCY = struct.Struct("<Qd")  # samples, sum of seconds
_BUCKET = struct.Struct("<dQ")  # upper bound in seconds (exclusive), samples
_TRACED = struct.Struct("<qq")  # PROPOSE_TRACED: received, batched
_TRACE = struct.Struct("<QB8q")  # TRACE: index, forwarded by this follower, readings
_RTT = struct.Struct("<Qd")  # one PEER_RTT sample


def pack(kind: int, fmt: struct.Struct | None = None, *values, tail: bytes = b"") -> bytes:
    """One ring message: the kind byte, a fixed struct, then optional trailing bytes."""
    head = bytes((kind,))
    return head + (fmt.pack(*values) if fmt is not None else b"") + tail


def unpack(message: bytes, fmt: struct.Struct) -> tuple:
    """The fixed struct after the kind byte."""
    if len(message) < 1 + fmt.size:
        raise RingProtocolError(f"ring message kind {message[0]} is too short")
    return fmt.unpack_from(message, 1)


def tail(message: bytes, fmt: struct.Struct | None) -> bytes:
    """The trailing bytes after the fixed struct."""
    return message[1 + (fmt.size if fmt is not None else 0) :]


def encode_entries(entries: list[Entry]) -> bytes:
    """A COMMITTED message: the entries back to back (term, index, type, length, data)."""
    parts = [bytes((COMMITTED,))]
    for term, index, type_, data in entries:
        parts.append(_ENTRY.pack(term, index, type_, len(data)))
        parts.append(data)
    return b"".join(parts)


_ENTRY_TYPES = frozenset(EntryType)


def decode_entries(message: bytes) -> list[Entry]:
    """Inverse of encode_entries; raises RingProtocolError on a truncated message."""
    entries = []
    offset, end = 1, len(message)
    size = _ENTRY.size
    view = memoryview(message)
    while offset < end:
        if offset + size > end:
            raise RingProtocolError("truncated entry header in COMMITTED")
        term, index, type_, length = _ENTRY.unpack_from(message, offset)
        offset += size
        if offset + length > end:
            raise RingProtocolError("truncated entry data in COMMITTED")
        if type_ not in _ENTRY_TYPES:
            raise RingProtocolError(f"unknown entry type {type_} in COMMITTED")
        entries.append(Entry(term, index, EntryType(type_), bytes(view[offset : offset + length])))
        offset += length
    return entries


class SyncLatency(NamedTuple):
    """The WAL's fdatasync latencies so far: totals and the non-empty buckets."""

    count: int
    sum_seconds: float
    buckets: tuple[tuple[float, int], ...]  # (exclusive upper bound in seconds, samples)


def encode_sync_latency(latency: SyncLatency) -> bytes:
    """A WAL_SYNC_LATENCY message: the totals, then each non-empty bucket."""
    body = b"".join(_BUCKET.pack(upper, n) for upper, n in latency.buckets)
    return pack(WAL_SYNC_LATENCY, _LATENCY, latency.count, latency.sum_seconds, tail=body)


def decode_sync_latency(message: bytes) -> SyncLatency:
    count, sum_seconds = unpack(message, _LATENCY)
    body = tail(message, _LATENCY)
    if len(body) % _BUCKET.size:
        raise RingProtocolError("truncated bucket in WAL_SYNC_LATENCY")
    return SyncLatency(count, sum_seconds, tuple(_BUCKET.iter_unpack(body)))


def encode_peer_rtt(samples: list[tuple[int, float]]) -> bytes:
    return bytes((PEER_RTT,)) + b"".join(_RTT.pack(peer, s) for peer, s in samples)


def decode_peer_rtt(message: bytes) -> list[tuple[int, float]]:
    body = tail(message, None)
    if len(body) % _RTT.size:
        raise RingProtocolError("truncated sample in PEER_RTT")
    return list(_RTT.iter_unpack(body))


def encode_peers_heard(peers: set[int]) -> bytes:
    return bytes((PEERS_HEARD,)) + b"".join(_U64.pack(peer) for peer in sorted(peers))


def decode_peers_heard(message: bytes) -> list[int]:
    body = tail(message, None)
    if len(body) % _U64.size:
        raise RingProtocolError("truncated member id in PEERS_HEARD")
    return [peer for (peer,) in _U64.iter_unpack(body)]


TRACED, TRACE_FMT = _TRACED, _TRACE
U64, U64x2, CONF, STATUS_FMT, REFUSED_FMT, MOVE_DONE, CONF_APPLIED = (
    _U64,
    _U64x2,
    _CONF,
    _STATUS,
    _REFUSED,
    _MOVE_DONE,
    _CONF_APPLIED,
)
