"""Distributed locks on a real 3-member cluster, contended by real client processes."""

import contextlib
import os
import signal
import threading
import time

import pytest

from pyraftkv.errors import TimedOut
from pyraftkv.proto.v3lock_pb2 import LockRequest

CONTENDERS = 8
ROUNDS = 4


def test_contending_processes_are_never_inside_together_and_are_served_fifo(cluster, workers):
    for n in range(CONTENDERS):
        workers.start(
            "lock-rounds", cluster.endpoints, name="fifo", id=n, rounds=ROUNDS, ttl=5, hold=0.02
        )
    time.sleep(1.0)  # let every contender import and connect, then start them together
    open(os.path.join(workers.dir, "go"), "w").close()
    for process in workers.processes:
        assert process.wait(90) == 0, workers.logs()

    assert workers.records("violations") == []
    with open(os.path.join(workers.dir, "counter")) as f:
        assert int(f.read()) == CONTENDERS * ROUNDS  # no increment lost to an overlap
    acquisitions = workers.records("acquisitions")  # in the order the lock was granted
    assert len(acquisitions) == CONTENDERS * ROUNDS
    for before, after in zip(acquisitions, acquisitions[1:], strict=False):
        # FIFO: the lock goes to waiters in the order their keys were created ...
        assert after["create_revision"] > before["create_revision"], (before, after)
        # ... and each holder got it only after the one before had finished.
        assert after["acquired_at"] >= before["released_at"], (before, after)
    waited = sum(
        1
        for before, after in zip(acquisitions, acquisitions[1:], strict=False)
        if after["requested_at"] < before["released_at"]
    )
    assert waited >= len(acquisitions) // 2, "the contenders hardly contended"
    with cluster.client() as c:
        assert c.get("fifo/", prefix=True).count == 0  # every key went with its lease


def test_killing_the_holder_hands_the_lock_to_the_next_waiter_within_its_ttl(cluster, workers):
    ttl = 2
    holder = workers.start("hold-lock", cluster.endpoints, name="crash", id="holder", ttl=ttl)
    deadline = time.monotonic() + 30
    while not workers.records("held"):
        assert time.monotonic() < deadline and holder.poll() is None, workers.logs()
        time.sleep(0.02)
    held_key = workers.records("held")[0]["key"].encode()

    client = cluster.client()
    got = {}

    def wait_for_lock() -> None:
        lock = client.lock("crash", ttl=ttl)
        got["key"] = lock.acquire(timeout=30)
        got["at"] = time.monotonic()

    waiter = threading.Thread(target=wait_for_lock)
    waiter.start()
    deadline = time.monotonic() + 10
    while client.get("crash/", prefix=True).count < 2:  # the waiter's key is in line
        assert time.monotonic() < deadline
        time.sleep(0.02)
    time.sleep(ttl)  # the holder keeps its lease alive: nothing moves
    assert "key" not in got

    workers.kill(holder)
    killed_at = time.monotonic()
    waiter.join(ttl + 10)
    assert "key" in got, "the waiter never got the lock"
    handover_s = got["at"] - killed_at
    # Released by the lease's expiry: after most of a TTL (the last keep-alive came at
    # most a third of it before the kill), and within the TTL plus a small margin.
    assert ttl / 2 <= handover_s <= ttl + 1.0, handover_s
    keys = [kv.key for kv in client.get("crash/", prefix=True).kvs]
    assert keys == [got["key"]] and held_key not in keys


def test_a_waiter_that_times_out_leaves_no_key_behind(cluster):
    with cluster.client() as client:
        with client.lock("patience", ttl=5) as held:
            assert held.held
            waiter = client.lock("patience", ttl=5)
            started = time.monotonic()
            with pytest.raises(TimedOut):
                waiter.acquire(timeout=0.5)
            assert time.monotonic() - started < 3
            assert not waiter.held
            keys = [kv.key for kv in client.get("patience/", prefix=True).kvs]
            assert keys == [held.key]
        assert not held.held
        assert client.get("patience/", prefix=True).count == 0
        started = time.monotonic()
        with client.lock("patience", ttl=5):  # free again: taken at once
            assert time.monotonic() - started < 2


def test_raw_lock_and_campaign_calls_that_time_out_are_never_granted_later(cluster):
    """With the caller's own lease nothing is revoked on a timeout: the abandoned attempt
    must still leave the line, or it would take the lock (or the lead) once free, for
    nobody."""
    with cluster.client() as client, client.lease(10) as lease:
        with client.lock("ghost", ttl=5) as held:
            with pytest.raises(TimedOut):
                client.lock("ghost", lease.id, timeout=0.5).acquire()
            assert [kv.key for kv in client.get("ghost/", prefix=True).kvs] == [held.key]
        time.sleep(0.5)  # the lock is free now
        assert client.get("ghost/", prefix=True).count == 0

        leader = client.election("office")
        leader.campaign("first", ttl=5)
        with pytest.raises(TimedOut):
            client.campaign("office", lease.id, "late", timeout=0.5)
        leader.resign()
        time.sleep(0.5)
        assert leader.leader() is None
        assert client.lease_time_to_live(lease.id).TTL > 0  # the caller's lease lives on


def test_lock_with_a_lease_of_the_caller(cluster):
    with cluster.client() as client, client.lease(5) as lease:
        key = client.lock("mine", lease.id).acquire()
        assert key == b"mine/" + f"{lease.id:x}".encode()
        assert client.get(key).kvs[0].lease == lease.id
        client.unlock(key)
        assert client.get(key).count == 0
        with client.lock("mine", lease.id) as lock:  # the lease stays the caller's
            assert lock.lease_id == lease.id
        assert client.lease_time_to_live(lease.id).TTL > 0
        with pytest.raises(ValueError):
            client.lock("", ttl=5)
        with pytest.raises(ValueError):
            client.lock("x", ttl=0)


def test_a_lock_call_retried_on_another_member_keeps_its_key(cluster):
    """A client whose Lock call is cut off asks again elsewhere with the same lease (the
    clients retry Lock after a lost connection). The first attempt, abandoned on its
    member, must not delete the key once the retry has been granted the lock with it."""
    leader = cluster.wait_leader()
    first, second = (m for m in cluster.members if m is not leader)
    holder = cluster.client([leader])
    held = holder.lock("retry", ttl=10)
    held.acquire()
    with holder.lease(10) as lease:
        on_first = cluster.client([first], timeout=2)
        with contextlib.suppress(TimedOut):  # still waiting there, its key in line
            # The bare call: Lock's own clean-up of a timed-out attempt is not wanted here.
            on_first.call("Lock", LockRequest(name=b"retry", lease=lease.id), timeout=1)
        key = b"retry/" + f"{lease.id:x}".encode()
        assert holder.get(key).count == 1
        os.kill(first.process.pid, signal.SIGSTOP)  # it will notice the cut only later
        try:
            on_first.close()
            retried = threading.Thread(
                target=lambda: cluster.client([second]).lock("retry", lease.id).acquire()
            )
            retried.start()
            time.sleep(0.5)
            held.release()
            retried.join(10)
            assert not retried.is_alive()
        finally:
            os.kill(first.process.pid, signal.SIGCONT)
        time.sleep(1.0)  # the first member catches up and cleans up its abandoned attempt
        assert holder.get(key).count == 1, "the retry's lock was released behind its back"
        contender = holder.lock("retry", ttl=5)
        with pytest.raises(TimedOut):
            contender.acquire(timeout=1)  # the lock is still held


def test_calls_naming_an_empty_key_are_refused_on_a_follower_and_break_nothing(cluster):
    """Unlock, Resign and Proclaim name a key the member writes for its client: an empty one
    is refused "key is not provided" on a follower as on the leader. (A follower forwarded
    it, and the leader refused the whole forwarded batch and closed the peer connection:
    the call, and other clients' writes in that batch, waited out their timeouts.)"""
    import grpc

    from pyraftkv.proto import v3election_pb2 as election
    from pyraftkv.proto import v3lock_pb2 as lock

    from .grpc_stubs import stub

    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    empty = election.LeaderKey(name=b"e", key=b"", rev=1, lease=0)
    calls = (
        ("Unlock", lock.UnlockRequest(key=b"")),
        ("Resign", election.ResignRequest(leader=empty)),
        ("Proclaim", election.ProclaimRequest(leader=empty, value=b"v")),
    )
    with grpc.insecure_channel(follower.endpoint) as channel:
        for name, request in calls:
            with pytest.raises(grpc.RpcError) as refused:
                stub(channel, name)(request, timeout=5)
            assert (refused.value.code(), refused.value.details()) == (
                grpc.StatusCode.INVALID_ARGUMENT,
                "etcdserver: key is not provided",
            ), name
        for name, request in (
            ("Resign", election.ResignRequest()),
            ("Proclaim", election.ProclaimRequest(value=b"v")),
        ):  # no leader key at all: etcd 3.4's words (its code is UNKNOWN)
            with pytest.raises(grpc.RpcError) as refused:
                stub(channel, name)(request, timeout=5)
            assert refused.value.details() == '"leader" field must be provided', name
    with cluster.client([follower], timeout=5) as client:
        assert client.put("after", "v").header.revision > 0
    assert "bad proposal" not in leader.log_text()
