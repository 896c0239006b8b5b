"""Value types of the Raft core: log entries, messages, membership, hard and soft state.

Entries and messages are NamedTuples: immutable, with slots, and the cheapest Python object
to build, which matters because the leader builds one Entry per proposal and one Message per
follower per round. Every type here is plain data; the behaviour lives in core.py.
"""

from __future__ import annotations

from enum import IntEnum
from typing import NamedTuple


class EntryType(IntEnum):
    """What an entry's data holds; stored by the WAL as a u8."""

    NORMAL = 0
    CONF_CHANGE = 1


class Entry(NamedTuple):
    """One log entry. NORMAL data is the application's payload; CONF_CHANGE data is an
    encoded ConfChange (codec.encode_conf_change)."""

    term: int
    index: int
    type: EntryType
    data: bytes


class MessageType(IntEnum):
    """Kinds of messages members exchange (a u8 on the wire)."""

    APP = 1  # leader -> follower: entries after (index, log_term), leader's commit
    APP_RESP = 2  # follower -> leader: index = last matching index, or reject with a hint
    VOTE = 3  # candidate -> voter: index/log_term = candidate's last entry
    VOTE_RESP = 4  # voter -> candidate: reject=False means granted
    PRE_VOTE = 5  # pre-candidate -> voter, term = the term it would campaign in
    PRE_VOTE_RESP = 6
    HEARTBEAT = 7  # leader -> follower: commit, index = read round (0 = none)
    HEARTBEAT_RESP = 8  # follower -> leader: index = read round echoed
    SNAP = 9  # leader -> follower: snapshot names the snapshot the shell streams
    TIMEOUT_NOW = 10  # leader -> transferee: campaign now, skipping PreVote
    READ_INDEX = 11  # follower -> leader: context = the read's opaque id
    READ_INDEX_RESP = 12  # leader -> follower: index = read index, context echoed
    DURABLE = 13  # leader -> follower: index = last index of the leader's log it holds durably


class Role(IntEnum):
    """A member's role. A learner is a FOLLOWER that is not a voter."""

    FOLLOWER = 0
    PRE_CANDIDATE = 1
    CANDIDATE = 2
    LEADER = 3


class Membership(NamedTuple):
    """The voters and learners of the cluster (disjoint sets of nonzero u64 ids)."""

    voters: frozenset[int]
    learners: frozenset[int] = frozenset()

    def is_member(self, node_id: int) -> bool:
        """Whether node_id is a voter or a learner."""
        return node_id in self.voters or node_id in self.learners

    def members(self) -> frozenset[int]:
        """Every voter and learner."""
        return self.voters | self.learners


EMPTY_MEMBERSHIP = Membership(frozenset(), frozenset())


class SnapshotMeta(NamedTuple):
    """Names a snapshot: the last index and term it covers and the membership there."""

    index: int
    term: int
    membership: Membership


EMPTY_SNAPSHOT = SnapshotMeta(0, 0, EMPTY_MEMBERSHIP)


class Message(NamedTuple):
    """A message between members. Fields a type does not use keep their defaults."""

    type: MessageType
    to: int
    sender: int
    term: int
    log_term: int = 0
    index: int = 0
    commit: int = 0
    entries: tuple[Entry, ...] = ()
    reject: bool = False
    reject_hint: int = 0
    context: bytes = b""
    snapshot: SnapshotMeta | None = None


class HardState(NamedTuple):
    """What must be durable before the messages that rely on it leave: term, vote, commit."""

    term: int = 0
    vote: int = 0
    commit: int = 0


class SoftState(NamedTuple):
    """Volatile state the shell shows or acts on: who leads, this member's role and term."""

    leader_id: int
    role: Role
    term: int


class ReadState(NamedTuple):
    """A confirmed ReadIndex: once applied >= index, reads for context are linearizable."""

    index: int
    context: bytes


class ConfChangeType(IntEnum):
    """A single-member membership change (a u8 on the wire)."""

    ADD_VOTER = 0
    ADD_LEARNER = 1
    PROMOTE_LEARNER = 2
    REMOVE_MEMBER = 3
    # etcd's ConfChangeUpdateNode: the member's peer URLs (in the context) change, the
    # voters and learners do not.
    UPDATE_MEMBER = 4


class ConfChange(NamedTuple):
    """One membership change; context is opaque to the core (the node puts name and URLs)."""

    type: ConfChangeType
    node_id: int
    context: bytes = b""


def apply_conf_change(membership: Membership, change: ConfChange) -> Membership:
    """The membership after change. Total and deterministic, so every member that appends
    the same log derives the same membership; validity is checked when proposed."""
    voters, learners = set(membership.voters), set(membership.learners)
    node = change.node_id
    if change.type == ConfChangeType.UPDATE_MEMBER:
        return membership
    if change.type == ConfChangeType.ADD_VOTER or change.type == ConfChangeType.PROMOTE_LEARNER:
        learners.discard(node)
        voters.add(node)
    elif change.type == ConfChangeType.ADD_LEARNER:
        if node not in voters:
            learners.add(node)
    else:
        voters.discard(node)
        learners.discard(node)
    return Membership(frozenset(voters), frozenset(learners))


def conf_change_problem(membership: Membership, change: ConfChange) -> str | None:
    """Why change cannot be applied to membership, or None when it can."""
    node = change.node_id
    if not 0 < node < 1 << 64:
        return f"node id {node} is not a nonzero u64"
    if change.type == ConfChangeType.ADD_VOTER and membership.is_member(node):
        return f"member {node:x} already exists"
    if change.type == ConfChangeType.ADD_LEARNER and membership.is_member(node):
        return f"member {node:x} already exists"
    if change.type == ConfChangeType.PROMOTE_LEARNER and node not in membership.learners:
        return f"member {node:x} is not a learner"
    if change.type == ConfChangeType.UPDATE_MEMBER and not membership.is_member(node):
        return f"member {node:x} not found"
    if change.type == ConfChangeType.REMOVE_MEMBER:
        if not membership.is_member(node):
            return f"member {node:x} not found"
        if membership.voters == {node}:
            return "cannot remove the last voter"
    return None
