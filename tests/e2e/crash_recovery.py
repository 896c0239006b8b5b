"""Crash a member at a failpoint under write load, restart it, and check that no
acknowledged write was lost and that every member's store hashes the same.

Used by tests/e2e/test_failpoints.py (a few points) and bench/failpoints.py (all points).
"""

from __future__ import annotations

import contextlib
import threading
import time

from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError
from pyraftkv.failpoints import ENV

from .harness import LocalCluster, Member

SNAPSHOT_POINTS = {
    "raftSnapshotSendChunk",
    "raftSnapshotReceiveChunk",
    "appAfterSnapshotInstall",
    "raftBeforeSnapshotMarker",
    "appBeforeStoreCopy",
}
SENDER_POINTS = {"raftSnapshotSendChunk", "appBeforeStoreCopy"}
# Segments are 64 MiB: big values fill one in a few hundred writes.
BIG_VALUE_POINTS = {"walSegmentRollover": 512 << 10}


class Writers:
    """Threads putting unique keys through their own clients; remembers what was acked."""

    def __init__(
        self, cluster: LocalCluster, prefix: str, threads: int = 4, value_bytes: int = 1
    ) -> None:
        self.cluster, self.prefix = cluster, prefix
        self.value = "v" * value_bytes
        self.acked: set[str] = set()
        self._stop = threading.Event()
        endpoints = cluster.endpoints
        self._threads = [
            threading.Thread(
                target=self._run, args=(n, endpoints[n % 3 :] + endpoints[: n % 3]), daemon=True
            )
            for n in range(threads)
        ]
        for t in self._threads:
            t.start()

    def _run(self, number: int, endpoints: list[str]) -> None:
        from pyraftkv import Client

        sequence = 0
        with Client(endpoints, timeout=2.0, connect_timeout=0.5) as client:
            while not self._stop.is_set():
                sequence += 1
                key = f"{self.prefix}{number}-{sequence:06d}"
                try:
                    client.put(key, self.value)
                except (ApiError, ConnectionLost, OSError):
                    time.sleep(0.05)
                    continue
                self.acked.add(key)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)


def _wait_exit(member: Member, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not member.running:
            return True
        time.sleep(0.05)
    return False


def _restart_with(cluster: LocalCluster, member: Member, env: dict[str, str]) -> None:
    if member.running:
        cluster.terminate(member)
    member.env = env
    cluster.start_member(member, wait=False)


def crash_at(
    cluster: LocalCluster, point: str, prefix: str, skip: int = 20, leader: bool = False
) -> Member:
    """Run load, crash a member at ``point`` (after ``skip`` hits; the leader if ``leader``,
    else a follower), restart it clean, then check recovery; returns the member that
    crashed. Snapshot points crash the member sending or receiving a snapshot."""
    if leader:
        # Arming restarts the member, which must then be made leader: the status polls of
        # that hand-over pass app points too (appBeforeReply), so leave them a wide margin.
        skip = max(skip, 200)
    spec = {ENV: f"{point}={skip}*off->crash"}
    value_bytes = BIG_VALUE_POINTS.get(point, 1)
    if point in BIG_VALUE_POINTS:
        spec = {ENV: f"{point}=crash"}
    current = cluster.wait_leader()
    followers = [m for m in cluster.members if m is not current]
    if point in SNAPSHOT_POINTS:
        # One member misses enough entries that it must be sent a snapshot.
        lagging = followers[0]
        cluster.kill(lagging)
        spec = {ENV: f"{point}=crash"}
        armed = [m for m in cluster.members if m is not lagging]
        if point in SENDER_POINTS:
            for m in armed:  # whichever leads when the lagging member comes back
                _restart_with(cluster, m, spec)
                cluster.wait_serving(m)
        writers = Writers(cluster, prefix)
        _wait_acked(writers, cluster.snapshot_count * 3)
        candidates = armed if point in SENDER_POINTS else [lagging]
        _restart_with(cluster, lagging, {} if point in SENDER_POINTS else spec)
    else:
        target = followers[0]
        candidates = [target]
        _restart_with(cluster, target, spec)
        cluster.wait_serving(target)
        if leader:
            _make_leader(cluster, target)
        writers = Writers(cluster, prefix, value_bytes=value_bytes)
    try:
        crashed = _first_exit(candidates, 60.0)
        assert crashed is not None, f"nobody crashed at {point}"
        assert f"failpoint {point}: crash" in crashed.log_text()
        with contextlib.suppress(ProcessLookupError, AssertionError):
            cluster.kill(crashed)  # the other process of the member, if still there
        for m in cluster.members:
            if m.env:
                if m.running:
                    cluster.terminate(m)
                m.env = {}
            if not m.running:
                cluster.start_member(m, wait=False)
        for m in cluster.members:
            cluster.wait_serving(m)
        time.sleep(0.3)  # some load on the recovered cluster
    finally:
        writers.stop()
    check_recovered(cluster, prefix, writers.acked)
    return crashed


def _make_leader(cluster: LocalCluster, member: Member) -> None:
    member_id = cluster.status(member).header.member_id
    with cluster.client([cluster.wait_leader()]) as c:
        c.move_leader(member_id)
    assert cluster.wait_leader() is member


def _wait_acked(writers: Writers, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while len(writers.acked) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(writers.acked) >= count, len(writers.acked)


def _first_exit(members: list[Member], timeout: float) -> Member | None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for m in members:
            if not m.running:
                return m
        time.sleep(0.05)
    return None


def check_recovered(cluster: LocalCluster, prefix: str, acked: set[str]) -> None:
    """Every acknowledged key is on every member, and the members' stores hash the same."""
    assert acked, "no write was acknowledged"
    with cluster.client() as c:
        target = c.put(prefix + "barrier", "x").header.revision
        index = c.status().raftIndex
    hashes = {}
    for m in cluster.members:
        cluster.wait_applied(m, index)
        with cluster.client([m]) as c:
            found = {
                kv.key.decode()
                for kv in c.get(prefix, prefix=True, keys_only=True, serializable=True).kvs
            }
            missing = acked - found
            assert not missing, f"{m.name} lost {len(missing)} acknowledged writes"
            reply = c.hash_kv(target)
            hashes[m.name] = reply.hash
    assert len(set(hashes.values())) == 1, hashes
