"""The same lease, lock and election script against pyraftkv and against real etcd 3.4
(through the native-protocol bridge to etcd's JSON gateway): the transcripts must match.

Both clusters have a 1 s minimum lease TTL (etcd: 200 ms election timeout, pyraftkv:
500 ms; each rounds 1.5 election timeouts up to whole seconds). Skipped without etcd.
"""

from __future__ import annotations

import threading
import time

import pytest

from pyraftkv import Client
from pyraftkv.errors import ApiError
from pyraftkv.proto.v3lock_pb2 import LockRequest

from ..ctl_etcd_cluster import ETCD, MISSING, EtcdCluster

pytestmark = pytest.mark.skipif(ETCD is None, reason=MISSING)

UNKNOWN_LEASE = 0x7FFF_0000_1234


def outcome(call) -> tuple:
    """("ok", result) or the error's class, gRPC code and message."""
    try:
        return ("ok", call())
    except ApiError as exc:
        return (type(exc).__name__, exc.code, exc.message)


def in_background(call) -> tuple[threading.Thread, dict]:
    done: dict = {}

    def run() -> None:
        done["result"] = call()
        done["at"] = time.monotonic()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, done


def script(client: Client) -> list:
    """Leases, a FIFO lock hand-over and an election hand-over; what each step answered."""
    out: list = []
    hexed = lambda lease: f"{lease:x}".encode()  # noqa: E731
    out.append(("grant below the minimum", client.lease_grant(1).TTL))
    leases = [client.lease_grant(60).ID for _ in range(4)]
    out.append(("put, unknown lease", outcome(lambda: client.put("k", "v", lease=UNKNOWN_LEASE))))
    out.append(("ttl, unknown lease", client.lease_time_to_live(UNKNOWN_LEASE).TTL))
    out.append(("revoke, unknown lease", outcome(lambda: client.lease_revoke(UNKNOWN_LEASE))))
    client.put("held/a", "1", lease=leases[0])
    client.put("held/b", "2", lease=leases[0])
    ttl = client.lease_time_to_live(leases[0], keys=True)
    # etcd lists a lease's keys in no particular order.
    out.append(("ttl with keys", ttl.grantedTTL, sorted(ttl.keys), 55 <= ttl.TTL <= 60))
    listed = {status.ID for status in client.lease_leases().leases}
    out.append(("leases listed", set(leases) <= listed))
    client.lease_revoke(leases[0])
    out.append(("keys after revoke", client.get("held/", prefix=True).count))

    # A lock handed over in FIFO order.
    first = client.lock("job", leases[1]).acquire()
    out.append(("lock key", first == b"job/" + hexed(leases[1])))
    second_waiter, second = in_background(lambda: client.lock("job", leases[2]).acquire())
    time.sleep(0.3)
    third_waiter, third = in_background(lambda: client.lock("job", leases[3]).acquire())
    time.sleep(0.3)
    out.append(("waiters wait", "result" in second, "result" in third))
    client.unlock(first)
    second_waiter.join(5)
    time.sleep(0.3)
    out.append(("second got it, third waits", second.get("result") == b"job/" + hexed(leases[2])))
    out.append(("third still waiting", "result" in third))
    client.unlock(second["result"])
    third_waiter.join(5)
    out.append(("third got it", third.get("result") == b"job/" + hexed(leases[3])))
    client.unlock(third["result"])
    out.append(("lock keys left", client.get("job/", prefix=True).count))
    unnamed = client.call("Lock", LockRequest(name=b"", lease=leases[1])).key  # etcd takes it
    out.append(("lock, empty name", unnamed == b"/" + hexed(leases[1])))
    client.unlock(unnamed)

    # An election: proclaim, a waiting candidate, resign, hand-over.
    out.append(("leader, nobody campaigned", outcome(lambda: client.leader("office").value)))
    leader = client.campaign("office", leases[1], "v1")
    out.append(
        ("campaign", leader.name, leader.key == b"office/" + hexed(leases[1]), leader.rev > 0)
    )
    out.append(("leader", client.leader("office").value))
    client.proclaim(leader, "v2")
    out.append(("after proclaim", client.leader("office").value))
    standby_waiter, standby = in_background(lambda: client.campaign("office", leases[2], "w"))
    time.sleep(0.3)
    out.append(("standby waits", "result" in standby))
    client.resign(leader)
    standby_waiter.join(5)
    out.append(("standby leads", standby["result"].key == b"office/" + hexed(leases[2])))
    out.append(("leader after resign", client.leader("office").value))
    out.append(("proclaim after resign", outcome(lambda: client.proclaim(leader, "v3"))))
    out.append(("resign again", outcome(lambda: client.resign(leader) and None)))
    same = client.campaign("office", leases[2], "w2")  # campaigning again while leading
    out.append(("campaign again", same.rev == standby["result"].rev))
    out.append(("value after campaigning again", client.leader("office").value))
    unnamed_leader = client.campaign("", leases[3], "e")
    out.append(("campaign, empty name", unnamed_leader.key == b"/" + hexed(leases[3])))
    out.append(("leader, empty name", client.leader("").value))
    client.resign(unnamed_leader)

    # The helpers, on leases the client keeps alive: nothing expires while they are held.
    with client.lease(1) as kept:
        client.put("kept", "x", lease=kept.id)
        time.sleep(2.5)
        out.append(("kept alive", client.get("kept").count, kept.expired, kept.lost))
    out.append(("revoked on leaving", client.get("kept").count, kept.expired))
    with client.lock("job", ttl=1) as held:
        time.sleep(2.5)
        out.append(("lock kept", client.get(held.key).count, held.held))
    out.append(("lock released", client.get("job/", prefix=True).count))

    # A lease nobody keeps alive expires after its TTL and takes its key along.
    short = client.lease_grant(1).ID
    client.put("short", "lived", lease=short)
    time.sleep(3.0)
    out.append(("expired", client.get("short").count, client.lease_time_to_live(short).TTL))
    for lease in leases[1:]:
        client.lease_revoke(lease)
    return out


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        yield cluster
    finally:
        cluster.close()


def test_leases_locks_and_elections_answer_as_etcd_does(etcd, cluster):
    with Client([etcd.bridges[0].endpoint], timeout=10) as client:
        theirs = script(client)
    with cluster.client() as client:
        ours = script(client)
    assert ours == theirs
