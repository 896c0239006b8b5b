"""Network partitions on loopback through the peer fault layer: an isolated leader loses
its leadership to the majority, serves no linearizable read while cut off (only stale
serializable ones), and catches up once the network heals; a one-way cut is one way; five
members split 3/2 (the Jepsen-style check under 3/2 splits, short); snapshot streams are
slowed and cut by the same rules."""

from __future__ import annotations

import os
import time

import pytest

from pyraftkv.errors import ApiError

from .harness import LocalCluster, put_retrying, wait_for
from .jepsen import run
from .nemesis import Network, paused, raft_pid


def test_isolated_leader_loses_to_the_majority_then_heals(net_cluster):
    cluster, network = net_cluster
    old = cluster.wait_leader()
    others = [m for m in cluster.members if m is not old]
    with cluster.client() as c:
        c.put("k", "before")
    network.isolate(old)
    new = cluster.wait_leader(among=others)
    assert new is not old
    with cluster.client(others) as c:
        c.put("k", "during")
    with cluster.client([old], timeout=1.0) as c:
        with pytest.raises(ApiError):
            c.get("k")  # no quorum behind it: no linearizable read
        assert c.get("k", serializable=True).kvs[0].value == b"before"  # stale
    network.heal()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with cluster.client([old], timeout=1.0) as c:
            try:
                if c.get("k").kvs[0].value == b"during":
                    break
            except ApiError:
                pass
        time.sleep(0.1)
    else:
        raise AssertionError("the healed member never caught up")
    assert cluster.wait_leader() is not None


def test_one_way_cut_stops_only_that_direction(net_cluster):
    cluster, network = net_cluster
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    with cluster.client([leader]) as c:
        c.put("k", "1")
    network.cut(follower, leader)  # the follower's answers are lost; it still hears
    with cluster.client([leader]) as c:
        c.put("k", "2")  # the third member acknowledges
        status = c.status()
    # it still receives entries and learns they are committed
    cluster.wait_applied(follower, max(status.raftIndex, status.raftAppliedIndex))
    with cluster.client([follower], timeout=1.0) as c:
        assert c.get("k", serializable=True).kvs[0].value == b"2"
        with pytest.raises(ApiError):
            c.put("k", "3")  # its forwarded proposal cannot reach the leader


def test_three_two_split_of_five_members(tmp_path):
    """Five members split 3/2 with the leader on the two side: the three elect a leader
    and take writes, the two serve no linearizable read; after healing, a short
    Jepsen-style run under more 3/2 splits, an isolated leader and a bridge is
    linearizable."""
    cluster = LocalCluster(str(tmp_path), 5)
    network = Network(cluster)
    try:
        cluster.start()
        old = cluster.wait_leader()
        two = [old, next(m for m in cluster.members if m is not old)]
        three = [m for m in cluster.members if m not in two]
        with cluster.client() as c:
            c.put("k", "before")
        network.partition(two, three)
        assert cluster.wait_leader(among=three) in three
        with cluster.client(three) as c:
            c.put("k", "during")
        with cluster.client(two, timeout=1.0) as c:
            with pytest.raises(ApiError):
                c.get("k")
            assert c.get("k", serializable=True).kvs[0].value == b"before"
        network.heal()
        faults = ["split", "isolate-leader", "split", "bridge", "split"]
        result = run(cluster, network, faults, duration_s=10.0, hold_s=0.8, seed=5)
        text = "\n".join(result.report.lines())
        assert result.report.ok, text
        assert result.fault_errors == [] and result.faults == faults, result.fault_errors
        assert result.report.ops > 300, text
        with cluster.client(timeout=10.0) as c:
            assert c.get("k").kvs[0].value == b"during"
    finally:
        cluster.stop_all()


def test_a_partition_cuts_a_snapshot_stream(tmp_path):
    """Snapshot streams (their own connections) obey the peer fault rules: slowed by a
    delay, broken by a partition mid-stream (nothing installed while cut off), and the
    member catches up through a new snapshot once the network heals."""
    cluster = LocalCluster(str(tmp_path), 3, snapshot_count=100)
    network = Network(cluster)
    try:
        cluster.start()
        lagging = next(m for m in cluster.members if m is not cluster.wait_leader())
        others = [m for m in cluster.members if m is not lagging]
        for m in cluster.members:
            network.member_id(m)
        cluster.kill(lagging)
        with cluster.client(others) as c:
            for i in range(300):  # about 5 MiB: a stream of several 1 MiB chunks
                put_retrying(c, f"s{i:04d}", os.urandom(8 << 10).hex())
            target = c.status().raftIndex
        for m in others:
            network.delay(m, lagging, 400)  # each chunk of a stream to it waits 0.4 s
        cluster.start_member(lagging)
        snap_dir = os.path.join(lagging.data_dir, "member", "snap")

        def receiving() -> list[str]:
            return [f for f in os.listdir(snap_dir) if f.endswith(".tmp")]

        wait_for(lambda: os.path.isdir(snap_dir) and receiving(), "a snapshot stream to start")
        network.isolate(lagging)
        wait_for(lambda: not receiving(), "the cut stream to end")
        wait_for(
            lambda: any("sending a snapshot to member" in m.log_text() for m in others),
            "the sender to see the stream fail",
        )
        time.sleep(1.0)
        assert "installed snapshot" not in lagging.log_text()
        status = cluster.status(lagging)
        assert status is not None and status.raftAppliedIndex < target
        network.heal()
        cluster.wait_applied(lagging, target)
        assert "installed snapshot" in lagging.log_text()
        with cluster.client([lagging]) as c:
            assert c.get("s0299", serializable=True).kvs
    finally:
        cluster.stop_all()


def test_a_follower_stalled_past_its_election_timeout_does_not_campaign_on_resuming(cluster):
    """A follower's Raft process stopped for three election timeouts reads its leader's
    waiting messages when it resumes instead of timing out on the missed ticks: it does
    not campaign (its log shows no lost leader in that term), and a leader move to it
    right away succeeds (the move failed about one time in three when it campaigned)."""
    leader = cluster.wait_leader()
    target = next(m for m in cluster.members if m is not leader)
    with cluster.client([leader]) as c:
        term = c.status().raftTerm
        target_id = cluster.status(target).header.member_id
        with paused(raft_pid(target)):
            deadline = time.monotonic() + 1.5
            while time.monotonic() < deadline:
                c.put("k", "written while the follower is stopped")
        c.move_leader(target_id)
    assert cluster.wait_leader() is target
    assert f"lost the leader at term {term}\n" not in target.log_text()
