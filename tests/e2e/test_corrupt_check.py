"""The corruption checks catch a member whose store was damaged on purpose (bytes of a value
overwritten in its LMDB file while it was stopped), also with peer and client TLS, client
certificates and auth on (peers are asked over the peer channel), and name a damaged
leader rather than the healthy members it compares with."""

from __future__ import annotations

import glob
import os
import time

import pytest

from pyraftkv import errors
from pyraftkv.proto import rpc_pb2 as rpc

from .test_alarms import ctl, wait_for

VALUE = b"the-value-that-gets-damaged-0001"


def damage_store(data_dir: str) -> int:
    """Overwrite one byte of every copy of VALUE in the member's LMDB file; how many."""
    (path,) = glob.glob(os.path.join(data_dir, "**", "data.mdb"), recursive=True)
    with open(path, "r+b") as f:
        data = f.read()
        found, at = 0, data.find(VALUE)
        while at >= 0:
            f.seek(at + len(VALUE) - 1)
            f.write(b"X")
            found += 1
            at = data.find(VALUE, at + 1)
        f.flush()
        os.fsync(f.fileno())
    return found


def test_a_damaged_member_is_refused_at_start_and_flagged_by_the_leader(make_cluster):
    cluster = make_cluster(3, extra_args=["--experimental-corrupt-check-time=1s"])
    cluster.start()
    with cluster.client() as client:
        for i in range(10):
            client.put(f"k{i}", VALUE if i == 5 else b"v")
        revision = client.get("k0").header.revision

    # The members agree while nothing is damaged (and the periodic check raises nothing).
    def hashes() -> set[str]:
        out = ctl(",".join(cluster.endpoints), "endpoint", "hashkv")[1]
        return {line.split(", ")[1] for line in out.splitlines()}

    wait_for(lambda: len(hashes()) == 1)
    leader = cluster.wait_leader()
    victim = next(m for m in cluster.members if m is not leader)
    with cluster.client([victim]) as client:
        victim_id = client.status().header.member_id
        wait_for(lambda: client.get("k9", serializable=True).count == 1)
    cluster.terminate(victim)
    assert damage_store(victim.data_dir) >= 1

    # Restarting with the initial check: it compares with its peers and refuses to start.
    victim.extra_args.append("--experimental-initial-corrupt-check")
    cluster.start_member(victim, wait=False)
    assert victim.process.wait(30) == 2
    assert "found data inconsistency with peers" in victim.log_text()
    assert f"HashKV at revision {revision} differs" in victim.log_text()

    # Without it, the member starts; the leader's periodic check flags it by its id.
    victim.extra_args.remove("--experimental-initial-corrupt-check")
    cluster.start_member(victim)
    line = f"memberID:{victim_id} alarm:CORRUPT \n"
    wait_for(lambda: ctl(cluster.endpoints[0], "alarm", "list")[1] == line, timeout=15)
    others = [m for m in cluster.members if m is not victim]
    with cluster.client(others) as client:
        with pytest.raises(errors.CorruptCluster, match="etcdserver: corrupt cluster"):
            client.put("after", "v")
        assert client.get("k5").kvs[0].value == VALUE  # reads go on
    leader_log = cluster.wait_leader().log_text()
    assert f"member {victim_id:x}'s HashKV at revision" in leader_log


def test_checks_over_tls_with_auth_on_and_a_damaged_leader_names_itself(make_cluster, certs):
    cluster = make_cluster(
        3,
        peer_scheme="https",
        client_scheme="https",
        extra_args=["--bcrypt-cost", "4", *certs.peer_args(), *certs.client_args()],
        client_options={"tls": certs.tls("root")},
    )
    cluster.start()
    with cluster.client() as client:
        for i in range(10):
            client.put(f"k{i}", VALUE if i == 5 else b"v")
        client.call("UserAdd", rpc.AuthUserAddRequest(name="root", password="pw"))
        client.call("UserGrantRole", rpc.AuthUserGrantRoleRequest(user="root", role="root"))
        client.call("AuthEnable", rpc.AuthEnableRequest())
        revision = client.put("last", "v").header.revision
    leader = cluster.wait_leader()
    victim = next(m for m in cluster.members if m is not leader)
    with cluster.client([victim]) as client:
        victim_id = client.status().header.member_id
        wait_for(lambda: client.get("last", serializable=True).count == 1)
    cluster.terminate(victim)
    assert damage_store(victim.data_dir) >= 1

    # The initial check reaches its peers through TLS and auth, and refuses to start.
    victim.extra_args.append("--experimental-initial-corrupt-check")
    cluster.start_member(victim, wait=False)
    assert victim.process.wait(30) == 2
    assert f"HashKV at revision {revision} differs" in victim.log_text()
    assert "gave no hash" not in victim.log_text()

    # Started without it and made the leader, with the periodic check (only it has one):
    # both followers agree against it, so it names itself, not them.
    victim.extra_args[-1] = "--experimental-corrupt-check-time=1s"
    cluster.start_member(victim)
    with cluster.client() as client:
        with cluster.client([cluster.wait_leader()]) as via_leader:
            via_leader.move_leader(victim_id)
        assert cluster.wait_leader() is victim
        expected = [rpc.AlarmMember(memberID=victim_id, alarm=rpc.CORRUPT)]
        wait_for(lambda: list(client.alarm_list().alarms) == expected, timeout=15)
        log_text = victim.log_text()
        assert f"member {victim_id:x}'s HashKV at revision" in log_text
        assert "gave no hash" not in log_text
        time.sleep(2.5)  # two more checks (1 s apart): the healthy members are never named
        assert list(client.alarm_list().alarms) == expected
