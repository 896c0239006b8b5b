"""Leases on a real 3-member cluster: grant, attach, revoke, expiry decided by the leader,
keep-alives through any member, and no early expiry when the leader member dies."""

import time

import pytest

from pyraftkv.errors import LeaseNotFound

from .harness import ELECTION_MS


def test_grant_attach_revoke_and_expire(cluster):
    with cluster.client() as client:
        minimum = client.lease_grant(1)
        assert minimum.TTL == 1  # etcd's minimum: ceil(1.5 x 500 ms election timeout)
        with pytest.raises(LeaseNotFound):
            client.put("orphan", "x", lease=12345)
        assert client.get("orphan").count == 0

        lease = client.lease_grant(30).ID
        client.put("held/a", "1", lease=lease)
        client.put("held/b", "2", lease=lease)
        ttl = client.lease_time_to_live(lease, keys=True)
        assert (ttl.grantedTTL, list(ttl.keys)) == (30, [b"held/a", b"held/b"])
        assert 28 <= ttl.TTL <= 30
        assert lease in [status.ID for status in client.lease_leases().leases]
        watch = client.watch("held/", prefix=True)
        revoked = client.lease_revoke(lease)
        events = [watch.get(5), watch.get(5)]
        watch.cancel()
        assert [(e.type, e.kv.key) for e in events] == [(1, b"held/a"), (1, b"held/b")]
        assert {e.kv.mod_revision for e in events} == {revoked.header.revision}  # one revision
        assert client.lease_time_to_live(lease).TTL == -1
        assert client.lease_keep_alive_once(lease).TTL == 0
        with pytest.raises(LeaseNotFound):
            client.lease_revoke(lease)

        # Left alone, a lease expires after its TTL, not before, and takes its key along.
        granted_at = time.monotonic()
        short = client.lease_grant(1).ID
        client.put("short", "lived", lease=short)
        assert client.get("short").count == 1
        time.sleep(max(0.0, granted_at + 0.7 - time.monotonic()))
        assert client.get("short").count == 1
        while client.get("short").count:
            assert time.monotonic() - granted_at < 1 + 1.5, "the lease never expired"
            time.sleep(0.05)
        with pytest.raises(LeaseNotFound):
            client.put("short", "again", lease=short)


def test_keep_alive_through_a_client_that_knows_only_a_follower(cluster):
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    with cluster.client([follower]) as client:
        with client.lease(1) as lease:
            client.put("via-follower", "x", lease=lease.id)
            time.sleep(3)  # three TTLs: only keep-alives that reached the leader keep it
            assert client.get("via-follower").count == 1
            assert lease.lost is None and not lease.expired
            assert client.lease_time_to_live(lease.id).TTL >= 0
        assert lease.expired
        assert client.get("via-follower").count == 0  # revoked on leaving the block


def test_killing_the_leader_member_expires_no_lease_early(cluster, workers):
    ttl = 1  # the minimum: keep-alives every third of a second, little room to spare
    for n in range(2):
        workers.start("keep-leases", cluster.endpoints, name="kept/", id=n, count=20, ttl=ttl)
    deadline = time.monotonic() + 30
    while len(workers.records("leases")) < 2:
        assert time.monotonic() < deadline, workers.logs()
        time.sleep(0.05)
    lease_ids = [i for r in workers.records("leases") for i in r["ids"]]
    assert len(lease_ids) == 40

    leader = cluster.wait_leader()
    with cluster.client() as client:
        unattended_ttl = 3  # nobody keeps this one alive
        unattended = client.lease_grant(unattended_ttl).ID
        granted_at = time.monotonic()
        client.put("unattended", "x", lease=unattended)
    cluster.kill(leader)
    killed_at = time.monotonic()
    survivors = [m for m in cluster.members if m is not leader]
    cluster.wait_leader(among=survivors)

    with cluster.client(survivors) as client:
        while time.monotonic() < killed_at + 3 * ttl:
            assert client.get("kept/", prefix=True).count == 40, "a kept-alive lease expired"
            if time.monotonic() < granted_at + unattended_ttl - 0.2:
                assert client.get("unattended").count == 1, "a lease expired before its TTL"
            time.sleep(0.1)
        for lease_id in lease_ids:
            status = client.lease_time_to_live(lease_id)
            assert status.grantedTTL == ttl and 0 <= status.TTL <= ttl  # whole seconds, floor
        # The new leader gave the unattended lease its TTL again (plus an election
        # timeout), from when it took over; then it expired like any other.
        while client.get("unattended").count:
            limit = granted_at + unattended_ttl + ELECTION_MS / 1000 + 4.0
            assert time.monotonic() < limit, "the unattended lease never expired"
            time.sleep(0.1)
        assert client.lease_time_to_live(unattended).TTL == -1
    assert workers.records("expired") == []
    assert all(p.poll() is None for p in workers.processes), workers.logs()


def test_a_key_put_again_without_its_lease_leaves_the_lease(cluster):
    """An overwrite without a lease detaches the key from its old one (the lessor knows
    each leased key's lease; the store no longer reads the previous version for it), so
    revoking the old lease then leaves the key alone, on all three members. Each member
    is read once it has applied the revoke (a follower may run a few ms behind)."""
    with cluster.client() as client:
        lease = client.lease_grant(30).ID
        client.put("moved", "1", lease=lease)
        client.put("stays", "1", lease=lease)
        client.put("moved", "2")  # no lease now
        assert list(client.lease_time_to_live(lease, keys=True).keys) == [b"stays"]
        revoked_at = client.lease_revoke(lease).header.revision
        assert revoked_at > client.get("moved").kvs[0].mod_revision
    for member in cluster.members:
        with cluster.client([member]) as client:
            deadline = time.monotonic() + 5
            while client.get("stays", serializable=True).header.revision < revoked_at:
                assert time.monotonic() < deadline
                time.sleep(0.05)
            assert client.get("stays", serializable=True).count == 0
            moved = client.get("moved", serializable=True)
            assert [(kv.value, kv.lease) for kv in moved.kvs] == [(b"2", 0)]
