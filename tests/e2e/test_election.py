"""Leader election on a real 3-member cluster: candidates in separate processes, one
leader at a time, failover when the leader's process dies, seen through Observe."""

import threading
import time

import pytest

from pyraftkv.errors import ElectionNotLeader, TimedOut

from .coord_worker import leave_exclusive


def test_one_leader_at_a_time_and_failover_when_the_leader_process_dies(cluster, workers):
    ttl = 1
    candidates = {
        f"candidate-{n}": workers.start(
            "candidate", cluster.endpoints, name="office", id=n, ttl=ttl
        )
        for n in range(3)
    }
    deadline = time.monotonic() + 30
    while len(workers.records("campaigning")) < 3:
        assert time.monotonic() < deadline, workers.logs()
        time.sleep(0.05)

    client = cluster.client()
    observed = client.election("office").observe()
    leaders = [observed.get(10).value.decode()]
    for _round in range(2):
        current = leaders[-1]
        time.sleep(2 * ttl)  # a live leader keeps leading
        assert client.election("office").leader().value.decode() == current
        workers.kill(candidates[current])
        killed_at = time.monotonic()
        leave_exclusive(f"{workers.dir}/leader", current)  # a dead process cannot
        successor = observed.get(ttl + 5).value.decode()
        failover_s = time.monotonic() - killed_at
        assert successor != current and successor in candidates
        assert failover_s <= ttl + 1.5, failover_s
        leaders.append(successor)
    observed.close()

    deadline = time.monotonic() + 5
    while len(workers.records("won")) < len(leaders):  # observe can beat campaign's answer
        assert time.monotonic() < deadline, workers.logs()
        time.sleep(0.05)
    time.sleep(0.5)  # the last leader checks it leads a few more times
    assert workers.records("violations") == []  # nobody saw two leaders or lost the lead
    won = [r["who"] for r in workers.records("won")]
    assert won == leaders  # observe saw every leader, in the order they won
    assert len(set(leaders)) == 3


def test_proclaim_resign_and_handover_in_campaign_order(cluster):
    client = cluster.client()
    first, second = client.election("desk"), client.election("desk")
    assert first.leader() is None
    observed = first.observe()
    first.campaign("first", ttl=5)
    assert first.is_leader
    assert observed.get(5).value == b"first"
    first.proclaim("first, again")
    assert observed.get(5).value == b"first, again"

    with pytest.raises(TimedOut):  # the seat is taken
        second.campaign("second", ttl=5, timeout=0.5)
    assert client.get("desk/", prefix=True).count == 1  # the loser left no key behind

    won = threading.Event()
    runner = threading.Thread(target=lambda: (second.campaign("second", ttl=5), won.set()))
    runner.start()
    time.sleep(0.5)
    assert not won.is_set()
    first.resign()
    assert not first.is_leader
    assert won.wait(5)
    runner.join()
    assert observed.get(5).value == b"second"
    assert client.election("desk").leader().value == b"second"
    with pytest.raises(ElectionNotLeader):
        first.proclaim("I am back")
    second.resign()
    assert second.leader() is None
    observed.close()


def test_raw_election_calls_with_a_lease_of_the_caller(cluster):
    with cluster.client() as client, client.lease(5) as lease:
        leader_key = client.campaign("raw", lease.id, "v1")
        assert leader_key.lease == lease.id and leader_key.name == b"raw"
        assert client.leader("raw").value == b"v1"
        client.proclaim(leader_key, "v2")
        assert client.leader("raw").value == b"v2"
        client.resign(leader_key)
        with pytest.raises(ElectionNotLeader):
            client.proclaim(leader_key, "v3")
        assert client.lease_time_to_live(lease.id).TTL > 0  # the lease stays the caller's
