"""MVCCStore against a plain-Python model of etcd's store on random operation sequences.

The model keeps the whole key space as a dict per revision and applies etcd's rules
to it directly: no index, no LMDB, no sub-revisions. Batches commit or abort (the
store must then be exactly as before), the store is reopened from disk, compacted,
and read at old revisions.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pyraftkv import errors
from pyraftkv.mvcc import MVCCStore, prefix_end
from pyraftkv.proto import kv_pb2, rpc_pb2

KeyValue = kv_pb2.KeyValue
Event = kv_pb2.Event
RR = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare


class Model:
    """etcd's store semantics over full snapshots of the key space."""

    def __init__(self) -> None:
        self.rev = 1
        self.compacted = -1
        self.states: dict[int, dict[bytes, KeyValue]] = {1: {}}
        self.events: list[tuple[int, Event]] = []

    # ---- reads ----

    def snapshot(self) -> tuple:
        return (self.rev, self.compacted, dict(self.states), list(self.events))

    def restore(self, snap: tuple) -> None:
        self.rev, self.compacted, self.states, self.events = (
            snap[0],
            snap[1],
            dict(snap[2]),
            list(snap[3]),
        )

    @staticmethod
    def in_range(key: bytes, start: bytes, end: bytes) -> bool:
        if not end:
            return key == start
        if end == b"\x00":
            return key >= start
        return start <= key < end

    def range(
        self,
        req: rpc_pb2.RangeRequest,
        current: int | None = None,
        state: dict[bytes, KeyValue] | None = None,
    ) -> rpc_pb2.RangeResponse:
        if not req.key:
            raise errors.EmptyKey()
        current = self.rev if current is None else current
        rev = req.revision
        if rev > current:
            raise errors.FutureRevision()
        if rev <= 0:
            rev = current
        if rev < self.compacted:
            raise errors.Compacted()
        if state is None or rev != current:
            state = self.states[rev]
        keys = sorted(k for k in state if self.in_range(k, req.key, req.range_end))
        resp = rpc_pb2.RangeResponse()
        resp.header.revision = current
        resp.count = len(keys)
        if req.count_only:
            return resp
        kvs = [state[k] for k in keys]
        if req.sort_order == RR.NONE and req.limit > 0:
            kvs = kvs[: req.limit + 1]  # etcd reads one past the limit before sorting
        order = req.sort_order
        if req.sort_target != RR.KEY and order == RR.NONE:
            order = RR.ASCEND
        field = {
            RR.KEY: "key",
            RR.VERSION: "version",
            RR.CREATE: "create_revision",
            RR.MOD: "mod_revision",
            RR.VALUE: "value",
        }[req.sort_target]
        if order != RR.NONE:
            kvs = sorted(kvs, key=lambda kv: getattr(kv, field), reverse=order == RR.DESCEND)
        if req.limit > 0 and len(kvs) > req.limit:
            kvs = kvs[: req.limit]
            resp.more = True
        for kv in kvs:
            out = resp.kvs.add()
            out.CopyFrom(kv)
            if req.keys_only:
                out.value = b""
        return resp

    def holds(self, cmp: rpc_pb2.Compare, state: dict[bytes, KeyValue]) -> bool:
        kvs = [state[k] for k in sorted(state) if self.in_range(k, cmp.key, cmp.range_end)]
        if not kvs:
            if cmp.target == Compare.VALUE:
                return False
            kvs = [KeyValue()]
        field, want = {
            Compare.VALUE: ("value", cmp.value),
            Compare.VERSION: ("version", cmp.version),
            Compare.CREATE: ("create_revision", cmp.create_revision),
            Compare.MOD: ("mod_revision", cmp.mod_revision),
            Compare.LEASE: ("lease", cmp.lease),
        }[cmp.target]
        test: Callable[[Any], bool] = {
            Compare.EQUAL: lambda have: have == want,
            Compare.NOT_EQUAL: lambda have: have != want,
            Compare.GREATER: lambda have: have > want,
            Compare.LESS: lambda have: have < want,
        }[cmp.result]
        return all(test(getattr(kv, field)) for kv in kvs)

    def history(self, start: int, key: bytes, end: bytes, prev_kv: bool) -> list[Event]:
        out = []
        for rev, event in self.events:
            if rev < start or not self.in_range(event.kv.key, key, end):
                continue
            copy = Event()
            copy.CopyFrom(event)
            if not prev_kv or rev - 1 < self.compacted:
                copy.ClearField("prev_kv")
            out.append(copy)
        return out

    # ---- writes: one working copy per request ----

    def _begin(self) -> _Work:
        return _Work(self)

    def put(self, req: rpc_pb2.PutRequest) -> tuple[rpc_pb2.PutResponse, list[Event]]:
        work = self._begin()
        resp = work.put(req)
        return resp, work.commit()

    def delete(self, req: rpc_pb2.DeleteRangeRequest):
        work = self._begin()
        resp = work.delete(req)
        return resp, work.commit()

    def txn(self, req: rpc_pb2.TxnRequest) -> tuple[rpc_pb2.TxnResponse, list[Event]]:
        work = self._begin()
        pre = dict(work.state)
        resp = work.txn(req, pre, top=True)
        events = work.commit()
        resp.header.revision = self.rev
        return resp, events

    def compact(self, rev: int) -> rpc_pb2.CompactionResponse:
        if rev <= self.compacted:
            raise errors.Compacted()
        if rev > self.rev:
            raise errors.FutureRevision()
        self.compacted = rev
        self.states = {r: s for r, s in self.states.items() if r >= rev}
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = self.rev
        return resp


class _Work:
    """One write request being applied to a copy of the current state."""

    def __init__(self, model: Model) -> None:
        self.model = model
        self.state = dict(model.states[model.rev])
        self.new_rev = model.rev + 1
        self.events: list[Event] = []

    @property
    def read_rev(self) -> int:
        return self.new_rev if self.events else self.model.rev

    def put(self, req: rpc_pb2.PutRequest) -> rpc_pb2.PutResponse:
        prev = self.state.get(req.key)
        if (req.ignore_value or req.ignore_lease) and prev is None:
            raise errors.KeyNotFound()
        kv = KeyValue(
            key=req.key,
            value=prev.value if req.ignore_value else req.value,
            lease=prev.lease if req.ignore_lease else req.lease,
            create_revision=prev.create_revision if prev else self.new_rev,
            mod_revision=self.new_rev,
            version=prev.version + 1 if prev else 1,
        )
        self.state[req.key] = kv
        event = Event(type=Event.PUT, kv=kv)
        if prev is not None:
            event.prev_kv.CopyFrom(prev)
        self.events.append(event)
        resp = rpc_pb2.PutResponse()
        resp.header.revision = self.new_rev
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def delete(self, req: rpc_pb2.DeleteRangeRequest) -> rpc_pb2.DeleteRangeResponse:
        keys = sorted(k for k in self.state if Model.in_range(k, req.key, req.range_end))
        resp = rpc_pb2.DeleteRangeResponse(deleted=len(keys))
        for key in keys:
            prev = self.state.pop(key)
            self.events.append(
                Event(
                    type=Event.DELETE, prev_kv=prev, kv=KeyValue(key=key, mod_revision=self.new_rev)
                )
            )
            if req.prev_kv:
                resp.prev_kvs.add().CopyFrom(prev)
        resp.header.revision = self.read_rev
        return resp

    def txn(
        self, req: rpc_pb2.TxnRequest, pre: dict[bytes, KeyValue], top: bool = False
    ) -> rpc_pb2.TxnResponse:
        ok = all(self.model.holds(c, pre) for c in req.compare)
        resp = rpc_pb2.TxnResponse(succeeded=ok)
        if not top:
            resp.header.SetInParent()
        for op in req.success if ok else req.failure:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                out.response_range.CopyFrom(
                    self.model.range(op.request_range, self.read_rev, self.state)
                )
            elif which == "request_put":
                out.response_put.CopyFrom(self.put(op.request_put))
            elif which == "request_delete_range":
                out.response_delete_range.CopyFrom(self.delete(op.request_delete_range))
            else:
                out.response_txn.CopyFrom(self.txn(op.request_txn, pre))
        return resp

    def commit(self) -> list[Event]:
        if self.events:
            m = self.model
            m.rev = self.new_rev
            m.states[m.rev] = self.state
            m.events += [(m.rev, e) for e in self.events]
        return self.events


# ---- generated requests ------------------------------------------------------------------

KEYS = [b"a", b"ab", b"abc", b"b", b"c"]
key_st = st.sampled_from(KEYS)
value_st = st.sampled_from([b"", b"x", b"y", b"zz"])
lease_st = st.sampled_from([0, 0, 5, 9])


@st.composite
def range_end_st(draw, key: bytes) -> bytes:
    kind = draw(st.sampled_from(["single", "prefix", "from", "upto"]))
    if kind == "single":
        return b""
    if kind == "prefix":
        return prefix_end(key)
    if kind == "from":
        return b"\x00"
    return draw(key_st)


@st.composite
def put_st(draw, key: bytes | None = None) -> rpc_pb2.PutRequest:
    key = key or draw(key_st)
    req = rpc_pb2.PutRequest(key=key, prev_kv=draw(st.booleans()))
    if draw(st.integers(0, 5)) == 0:
        req.ignore_value = True
    else:
        req.value = draw(value_st)
    if draw(st.integers(0, 5)) == 0:
        req.ignore_lease = True
    else:
        req.lease = draw(lease_st)
    return req


@st.composite
def delete_st(draw, key: bytes | None = None, ranged: bool = True) -> rpc_pb2.DeleteRangeRequest:
    key = key or draw(key_st)
    end = draw(range_end_st(key)) if ranged else b""
    return rpc_pb2.DeleteRangeRequest(key=key, range_end=end, prev_kv=draw(st.booleans()))


@st.composite
def range_st(draw, max_back: int = 0) -> rpc_pb2.RangeRequest:
    key = draw(key_st)
    req = rpc_pb2.RangeRequest(
        key=key,
        range_end=draw(range_end_st(key)),
        limit=draw(st.integers(0, 3)),
        keys_only=draw(st.booleans()),
        count_only=draw(st.integers(0, 4)) == 0,
    )
    if draw(st.booleans()):
        req.sort_order = draw(st.sampled_from([RR.NONE, RR.ASCEND, RR.DESCEND]))
        # Only targets without ties, so etcd's unstable sort and ours agree.
        req.sort_target = draw(st.sampled_from([RR.KEY, RR.MOD]))
    if max_back:
        req.revision = draw(st.integers(-1, max_back))
    return req


@st.composite
def compare_st(draw) -> rpc_pb2.Compare:
    key = draw(key_st)
    cmp = Compare(
        key=key,
        target=draw(st.sampled_from(list(Compare.CompareTarget.values()))),
        result=draw(st.sampled_from(list(Compare.CompareResult.values()))),
    )
    if draw(st.booleans()):
        cmp.range_end = draw(range_end_st(key))
    if cmp.target == Compare.VALUE:
        cmp.value = draw(value_st)
    elif cmp.target == Compare.LEASE:
        cmp.lease = draw(lease_st)
    else:
        setattr(
            cmp,
            {
                Compare.VERSION: "version",
                Compare.CREATE: "create_revision",
                Compare.MOD: "mod_revision",
            }[cmp.target],
            draw(st.integers(0, 6)),
        )
    return cmp


@st.composite
def txn_st(draw, depth: int = 0, keys: list[bytes] | None = None) -> rpc_pb2.TxnRequest:
    """A txn that passes the duplicate-key rule: each key is written at most once, and
    a deleted key is never put."""
    if keys is None:
        keys = list(draw(st.permutations(KEYS)))
    req = rpc_pb2.TxnRequest(compare=draw(st.lists(compare_st(), max_size=2)))
    for branch in (req.success, req.failure):
        for _ in range(draw(st.integers(0, 3))):
            kind = draw(st.sampled_from(["range", "put", "delete", "txn"]))
            if kind == "range":
                branch.add().request_range.CopyFrom(draw(range_st()))
            elif kind == "txn" and depth == 0:
                branch.add().request_txn.CopyFrom(draw(txn_st(depth + 1, keys)))
            elif kind in ("put", "delete") and keys:
                key = keys.pop()
                if kind == "put":
                    branch.add().request_put.CopyFrom(draw(put_st(key)))
                else:
                    branch.add().request_delete_range.CopyFrom(draw(delete_st(key, False)))
    return req


# ---- the machine -------------------------------------------------------------------------


def outcome(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except errors.ApiError as exc:
        return type(exc)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.TemporaryDirectory()
        self.store = MVCCStore(self.dir.name, map_size=64 << 20)
        self.model = Model()
        self.batch = None
        self.batch_start: tuple | None = None
        self.applied = 0

    def teardown(self) -> None:
        self.store.close()
        self.dir.cleanup()

    def ensure_batch(self):
        if self.batch is None:
            self.applied += 1
            self.batch = self.store.write_batch(self.applied)
            self.batch.__enter__()
            self.batch_start = self.model.snapshot()
        return self.batch

    def same(self, got: Any, expected: Any) -> None:
        assert got == expected, f"\nstore: {got}\nmodel: {expected}"

    @rule(req=put_st())
    def put(self, req) -> None:
        batch = self.ensure_batch()
        self.same(outcome(lambda: batch.put(req)), outcome(lambda: self.model.put(req)))

    @rule(req=delete_st())
    def delete(self, req) -> None:
        batch = self.ensure_batch()
        self.same(outcome(lambda: batch.delete_range(req)), outcome(lambda: self.model.delete(req)))

    @rule(req=txn_st())
    def txn(self, req) -> None:
        batch = self.ensure_batch()
        self.same(outcome(lambda: batch.txn(req)), outcome(lambda: self.model.txn(req)))

    @rule(data=st.data())
    def compact(self, data) -> None:
        batch = self.ensure_batch()
        rev = data.draw(st.integers(self.model.compacted - 1, self.model.rev + 1))
        req = rpc_pb2.CompactionRequest(revision=rev)
        self.same(outcome(lambda: batch.compact(req)), outcome(lambda: self.model.compact(rev)))

    @rule(req=range_st(max_back=12))
    def read_in_batch(self, req) -> None:
        batch = self.ensure_batch()
        self.same(outcome(lambda: batch.range(req)), outcome(lambda: self.model.range(req)))

    @precondition(lambda self: self.batch is not None)
    @rule()
    def commit(self) -> None:
        self.batch.__exit__(None, None, None)
        self.batch = None
        assert self.store.applied_index == self.applied

    @precondition(lambda self: self.batch is not None)
    @rule()
    def abort(self) -> None:
        """An exception leaves the batch: nothing of it remains."""
        failure = RuntimeError("apply failed")
        self.batch.__exit__(RuntimeError, failure, None)
        self.batch = None
        self.applied -= 1
        self.model.restore(self.batch_start)

    @precondition(lambda self: self.batch is None)
    @rule()
    def reopen(self) -> None:
        self.store.close()
        self.store = MVCCStore(self.dir.name, map_size=64 << 20)
        assert self.store.applied_index == self.applied

    @precondition(lambda self: self.batch is None)
    @rule(req=range_st(max_back=12))
    def read(self, req) -> None:
        self.same(outcome(lambda: self.store.range(req)), outcome(lambda: self.model.range(req)))

    @precondition(lambda self: self.batch is None)
    @rule(data=st.data(), key=key_st, prev_kv=st.booleans())
    def history(self, data, key: bytes, prev_kv: bool) -> None:
        start = data.draw(st.integers(max(1, self.model.compacted + 1), self.model.rev + 1))
        end = data.draw(range_end_st(key))
        self.same(
            self.store.events(start, key, end, prev_kv),
            self.model.history(start, key, end, prev_kv),
        )

    @invariant()
    def counters(self) -> None:
        assert self.store.revision == self.model.rev
        assert self.store.compact_revision == self.model.compacted


TestStoreModel = StoreMachine.TestCase
TestStoreModel.settings = settings(max_examples=120, stateful_step_count=40, deadline=None)


def test_model_rejects_what_it_should() -> None:
    """The model itself is checked against a few hand-worked cases."""
    model = Model()
    model.put(rpc_pb2.PutRequest(key=b"a", value=b"1"))
    model.put(rpc_pb2.PutRequest(key=b"a", value=b"2"))
    assert model.range(RR(key=b"a")).kvs[0].version == 2
    assert model.range(RR(key=b"a", revision=2)).kvs[0].value == b"1"
    model.compact(3)
    with pytest.raises(errors.Compacted):
        model.range(RR(key=b"a", revision=2))
    resp, events = model.delete(rpc_pb2.DeleteRangeRequest(key=b"a", range_end=b"\x00"))
    assert resp.deleted == 1 and events[0].kv.mod_revision == 4
