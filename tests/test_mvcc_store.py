"""MVCCStore as a store of files: reopening, batches that commit or abort, LMDB running full,
snapshots, replica hashes, watch history, and the lease seam."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import lmdb
import pytest

from pyraftkv import errors
from pyraftkv.mvcc import MVCCStore
from pyraftkv.mvcc.records import COUNTER, META_REVISION
from pyraftkv.proto import kv_pb2, rpc_pb2

RR = rpc_pb2.RangeRequest
ALL = RR(key=b"\x00", range_end=b"\x00")
Event = kv_pb2.Event


def P(key: bytes, value: bytes = b"v", **kw) -> rpc_pb2.PutRequest:  # noqa: N802
    return rpc_pb2.PutRequest(key=key, value=value, **kw)


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "mvcc"


@pytest.fixture
def store(path: Path) -> Iterator[MVCCStore]:
    s = MVCCStore(path, map_size=64 << 20)
    yield s
    s.close()


def history(store: MVCCStore, n: int = 30) -> None:
    """n revisions of puts, updates and deletes over a few keys, in three batches."""
    for batch_no in range(3):
        with store.write_batch(store.applied_index + 1) as b:
            for i in range(n // 3):
                key = b"k%d" % ((batch_no * 7 + i) % 5)
                if i % 4 == 3:
                    b.delete_range(rpc_pb2.DeleteRangeRequest(key=key))
                else:
                    b.put(P(key, b"%d/%d" % (batch_no, i), lease=i % 2))


def everything(store: MVCCStore) -> list:
    """Every read: each revision's full key space, the history, the counters."""
    first = max(1, store.compact_revision)
    return [
        store.revision,
        store.compact_revision,
        store.applied_index,
        store.hash_kv(),
        [
            store.range(RR(key=b"\x00", range_end=b"\x00", revision=r))
            for r in range(first, store.revision + 1)
        ],
        store.events(first, b"\x00", b"\x00", prev_kv=True),
    ]


# ---- reopening ----------------------------------------------------------------------------


def test_reopen_rebuilds_the_same_store(path: Path) -> None:
    with MVCCStore(path) as store:
        history(store)
        before = everything(store)
        assert store.revision > 20 and store.applied_index == 3
    with MVCCStore(path) as store:
        assert everything(store) == before


def test_reopen_after_compaction_keeps_versions_and_create_revisions(path: Path) -> None:
    with MVCCStore(path) as store:
        history(store)
        with store.write_batch(4) as b:
            b.compact(rpc_pb2.CompactionRequest(revision=store.revision - 5))
        before = everything(store)
    with MVCCStore(path) as store:
        assert everything(store) == before
        with store.write_batch(5) as b:
            _, events = b.put(P(b"k1", b"after"))
        assert events[0].kv.version == events[0].prev_kv.version + 1


def test_an_empty_store_starts_at_revision_one(store: MVCCStore) -> None:
    assert (store.revision, store.compact_revision, store.applied_index) == (1, -1, 0)
    assert store.range(ALL) == rpc_pb2.RangeResponse(header=rpc_pb2.ResponseHeader(revision=1))


def test_reopen_refuses_records_above_the_stored_revision(path: Path) -> None:
    with MVCCStore(path) as store:
        history(store, 6)
        with store._env.begin(write=True) as txn:
            txn.put(META_REVISION, COUNTER.pack(3), db=store._meta_db)
    with pytest.raises(RuntimeError, match="above the stored revision"):
        MVCCStore(path)


# ---- batches ------------------------------------------------------------------------------


def test_applied_index_commits_with_the_batch(path: Path) -> None:
    with MVCCStore(path) as store:
        with store.write_batch(7) as b:
            b.put(P(b"a"))
        with pytest.raises(ValueError):
            store.write_batch(6)
        with store.write_batch(9):
            pass  # entries that were not KV requests still advance the applied index
        assert store.applied_index == 9
    with MVCCStore(path) as store:
        assert (store.applied_index, store.revision) == (9, 2)


def test_an_exception_aborts_the_whole_batch(path: Path) -> None:
    with MVCCStore(path) as store:
        history(store)
        before = everything(store)
        with pytest.raises(KeyError), store.write_batch(10) as b:
            b.put(P(b"k1", b"lost"))
            b.delete_range(rpc_pb2.DeleteRangeRequest(key=b"\x00", range_end=b"\x00"))
            b.compact(rpc_pb2.CompactionRequest(revision=store.revision - 1))
            raise KeyError("the apply loop failed")
        assert everything(store) == before
        with store.write_batch(10) as b:
            assert b.put(P(b"k1", b"next"))[0].header.revision == before[0] + 1
    with MVCCStore(path) as store:
        assert store.revision == before[0] + 1


def test_closing_with_an_open_batch_keeps_nothing_of_it(path: Path) -> None:
    store = MVCCStore(path)
    b = store.write_batch(1)
    b.put(P(b"a"))
    store.close()
    with pytest.raises(RuntimeError):
        b.put(P(b"b"))
    with MVCCStore(path) as store:
        assert (store.revision, store.applied_index, store.range(ALL).count) == (1, 0, 0)


def test_one_batch_at_a_time_and_no_reads_beside_it(store: MVCCStore) -> None:
    with store.write_batch(1) as b:
        with pytest.raises(RuntimeError):
            store.write_batch(2)
        with pytest.raises(RuntimeError):
            store.range(ALL)
        with pytest.raises(RuntimeError):
            store.events(1, b"a")
        b.put(P(b"a"))
    with pytest.raises(RuntimeError):
        b.put(P(b"b"))
    assert store.range(RR(key=b"a")).count == 1


def test_a_full_map_is_no_space_and_leaves_the_store_as_it_was(path: Path) -> None:
    with MVCCStore(path, map_size=1 << 20) as store:
        with store.write_batch(1) as b:
            b.put(P(b"small"))
        before = everything(store)
        with pytest.raises(RuntimeError, match="aborted"), store.write_batch(2) as b:
            with pytest.raises(errors.NoSpace):
                for i in range(1000):
                    b.put(P(b"big%d" % i, os.urandom(20_000)))
            with pytest.raises(RuntimeError):
                b.put(P(b"after"))  # the batch is poisoned
        assert everything(store) == before
        with store.write_batch(2) as b:
            b.put(P(b"fits"))
        assert store.revision == 3


def test_leaving_a_poisoned_batch_quietly_is_an_error(path: Path) -> None:
    with MVCCStore(path, map_size=1 << 20) as store:
        with pytest.raises(RuntimeError, match="aborted"), store.write_batch(1) as b:
            try:
                b.put(P(b"big", os.urandom(1_200_000)))
            except errors.NoSpace as exc:
                caught = exc  # and then leave the batch as if nothing happened
        assert isinstance(caught, errors.NoSpace)
        assert store.applied_index == 0 and store.revision == 1


# ---- snapshots, sync, hashes --------------------------------------------------------------


def test_snapshot_file_installs_as_a_follower_store(store: MVCCStore, tmp_path: Path) -> None:
    history(store)
    with store.write_batch(4, applied_term=3) as b:
        b.compact(rpc_pb2.CompactionRequest(revision=store.revision - 3))
        b.put_meta(b"members", b"m1")
    snap = tmp_path / "snap.db"
    assert store.snapshot_to(snap) == 4
    assert MVCCStore.snapshot_position(snap) == (4, 3) and store.term_of_snapshot(snap) == 3
    with pytest.raises(FileExistsError):
        store.snapshot_to(snap)
    follower = MVCCStore(tmp_path / "follower")
    history(follower, 6)  # whatever it had is replaced
    follower = follower.replace_with(snap)
    try:
        assert not snap.exists()
        assert everything(follower) == everything(store)
        assert (follower.applied_term, follower.get_meta(b"members")) == (3, b"m1")
        with follower.write_batch(5, 3) as b:
            b.put(P(b"k1", b"next"))
    finally:
        follower.close()


def test_snapshot_from_another_thread_sees_only_committed_batches(
    store: MVCCStore, tmp_path: Path
) -> None:
    history(store, 6)
    committed = everything(store)
    with store.write_batch(4) as b:
        b.put(P(b"uncommitted"))
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            assert pool.submit(store.snapshot_to, tmp_path / "snap.db").result() == 3
    copy = MVCCStore(tmp_path / "copy").replace_with(tmp_path / "snap.db")
    try:
        assert everything(copy) == committed
    finally:
        copy.close()


def test_closing_waits_for_a_copy_in_flight_and_refuses_later_ones(
    path: Path, tmp_path: Path
) -> None:
    """A defragment or snapshot install closes the store; a backup copying it in another
    thread must finish first (closing under it stopped the member)."""
    store = MVCCStore(path, map_size=64 << 20)
    history(store, 6)
    expected = everything(store)
    copying, release = threading.Event(), threading.Event()
    copy_to = store._copy_to

    def slow_copy(target):
        copying.set()
        release.wait(10)
        return copy_to(target)

    store._copy_to = slow_copy
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        copy = pool.submit(store.snapshot_to, tmp_path / "backup.db")
        assert copying.wait(10)
        closing = pool.submit(store.close)
        with pytest.raises(concurrent.futures.TimeoutError):
            closing.result(0.3)  # held by the copy
        release.set()
        assert copy.result(10) == 3
        closing.result(10)
    with pytest.raises(RuntimeError, match="store closed"):
        store.snapshot_to(tmp_path / "late.db")
    assert not (tmp_path / "late.db").exists()
    reopened = MVCCStore(tmp_path / "reopened").replace_with(tmp_path / "backup.db")
    try:
        assert everything(reopened) == expected
    finally:
        reopened.close()


def test_replace_with_refuses_a_file_that_is_not_a_store(store: MVCCStore, tmp_path: Path) -> None:
    history(store, 6)
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"\0" * 8192)
    before = everything(store)
    with pytest.raises(lmdb.Error):
        store.replace_with(junk)
    assert everything(store) == before


def test_applied_term_and_application_metadata_commit_with_the_batch(path: Path) -> None:
    with MVCCStore(path) as store:
        with store.write_batch(3, applied_term=2) as b:
            b.put_meta(b"members", b"one")
        with pytest.raises(KeyError), store.write_batch(4, applied_term=5) as b:
            b.put_meta(b"members", b"lost")
            raise KeyError("apply failed")
        assert (store.applied_index, store.applied_term) == (3, 2)
        assert store.get_meta(b"members") == b"one" and store.get_meta(b"other") is None
    with MVCCStore(path) as store:
        assert (store.applied_index, store.applied_term, store.get_meta(b"members")) == (
            3,
            2,
            b"one",
        )


def test_database_sizes(store: MVCCStore) -> None:
    empty_in_use = store.db_size_in_use()
    with store.write_batch(1) as b:
        for i in range(2000):
            b.put(P(b"k%05d" % i, b"x" * 200))
    assert store.db_size_in_use() > empty_in_use + 2000 * 200
    assert store.db_size() >= store.db_size_in_use()


def test_proposal_time_checks(store: MVCCStore) -> None:
    with store.write_batch(1) as b:
        b.put(P(b"a"))
        b.put(P(b"a"))
        b.compact(rpc_pb2.CompactionRequest(revision=2))
    store.check_txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=P(b"a"))]))
    with pytest.raises(errors.DuplicateKeyInTxn):
        store.check_txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=P(b"a"))] * 2))
    store.check_compact(rpc_pb2.CompactionRequest(revision=3))
    with pytest.raises(errors.Compacted):
        store.check_compact(rpc_pb2.CompactionRequest(revision=2))
    with pytest.raises(errors.FutureRevision):
        store.check_compact(rpc_pb2.CompactionRequest(revision=4))


def _write_sync_and_die(path: str) -> None:
    store = MVCCStore(path)
    with store.write_batch(1) as b:
        b.put(P(b"durable", b"yes"))
    store.sync()
    os._exit(0)  # no close, no flush at exit


def test_sync_makes_a_batch_survive_a_process_that_dies(path: Path) -> None:
    proc = multiprocessing.get_context("spawn").Process(
        target=_write_sync_and_die, args=(str(path),)
    )
    proc.start()
    proc.join(30)
    assert proc.exitcode == 0
    with MVCCStore(path) as store:
        assert store.range(RR(key=b"durable")).kvs[0].value == b"yes"
        assert store.applied_index == 1


def test_replicas_with_the_same_history_hash_the_same(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "a") as a, MVCCStore(tmp_path / "b") as b:
        history(a)
        history(b)
        assert a.hash_kv() == b.hash_kv()
        assert a.hash_kv(10) == b.hash_kv(10) != a.hash_kv()
        with b.write_batch(4) as batch:
            batch.put(P(b"k1", b"diverged"))
        with a.write_batch(4) as batch:
            batch.put(P(b"k1", b"other"))
        assert a.hash_kv() != b.hash_kv()
        assert a.hash_kv(a.revision - 1) == b.hash_kv(b.revision - 1)
        with pytest.raises(errors.FutureRevision):
            a.hash_kv(a.revision + 1)
        with a.write_batch(5) as batch:
            batch.compact(rpc_pb2.CompactionRequest(revision=10))
        with pytest.raises(errors.Compacted):
            a.hash_kv(9)
        assert a.hash_kv()[1] == 10


# ---- watch history ------------------------------------------------------------------------


def test_events_filter_by_range_and_start(store: MVCCStore) -> None:
    with store.write_batch(1) as b:
        b.put(P(b"a", b"1"))  # 2
        b.put(P(b"b/1", b"1"))  # 3
        b.put(P(b"a", b"2"))  # 4
        b.delete_range(rpc_pb2.DeleteRangeRequest(key=b"b/", range_end=b"b0"))  # 5
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in store.events(1, b"a")] == [
        (Event.PUT, b"a", 2),
        (Event.PUT, b"a", 4),
    ]
    evs = store.events(3, b"b/", b"b0", prev_kv=True)
    assert [(e.type, e.kv.mod_revision) for e in evs] == [(Event.PUT, 3), (Event.DELETE, 5)]
    assert not evs[0].HasField("prev_kv") and evs[1].prev_kv.value == b"1"
    assert not store.events(4, b"a", prev_kv=False)[0].HasField("prev_kv")
    assert store.events(6, b"\x00", b"\x00") == []
    with pytest.raises(ValueError):
        store.events(0, b"a")


def test_events_limit_cuts_between_revisions(store: MVCCStore) -> None:
    keys = [op_key for op_key in (b"x", b"y", b"z")]
    with store.write_batch(1) as b:
        b.put(P(b"x"))  # 2
        b.txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=P(k)) for k in keys]))
        b.put(P(b"y"))  # 4
    evs = store.events(2, b"\x00", b"\x00", limit=2)
    assert [e.kv.mod_revision for e in evs] == [2, 3, 3, 3]  # revision 3 kept whole
    evs = store.events(2, b"\x00", b"\x00", limit=1)
    assert [e.kv.mod_revision for e in evs] == [2]
    evs = store.events(4, b"\x00", b"\x00", limit=1)
    assert [e.kv.mod_revision for e in evs] == [4]


def test_events_after_compaction(store: MVCCStore) -> None:
    with store.write_batch(1) as b:
        b.put(P(b"a", b"1"))  # 2
        b.put(P(b"a", b"2"))  # 3
        b.put(P(b"a", b"3"))  # 4
        b.compact(rpc_pb2.CompactionRequest(revision=3))
    with pytest.raises(errors.Compacted):
        store.events(2, b"a")
    evs = store.events(3, b"a", prev_kv=True)
    assert [e.kv.mod_revision for e in evs] == [3, 4]
    assert not evs[0].HasField("prev_kv")  # revision 2 is compacted away
    assert evs[1].prev_kv.value == b"2"


# ---- leases -------------------------------------------------------------------------------


def test_keys_by_lease(store: MVCCStore) -> None:
    with store.write_batch(1) as b:
        b.put(P(b"a", lease=7))
        b.put(P(b"b", lease=7))
        b.put(P(b"c", lease=8))
        b.put(P(b"d"))
        b.put(P(b"b", lease=0))
        b.put(P(b"e", lease=8))
        b.delete_range(rpc_pb2.DeleteRangeRequest(key=b"e"))
    assert store.keys_by_lease() == {7: [b"a"], 8: [b"c"]}


def test_keys_by_lease_after_reopening_compacted_history(path: Path) -> None:
    """At open, the leases come from the index rebuild, not a second pass over the keys."""
    with MVCCStore(path) as store:
        with store.write_batch(1) as b:
            b.put(P(b"a", lease=7))
            b.put(P(b"b", lease=7))
            b.put(P(b"c", lease=8))
            b.put(P(b"f", lease=8))
        with store.write_batch(2) as b:
            b.put(P(b"b", lease=0))  # detached
            b.put(P(b"c", lease=9))  # moved to another lease
            b.put(P(b"d", lease=9))
            b.delete_range(rpc_pb2.DeleteRangeRequest(key=b"d"))
            b.put(P(b"e", lease=7))
        with store.write_batch(3) as b:
            b.compact(rpc_pb2.CompactionRequest(revision=store.revision - 1))
            b.put(P(b"a", lease=7))  # a new revision, same lease
            b.put(P(b"f"))  # detached after the compaction: its leased record stays
        expected = store.keys_by_lease()
    assert expected == {7: [b"a", b"e"], 9: [b"c"]}
    with MVCCStore(path) as store:
        assert store.keys_by_lease() == expected
        with store.write_batch(4) as b:
            b.put(P(b"e"))
        assert store.keys_by_lease() == {7: [b"a"], 9: [b"c"]}


def test_opening_something_that_is_not_a_store_fails_cleanly(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"not a directory")
    with pytest.raises((OSError, lmdb.Error)):
        MVCCStore(tmp_path / "file")


def test_the_whole_backend_hash_leaves_out_the_raft_position_only(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "a") as a, MVCCStore(tmp_path / "b") as b:
        history(a)
        history(b)
        with b.write_batch(b.applied_index + 7, 3):  # same data, later in another log
            pass
        assert a.hash() == b.hash() and a.hash()[1] == a.revision
        with a.write_batch(a.applied_index + 1) as batch:
            batch.put_meta(b"alarms", b"x")  # application metadata is hashed
        assert a.hash() != b.hash()
        with b.write_batch(b.applied_index + 1) as batch:
            batch.put_meta(b"alarms", b"x")
        assert a.hash() == b.hash()
        with b.write_batch(b.applied_index + 1) as batch:
            batch.put(P(b"k1", b"diverged"))
        assert a.hash()[0] != b.hash()[0]


def test_close_waits_for_a_reserved_sync_and_none_after_close(path: Path) -> None:
    """A snapshot's sync runs in another thread beside applies; closing the store (a
    snapshot install, a defragment) waits for it, and nothing is reserved once closed."""
    store = MVCCStore(str(path))
    history(store)
    sync = store.reserve_sync()
    closed = threading.Event()
    closer = threading.Thread(target=lambda: (store.close(), closed.set()))
    closer.start()
    assert not closed.wait(0.3)  # held by the reserved sync
    sync()
    assert closed.wait(10)
    closer.join()
    with pytest.raises(RuntimeError, match="closed"):
        store.reserve_sync()


def test_a_put_reads_the_previous_version_only_when_needed(store: MVCCStore) -> None:
    """With events_need_prev false an overwrite's event has no prev_kv, unless the request
    itself needs the previous version (prev_kv, ignore_value, ignore_lease)."""
    with store.write_batch(1) as batch:
        batch.put(rpc_pb2.PutRequest(key=b"k", value=b"one"))
    store.events_need_prev = lambda: False
    with store.write_batch(2) as batch:
        resp, events = batch.put(rpc_pb2.PutRequest(key=b"k", value=b"two"))
        assert not events[0].HasField("prev_kv") and not resp.HasField("prev_kv")
        resp, events = batch.put(rpc_pb2.PutRequest(key=b"k", value=b"three", prev_kv=True))
        assert resp.prev_kv.value == b"two" and events[0].prev_kv.value == b"two"
        _, events = batch.put(rpc_pb2.PutRequest(key=b"k", ignore_value=True))
        assert events[0].kv.value == b"three"
    store.events_need_prev = lambda: True
    with store.write_batch(3) as batch:
        _, events = batch.put(rpc_pb2.PutRequest(key=b"k", value=b"four"))
        assert events[0].prev_kv.value == b"three"


def test_a_delete_reads_the_previous_versions_only_when_needed(store: MVCCStore) -> None:
    """As a put: with events_need_prev false a delete's events carry no prev_kv unless the
    request asks for it (a delete of many large values would otherwise hold every one)."""
    with store.write_batch(1) as batch:
        for key in (b"a", b"b", b"c"):
            batch.put(rpc_pb2.PutRequest(key=key, value=b"v-" + key, lease=0))
    store.events_need_prev = lambda: False
    with store.write_batch(2) as batch:
        resp, events = batch.delete_range(rpc_pb2.DeleteRangeRequest(key=b"a"))
        assert resp.deleted == 1 and not events[0].HasField("prev_kv")
        assert (events[0].type, events[0].kv.key) == (kv_pb2.Event.DELETE, b"a")
        resp, events = batch.delete_range(rpc_pb2.DeleteRangeRequest(key=b"b", prev_kv=True))
        assert resp.prev_kvs[0].value == b"v-b" and events[0].prev_kv.value == b"v-b"
    store.events_need_prev = lambda: True
    with store.write_batch(3) as batch:
        _, events = batch.delete_range(rpc_pb2.DeleteRangeRequest(key=b"c"))
        assert events[0].prev_kv.value == b"v-c"


def test_counters_written_only_when_they_move_survive_reopening(tmp_path: Path) -> None:
    """After its first commit a batch stores the counters that moved: every one reads back
    after reopening whichever batch last moved it, and two stores with the same history
    in different batches (so different counter writes) hash the same."""
    with MVCCStore(tmp_path / "a") as a, MVCCStore(tmp_path / "b") as b:
        with a.write_batch(1, 2) as batch:
            for i in range(4):
                batch.put(P(b"k%d" % i))
            batch.compact(rpc_pb2.CompactionRequest(revision=3))
        for index, op in enumerate(["put", "put", "put", "put", "compact"], start=1):
            with b.write_batch(index, 2) as batch:
                if op == "put":
                    batch.put(P(b"k%d" % (index - 1)))
                else:
                    batch.compact(rpc_pb2.CompactionRequest(revision=3))
        assert a.hash() == b.hash()
        with b.write_batch(6, 2):  # nothing moved but the applied index
            pass
        with b.write_batch(7, 5) as batch:  # a new term only
            batch.put_meta(b"x", b"1")
        with a.write_batch(7, 5) as batch:
            batch.put_meta(b"x", b"1")
        assert a.hash() == b.hash()
        expected = (b.revision, b.compact_revision, b.applied_index, b.applied_term)
        assert expected == (5, 3, 7, 5)
    with MVCCStore(tmp_path / "b") as b:
        assert (b.revision, b.compact_revision, b.applied_index, b.applied_term) == expected
