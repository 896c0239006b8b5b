"""The leader tells followers a new commit index with its next append or after a short
delay, but at once when a follower forwarded the write (its client waits for it to apply
there). With the delay set far beyond the client's timeout and heartbeats 2 s apart,
writes through a follower answer within 1 s each, and the other follower learns of them
from the heartbeats. A follower that with the leader makes a majority needs no commit index
for a lone writer's write: told the leader's WAL holds it, it commits after its own
fdatasync."""

from __future__ import annotations

import statistics
import time

from pyraftkv import Client

from .harness import LocalCluster
from .nemesis import Network


def test_a_write_through_a_follower_does_not_wait_for_the_commit_notice(tmp_path):
    slow_heartbeats = ["--heartbeat-interval", "2000", "--election-timeout", "20000"]
    cluster = LocalCluster(str(tmp_path), 3, extra_args=slow_heartbeats)
    for member in cluster.members:
        member.env["PYRAFTKV_COMMIT_NOTICE_S"] = "60"
    cluster.start()
    try:
        leader = cluster.wait_leader()
        first, second = [m for m in cluster.members if m is not leader]
        with Client([first.endpoint], timeout=1) as client:
            for i in range(20):
                assert client.put(f"via-follower/{i}", str(i)).header.revision > 0
        deadline = time.monotonic() + 10
        with Client([second.endpoint], timeout=5) as client:
            while client.get("via-follower/19", serializable=True).count == 0:
                assert time.monotonic() < deadline, "the other follower never applied it"
                time.sleep(0.05)
    finally:
        cluster.stop_all()


def test_a_follower_told_the_leader_holds_the_write_commits_without_a_round_trip(tmp_path):
    """Everything the follower sends the leader (its forwards and its answers) is held
    0.3 s: a write through it then takes one delay (the forward), not two (the forward and
    the answer the leader counts before it sends the commit index back)."""
    slow_heartbeats = ["--heartbeat-interval", "2000", "--election-timeout", "20000"]
    cluster = LocalCluster(str(tmp_path), 3, extra_args=slow_heartbeats)
    network = Network(cluster)
    for member in cluster.members:
        member.env["PYRAFTKV_COMMIT_NOTICE_S"] = "60"  # the other follower gets nothing
    cluster.start()
    try:
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        with Client([follower.endpoint], timeout=10) as client:
            for i in range(12):  # the leader sees one writer, one write at a time
                client.put(f"lone/{i}", str(i))
            network.delay(follower, leader, 300)
            took = []
            for i in range(10):
                start = time.monotonic()
                client.put(f"lone/{i}", "again")
                took.append(time.monotonic() - start)
        assert 0.3 <= statistics.median(took) < 0.45, took
    finally:
        cluster.stop_all()
