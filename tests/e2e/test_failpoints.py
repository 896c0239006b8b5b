"""A member crashed at a failpoint under load recovers: no acknowledged write lost, every
member's store hashes the same. A few points here; bench/failpoints.py runs them all."""

from __future__ import annotations

import pytest

from .crash_recovery import check_recovered, crash_at

# (point, crash the leader?)
POINTS = [("raftBeforeFsync", True), ("appApplyMidBatch", False), ("appBeforeReply", True)]


def test_crash_at_failpoints_under_load(make_cluster):
    cluster = make_cluster(3)
    cluster.start()
    for n, (point, leader) in enumerate(POINTS):
        crash_at(cluster, point, f"fp{n}/", leader=leader)


def test_recovery_check_fails_on_a_lost_write(cluster):
    """The check itself can fail: a key reported acknowledged but not in the store."""
    with cluster.client() as c:
        c.put("lost/a", "v")
    check_recovered(cluster, "lost/", {"lost/a"})
    with pytest.raises(AssertionError, match="lost 1 acknowledged"):
        check_recovered(cluster, "lost/", {"lost/a", "lost/b"})
