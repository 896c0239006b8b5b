"""--strict-reconfig-check (on by default, as etcd's): membership changes that would leave
the cluster without a quorum of started voters, or of voters the leader reaches, are refused
with etcd's errors."""

from __future__ import annotations

import time

import pytest

from pyraftkv import errors
from pyraftkv.node.reconfig_check import HEALTH_INTERVAL_S
from pyraftkv.proto import rpc_pb2 as rpc


def add(client, port: int, learner: bool = False) -> int:
    request = rpc.MemberAddRequest(peerURLs=[f"http://127.0.0.1:{port}"], isLearner=learner)
    return client.call("MemberAdd", request).member.ID


def test_changes_that_leave_too_few_started_voters_are_refused(cluster):
    with cluster.client() as c:
        started = [m.ID for m in c.member_list().members]
        # Two voters added but never started: 3 of 5 started is still a quorum.
        never_started = [add(c, 1), add(c, 2)]
        # A sixth voter would need 4 started; a learner needs none.
        with pytest.raises(errors.NotEnoughStartedMembers, match="not enough started members"):
            add(c, 3)
        learner = add(c, 4, learner=True)
        # Removing a started voter would leave 2 started of 4; removing a never-started
        # one, or the learner, is fine.
        with pytest.raises(errors.NotEnoughStartedMembers):
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=started[0]))
        c.call("MemberRemove", rpc.MemberRemoveRequest(ID=learner))
        for member_id in never_started:
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=member_id))
        assert sorted(m.ID for m in c.member_list().members) == sorted(started)
        c.put("still", "writable")


def test_the_check_can_be_turned_off(make_cluster):
    """Without it the change strict mode refuses is proposed, and the cluster is left
    without a quorum of started voters: the call is not refused, it cannot finish."""
    cluster = make_cluster(3, extra_args=["--strict-reconfig-check=false"])
    cluster.start()
    with cluster.client() as c:
        add(c, 1), add(c, 2)
    with cluster.client(timeout=1.5) as c, pytest.raises((errors.TimedOut, TimeoutError)):
        add(c, 3)


def test_with_a_voter_stopped_adds_and_quorum_breaking_removals_are_unhealthy(cluster):
    """Once the leader has not heard from a stopped voter for 5 s: a voter add is refused,
    so is removing a running voter (one reachable voter of two would be left); adding a
    learner and removing the stopped voter are not."""
    leader = cluster.wait_leader()
    running, stopped = [m for m in cluster.members if m is not leader]
    ids = {m.name: cluster.status(m).header.member_id for m in cluster.members}
    cluster.kill(stopped)
    time.sleep(HEALTH_INTERVAL_S + 0.5)
    with cluster.client([leader]) as c:
        with pytest.raises(errors.UnhealthyCluster, match="^etcdserver: unhealthy cluster$"):
            add(c, 1)
        with pytest.raises(errors.UnhealthyCluster):
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=ids[running.name]))
        assert len(c.member_list().members) == 3
        learner = add(c, 2, learner=True)
        c.call("MemberRemove", rpc.MemberRemoveRequest(ID=learner))
        c.call("MemberRemove", rpc.MemberRemoveRequest(ID=ids[stopped.name]))
        assert sorted(m.ID for m in c.member_list().members) == sorted(
            [ids[leader.name], ids[running.name]]
        )
        c.put("still", "writable")
