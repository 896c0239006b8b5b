"""Checks a request needs no state for: run before anything is read or written, so a
bad request raises its etcd error and changes nothing.

The rules are etcd v3's (api/v3rpc/key.go) with two deliberate differences: an
enum value outside the proto's list (protobuf enums are open) is InvalidArgument here,
where etcd 3.4 ignores it or crashes; and in the duplicate-key rule a delete with
range_end "\\0" covers every key from its start, where etcd 3.4 treats it as an empty
interval and lets a put of a key it deletes through (two changes of one key in one
revision).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pyraftkv import errors
from pyraftkv.mvcc.ranges import KeyRange, key_range
from pyraftkv.proto import rpc_pb2

DEFAULT_MAX_REQUEST_BYTES = 1572864  # etcd's --max-request-bytes default (1.5 MiB)
DEFAULT_MAX_TXN_OPS = 128  # etcd's --max-txn-ops default

_SORT_ORDERS = frozenset(rpc_pb2.RangeRequest.SortOrder.values())
_SORT_TARGETS = frozenset(rpc_pb2.RangeRequest.SortTarget.values())
_COMPARE_TARGETS = frozenset(rpc_pb2.Compare.CompareTarget.values())
_COMPARE_RESULTS = frozenset(rpc_pb2.Compare.CompareResult.values())


def check_size(req: Any, max_request_bytes: int) -> None:
    """RequestTooLarge when the serialized request exceeds the configured limit."""
    size = req.ByteSize()
    if size > max_request_bytes:
        raise errors.RequestTooLarge(
            f"{errors.RequestTooLarge.default_message} ({size} > {max_request_bytes} bytes)"
        )


def _invalid(what: str) -> errors.InvalidArgument:
    return errors.InvalidArgument(f"{errors.InvalidArgument.default_message} ({what})")


def check_range(req: rpc_pb2.RangeRequest) -> None:
    """etcd's Range checks plus known sort enums."""
    if not req.key:
        raise errors.EmptyKey()
    if req.sort_order not in _SORT_ORDERS:
        raise _invalid(f"unknown sort order {req.sort_order}")
    if req.sort_target not in _SORT_TARGETS:
        raise _invalid(f"unknown sort target {req.sort_target}")


def check_put(req: rpc_pb2.PutRequest) -> None:
    """etcd's Put checks: a key, and no value/lease given together with ignore_value/lease."""
    if not req.key:
        raise errors.EmptyKey()
    if req.ignore_value and req.value:
        raise errors.ValueProvided()
    if req.ignore_lease and req.lease:
        raise errors.LeaseProvided()


def check_delete(req: rpc_pb2.DeleteRangeRequest) -> None:
    """etcd's DeleteRange check: a key."""
    if not req.key:
        raise errors.EmptyKey()


def check_txn(req: rpc_pb2.TxnRequest, max_txn_ops: int = DEFAULT_MAX_TXN_OPS) -> bool:
    """etcd's Txn checks: op counts (nested txns share the budget), keys, known compare
    enums, every op set, then no key written twice (the duplicate-key rule). Returns
    whether any branch, however nested, writes (etcd's !isTxnReadonly)."""
    writes = _check_txn_ops(req, max_txn_ops)
    _check_intervals(req.success)
    _check_intervals(req.failure)
    return writes


def _check_txn_ops(req: rpc_pb2.TxnRequest, max_txn_ops: int) -> bool:
    ops = max(len(req.compare), len(req.success), len(req.failure))
    if ops > max_txn_ops:
        raise errors.TooManyTxnOps()
    for cmp in req.compare:
        if not cmp.key:
            raise errors.EmptyKey()
        if cmp.target not in _COMPARE_TARGETS:
            raise _invalid(f"unknown compare target {cmp.target}")
        if cmp.result not in _COMPARE_RESULTS:
            raise _invalid(f"unknown compare result {cmp.result}")
    writes = False
    for op in (*req.success, *req.failure):
        which = op.WhichOneof("request")
        if which == "request_range":
            check_range(op.request_range)
        elif which == "request_put":
            check_put(op.request_put)
            writes = True
        elif which == "request_delete_range":
            check_delete(op.request_delete_range)
            writes = True
        elif which == "request_txn":
            writes = _check_txn_ops(op.request_txn, max_txn_ops - ops) or writes
        else:
            raise errors.KeyNotFound()  # etcd's answer to an empty op
    return writes


def _deleted(dels: list[KeyRange], key: bytes) -> bool:
    return any(key in r for r in dels)


_NO_WRITES: tuple[set[bytes], list[KeyRange]] = (set(), [])


def _check_intervals(ops: Sequence[rpc_pb2.RequestOp]) -> tuple[set[bytes], list[KeyRange]]:
    """The puts and deletes of one op list (nested txns included); DuplicateKeyInTxn when
    a key is put twice or put and deleted. The two branches of a nested txn exclude
    each other, so one key may be put in both."""
    if not ops:
        return _NO_WRITES
    put_keys: list[bytes] = []
    dels: list[KeyRange] = []
    txns: list[rpc_pb2.TxnRequest] = []
    for op in ops:
        kind = op.WhichOneof("request")
        if kind == "request_put":
            put_keys.append(op.request_put.key)
        elif kind == "request_delete_range":
            d = op.request_delete_range
            dels.append(key_range(d.key, d.range_end))
        elif kind == "request_txn":
            txns.append(op.request_txn)
    puts: set[bytes] = set()
    for txn in txns:
        puts_then, dels_then = _check_intervals(txn.success)
        puts_else, dels_else = _check_intervals(txn.failure)
        for key in puts_then:
            if key in puts or _deleted(dels, key):
                raise errors.DuplicateKeyInTxn()
            puts.add(key)
        for key in puts_else:
            if (key in puts and key not in puts_then) or _deleted(dels, key):
                raise errors.DuplicateKeyInTxn()
            puts.add(key)
        dels += dels_then + dels_else
    for key in put_keys:
        if key in puts or _deleted(dels, key):
            raise errors.DuplicateKeyInTxn()
        puts.add(key)
    return puts, dels
