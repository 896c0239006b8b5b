"""The leader tells followers a new commit index with its next append or after a short
delay, but at once when a follower forwarded the write (its client waits for it to apply
there). With the delay set far beyond the client's timeout and heartbeats 2 s apart,
writes through a follower answer within 1 s each, and the other follower learns of them
from the heartbeats."""

from __future__ import annotations

import time

from pyraftkv import Client

from .harness import LocalCluster


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
