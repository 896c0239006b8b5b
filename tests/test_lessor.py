"""The lessor's clock rules: deadlines only on the leader, extended on promotion, renewals
refused once a deadline has passed, expiry proposed once per retry interval."""

import pytest

from pyraftkv import errors
from pyraftkv.mvcc.store import MVCCStore
from pyraftkv.node.lessor import Lessor, min_ttl_s
from pyraftkv.proto import rpc_pb2 as rpc


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store(tmp_path):
    with MVCCStore(str(tmp_path / "db")) as s:
        yield s


@pytest.fixture
def clock():
    return Clock()


def grant(store, lessor, lease_id: int, ttl: int, index: int) -> rpc.LeaseGrantResponse:
    with store.write_batch(index) as batch:
        return lessor.grant(batch, rpc.LeaseGrantRequest(ID=lease_id, TTL=ttl))


def test_minimum_ttl_is_one_and_a_half_election_timeouts_rounded_up():
    assert min_ttl_s(500) == 1
    assert min_ttl_s(1000) == 2
    assert min_ttl_s(100) == 1


def test_only_the_leader_runs_deadlines_and_a_new_leader_extends_them(store, clock):
    lessor = Lessor(min_ttl=1, clock=clock)
    assert grant(store, lessor, 7, 5, 1).TTL == 5
    clock.now += 100
    assert lessor.expired(retry_s=1.0) == []  # a follower never expires anything
    lessor.promote(extend_s=0.5)
    clock.now += 5.4
    assert lessor.expired(retry_s=1.0) == []  # a full TTL plus the extension from promotion
    clock.now += 0.2
    assert lessor.expired(retry_s=1.0) == [7]
    assert lessor.expired(retry_s=1.0) == []  # proposed once per retry interval
    clock.now += 1.0
    assert lessor.expired(retry_s=1.0) == [7]  # the revoke may have been lost: again
    lessor.demote()
    assert lessor.expired(retry_s=1.0) == []


def test_a_keep_alive_after_the_deadline_does_not_revive_the_lease(store, clock):
    lessor = Lessor(min_ttl=1, clock=clock)
    lessor.promote(extend_s=0.0)
    grant(store, lessor, 9, 2, 1)
    clock.now += 1.5
    assert lessor.renew(9) == 2  # in time: a fresh TTL
    clock.now += 1.9
    assert lessor.remaining(9) == 0  # 0.1 s left: whole seconds, rounded down
    clock.now += 0.2
    assert lessor.expired(retry_s=1.0) == [9]  # the revoke is proposed ...
    assert lessor.renew(9) == 0  # ... so a late keep-alive hears that the lease is gone
    assert lessor.expired(retry_s=1.0) == []


def test_grant_raises_short_ttls_to_the_minimum_and_rejects_duplicates(store, clock):
    lessor = Lessor(min_ttl=2, clock=clock)
    assert grant(store, lessor, 1, 1, 1).TTL == 2
    with pytest.raises(errors.LeaseExists):
        grant(store, lessor, 1, 10, 2)
    with store.write_batch(3) as batch, pytest.raises(errors.LeaseNotFound):
        lessor.revoke(batch, 42)


def test_remaining_ttl_is_whole_seconds_rounded_down_as_etcd_reports_it(store, clock):
    lessor = Lessor(min_ttl=1, clock=clock)
    lessor.promote(extend_s=0.0)
    grant(store, lessor, 5, 60, 1)
    clock.now += 0.001
    assert lessor.remaining(5) == 59
    assert lessor.remaining(404) == -1


def test_attach_and_detach_follow_puts_and_deletes_without_previous_versions(store, clock):
    """The store reads no previous version (no watcher wants one): the lessor itself knows
    which lease a key held when it is put again, moved, deleted or its lease revoked, and
    a reload from the store agrees."""
    store.events_need_prev = lambda: False
    lessor = Lessor(min_ttl=1, clock=clock)
    grant(store, lessor, 7, 5, 1)
    grant(store, lessor, 8, 5, 2)
    ops = [
        rpc.PutRequest(key=b"a", lease=7),
        rpc.PutRequest(key=b"b", lease=7),
        rpc.PutRequest(key=b"c", lease=7),
        rpc.PutRequest(key=b"a", lease=8),  # moved
        rpc.PutRequest(key=b"b"),  # detached
        rpc.PutRequest(key=b"c", lease=7),  # put again on the same lease
        rpc.DeleteRangeRequest(key=b"c"),
        rpc.PutRequest(key=b"d", lease=8),
    ]
    for index, op in enumerate(ops, start=3):
        with store.write_batch(index) as batch:
            if isinstance(op, rpc.PutRequest):
                _, events = batch.put(op)
            else:
                _, events = batch.delete_range(op)
            for event in events:  # a delete's event carries it, but the lessor needs none
                assert event.type == event.DELETE or not event.HasField("prev_kv")
                event.ClearField("prev_kv")
            lessor.on_events(events)
    assert lessor.leases[7].keys == set()
    assert lessor.leases[8].keys == {b"a", b"d"}
    assert lessor.lease_of == {b"a": 8, b"d": 8}
    with store.write_batch(20) as batch:
        _, events = lessor.revoke(batch, 8)
        lessor.on_events(events)
    assert lessor.lease_of == {}
    with store.write_batch(21) as batch:
        _, events = batch.put(rpc.PutRequest(key=b"e", lease=7))
        lessor.on_events(events)
    reloaded = Lessor(min_ttl=1, clock=clock)
    reloaded.load(store)
    assert reloaded.lease_of == lessor.lease_of == {b"e": 7}
    assert {i: lease.keys for i, lease in reloaded.leases.items()} == {7: {b"e"}}
