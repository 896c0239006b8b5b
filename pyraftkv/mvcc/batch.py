"""WriteBatch: applies a batch of committed raft entries in one LMDB write transaction.

Each write request is one store revision (main); its changes get sub-revisions 0, 1, ...
in order. A request that fails its checks raises its etcd error before anything is
written, and the batch carries on. Any other failure (LMDB full, a bug) poisons the
batch: the LMDB transaction is aborted, the key index rebuilt from LMDB, and the batch
refuses further use, so the store stays exactly as it was before the batch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, NamedTuple

import lmdb

from pyraftkv import errors
from pyraftkv.mvcc import validation
from pyraftkv.mvcc.ranges import key_range
from pyraftkv.mvcc.reads import ReadView
from pyraftkv.mvcc.records import (
    APP_META_PREFIX,
    COUNTER,
    FORMAT_VERSION,
    META_APPLIED_INDEX,
    META_APPLIED_TERM,
    META_COMPACT_REVISION,
    META_FORMAT,
    META_REVISION,
    revision_key,
    tombstone_key,
)
from pyraftkv.proto import kv_pb2, rpc_pb2

if TYPE_CHECKING:
    from pyraftkv.mvcc.store import MVCCStore

Event = kv_pb2.Event
DELETE = kv_pb2.Event.DELETE
PutResponse = rpc_pb2.PutResponse


class _Changes:
    """The changes of one write request: all at revision main = begin + 1."""

    __slots__ = ("begin", "main", "sub", "events", "_held")

    def __init__(self, begin: int) -> None:
        self.begin = begin
        self.main = begin + 1
        self.sub = 0
        self.events: list[Event] = []
        self._held = None

    def new_event(self) -> Event:
        """An event of this request, added to ``events``. All of them live in one message
        (one protobuf arena): a request deleting many keys makes no allocation per event."""
        if self._held is None:
            self._held = rpc_pb2.WatchResponse().events
        event = self._held.add()
        self.events.append(event)
        return event

    @property
    def read_rev(self) -> int:
        """The revision reads inside the request see: its own once it has changed
        something (etcd's storeTxnWrite.Range)."""
        return self.main if self.sub else self.begin


class _Decision(NamedTuple):
    """Which branch a txn takes, and the decisions of the txns nested in that branch."""

    succeeded: bool
    nested: list[_Decision]


class WriteBatch:
    """One LMDB write transaction over a batch of applied raft entries; use as a context
    manager: it commits with applied_index (and its term) on a clean exit and aborts on an
    exception."""

    def __init__(self, store: MVCCStore, applied_index: int, applied_term: int) -> None:
        self._store = store
        self._applied_index = applied_index
        self._applied_term = applied_term
        self._index = store._index
        self._index_put = store._index.put_replacing
        self._kv_db = store._kv_db
        self._txn = store._env.begin(write=True)
        self._put_record = self._txn.put
        self._view = ReadView(store._index, self._txn, store._kv_db, store.compact_revision)
        self._events_need_prev = store.events_need_prev()
        self._saved = (store.revision, store.compact_revision)
        self._saved_term = store.applied_term
        self._done = False
        self._failure: BaseException | None = None

    def __enter__(self) -> WriteBatch:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if self._done:
            if exc_type is None and self._failure is not None:
                raise RuntimeError("write batch was aborted") from self._failure
            return
        if exc_type is None:
            self.commit()
        else:
            self._abort(exc)

    # ---- lifecycle --------------------------------------------------------------------

    def commit(self) -> None:
        """Writes the counters and commits: the applied index always, the others (format,
        applied term, revision, compaction point) the first time and then when they moved.
        A lone writer's batch is mostly this transaction's own cost."""
        self._usable()
        store = self._store
        revision, compact_revision = self._saved
        every = not store._counters_stored
        try:
            put, meta = self._put_record, store._meta_db
            if every:
                put(META_FORMAT, COUNTER.pack(FORMAT_VERSION), db=meta)
            put(META_APPLIED_INDEX, COUNTER.pack(self._applied_index), db=meta)
            if every or self._applied_term != self._saved_term:
                put(META_APPLIED_TERM, COUNTER.pack(self._applied_term), db=meta)
            if every or store.revision != revision:
                put(META_REVISION, COUNTER.pack(store.revision), db=meta)
            if every or store.compact_revision != compact_revision:
                put(META_COMPACT_REVISION, COUNTER.pack(store.compact_revision), db=meta)
            self._txn.commit()
        except BaseException as exc:
            self._fail(exc)
            raise
        self._done = True
        store.applied_index, store.applied_term = self._applied_index, self._applied_term
        store._counters_stored = True
        store._batch = None

    def _abort(self, exc: BaseException | None) -> None:
        """Aborts the LMDB transaction and puts the store back as it was."""
        self._done = True
        self._failure = exc
        self._txn.abort()
        store = self._store
        store.revision, store.compact_revision = self._saved
        store._batch = None
        store._rebuild_index()

    def _abandon(self) -> None:
        """Aborts the LMDB transaction of a store being closed; nothing to restore."""
        self._done = True
        self._txn.abort()

    def _fail(self, exc: BaseException) -> None:
        """Poisons the batch after a failure in the middle of a write; LMDB being full
        becomes etcd's NoSpace."""
        self._abort(exc)
        if isinstance(exc, lmdb.MapFullError):
            raise errors.NoSpace() from exc

    def _usable(self) -> None:
        if self._done:
            raise RuntimeError("write batch is finished")

    # ---- requests ---------------------------------------------------------------------

    def put(self, req: rpc_pb2.PutRequest) -> tuple[PutResponse, list[Event]]:
        """etcd's Put: a new revision; prev_kv, ignore_value, ignore_lease honoured."""
        self._usable()
        validation.check_put(req)
        validation.check_size(req, self._store.max_request_bytes)
        if req.lease:
            self._check_lease(req.lease)
        changes = _Changes(self._store.revision)
        resp = PutResponse()
        try:
            self._put(changes, req, resp)
        except errors.KeyNotFound:
            raise  # ignore_value/ignore_lease on a missing key: raised before any write
        except BaseException as exc:
            self._fail(exc)
            raise
        self._store.revision = changes.main
        return resp, changes.events

    def put_cannot_fail(self, req: rpc_pb2.PutRequest) -> bool:
        """Whether put(req) is sure to succeed with the next revision and an answer of
        nothing but that revision: no lease to find, no key that must exist, no previous
        value to return, and put's own checks passed."""
        if req.lease or req.prev_kv or req.ignore_value or req.ignore_lease:
            return False
        try:
            validation.check_put(req)
            validation.check_size(req, self._store.max_request_bytes)
        except errors.ApiError:
            return False
        return True

    def delete_range(
        self, req: rpc_pb2.DeleteRangeRequest
    ) -> tuple[rpc_pb2.DeleteRangeResponse, list[Event]]:
        """etcd's DeleteRange: every live key in the range deleted in one revision (none
        deleted: no new revision)."""
        self._usable()
        validation.check_delete(req)
        validation.check_size(req, self._store.max_request_bytes)
        changes = _Changes(self._store.revision)
        resp = rpc_pb2.DeleteRangeResponse()
        try:
            self._delete(changes, req.key, req.range_end, req.prev_kv, resp)
        except BaseException as exc:
            self._fail(exc)
            raise
        if changes.sub:
            self._store.revision = changes.main
        return resp, changes.events

    def delete_keys(self, keys: Iterable[bytes]) -> tuple[int, list[Event]]:
        """Deletes the live ones of keys in one revision (a lease revoke or expiry);
        returns the store revision after it and the events."""
        self._usable()
        changes = _Changes(self._store.revision)
        try:
            for key in keys:
                self._delete(changes, key, b"", False, rpc_pb2.DeleteRangeResponse())
        except BaseException as exc:
            self._fail(exc)
            raise
        if changes.sub:
            self._store.revision = changes.main
        return self._store.revision, changes.events

    def txn(self, req: rpc_pb2.TxnRequest) -> tuple[rpc_pb2.TxnResponse, list[Event]]:
        """etcd's Txn: compares (of nested txns too) judged on the state before it, then
        one branch's ops in order, all in one revision; reads inside see earlier writes."""
        self._usable()
        store = self._store
        writes = validation.check_txn(req, store.max_txn_ops)
        validation.check_size(req, store.max_request_bytes)
        begin = store.revision
        chosen: list[rpc_pb2.RequestOp] = []
        decision = self._decide(req, begin, chosen)
        self._check_chosen(chosen, begin, writes)
        changes = _Changes(begin)
        resp = rpc_pb2.TxnResponse()
        try:
            self._apply_txn(changes, req, decision, resp)
        except BaseException as exc:
            self._fail(exc)
            raise
        resp.header.revision = changes.read_rev
        store.revision = changes.read_rev
        return resp, changes.events

    def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """etcd's Range at the batch's current state (its earlier writes included)."""
        self._usable()
        validation.check_range(req)
        return self._view.range(req, self._store.revision)

    def compact(self, req: rpc_pb2.CompactionRequest) -> rpc_pb2.CompactionResponse:
        """etcd's Compact: drops every record no read at or after req.revision needs."""
        self._usable()
        store = self._store
        rev = req.revision
        if rev <= store.compact_revision:
            raise errors.Compacted()
        if rev > store.revision:
            raise errors.FutureRevision()
        try:
            delete, db = self._txn.delete, self._kv_db
            for main, sub, tombstone in self._index.compact(rev):
                key = tombstone_key(main, sub) if tombstone else revision_key(main, sub)
                if not delete(key, db=db):
                    raise RuntimeError(f"mvcc: compaction found no record at {main}.{sub}")
        except BaseException as exc:
            self._fail(exc)
            raise
        store.compact_revision = rev
        self._view.compact_revision = rev
        resp = rpc_pb2.CompactionResponse()
        resp.header.revision = store.revision
        return resp

    def put_meta(self, name: bytes, value: bytes) -> None:
        """Stores application metadata (e.g. the member list) with this batch; read it
        back with MVCCStore.get_meta."""
        self._usable()
        try:
            self._put_record(APP_META_PREFIX + name, value, db=self._store._meta_db)
        except BaseException as exc:
            self._fail(exc)
            raise

    def delete_meta(self, name: bytes) -> None:
        """Removes application metadata stored with put_meta (absent is fine)."""
        self._usable()
        try:
            self._txn.delete(APP_META_PREFIX + name, db=self._store._meta_db)
        except BaseException as exc:
            self._fail(exc)
            raise

    # ---- the changes ------------------------------------------------------------------

    def _check_lease(self, lease: int) -> None:
        lease_exists = self._store.lease_exists
        if lease_exists is not None and not lease_exists(lease):
            raise errors.LeaseNotFound()

    def _put(self, changes: _Changes, req: rpc_pb2.PutRequest, resp: PutResponse) -> None:
        key = req.key
        main, sub = changes.main, changes.sub
        if (req.ignore_value or req.ignore_lease) and self._index.get(key, main) is None:
            raise errors.KeyNotFound()
        create_revision, version, prev_main, prev_sub = self._index_put(key, main, sub)
        changes.sub = sub + 1
        event = Event()
        value, lease = req.value, req.lease
        if prev_main >= 0 and (
            self._events_need_prev or req.prev_kv or req.ignore_value or req.ignore_lease
        ):
            prev_kv = event.prev_kv
            prev_kv.ParseFromString(self._view.record(prev_main, prev_sub))
            if req.ignore_value:
                value = prev_kv.value
            if req.ignore_lease:
                lease = prev_kv.lease
        kv = event.kv
        kv.key = key
        kv.value = value
        kv.create_revision = create_revision
        kv.mod_revision = main
        kv.version = version
        kv.lease = lease
        changes.events.append(event)
        self._put_record(
            revision_key(main, sub), kv.SerializeToString(), db=self._kv_db, append=True
        )
        resp.header.revision = main
        if req.prev_kv and prev_main >= 0:
            resp.prev_kv.CopyFrom(event.prev_kv)

    def _delete(
        self,
        changes: _Changes,
        key: bytes,
        range_end: bytes,
        want_prev: bool,
        resp: rpc_pb2.DeleteRangeResponse,
    ) -> None:
        index = self._index
        kr = key_range(key, range_end)
        read_rev = changes.read_rev
        if kr.single:
            state = index.get(key, read_rev)
            found = [] if state is None else [(key, state.mod_main, state.mod_sub)]
        else:
            found = [
                (item.key, item.mod_main, item.mod_sub)
                for item in index.range(kr.start, kr.end, read_rev)[0]
            ]
        main = changes.main
        with_prev = want_prev or self._events_need_prev
        for found_key, mod_main, mod_sub in found:
            event = changes.new_event()
            event.type = DELETE
            if with_prev:
                event.prev_kv.ParseFromString(self._view.record(mod_main, mod_sub))
            sub = changes.sub
            if not index.tombstone(found_key, main, sub):
                raise RuntimeError(f"mvcc: {found_key!r} was live but could not be deleted")
            changes.sub = sub + 1
            kv = event.kv
            kv.key = found_key
            kv.mod_revision = main
            self._put_record(
                tombstone_key(main, sub), kv.SerializeToString(), db=self._kv_db, append=True
            )
            if want_prev:
                resp.prev_kvs.append(event.prev_kv)
        resp.deleted = len(found)
        resp.header.revision = changes.read_rev

    # ---- txn --------------------------------------------------------------------------

    def _decide(
        self, req: rpc_pb2.TxnRequest, rev: int, chosen: list[rpc_pb2.RequestOp]
    ) -> _Decision:
        """Judges the compares (nested txns' too, all at rev, before any write) and
        appends the non-txn ops that will run to chosen, in order."""
        view = self._view
        succeeded = True
        for cmp in req.compare:
            if not view.compare(cmp, rev):
                succeeded = False
                break
        nested = []
        for op in req.success if succeeded else req.failure:
            if op.WhichOneof("request") == "request_txn":
                nested.append(self._decide(op.request_txn, rev, chosen))
            else:
                chosen.append(op)
        return _Decision(succeeded, nested)

    def _check_chosen(self, chosen: list[rpc_pb2.RequestOp], begin: int, writes: bool) -> None:
        """etcd's checks of the ops a txn will run, against the state before it: puts
        first (a key for ignore_value/ignore_lease, an existing lease), then reads (their
        revision must exist)."""
        range_error: errors.ApiError | None = None
        compact_revision = self._store.compact_revision
        for op in chosen:
            which = op.WhichOneof("request")
            if which == "request_put" and writes:
                put = op.request_put
                if (put.ignore_value or put.ignore_lease) and (
                    self._index.get(put.key, begin) is None
                ):
                    raise errors.KeyNotFound()
                if put.lease:
                    self._check_lease(put.lease)
            elif which == "request_range" and range_error is None:
                rev = op.request_range.revision
                if rev > begin:
                    range_error = errors.FutureRevision()
                elif rev != 0 and rev < compact_revision:
                    range_error = errors.Compacted()
        if range_error is not None:
            raise range_error

    def _apply_txn(
        self,
        changes: _Changes,
        req: rpc_pb2.TxnRequest,
        decision: _Decision,
        resp: rpc_pb2.TxnResponse,
    ) -> None:
        resp.succeeded = decision.succeeded
        nested = iter(decision.nested)
        for op in req.success if decision.succeeded else req.failure:
            which = op.WhichOneof("request")
            out = resp.responses.add()
            if which == "request_range":
                self._view.range(op.request_range, changes.read_rev, out.response_range)
            elif which == "request_put":
                self._put(changes, op.request_put, out.response_put)
            elif which == "request_delete_range":
                d = op.request_delete_range
                self._delete(changes, d.key, d.range_end, d.prev_kv, out.response_delete_range)
            else:
                inner = out.response_txn
                inner.header.SetInParent()  # etcd leaves nested headers empty
                self._apply_txn(changes, op.request_txn, next(nested), inner)
