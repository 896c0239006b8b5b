"""Backup files (``pyraftkvctl snapshot``): what one holds, and new data dirs made from it.

A backup is a consistent copy of a member's store (an LMDB file, see MVCCStore.snapshot_to).

Every member of the new cluster is restored from the same backup with the same
``--initial-cluster`` and ``--initial-cluster-token`` (and its own ``--name``), then
started with those flags as a new cluster. Each data dir holds the backup's store, now
listing the new members, and a write-ahead log that begins with a Raft snapshot at the
backup's applied index whose voters are the new members: the members agree on where the
log starts and who votes, and the old cluster's membership is gone, as with etcd.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import NamedTuple

from ..errors import ConfigError
from ..mvcc import MVCCStore
from ..mvcc.records import DATA_FILE
from ..proto import raft_internal_pb2 as internal
from ..raft import codec
from ..raft.types import HardState, Membership, SnapshotMeta
from ..wal import WriteAheadLog
from .cluster import ClusterPlan
from .datadir import DataDir, wal_metadata
from .members import MemberList


class BackupStatus(NamedTuple):
    """What ``snapshot status`` reports: the store's hash, revision, records and size."""

    hash: int
    revision: int
    total_keys: int  # revision records (every version of every key still kept)
    total_size: int


def status(backup: str) -> BackupStatus:
    """Open a copy of the backup and describe it (the file itself is left untouched)."""
    _position(backup)
    with tempfile.TemporaryDirectory() as scratch:
        shutil.copyfile(backup, os.path.join(scratch, DATA_FILE))
        with MVCCStore(scratch) as store:
            return BackupStatus(
                store.hash_kv()[0], store.revision, store.record_count(), os.path.getsize(backup)
            )


def _position(backup: str) -> tuple[int, int]:
    try:
        return MVCCStore.snapshot_position(backup)
    except Exception as exc:
        raise ConfigError(f"{backup} is not a pyraftkv snapshot: {exc}") from None


def restore(backup: str, config: ClusterPlan) -> tuple[int, int]:
    """Make ``config.data_dir`` a member of a new cluster holding ``backup``'s data;
    returns (revision, applied index) of the restored store."""
    index, term = _position(backup)
    datadir = DataDir(config.data_dir)
    if os.path.exists(config.data_dir) and os.listdir(config.data_dir):
        raise ConfigError(f"data dir {config.data_dir!r} exists and is not empty")
    datadir.claim(config.cluster_id, config.member_id, config.name)
    try:
        return _fill(datadir, backup, index, term, config)
    except BaseException:
        shutil.rmtree(config.data_dir, ignore_errors=True)
        raise


def _fill(datadir: DataDir, backup: str, index: int, term: int, config: ClusterPlan):
    shutil.copyfile(backup, os.path.join(datadir.db, DATA_FILE))
    members = MemberList()
    for spec in config.initial_cluster:
        members.add(internal.MemberAttributes(id=spec.id, name=spec.name, peer_urls=spec.peer_urls))
    with MVCCStore(datadir.db) as store:
        with store.write_batch(index, term) as batch:
            batch.put_meta(b"members", members.encode())
        store.sync()
        revision = store.revision
    wal = WriteAheadLog.create(datadir.wal, wal_metadata(config.cluster_id, config.member_id))
    try:
        voters = frozenset(spec.id for spec in config.initial_cluster)
        meta = SnapshotMeta(index, term, Membership(voters))
        wal.append_snapshot(index, term, codec.encode_snapshot_meta(meta))
        wal.append(hard_state=HardState(term, 0, index))
        wal.sync()
    finally:
        wal.close()
    return revision, index
