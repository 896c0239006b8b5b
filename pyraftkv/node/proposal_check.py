"""What a leader checks in a proposal a follower forwarded before it proposes it.

A follower's application validated each request before batching it, but the frame crossed
the peer port: a malformed one proposed as-is would become a committed entry that fails to
apply on every member, again after every restart. So the leader checks what apply relies
on: the batch decodes, every method is one that is applied from the log, every body
decodes as that method's request, and key-value writes pass the checks that need no state.
"""

from __future__ import annotations

from google.protobuf.message import DecodeError

from .. import errors
from ..mvcc import validation
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from .apply import AUTH_TOKEN, LEASE_EXPIRE, MEMBER_PUBLISH
from .auth_store import APPLIED

# A follower may allow more txn ops than the leader (--max-txn-ops is per member); the
# leader checks the shape of a txn, not its size.
_ANY_TXN_OPS = 1 << 62

_PUT, _DELETE, _TXN = (BY_NAME[n].number for n in ("Put", "DeleteRange", "Txn"))
# Every method applied from the log, with its request type.
LOGGED: dict[int, type] = {
    **{
        BY_NAME[name].number: BY_NAME[name].request
        for name in (
            "Put",
            "DeleteRange",
            "Txn",
            "Compact",
            "LeaseGrant",
            "LeaseRevoke",
            "Alarm",
            *APPLIED,
        )
    },
    MEMBER_PUBLISH: internal.MemberAttributes,
    LEASE_EXPIRE: rpc.LeaseRevokeRequest,
    AUTH_TOKEN: internal.AuthTokenGrant,
}


def batch_problem(data: bytes) -> str:
    """Why the proposal payload ``data`` must not be proposed ("" when it may be)."""
    try:
        requests = internal.RequestBatch.FromString(data).requests
    except DecodeError:
        return "the batch does not decode"
    if not requests:
        return "an empty batch"
    for request in requests:
        request_type = LOGGED.get(request.method)
        if request_type is None:
            return f"method {request.method} is not applied from the log"
        try:
            body = request_type.FromString(request.body)
            if request.method == _PUT:
                validation.check_put(body)
            elif request.method == _DELETE:
                validation.check_delete(body)
            elif request.method == _TXN:
                validation.check_txn(body, _ANY_TXN_OPS)
        except DecodeError:
            return f"a method {request.method} body does not decode"
        except errors.ApiError as exc:
            return f"a method {request.method} request is invalid: {exc}"
    return ""
