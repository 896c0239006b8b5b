"""MVCCStore: etcd's revisioned key-value store on the C key index and LMDB.

LMDB holds revision -> record and the counters (records.py); the key index, rebuilt
from LMDB on open, says which revision holds a key as of any revision. The node's
apply loop writes through write_batch(); everything else here reads. LMDB's own
syncing is off because the raft WAL is the durable log: after a crash the node
re-applies the entries above applied_index. sync() makes the LMDB files durable
(before a snapshot is taken from them).
"""

from __future__ import annotations

import contextlib
import gc
import os
import threading
import zlib
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import lmdb

from pyraftkv import errors
from pyraftkv.crc32c import crc32c
from pyraftkv.keyindex import KeyIndex
from pyraftkv.mvcc import validation
from pyraftkv.mvcc.batch import WriteBatch
from pyraftkv.mvcc.ranges import key_range
from pyraftkv.mvcc.reads import ReadView
from pyraftkv.mvcc.records import (
    APP_META_PREFIX,
    COUNTER,
    DATA_FILE,
    FORMAT_VERSION,
    KV_DB,
    META_APPLIED_INDEX,
    META_APPLIED_TERM,
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
# Meta keys that differ between members holding the same data (left out of hash()).
MEMBER_LOCAL_META = frozenset((META_APPLIED_INDEX, META_APPLIED_TERM))
DEFRAG_FILE = "defrag.tmp"  # the compacted copy being made, in the store's directory

KeyValue = kv_pb2.KeyValue
T = TypeVar("T")
# Records replayed per call into C when the index is rebuilt: enough that the per-call
# cost vanishes, few enough that a chunk's copies stay small (tens of MB).
RESTORE_CHUNK = 65536


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a burst of objects that form no cycles is made
    (the rebuild's record tuples), as collecting them would scan every one repeatedly."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


Event = kv_pb2.Event


class MVCCStore:
    """The applied state of one member: etcd v3's revisioned key space.

    lease_exists is the lease layer's seam: called with a lease id for every put that
    attaches one; returning False fails the put with LeaseNotFound. None accepts every
    lease. Attach/detach bookkeeping follows from the events (kv.lease of puts, and
    deletes); keys_by_lease() rebuilds it at start-up.

    events_need_prev says, once per write batch, whether a put's or a delete's events must
    carry the key's previous version (prev_kv): reading and parsing it is a third of an
    overwrite's cost, a delete of many keys would hold all their values at once, and
    nothing needs it while no watcher asked for prev_kv. A request that needs it (prev_kv,
    ignore_value, ignore_lease) reads it regardless.
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
        self._map_size = map_size
        self.max_request_bytes = max_request_bytes
        self.max_txn_ops = max_txn_ops
        self.lease_exists = lease_exists
        self.events_need_prev: Callable[[], bool] = lambda: True
        # Copies run in other threads (snapshot_to); closing waits for them to finish.
        self._copies = 0
        self._closed = False
        self._copies_done = threading.Condition()
        os.makedirs(self.path, exist_ok=True)
        self._env = lmdb.open(self.path, map_size=map_size, max_dbs=2, sync=False, metasync=False)
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
            fmt = _counter(txn, self._meta_db, META_FORMAT, FORMAT_VERSION)
            # The first commit stores every counter (the format with them), later ones
            # those that moved: the same records, so the same hash, on every member.
            self._counters_stored = txn.get(META_FORMAT, db=self._meta_db) is not None
            if fmt != FORMAT_VERSION:
                raise RuntimeError(f"{self.path}: unknown MVCC store format {fmt}")
            self.applied_index = _counter(txn, self._meta_db, META_APPLIED_INDEX, 0)
            self.applied_term = _counter(txn, self._meta_db, META_APPLIED_TERM, 0)
            self.revision = _counter(txn, self._meta_db, META_REVISION, FIRST_REVISION)
            self.compact_revision = _counter(
                txn, self._meta_db, META_COMPACT_REVISION, NOT_COMPACTED
            )
        self._rebuild_index()

    def _rebuild_index(self) -> None:
        """A fresh key index from every record, in revision order (parsed in C, in
        chunks), noting which live keys hold a lease as it goes."""
        index = KeyIndex()
        candidates: dict[bytes, tuple[int, int, int]] = {}  # key -> (lease, main, sub)
        last_key = None
        with self._env.begin() as txn, _gc_paused():
            cursor = txn.cursor(db=self._kv_db)
            more = cursor.first()
            while more:
                keys, values = [], []
                for key, value in cursor:
                    keys.append(key)
                    values.append(value)
                    if len(keys) == RESTORE_CHUNK:
                        break
                more = len(keys) == RESTORE_CHUNK and cursor.next()
                if not keys:
                    break
                for at in index.restore_records(keys, values):
                    kv = KeyValue.FromString(values[at])
                    main, sub, _ = parse_revision_key(keys[at])
                    candidates[kv.key] = (kv.lease, main, sub)
                last_key = keys[-1]
        last = parse_revision_key(last_key)[0] if last_key is not None else 0
        if last > self.revision:
            raise RuntimeError(
                f"{self.path}: record at revision {last} above the stored revision {self.revision}"
            )
        leased: dict[int, list[bytes]] = {}
        for key, (lease, main, sub) in candidates.items():
            state = index.get(key, self.revision)
            if state is not None and (state.mod_main, state.mod_sub) == (main, sub):
                leased.setdefault(lease, []).append(key)
        self._index = index
        self._leased_at = (self.revision, leased)

    # ---- writing ----------------------------------------------------------------------

    def write_batch(self, applied_index: int, applied_term: int = 0) -> WriteBatch:
        """A write transaction for the raft entries up to applied_index, the last of them
        in applied_term (use with `with`)."""
        self._idle()
        if applied_index < self.applied_index:
            raise ValueError(
                f"applied index {applied_index} is below the store's {self.applied_index}"
            )
        self._batch = WriteBatch(self, applied_index, applied_term)
        return self._batch

    def check_txn(self, req: rpc_pb2.TxnRequest) -> None:
        """The checks a Txn gets on apply that need no state, to refuse a bad one before
        proposing it."""
        validation.check_txn(req, self.max_txn_ops)
        validation.check_size(req, self.max_request_bytes)

    def check_compact(self, req: rpc_pb2.CompactionRequest) -> None:
        """Compact's errors as of now (apply checks again: the state may move first)."""
        if req.revision <= self.compact_revision:
            raise errors.Compacted()
        if req.revision > self.revision:
            raise errors.FutureRevision()

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
        self,
        start_revision: int,
        key: bytes,
        range_end: bytes = b"",
        prev_kv: bool = False,
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

    def hash(self) -> tuple[int, int]:
        """(CRC32C of every sub-database's name and every key and value in it, the revision
        it holds): etcd's Hash of the whole backend. The member's own place in the Raft log
        (applied index and term) is left out, as etcd leaves out its consistent index, so
        members holding the same data agree."""
        self._idle()
        crc = 0
        with self._env.begin() as txn:
            for name, db in ((KV_DB, self._kv_db), (META_DB, self._meta_db)):
                crc = crc32c(name, crc)
                for key, value in txn.cursor(db=db):
                    if db is self._meta_db and key in MEMBER_LOCAL_META:
                        continue
                    crc = crc32c(value, crc32c(key, crc))
        return crc, self.revision

    def keys_by_lease(self) -> dict[int, list[bytes]]:
        """Every live key with a lease, grouped by lease id (the lease layer's start-up
        view; afterwards it follows the events). Noted while the index was rebuilt, read
        again only after writes."""
        self._idle()
        revision, leased = self._leased_at
        if revision == self.revision:
            return {lease: list(keys) for lease, keys in leased.items()}
        out: dict[int, list[bytes]] = {}
        with self._env.begin() as txn:
            view = ReadView(self._index, txn, self._kv_db, self.compact_revision)
            revs, _ = self._index.range_revisions(b"", None, self.revision)
            for main, sub in revs:
                kv = KeyValue.FromString(view.record(main, sub))
                if kv.lease:
                    out.setdefault(kv.lease, []).append(kv.key)
        return out

    def get_meta(self, name: bytes) -> bytes | None:
        """Application metadata stored with WriteBatch.put_meta, as last committed."""
        with self._env.begin() as txn:
            return txn.get(APP_META_PREFIX + name, db=self._meta_db)

    def meta_items(self, prefix: bytes) -> list[tuple[bytes, bytes]]:
        """Every (name, value) of application metadata whose name starts with prefix."""
        self._idle()
        full = APP_META_PREFIX + prefix
        out = []
        with self._env.begin() as txn:
            cursor = txn.cursor(db=self._meta_db)
            if cursor.set_range(full):
                for key, value in cursor:
                    if not key.startswith(full):
                        break
                    out.append((key[len(APP_META_PREFIX) :], value))
        return out

    def record_count(self) -> int:
        """Revision records held (every kept version of every key, tombstones included)."""
        with self._env.begin() as txn:
            return txn.stat(self._kv_db)["entries"]

    def keys_in_index(self) -> int:
        """Keys the index holds: live ones and deleted ones whose history is not compacted."""
        return len(self._index)

    def db_size(self) -> int:
        """Bytes of the LMDB file on disk."""
        return os.path.getsize(os.path.join(self.path, DATA_FILE))

    def db_size_in_use(self) -> int:
        """Bytes of the LMDB pages holding data (the rest of the file is free pages)."""
        pages = 0
        with self._env.begin() as txn:
            for db in (None, self._kv_db, self._meta_db):
                st = txn.stat(db) if db is not None else self._env.stat()
                pages += st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
            return pages * self._env.stat()["psize"]

    # ---- durability and copies --------------------------------------------------------

    def sync(self) -> None:
        """Forces LMDB's data and meta pages to disk."""
        self._env.sync(True)

    def snapshot_to(self, path: str | os.PathLike[str]) -> int:
        """Writes a consistent, compacted copy of the store into the new file path (an LMDB
        data file, the follower catch-up snapshot); returns the applied index it holds."""
        return self.reserve_copy()(path)

    def reserve_copy(self) -> Callable[[str | os.PathLike[str]], int]:
        """A copy of the store (snapshot_to) to be made once, in any thread, beside the
        apply loop (it reads committed state only): close() waits until it is made, so a
        defragment or snapshot install never closes the store under it."""
        return self._reserve(self._copy_to)

    def reserve_sync(self) -> Callable[[], None]:
        """sync() to be run once, in any thread, beside the apply loop (LMDB flushes what
        was committed before it started; the GIL is released meanwhile): close() waits
        for it, as for a copy."""
        return self._reserve(self.sync)

    def _reserve(self, work: Callable[..., T]) -> Callable[..., T]:
        with self._copies_done:
            if self._closed:
                raise RuntimeError(f"{self.path}: store closed")
            self._copies += 1

        def run(*args: Any) -> T:
            try:
                return work(*args)
            finally:
                with self._copies_done:
                    self._copies -= 1
                    self._copies_done.notify_all()

        return run

    def _copy_to(self, path: str | os.PathLike[str]) -> int:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with self._env.begin() as txn:
                applied = _counter(txn, self._meta_db, META_APPLIED_INDEX, 0)
                self._env.copyfd(fd, compact=True, txn=txn)
            os.fsync(fd)
        except BaseException:
            os.unlink(path)
            raise
        finally:
            os.close(fd)
        return applied

    def defragmented(self) -> MVCCStore:
        """This store rewritten as a compacted copy (LMDB's compacting copy, swapped in
        for the file): returns the store reopened on it; this object is closed."""
        path = os.path.join(self.path, DEFRAG_FILE)
        with contextlib.suppress(FileNotFoundError):  # left by a defragment that died
            os.unlink(path)
        self.snapshot_to(path)
        return self.replace_with(path)

    @staticmethod
    def snapshot_position(path: str | os.PathLike[str]) -> tuple[int, int]:
        """(applied index, applied term) held by a snapshot file from snapshot_to."""
        env = lmdb.open(os.fspath(path), subdir=False, readonly=True, lock=False, max_dbs=2)
        try:
            meta = env.open_db(META_DB, create=False)
            with env.begin() as txn:
                return (
                    _counter(txn, meta, META_APPLIED_INDEX, 0),
                    _counter(txn, meta, META_APPLIED_TERM, 0),
                )
        finally:
            env.close()

    def term_of_snapshot(self, path: str | os.PathLike[str]) -> int:
        """The applied term held by a snapshot file from snapshot_to."""
        return self.snapshot_position(path)[1]

    def replace_with(self, snapshot_path: str | os.PathLike[str]) -> MVCCStore:
        """Installs a snapshot file as this store's data (a follower catching up) and
        returns the store reopened on it; this object is closed. The file is moved."""
        self.snapshot_position(snapshot_path)  # refuse anything that is not a store
        self.close()
        os.replace(snapshot_path, os.path.join(self.path, DATA_FILE))
        dir_fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
        return MVCCStore(
            self.path,
            map_size=self._map_size,
            max_request_bytes=self.max_request_bytes,
            max_txn_ops=self.max_txn_ops,
            lease_exists=self.lease_exists,
        )

    def close(self) -> None:
        """Closes LMDB once the copies in flight are done (blocking); an open batch is
        abandoned uncommitted."""
        with self._copies_done:
            self._closed = True
            self._copies_done.wait_for(lambda: self._copies == 0)
        if self._batch is not None:
            self._batch._abandon()
            self._batch = None
        self._env.close()

    def __enter__(self) -> MVCCStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _counter(txn: lmdb.Transaction, meta_db: Any, name: bytes, default: int) -> int:
    raw = txn.get(name, db=meta_db)
    return default if raw is None else COUNTER.unpack(raw)[0]
