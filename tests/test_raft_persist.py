"""The Raft process's snapshot handling: what it writes to the WAL for a Ready (on a real
WAL file), a snapshot file made at an index the log has since dropped, and a restart whose
store is ahead of (or diverged from) its WAL."""

from __future__ import annotations

import dataclasses
import random
import threading

from pyraftkv.admin.datadir import wal_metadata
from pyraftkv.node import raft_snapshots
from pyraftkv.node import ringproto as rp
from pyraftkv.node.raft_bootstrap import RaftProcessConfig, open_core
from pyraftkv.node.raft_process import write_ready
from pyraftkv.node.raft_snapshots import SnapshotShipper
from pyraftkv.raft import codec
from pyraftkv.raft.core import Config, RaftCore
from pyraftkv.raft.types import (
    Entry,
    EntryType,
    HardState,
    Membership,
    Message,
    MessageType,
    SnapshotMeta,
)
from pyraftkv.wal import WriteAheadLog, delete_segments


def _entry(term: int, index: int) -> Entry:
    return Entry(term, index, EntryType.NORMAL, f"e{index}".encode())


def test_a_snapshot_drops_a_longer_conflicting_tail_so_the_next_append_follows_it(tmp_path):
    """A follower whose WAL runs past a snapshot it installs (entries of an old leader)
    appends the new leader's next entry right after the snapshot."""
    wal_dir = str(tmp_path / "wal")
    with WriteAheadLog.create(wal_dir, b"m") as wal:
        write_ready(wal, None, 0, [_entry(1, i) for i in range(1, 11)], HardState(1, 0, 3))
        wal.sync()
        snapshot = SnapshotMeta(5, 2, Membership(frozenset({1, 2, 3})))
        write_ready(wal, snapshot, 0, [], HardState(2, 0, 5))
        write_ready(wal, None, 0, [_entry(2, 6), _entry(2, 7)], HardState(2, 0, 6))
        wal.sync()
    wal, recovery = WriteAheadLog.open(wal_dir)
    wal.close()
    assert recovery.snapshot == (5, 2)
    assert codec.decode_snapshot_meta(recovery.snapshot_data) == snapshot
    assert [(e[0], e[1]) for e in recovery.entries] == [(2, 6), (2, 7)]
    assert tuple(recovery.hard_state) == (2, 0, 6)


class _Process:
    """What the snapshot shipper reads of its Raft process: a real core, the up ring."""

    def __init__(self, core: RaftCore) -> None:
        self.core, self.id, self.up = core, 1, []

    def push_up(self, message: bytes) -> None:
        self.up.append(message)


def test_a_snapshot_file_older_than_the_log_start_is_replaced_not_fatal(tmp_path):
    """The file was made at applied index A off the loop; the log start moved past A
    meanwhile, so the membership at A is unknown: the file goes and a newer one is asked
    for (the leader's Raft process used to stop on the ValueError)."""
    start = SnapshotMeta(100, 3, Membership(frozenset({1, 2, 3})))
    core = RaftCore(1, Config(), random.Random(1), hard_state=HardState(3, 0, 100), snapshot=start)
    process = _Process(core)
    shipper = SnapshotShipper(process)  # type: ignore[arg-type]
    shipper._snapshots_in_flight[2] = (b"", 0.0)
    path = tmp_path / "send-old.db"
    path.write_bytes(b"store")
    shipper.on_ready(50, 2, str(path).encode())
    assert not path.exists()
    assert process.up == [rp.pack(rp.SNAPSHOT_WANTED, rp.U64, 2)]


def test_a_save_older_than_a_snapshot_received_meanwhile_is_ignored() -> None:
    """The application saved its state at index 50 while the core installed the leader's
    snapshot at 100: there is nothing to compact (this stopped the Raft process)."""
    start = SnapshotMeta(100, 3, Membership(frozenset({1, 2, 3})))
    core = RaftCore(1, Config(), random.Random(1), hard_state=HardState(3, 0, 100), snapshot=start)
    process = _Process(core)
    process.writer = _Writer()  # type: ignore[attr-defined]
    SnapshotShipper(process).on_saved(50, 2)  # type: ignore[arg-type]
    assert process.writer.submitted == [] and core.log.snapshot == start  # type: ignore[attr-defined]


def test_the_wal_segments_a_snapshot_releases_are_deleted_off_the_writers_thread(
    tmp_path, monkeypatch
) -> None:
    """Deleting a 64 MiB segment took 100-150 ms on ext4 (its blocks freed and trimmed),
    all of it on the Raft process's loop, on every member at once: a snapshot stalled the
    cluster's writes that long. The write that records the snapshot now only detaches the
    segments; a thread of the shipper deletes them."""
    deleting = threading.Event()
    may_delete = threading.Event()
    deleted_on: list[str] = []

    def slow_delete(paths) -> None:
        deleting.set()
        may_delete.wait(10)
        deleted_on.append(threading.current_thread().name)
        delete_segments(paths)

    monkeypatch.setattr(raft_snapshots, "delete_segments", slow_delete, raising=False)
    with WriteAheadLog.create(str(tmp_path / "wal"), b"m", segment_bytes=4096) as wal:
        for i in range(1, 200):
            wal.append([_entry(1, i)])
        wal.sync()
        before = wal.segment_paths
        start = SnapshotMeta(150, 1, Membership(frozenset({1, 2, 3})))
        core = RaftCore(
            1, Config(), random.Random(1), hard_state=HardState(1, 0, 150), snapshot=start
        )
        process = _Process(core)
        process.writer = _Writer()  # type: ignore[attr-defined]
        process.cfg = _config(tmp_path, "", 150, 1)  # type: ignore[attr-defined]
        shipper = SnapshotShipper(process)  # type: ignore[arg-type]
        shipper.on_saved(150, 1)
        (write,) = process.writer.submitted  # type: ignore[attr-defined]
        write(wal)  # returns while the deletion waits
        assert deleting.wait(10)
        released = before[: len(before) - len(wal.segment_paths)]
        assert released and wal.segment_paths == before[len(released) :]
        assert all(path.exists() for path in released) and not deleted_on
        may_delete.set()
        shipper._deleter.shutdown(wait=True)
    assert deleted_on and deleted_on[0] != threading.current_thread().name
    assert not any(path.exists() for path in released)


class _Writer:
    def __init__(self) -> None:
        self.submitted: list = []

    def submit(self, write, must_sync, durable) -> None:
        self.submitted.append(write)


def _config(tmp_path, wal_dir: str, applied_index: int, applied_term: int) -> RaftProcessConfig:
    return RaftProcessConfig(
        member_id=1,
        cluster_id=7,
        wal_dir=wal_dir,
        snap_dir=str(tmp_path / "snap"),
        listen_peer_urls=(),
        peer_tls={},
        initial_cluster={},
        initial_names={},
        initial_cluster_state="existing",
        heartbeat_interval_ms=100,
        election_ticks=10,
        snapshot_count=100,
        max_snapshot_bytes=1 << 30,
        applied_index=applied_index,
        applied_term=applied_term,
        applied_voters=[1, 2, 3],
        applied_learners=[],
        log_level="info",
        logger="",
        log_outputs="",
        parent_pid=0,
        down_fds=(0, 0, 0),
        up_fds=(0, 0, 0),
    )


def test_a_store_installed_over_a_longer_conflicting_tail_restarts_from_the_store(tmp_path):
    """A follower's WAL holds an old leader's entries 1..10 (term 1); a snapshot at 8 of
    term 2 was installed in its store, and it stopped before the WAL recorded it. At
    restart the store's position is the snapshot: the log is not "committed" old entries,
    and the leader's next append (after index 8 of term 2) is taken, not refused for ever."""
    wal_dir = str(tmp_path / "wal")
    with WriteAheadLog.create(wal_dir, wal_metadata(7, 1)) as wal:
        write_ready(wal, None, 0, [_entry(1, i) for i in range(1, 11)], HardState(1, 0, 3))
        wal.sync()
    core, wal, last = open_core(_config(tmp_path, wal_dir, 8, 2), random.Random(1))
    with wal:
        assert (last, core.log.term(8), core.log.last_index, core.log.committed) == (8, 2, 8, 8)
        leader_append = Message(MessageType.APP, 1, 2, 2, 2, 8, 9, (_entry(2, 9),))
        core.step(leader_append)
        ready = core.ready()
        answers = [m for m in ready.messages + ready.persisted_messages if m.to == 2]
        assert [(m.reject, m.index) for m in answers] == [(False, 9)]
    wal, recovery = WriteAheadLog.open(wal_dir)
    wal.close()
    assert recovery.snapshot == (8, 2) and recovery.entries == []


def test_a_store_on_the_same_entries_keeps_the_wal(tmp_path):
    """The store applied entry 8 of the WAL's own term (or does not know its term): the WAL's
    entries stay."""
    wal_dir = str(tmp_path / "wal")
    with WriteAheadLog.create(wal_dir, wal_metadata(7, 1)) as wal:
        write_ready(wal, None, 0, [_entry(1, i) for i in range(1, 11)], HardState(1, 0, 8))
        wal.sync()
    for applied_term in (1, 0):
        core, wal, last = open_core(_config(tmp_path, wal_dir, 8, applied_term), random.Random(1))
        wal.close()
        assert (last, core.log.last_index, core.log.term(10)) == (10, 10, 1)


def test_force_new_cluster_keeps_what_the_store_applied_past_the_wals_commit(tmp_path):
    """The WAL records a commit index only with entries, a term or a vote, so it may lag
    what the store applied. --force-new-cluster drops the entries not known committed:
    those the store applied are known committed, and stay (they were answered)."""
    wal_dir = str(tmp_path / "wal")
    with WriteAheadLog.create(wal_dir, wal_metadata(7, 1)) as wal:
        write_ready(wal, None, 0, [_entry(1, i) for i in range(1, 11)], HardState(1, 1, 3))
        wal.sync()
    cfg = dataclasses.replace(_config(tmp_path, wal_dir, 8, 1), force_new_cluster=True)
    core, wal, _last = open_core(cfg, random.Random(1))
    wal.close()
    # 4..8 were applied: they stay; only 9 and 10 go (no other member to remove here).
    assert core.log.last_index == 8 and core.log.committed == 8
    assert [core.log.term(i) for i in range(1, 9)] == [1] * 8
