"""Opening the Raft core of a member: bootstrap a new member's WAL, or restore the core
from an existing one (snapshot marker, entries, hard state), refusing a WAL that belongs
to another member or a store that is ahead of a missing WAL."""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from dataclasses import dataclass

from ..admin.datadir import wal_metadata
from ..errors import PyraftkvError
from ..proto import raft_internal_pb2 as internal
from ..raft import codec
from ..raft.core import Config, RaftCore
from ..raft.types import (
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Membership,
    SnapshotMeta,
    apply_conf_change,
)
from ..wal import WriteAheadLog

log = logging.getLogger("pyraftkv.raft")


@dataclass(frozen=True)
class RaftProcessConfig:
    """What the application process tells the Raft process it starts (as JSON in its
    environment)."""

    member_id: int
    cluster_id: int
    wal_dir: str
    snap_dir: str
    listen_peer_urls: tuple[str, ...]
    peer_tls: dict
    initial_cluster: dict[int, tuple[str, ...]]  # member id -> peer URLs
    initial_names: dict[int, str]  # member id -> name
    initial_cluster_state: str
    heartbeat_interval_ms: int
    election_ticks: int
    snapshot_count: int
    max_snapshot_bytes: int  # a received snapshot larger than this is refused
    applied_index: int  # of the key-value store
    # The key-value store's applied term and membership: a store ahead of the WAL (a crash
    # between installing a received snapshot and recording it) is recorded as a snapshot.
    applied_term: int
    applied_voters: list[int]
    applied_learners: list[int]
    log_level: str
    logger: str
    log_outputs: str
    parent_pid: int
    down_fds: tuple[int, int, int]
    up_fds: tuple[int, int, int]
    force_new_cluster: bool = False  # --force-new-cluster: drop every other member
    initial_election_tick_advance: bool = True  # --initial-election-tick-advance

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> RaftProcessConfig:
        raw = json.loads(text)
        raw["initial_cluster"] = {int(k): tuple(v) for k, v in raw["initial_cluster"].items()}
        raw["initial_names"] = {int(k): v for k, v in raw["initial_names"].items()}
        for key in ("listen_peer_urls", "down_fds", "up_fds"):
            raw[key] = tuple(raw[key])
        return cls(**raw)


class RaftProcessError(PyraftkvError):
    """The Raft process cannot go on; the message says why."""


def open_core(cfg: RaftProcessConfig, rng: random.Random) -> tuple[RaftCore, WriteAheadLog, int]:
    """Restore (or bootstrap) the core from the WAL; returns (core, wal, last index written)."""
    member_id, cluster_id = cfg.member_id, cfg.cluster_id
    config = Config(
        election_ticks=cfg.election_ticks, heartbeat_ticks=1, lazy_commit=True, lazy_followers=True
    )
    metadata = wal_metadata(cluster_id, member_id)
    wal_dir = cfg.wal_dir
    if not WriteAheadLog.exists(wal_dir):
        if cfg.applied_index > 0:
            raise RaftProcessError(
                f"the WAL in {wal_dir} is missing but the key-value store has applied index "
                f"{cfg.applied_index}: refusing to start as a new member"
            )
        wal = WriteAheadLog.create(wal_dir, metadata)
        if cfg.initial_cluster_state == "new":
            contexts = {}
            for mid, urls in cfg.initial_cluster.items():
                contexts[mid] = internal.MemberAttributes(
                    id=mid,
                    name=cfg.initial_names.get(mid, ""),
                    peer_urls=list(urls),
                ).SerializeToString()
            core = RaftCore.bootstrap(member_id, contexts, config, rng)
        else:
            core = RaftCore(member_id, config, rng)
        return core, wal, 0
    wal, recovery = WriteAheadLog.open(wal_dir)
    if recovery.torn_tail:
        log.warning("WAL had a torn tail (a crash mid-write), truncated: %s", recovery.torn_tail)
    found = json.loads(recovery.metadata.decode())
    if found != json.loads(metadata.decode()):
        raise RaftProcessError(f"the WAL in {wal_dir} belongs to {found}, not to this member")
    snapshot = SnapshotMeta(0, 0, Membership(frozenset()))
    if recovery.snapshot is not None:
        snapshot = codec.decode_snapshot_meta(recovery.snapshot_data)
    entries = [Entry(t, i, EntryType(k), d) for t, i, k, d in recovery.entries]
    hard_state = HardState(*recovery.hard_state)
    last = entries[-1].index if entries else snapshot.index
    if cfg.applied_index > last or _store_diverged(cfg, snapshot, entries):
        snapshot, hard_state = _record_store_as_snapshot(cfg, wal, hard_state)
        entries = []
    if cfg.force_new_cluster:
        entries, hard_state = _force_new_cluster(
            member_id, wal, snapshot, entries, hard_state, cfg.applied_index
        )
    core = RaftCore(
        member_id,
        config,
        rng,
        hard_state=hard_state,
        snapshot=snapshot,
        entries=entries,
        applied=cfg.applied_index,
    )
    last = entries[-1].index if entries else snapshot.index
    return core, wal, last


def _force_new_cluster(
    member_id: int,
    wal: WriteAheadLog,
    snapshot: SnapshotMeta,
    entries: list[Entry],
    hard_state: HardState,
    applied: int,
) -> tuple[list[Entry], HardState]:
    """--force-new-cluster, as etcd's: drop the entries not known committed, then append and
    commit the removal of every other member, so that this member is the whole cluster
    (they apply as any membership change: the member list follows). Idempotent. What the
    store applied was committed, whatever commit index the WAL last recorded."""
    commit = max(hard_state.commit, snapshot.index, applied)
    kept = [e for e in entries if e.index <= commit]
    if len(kept) < len(entries):
        log.warning(
            "force-new-cluster: dropping %d entries not known to be committed",
            len(entries) - len(kept),
        )
        wal.truncate_from(commit + 1)
    membership = snapshot.membership
    for entry in kept:
        if entry.type == EntryType.CONF_CHANGE:
            membership = apply_conf_change(membership, codec.decode_conf_change(entry.data))
    others = sorted((membership.voters | membership.learners) - {member_id})
    term = max(hard_state.term, kept[-1].term if kept else snapshot.term)
    removals = [
        Entry(
            term,
            commit + 1 + i,
            EntryType.CONF_CHANGE,
            codec.encode_conf_change(ConfChange(ConfChangeType.REMOVE_MEMBER, other)),
        )
        for i, other in enumerate(others)
    ]
    hard_state = HardState(term, hard_state.vote, commit + len(removals))
    wal.append([tuple(e) for e in removals], tuple(hard_state))
    wal.sync()
    log.warning(
        "force-new-cluster: this member is now the only member (removed %s)",
        ", ".join(f"{m:x}" for m in others) or "none",
    )
    return kept + removals, hard_state


def _store_diverged(cfg: RaftProcessConfig, snapshot: SnapshotMeta, entries: list[Entry]) -> bool:
    """Whether the WAL holds, at the store's applied index, an entry of another term than
    the one the store applied: a received snapshot was installed over a longer, conflicting
    tail (an old leader's entries) and the member stopped before the WAL recorded it. The
    WAL's entries up to there are not the committed ones: the store's position must become
    the snapshot (else the core calls them committed, and rejects the leader's appends at
    that index for ever). A store that does not know its term (0) is not compared."""
    if cfg.applied_term == 0 or cfg.applied_index <= snapshot.index:
        return False
    entry = entries[cfg.applied_index - snapshot.index - 1]
    assert entry.index == cfg.applied_index, (entry.index, cfg.applied_index)
    return entry.term != cfg.applied_term


def _record_store_as_snapshot(
    cfg: RaftProcessConfig, wal: WriteAheadLog, hard_state: HardState
) -> tuple[SnapshotMeta, HardState]:
    """The key-value store applied entries the WAL does not hold: a received snapshot was
    installed and the member stopped before the WAL recorded it (or it applied committed
    entries its own WAL had not yet made durable). Everything the store holds was committed,
    so its position is a snapshot: record it in the WAL, and the log goes on from there
    (entries the WAL holds past it, of a conflicting tail, go too)."""
    snapshot = SnapshotMeta(
        cfg.applied_index,
        cfg.applied_term,
        Membership(frozenset(cfg.applied_voters), frozenset(cfg.applied_learners)),
    )
    log.warning(
        "the key-value store is at index %d, past the WAL's last entry or of another term: "
        "recording its state as a snapshot (a stop while a snapshot was being installed)",
        snapshot.index,
    )
    if hard_state.term < snapshot.term:  # the vote was for an older term
        hard_state = HardState(snapshot.term, 0, hard_state.commit)
    hard_state = hard_state._replace(commit=max(hard_state.commit, snapshot.index))
    wal.append_snapshot(snapshot.index, snapshot.term, codec.encode_snapshot_meta(snapshot))
    if wal.last_index > snapshot.index:
        wal.truncate_from(snapshot.index + 1)
    wal.append([], tuple(hard_state))
    wal.sync()
    wal.release_before(snapshot.index)
    return snapshot, hard_state
