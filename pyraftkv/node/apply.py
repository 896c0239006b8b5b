"""What a committed request does to the store: the apply function of each method, and of
the internal requests the members put in the log themselves. Apply never sees a request
that validation refused; an ApiError from here is an answer (etcd's apply-time errors: a
lease gone, a compacted revision), never a crash."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message

from ..admin.members import MemberList
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from ..raft.codec import decode_conf_change
from ..raft.types import ConfChangeType, Entry
from .logging_setup import fields

log = logging.getLogger("pyraftkv.app")

# Internal methods carried in the log next to client requests (never sent by clients).
MEMBER_PUBLISH = 100
LEASE_EXPIRE = 101
AUTH_TOKEN = 102  # a simple auth token handed out (AuthTokenGrant)

# Writes that take space: refused with NoSpace while the store is over its quota (reads,
# deletes, compaction and revokes still go through, so space can be won back).
PUT = BY_NAME["Put"].number
_TXN = BY_NAME["Txn"].number
_LEASE_GRANT = BY_NAME["LeaseGrant"].number

ApplyResult = tuple[Message | None, list | None]


def needs_space(method: int, body: bytes) -> bool:
    """Whether a client write adds data: a Put, a LeaseGrant, a Txn with a Put anywhere."""
    if method in (PUT, _LEASE_GRANT):
        return True
    return method == _TXN and _txn_puts(rpc.TxnRequest.FromString(body))


def _txn_puts(txn: rpc.TxnRequest) -> bool:
    return any(
        op.HasField("request_put") or (op.HasField("request_txn") and _txn_puts(op.request_txn))
        for op in (*txn.success, *txn.failure)
    )


def apply_member_publish(batch: Any, members: MemberList, body: bytes) -> None:
    """A member told the cluster its name and client URLs."""
    members.publish(internal.MemberAttributes.FromString(body))
    batch.put_meta(b"members", members.encode())


def apply_conf_change(batch: Any, members: MemberList, entry: Entry) -> None:
    """A membership change committed: the member list follows it."""
    change = decode_conf_change(entry.data)
    if change.type in (ConfChangeType.ADD_VOTER, ConfChangeType.ADD_LEARNER):
        attributes = internal.MemberAttributes.FromString(change.context)
        attributes.id = change.node_id
        attributes.is_learner = change.type == ConfChangeType.ADD_LEARNER
        members.add(attributes)
    elif change.type == ConfChangeType.PROMOTE_LEARNER:
        members.promote(change.node_id)
    elif change.type == ConfChangeType.UPDATE_MEMBER:
        try:
            attributes = internal.MemberAttributes.FromString(change.context)
        except DecodeError:  # the leader checked it; a damaged entry changes nothing
            return
        members.update_peer_urls(change.node_id, list(attributes.peer_urls))
    else:
        members.remove(change.node_id)
    batch.put_meta(b"members", members.encode())
    log.info(
        "membership changed at index %d: %s %x",
        entry.index,
        change.type.name,
        change.node_id,
        extra=fields(index=entry.index, change=change.type.name, member_id=f"{change.node_id:x}"),
    )


def _apply_put(batch: Any, body: bytes) -> ApplyResult:
    return batch.put(rpc.PutRequest.FromString(body))


def _apply_delete(batch: Any, body: bytes) -> ApplyResult:
    return batch.delete_range(rpc.DeleteRangeRequest.FromString(body))


def _apply_txn(batch: Any, body: bytes) -> ApplyResult:
    return batch.txn(rpc.TxnRequest.FromString(body))


def _apply_compact(batch: Any, body: bytes) -> ApplyResult:
    return batch.compact(rpc.CompactionRequest.FromString(body)), None


KV_APPLY: dict[int, Callable[[Any, bytes], ApplyResult]] = {
    BY_NAME["Put"].number: _apply_put,
    BY_NAME["DeleteRange"].number: _apply_delete,
    BY_NAME["Txn"].number: _apply_txn,
    BY_NAME["Compact"].number: _apply_compact,
}
