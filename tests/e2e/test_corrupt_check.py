"""The corruption checks catch a member whose store was damaged on purpose (bytes of a value
overwritten in its LMDB file while it was stopped)."""

from __future__ import annotations

import glob
import os

import pytest

from pyraftkv import errors

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
