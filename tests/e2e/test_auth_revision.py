"""etcd's per-request auth revision on a real 3-member cluster: a request checked by a
member that has not yet applied an auth change is refused when it applies after that
change ("revision of auth store is old", or "user name is empty" for one taken while
auth was off), and changes nothing; a simple token from one member works on the others.

A follower that receives nothing from its peers (its outgoing links stay up, so what it
forwards reaches the leader) is the member behind: it admits the request against the
auth state it has, the leader orders it after the change."""

from __future__ import annotations

import threading
import time

import pytest

from pyraftkv import Client
from pyraftkv.errors import ApiError, AuthOldRevision, PermissionDenied, UserEmpty
from pyraftkv.proto import auth_pb2 as authpb
from pyraftkv.proto import rpc_pb2 as rpc

from .harness import LocalCluster
from .nemesis import Network
from .test_auth import FAST, call, raw_call


@pytest.fixture
def net_cluster(tmp_path):
    # a follower cut off for a moment must not give up on its leader meanwhile
    cluster = LocalCluster(str(tmp_path), 3, extra_args=[*FAST, "--election-timeout", "3000"])
    network = Network(cluster)
    cluster.start()
    yield cluster, network
    cluster.stop_all()


def behind(cluster: LocalCluster, network: Network, follower, change, request) -> object:
    """Run ``request()`` (aimed at ``follower``) while the follower hears nothing, after
    ``change()`` applied on the others; the request's outcome once the network heals."""
    others = [m for m in cluster.members if m is not follower]
    for member in others:
        network.cut(member, follower)
    try:
        change()
        outcome: list = []

        def run() -> None:
            try:
                outcome.append(request())
            except ApiError as exc:
                outcome.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        time.sleep(0.5)  # taken by the follower, forwarded, applied by the others
        assert thread.is_alive(), f"answered before the follower caught up: {outcome}"
    finally:
        network.heal()
    thread.join(20)
    assert outcome, "no answer after the network healed"
    return outcome[0]


def values(cluster: LocalCluster, key: str) -> list:
    """The key's value on each member (after each applied everything)."""
    with cluster.client(user="root", password="rootpw") as root:
        index = root.status().raftIndex
    found = []
    for member in cluster.members:
        cluster.wait_applied(member, index)
        with Client([member.endpoint], user="root", password="rootpw") as c:
            kvs = c.get(key, serializable=True).kvs
            found.append(kvs[0].value if kvs else None)
    return found


def test_requests_checked_against_an_older_auth_state_are_refused(net_cluster):
    cluster, network = net_cluster
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    with cluster.client([leader]) as c:
        call(c, "UserAdd", rpc.AuthUserAddRequest(name="root", password="rootpw"))
        call(c, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        call(c, "UserAdd", rpc.AuthUserAddRequest(name="alice", password="alicepw"))
        call(c, "RoleAdd", rpc.AuthRoleAddRequest(name="reader"))
        perm = authpb.Permission(permType=authpb.Permission.READWRITE, key=b"foo", range_end=b"zoo")
        call(c, "RoleGrantPermission", rpc.AuthRoleGrantPermissionRequest(name="reader", perm=perm))
        call(c, "UserGrantRole", rpc.AuthUserGrantRoleRequest(user="alice", role="reader"))
        c.put("foo", "before")

        # a write taken while auth was off, applied after auth enable: no user
        outcome = behind(
            cluster,
            network,
            follower,
            lambda: call(c, "AuthEnable", rpc.AuthEnableRequest()),
            lambda: raw_call(follower.endpoint, b"", "Put", rpc.PutRequest(key=b"foo", value=b"x")),
        )
    assert isinstance(outcome, UserEmpty), outcome
    assert values(cluster, "foo") == [b"before"] * 3

    # a simple token from one member works on the others (the grant went through the
    # log), even on one that has not applied the grant yet: as etcd's, the token names
    # the grant's log index, and that member waits for it
    granted: list[bytes] = []

    def authenticate() -> None:
        request = rpc.AuthenticateRequest(name="alice", password="alicepw")
        granted.append(raw_call(leader.endpoint, b"", "Authenticate", request).token.encode())

    outcome = behind(
        cluster,
        network,
        follower,
        authenticate,
        lambda: raw_call(follower.endpoint, granted[0], "Range", rpc.RangeRequest(key=b"foo")),
    )
    assert isinstance(outcome, rpc.RangeResponse), outcome
    assert outcome.kvs[0].value == b"before"
    token = granted[0]
    assert token.rsplit(b".", 1)[1].isdigit()  # <random>.<log index>, as etcd's
    for member in cluster.members:
        got = raw_call(member.endpoint, token, "Range", rpc.RangeRequest(key=b"foo"))
        assert got.kvs[0].value == b"before"

    # alice's permission revoked between the follower's check and apply: refused
    def revoke() -> None:
        with Client([leader.endpoint], user="root", password="rootpw") as root:
            request = rpc.AuthRoleRevokePermissionRequest(
                role="reader", key=b"foo", range_end=b"zoo"
            )
            call(root, "RoleRevokePermission", request)

    put = rpc.PutRequest(key=b"foo", value=b"after the revoke")
    outcome = behind(
        cluster, network, follower, revoke, lambda: raw_call(follower.endpoint, token, "Put", put)
    )
    assert isinstance(outcome, AuthOldRevision), outcome
    assert outcome.message == "etcdserver: revision of auth store is old"
    assert values(cluster, "foo") == [b"before"] * 3
    # the same request checked again now: refused at once
    with pytest.raises(PermissionDenied):
        raw_call(follower.endpoint, token, "Put", put)
    with (
        Client([follower.endpoint], user="alice", password="alicepw") as alice,
        pytest.raises(PermissionDenied),
    ):
        alice.put("foo", "again")
    assert values(cluster, "foo") == [b"before"] * 3

    # a linearizable read the follower took before the revoke reached it waits for its
    # read index, which lies past the revoke: checked again then, refused (etcd checks
    # reads after that wait)
    with cluster.client(user="root", password="rootpw") as root:
        perm = authpb.Permission(permType=authpb.Permission.READ, key=b"foo", range_end=b"zoo")
        grant = rpc.AuthRoleGrantPermissionRequest(name="reader", perm=perm)
        call(root, "RoleGrantPermission", grant)
        index = root.status().raftIndex
    for member in cluster.members:
        cluster.wait_applied(member, index)
    assert raw_call(follower.endpoint, token, "Range", rpc.RangeRequest(key=b"foo")).kvs
    # (what the follower hears comes late rather than never: a read index lost on the
    # way would hold the read until the request timeout)
    for member in cluster.members:
        if member is not follower:
            network.delay(member, follower, 1000)
    try:
        revoke()
        with pytest.raises(PermissionDenied):
            raw_call(follower.endpoint, token, "Range", rpc.RangeRequest(key=b"foo"))
    finally:
        network.heal()
