"""MVCCStore: etcd's revisioned key-value store on the C key index and LMDB.

LMDB holds revision -> record and the counters (records.py); the key index, rebuilt
from LMDB on open, says which revision holds a key as of any revision. The node's
apply loop writes through write_batch(); everything else here reads. LMDB's own
syncing is off because the raft WAL is the durable log: after a crash the node
re-applies the entries above applied_index. sync() makes the LMDB files durable
(before a snapshot is taken from them).
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Callable, Iterator

import lmdb

from pyraftkv import errors
from pyraftkv.keyindex import KeyIndex
from pyraftkv.mvcc import validation
from pyraftkv.mvcc.batch import WriteBatch
from pyraftkv.mvcc.ranges import key_range
from pyraftkv.mvcc.reads import ReadView
from pyraftkv.mvcc.records import (
    COUNTER,
    FORMAT_VERSION,
    KV_DB,
    META_APPLIED_INDEX,
    META_COMPACT_REVISION,
    META_DB,
    META_FORMAT,
    META_REVISION,
    REVISION,
    parse_revision_key,
    revision_key,
)
from pyraftkv.proto import kv_pb2, rpc_pb2

DEFAULT_MAP_SIZE = 8 << 30  # address space only; the file grows as data is written
FIRST_REVISION = 1  # as in etcd: an empty store is at revision 1, the first write makes 2
NOT_COMPACTED = -1  # etcd's compaction point before any compaction

KeyValue = kv_pb2.KeyValue
Event = kv_pb2.Event


class MVCCStore:
    """The applied state of one member: etcd v3's revisioned key space.

    lease_exists is the lease layer's seam: called with a lease id for every put that
    attaches one; returning False fails the put with LeaseNotFound. None accepts every
    lease. Attach/detach bookkeeping follows from the events (kv.lease and
    prev_kv.lease); keys_by_lease() rebuilds it at start-up.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        map_size: int = DEFAULT_MAP_SIZE,
        max_request_bytes: int = validation.DEFAULT_MAX_REQUEST_BYTES,
        max_txn_ops: int = validation.DEFAULT_MAX_TXN_OPS,
        lease_exists: Callable[[int], bool] | None = None,
    ) -> None:
        self.path = os.fspath(path)
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        self.lease_exists = lease_exists
        os.makedirs(self.path, exist_ok=True)
        self._env = lmdb.open(
            self.path, map_size=map_size, max_dbs=2, sync=False, metasync=False
        )
        try:
            self._kv_db = self._env.open_db(KV_DB)
            self._meta_db = self._env.open_db(META_DB)
            self._index = KeyIndex()
            self._batch: WriteBatch | None = None
            self._load()
        except BaseException:
            self._env.close()
            raise

    # ---- opening ----------------------------------------------------------------------

    def _load(self) -> None:
        """Reads the counters and rebuilds the key index from the records."""
        with self._env.begin() as txn:
            def counter(name: bytes, default: int) -> int:
                raw = txn.get(name, db=self._meta_db)
                return default if raw is None else COUNTER.unpack(raw)[0]

            fmt = counter(META_FORMAT, FORMAT_VERSION)
            if fmt != FORMAT_VERSION:
                raise RuntimeError(f"{self.path}: unknown MVCC store format {fmt}")
            self.applied_index = counter(META_APPLIED_INDEX, 0)
            self.revision = counter(META_REVISION, FIRST_REVISION)
            self.compact_revision = counter(META_COMPACT_REVISION, NOT_COMPACTED)
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        """A fresh key index from every record, in revision order."""
        index = KeyIndex()
        last = [0]

        def records(txn: lmdb.Transaction) -> Iterator[tuple[bytes, int, int, int, int, bool]]:
            kv = KeyValue()
            parse = kv.ParseFromString
            for raw_key, data in txn.cursor(db=self._kv_db):
                main, sub, tombstone = parse_revision_key(raw_key)
                parse(data)
                last[0] = main
                yield kv.key, main, sub, kv.create_revision, kv.version, tombstone

        with self._env.begin() as txn:
            index.restore_many(records(txn))
        if last[0] > self.revision:
            raise RuntimeError(
                f"{self.path}: record at revision {last[0]} above the stored revision "
                f"{self.revision}"
            )
        self._index = index

    # ---- writing ----------------------------------------------------------------------

    def write_batch(self, applied_index: int) -> WriteBatch:
        """A write transaction for the raft entries up to applied_index (use with `with`)."""
        self._idle()
        if applied_index < self.applied_index:
            raise ValueError(
                f"applied index {applied_index} is below the store's {self.applied_index}"
            )
        self._batch = WriteBatch(self, applied_index)
        return self._batch

    def _idle(self) -> None:
        if self._batch is not None:
            raise RuntimeError("a write batch is open on this store")

    # ---- reading ----------------------------------------------------------------------

    def range(self, req: rpc_pb2.RangeRequest) -> rpc_pb2.RangeResponse:
        """etcd's Range on the applied state (or at req.revision)."""
        self._idle()
        validation.check_range(req)
        with self._env.begin() as txn:
            view = ReadView(self._index, txn, self._kv_db, self.compact_revision)
            return view.range(req, self.revision)

    def events(
        self, start_revision: int, key: bytes, range_end: bytes = b"", prev_kv: bool = False,
        limit: int = 0,
    ) -> list[Event]:
        """The changes to [key, range_end) from start_revision on, in revision order, for
        watch replay. limit (0: none) cuts only between revisions, so resuming at the last
        event's revision + 1 loses nothing. Compacted when start_revision is below the
        compaction point."""
        self._idle()
        if start_revision < FIRST_REVISION:
            raise ValueError(f"start revision {start_revision} < {FIRST_REVISION}")
        if start_revision < self.compact_revision:
            raise errors.Compacted()
        kr = key_range(key, range_end)
        out: list[Event] = []
        with self._env.begin() as txn:
            view = ReadView(self._index, txn, self._kv_db, self.compact_revision)
            cursor = txn.cursor(db=self._kv_db)
            if not cursor.set_range(revision_key(start_revision, 0)):
                return out
            last_main = 0
            for raw_key, data in cursor:
                main, _, tombstone = parse_revision_key(raw_key)
                if limit and len(out) >= limit and main != last_main:
                    break
                event = Event()
                kv = event.kv
                kv.ParseFromString(data)
                if kv.key not in kr:
                    continue
                if tombstone:
                    event.type = Event.DELETE
                if prev_kv and main - 1 >= self.compact_revision:
                    prev = view.get(kv.key, main - 1)
                    if prev is not None:
                        event.prev_kv.CopyFrom(prev)
                out.append(event)
                last_main = main
        return out

    def hash_kv(self, revision: int = 0) -> tuple[int, int]:
        """(CRC32 of every record key and value up to revision, compaction point), for
        comparing replicas; revision <= 0 means the current one."""
        self._idle()
        rev = self.revision if revision <= 0 else revision
        if rev > self.revision:
            raise errors.FutureRevision()
        if rev < self.compact_revision:
            raise errors.Compacted()
        crc = zlib.crc32(KV_DB)
        with self._env.begin() as txn:
            for raw_key, data in txn.cursor(db=self._kv_db):
                if REVISION.unpack_from(raw_key)[0] > rev:
                    break
                crc = zlib.crc32(data, zlib.crc32(raw_key, crc))
        return crc, self.compact_revision

    def keys_by_lease(self) -> dict[int, list[bytes]]:
        """Every live key with a lease, grouped by lease id (the lease layer's start-up
        view; afterwards it follows the events)."""
        self._idle()
        out: dict[int, list[bytes]] = {}
        with self._env.begin() as txn:
            view = ReadView(self._index, txn, self._kv_db, self.compact_revision)
            revs, _ = self._index.range_revisions(b"", None, self.revision)
            for main, sub in revs:
                kv = KeyValue.FromString(view.record(main, sub))
                if kv.lease:
                    out.setdefault(kv.lease, []).append(kv.key)
        return out

    # ---- durability and copies --------------------------------------------------------

    def sync(self) -> None:
        """Forces LMDB's data and meta pages to disk."""
        self._env.sync(True)

    def snapshot_to(self, path: str | os.PathLike[str]) -> int:
        """Writes a consistent, compacted copy of the LMDB environment into the empty or
        missing directory path; returns the applied index the copy holds."""
        self._idle()
        path = os.fspath(path)
        os.makedirs(path, exist_ok=True)
        if os.listdir(path):
            raise FileExistsError(f"snapshot directory {path} is not empty")
        with self._env.begin() as txn:
            raw = txn.get(META_APPLIED_INDEX, db=self._meta_db)
            applied = 0 if raw is None else COUNTER.unpack(raw)[0]
            self._env.copy(path, compact=True, txn=txn)
        return applied

    def close(self) -> None:
        """Closes LMDB; an open batch is abandoned uncommitted."""
        if self._batch is not None:
            self._batch._abandon()
            self._batch = None
        self._env.close()

    def __enter__(self) -> MVCCStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
