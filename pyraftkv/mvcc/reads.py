"""Reads of the revisioned store: Range and Txn compares, over the key index and one
LMDB transaction (a read transaction, or a write batch's own so it sees its writes)."""

from __future__ import annotations

from typing import Any

import lmdb

from pyraftkv import errors
from pyraftkv.keyindex import KeyIndex
from pyraftkv.mvcc.ranges import key_range
from pyraftkv.mvcc.records import revision_key
from pyraftkv.proto import kv_pb2, rpc_pb2

KeyValue = kv_pb2.KeyValue
RangeRequest = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare

INT64_MAX = (1 << 63) - 1  # a request's limit is an int64

_SORT_KEYS = {
    RangeRequest.KEY: lambda kv: kv.key,
    RangeRequest.VERSION: lambda kv: kv.version,
    RangeRequest.CREATE: lambda kv: kv.create_revision,
    RangeRequest.MOD: lambda kv: kv.mod_revision,
    RangeRequest.VALUE: lambda kv: kv.value,
}


class ReadView:
    """The store's records as one LMDB transaction sees them, with the key index.

    compact_revision is the store's compaction point (-1 before the first compaction);
    reads below it raise Compacted.
    """

    __slots__ = ("index", "txn", "kv_db", "compact_revision")

    def __init__(
        self, index: KeyIndex, txn: lmdb.Transaction, kv_db: Any, compact_revision: int
    ) -> None:
        self.index = index
        self.txn = txn
        self.kv_db = kv_db
        self.compact_revision = compact_revision

    def record(self, main: int, sub: int) -> bytes:
        """The serialized KeyValue written at (main, sub); the index says it exists."""
        data = self.txn.get(revision_key(main, sub), db=self.kv_db)
        if data is None:
            raise RuntimeError(f"mvcc: index names revision {main}.{sub} but LMDB has no record")
        return data

    def get(self, key: bytes, at_rev: int) -> KeyValue | None:
        """The key as of revision at_rev, or None when it is not live then."""
        state = self.index.get(key, at_rev)
        if state is None:
            return None
        return KeyValue.FromString(self.record(state.mod_main, state.mod_sub))

    def range(
        self, req: RangeRequest, current: int, resp: rpc_pb2.RangeResponse | None = None
    ) -> rpc_pb2.RangeResponse:
        """etcd's Range at req.revision (<= 0: current), into resp when given. The header
        carries current, and count is the number of keys in the range before the min/max
        filters."""
        rev = req.revision
        if rev > current:
            raise errors.FutureRevision()
        if rev <= 0:
            rev = current
        if rev < self.compact_revision:
            raise errors.Compacted()
        if resp is None:
            resp = rpc_pb2.RangeResponse()
        resp.header.revision = current
        index = self.index
        kr = key_range(req.key, req.range_end)
        if req.count_only:
            if kr.single:
                resp.count = 0 if index.get(kr.start, rev) is None else 1
            else:
                resp.count = index.count(kr.start, kr.end, rev)
            return resp

        filtered = (
            req.min_mod_revision
            or req.max_mod_revision
            or req.min_create_revision
            or req.max_create_revision
        )
        limit = req.limit
        # Like etcd: sorting or filtering reads everything, otherwise one past the limit
        # tells whether there is more. A sort target without an order sorts ascending.
        if req.sort_order != RangeRequest.NONE or filtered:
            fetch = 0
        else:
            fetch = limit + 1 if 0 < limit < INT64_MAX else 0  # the largest limit: all
        sort_order = req.sort_order
        if req.sort_target != RangeRequest.KEY and sort_order == RangeRequest.NONE:
            sort_order = RangeRequest.ASCEND

        if kr.single:
            state = index.get(kr.start, rev)
            revs = [] if state is None else [(state.mod_main, state.mod_sub)]
            resp.count = len(revs)
        else:
            revs, resp.count = index.range_revisions(kr.start, kr.end, rev, fetch)

        if (
            not filtered
            and sort_order in (RangeRequest.NONE, RangeRequest.ASCEND)
            and (req.sort_target == RangeRequest.KEY)
        ):
            # Key order is index order: parse straight into the response.
            kvs = resp.kvs
            for main, sub in revs:
                kvs.add().ParseFromString(self.record(main, sub))
            if 0 < limit < len(kvs):
                del kvs[limit:]
                resp.more = True
        else:
            found = [KeyValue.FromString(self.record(main, sub)) for main, sub in revs]
            found = _filter(found, req)
            found.sort(key=_SORT_KEYS[req.sort_target], reverse=sort_order == RangeRequest.DESCEND)
            if 0 < limit < len(found):
                found = found[:limit]
                resp.more = True
            resp.kvs.extend(found)
        if req.keys_only:
            for kv in resp.kvs:
                kv.ClearField("value")
        return resp

    def compare(self, cmp: Compare, rev: int) -> bool:
        """One Txn compare at revision rev, by etcd's rules: every key in the range must
        satisfy it; with no key, a VALUE compare fails and the others compare against
        zero."""
        kr = key_range(cmp.key, cmp.range_end)
        index = self.index
        if kr.single:
            state = index.get(kr.start, rev)
            found = [] if state is None else [state]
        else:
            found = index.range(kr.start, kr.end, rev)[0]
        target = cmp.target
        if not found:
            if target == Compare.VALUE:
                return False
            return _holds(cmp.result, 0, _wanted(cmp))
        want = _wanted(cmp)
        if target == Compare.VALUE or target == Compare.LEASE:
            field = "value" if target == Compare.VALUE else "lease"
            have = [
                getattr(KeyValue.FromString(self.record(s.mod_main, s.mod_sub)), field)
                for s in found
            ]
        elif target == Compare.VERSION:
            have = [s.version for s in found]
        elif target == Compare.CREATE:
            have = [s.create_revision for s in found]
        else:
            have = [s.mod_main for s in found]
        result = cmp.result
        return all(_holds(result, h, want) for h in have)


def _filter(kvs: list[KeyValue], req: RangeRequest) -> list[KeyValue]:
    if req.max_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision <= req.max_mod_revision]
    if req.min_mod_revision:
        kvs = [kv for kv in kvs if kv.mod_revision >= req.min_mod_revision]
    if req.max_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision <= req.max_create_revision]
    if req.min_create_revision:
        kvs = [kv for kv in kvs if kv.create_revision >= req.min_create_revision]
    return kvs


def _wanted(cmp: Compare) -> Any:
    """The compare's operand; a union holding another field than the target's reads as
    zero, as in etcd."""
    target = cmp.target
    if target == Compare.VALUE:
        return cmp.value
    if target == Compare.VERSION:
        return cmp.version
    if target == Compare.CREATE:
        return cmp.create_revision
    if target == Compare.MOD:
        return cmp.mod_revision
    return cmp.lease


def _holds(result: int, have: Any, want: Any) -> bool:
    if result == Compare.EQUAL:
        return have == want
    if result == Compare.NOT_EQUAL:
        return have != want
    if result == Compare.GREATER:
        return have > want
    return have < want
