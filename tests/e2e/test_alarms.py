"""Alarms replicated through the log, `alarm list|disarm` and `defrag`, on real members."""

from __future__ import annotations

import concurrent.futures
import io
import os
import shutil
import time

import pytest

from pyraftkv import errors
from pyraftkv.ctl import run
from pyraftkv.failpoints import ENV
from pyraftkv.mvcc import MVCCStore
from pyraftkv.proto import rpc_pb2 as rpc

from .nemesis import paused, raft_pid
from .test_grpc_etcdctl import etcdctl


def ctl(endpoint: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoint}", *argv], io.BytesIO(), out, err, environ={})
    return code, out.getvalue().decode(), err.getvalue().decode()


def fill(client, prefix: str) -> int:
    """Put 100 kB values until the member refuses with NoSpace; how many went in."""
    written = 0
    with pytest.raises(errors.NoSpace, match="etcdserver: mvcc: database space exceeded"):
        for i in range(200):
            client.put(f"{prefix}/{i}", b"x" * 100_000)
            written += 1
    return written


def wait_for(condition, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"condition not met in time (last: {value!r})")


def test_nospace_is_raised_cluster_wide_and_only_disarm_clears_it(make_cluster):
    cluster = make_cluster(3, extra_args=["--quota-backend-bytes", str(2 << 20)])
    cluster.start()
    first, second, third = cluster.members
    # etcd 3.4's Alarm answer has no header: etcdctl prints "{}" when no alarm is raised.
    assert etcdctl(cluster.endpoints[0], "-w", "json", "alarm", "list")[:2] == (0, b"{}\n")
    with cluster.client([first]) as client:
        written = fill(client, "big")
        assert 5 < written < 200
        member_id = client.status().header.member_id
    nospace_line = f"memberID:{member_id} alarm:NOSPACE \n"
    # The alarm came through the log: every member holds the same set (each member whose
    # store crossed the quota raised its own) and refuses writes that add data.
    endpoints = [f"127.0.0.1:{m.client_port}" for m in cluster.members]

    def over_quota() -> set[int]:
        statuses = [cluster.status(m) for m in cluster.members]
        if len({st.header.revision for st in statuses}) != 1:
            return {-1}  # not every member applied the last write yet
        return {st.header.member_id for st in statuses if st.dbSizeInUse > 2 << 20}

    def same_alarms_everywhere():
        """The alarm list, once every member shows the same one, naming every member over
        the quota (each raises its own once its store crosses it)."""
        lists = {ctl(e, "alarm", "list")[1] for e in endpoints}
        if len(lists) != 1:
            return None
        listed = lists.pop()
        named = {int(line.split()[0].split(":")[1]) for line in listed.splitlines()}
        return listed if named == over_quota() else None

    listed = wait_for(same_alarms_everywhere)
    assert nospace_line in listed
    assert all(line.endswith(" alarm:NOSPACE ") for line in listed.splitlines())
    code, out, _ = ctl(endpoints[2], "-w", "json", "alarm", "list")
    assert f'{{"memberID":{member_id},"alarm":1}}' in out and out.startswith('{"alarms":[')
    assert etcdctl(endpoints[2], "-w", "json", "alarm", "list")[1].decode() == out  # no header
    with cluster.client([third]) as client:
        with pytest.raises(errors.NoSpace):
            client.put("small", "v")
        with pytest.raises(errors.NoSpace):
            client.lease_grant(10)
        # Space can be won back: deletes and compaction go through, then a defrag.
        deleted = client.delete("big/", prefix=True)
        assert deleted.deleted == written
        client.compact(deleted.header.revision)
        with pytest.raises(errors.NoSpace):  # still refused: the alarm stays until disarmed
            client.put("small", "v")
    endpoints = ",".join(cluster.endpoints)
    code, out, err = ctl(endpoints, "defrag")
    assert code == 0, err
    assert out == "".join(f"Finished defragmenting etcd member[{e}]\n" for e in cluster.endpoints)
    assert "defragmented the backend" in first.log_text()
    code, out, _ = ctl(cluster.endpoints[1], "alarm", "disarm")
    assert (code, out) == (0, listed)
    assert ctl(cluster.endpoints[0], "alarm", "list")[1] == ""
    with cluster.client([third]) as client:
        client.put("small", "v")
        assert client.get("small").kvs[0].value == b"v"

    # Defragmenting kept everything, and the members still agree (once all applied it).
    def hashes() -> set[str]:
        out = ctl(",".join(cluster.endpoints), "endpoint", "hashkv")[1]
        return {line.split(", ")[1] for line in out.splitlines()}

    wait_for(lambda: len(hashes()) == 1)


@pytest.mark.parametrize(
    "alarm, refused", [(rpc.NOSPACE, errors.NoSpace), (rpc.CORRUPT, errors.CorruptCluster)]
)
def test_a_write_after_a_disarm_is_not_refused_by_a_member_yet_to_apply_it(
    make_cluster, alarm, refused
):
    """Raised alarms refuse writes as they are applied, in log order: a follower whose Raft
    process was paused through the disarm takes a put sent to it afterwards and applies it
    after the disarm, instead of refusing it on the alarm it still holds."""
    cluster = make_cluster(3)
    cluster.start()
    leader = cluster.wait_leader()
    lagging = next(m for m in cluster.members if m is not leader)
    with cluster.client([leader]) as client:
        member_id = client.status().header.member_id
        client.call(
            "Alarm",
            rpc.AlarmRequest(action=rpc.AlarmRequest.ACTIVATE, memberID=member_id, alarm=alarm),
        )
    with cluster.client([lagging]) as client:
        with pytest.raises(refused):
            client.put("k", "refused")
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            with paused(raft_pid(lagging)):
                code, out, _ = ctl(leader.endpoint, "alarm", "disarm")
                assert code == 0 and out.startswith(f"memberID:{member_id} alarm:")
                put = pool.submit(client.put, "k", "taken")
                time.sleep(0.5)  # sent while the member still holds the alarm
            assert put.result(timeout=10).header.revision > 0
        assert client.get("k").kvs[0].value == b"taken"


def test_alarms_survive_a_restart_and_defrag_reports_a_dead_member(make_cluster):
    cluster = make_cluster(1, extra_args=["--quota-backend-bytes", str(1 << 20)])
    cluster.start()
    with cluster.client() as client:
        fill(client, "k")
    (member,) = cluster.members
    endpoint = cluster.endpoints[0]
    listed = wait_for(lambda: ctl(endpoint, "alarm", "list")[1])
    assert listed.endswith(" alarm:NOSPACE \n")
    cluster.terminate(member)
    code, out, err = ctl(endpoint, "--command-timeout=1s", "defrag")
    assert code == 1 and out == ""
    assert err.startswith(f"Failed to defragment etcd member[{endpoint}] (")
    cluster.start_member(member)
    assert ctl(endpoint, "alarm", "list")[1] == listed
    with cluster.client() as client, pytest.raises(errors.NoSpace):
        client.put("more", "v")


def test_defragment_while_backups_are_copied(make_cluster, tmp_path):
    """Backups and defragments at once (each copy held back 300 ms by a failpoint, so the
    store is replaced under it): every backup is whole and the member keeps serving."""
    cluster = make_cluster(1)
    cluster.members[0].env[ENV] = "appBeforeStoreCopy=sleep(300)"
    cluster.start()
    with cluster.client() as client:
        for i in range(200):
            client.put(f"k/{i:05d}", os.urandom(2000))
        expected = client.hash_kv().hash

    def backups() -> list[str]:
        paths = [str(tmp_path / f"backup-{i}.db") for i in range(3)]
        with cluster.client() as client:
            for path in paths:
                client.snapshot(path)
        return paths

    with cluster.client() as client, concurrent.futures.ThreadPoolExecutor(1) as pool:
        copying = pool.submit(backups)
        defragments = 0
        while not copying.done():
            client.defragment()
            defragments += 1
        paths = copying.result()
        assert client.hash_kv().hash == expected
    assert defragments > 3
    for path in paths:
        with MVCCStore(tmp_path / "restored").replace_with(path) as restored:
            assert restored.hash_kv(0)[0] == expected
        shutil.rmtree(tmp_path / "restored")
    assert cluster.members[0].running


def test_defrag_data_dir_compacts_a_stopped_members_store_and_refuses_a_running_one(
    make_cluster, tmp_path
):
    cluster = make_cluster(1)
    cluster.start()
    (member,) = cluster.members
    with cluster.client() as client:
        for i in range(300):
            client.put(f"k/{i:04d}", os.urandom(3000))
        client.put("kept", "v")
        deleted = client.delete("k/", prefix=True)
        client.compact(deleted.header.revision)
        expected = client.hash_kv().hash
    store = os.path.join(member.data_dir, "member", "db", "data.mdb")
    size = os.path.getsize(store)

    # A running member holds its data dir: refused, nothing touched (etcdctl would wait).
    code, out, err = ctl("127.0.0.1:1", "defrag", f"--data-dir={member.data_dir}")
    assert (code, out) == (1, "")
    assert err.startswith(f"Failed to defragment etcd data[{member.data_dir}] (data dir ")
    assert "is in use by a running member (lock held by pid" in err
    assert "to defragment a running member, omit --data-dir)" in err
    assert os.path.getsize(store) == size
    assert cluster.terminate(member) == 0

    # Stopped: the file is rewritten compacted, silently (as etcdctl 3.4), and the member
    # starts from it with everything it held.
    assert ctl("127.0.0.1:1", "defrag", f"--data-dir={member.data_dir}") == (0, "", "")
    assert os.path.getsize(store) < size // 2
    cluster.start_member(member)
    with cluster.client() as client:
        assert client.hash_kv().hash == expected
        assert client.get("kept").kvs[0].value == b"v"
        client.put("after", "defrag")

    nothing = str(tmp_path / "not-a-data-dir")
    os.mkdir(nothing)
    code, out, err = ctl("127.0.0.1:1", "defrag", f"--data-dir={nothing}")
    assert (code, out) == (1, "")
    assert err == (
        f"Failed to defragment etcd data[{nothing}] ('{nothing}' is not a pyraftkv data dir "
        "(no member store in it))\n"
    )
    assert os.listdir(nothing) == []
