"""Followers whose applications serve no client yield the CPU (their autogroup's nice value
read from /proc); a follower takes its weight back as soon as a client writes through it,
and a follower that becomes leader when it leads."""

from __future__ import annotations

import os

import pytest

from pyraftkv import Client

from .harness import LocalCluster, Member, wait_for

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/autogroup"), reason="no autogroups here"
)


def nice(member: Member) -> int:
    with open(f"/proc/{member.process.pid}/autogroup") as f:
        return int(f.read().split()[-1])


def test_idle_followers_yield_and_take_their_weight_back_when_on_a_path(make_cluster):
    cluster: LocalCluster = make_cluster(3)
    cluster.start()
    leader = cluster.wait_leader()
    a, b = [m for m in cluster.members if m is not leader]
    with Client([leader.endpoint], timeout=5) as client:
        client.put("k", "v")
        wait_for(lambda: nice(a) == nice(b) == 19, "both followers to yield", 10)
        assert nice(leader) == 0
    assert "the application yields the CPU" in a.log_text()

    with Client([a.endpoint], timeout=5) as client:

        def writing_through_a() -> bool:
            client.put("through", "a")
            return nice(a) == 0

        wait_for(writing_through_a, "the follower serving a writer to take its weight back", 10)
        assert "its CPU weight back at once (a client here)" in a.log_text()
        assert nice(b) == 19
        client.move_leader(cluster.status(b).header.member_id)
    wait_for(lambda: cluster.wait_leader() is b, "leadership to move", 10)
    wait_for(lambda: nice(b) == 0, "the new leader to take its weight back", 10)
    wait_for(lambda: nice(leader) == 19, "the old leader, now idle, to yield", 10)
