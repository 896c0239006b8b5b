"""A member that was down for longer than --snapshot-count entries catches up by snapshot."""

import os
import time

from .harness import put_retrying


def test_a_member_down_past_the_snapshot_point_catches_up_through_a_snapshot(make_cluster):
    cluster = make_cluster(3, snapshot_count=100)
    cluster.start()
    lagging = cluster.members[2]
    cluster.kill(lagging)
    others = cluster.members[:2]
    with cluster.client(others) as c:
        for i in range(400):
            put_retrying(c, f"s{i:04d}", f"value-{i}")
        c.delete("s0000")
        expected = {kv.key: kv.value for kv in c.get("s", prefix=True).kvs}
        revision = c.get("s0001").header.revision
        target = c.status().raftIndex
    leader = cluster.wait_leader(among=others)
    assert "snapshot saved at index" in leader.log_text()
    cluster.start_member(lagging)
    cluster.wait_applied(lagging, target)
    text = lagging.log_text()
    assert "installed snapshot at index" in text
    assert "snapshot at index" in leader.log_text() and "sent to member" in leader.log_text()
    with cluster.client([lagging]) as c:
        local = c.get("s", prefix=True, serializable=True)
        assert {kv.key: kv.value for kv in local.kvs} == expected
        assert local.header.revision >= revision
        # History older than the snapshot came with it: a read at an old revision works.
        assert c.get("s0000", revision=3, serializable=True).kvs[0].value == b"value-0"
    # The snapshot file in transit is gone once installed.
    snap_dir = os.path.join(lagging.data_dir, "member", "snap")
    assert [f for f in os.listdir(snap_dir) if f.endswith(".tmp")] == []
    # It keeps working as a normal member afterwards, and survives a restart.
    with cluster.client() as c:
        c.put("after", "snapshot")
    cluster.kill(lagging)
    cluster.start_member(lagging)
    with cluster.client([lagging]) as c:
        assert c.get("after").kvs[0].value == b"snapshot"


def test_a_snapshot_is_taken_after_64_mib_of_log_whatever_the_entry_count(make_cluster):
    """Few entries, many bytes: the WAL replayed at restart and the log the Raft process
    holds are bounded by bytes too."""
    cluster = make_cluster(1, snapshot_count=100_000)
    cluster.start()
    (member,) = cluster.members
    value = os.urandom(1 << 20)
    with cluster.client() as c:
        for i in range(60):
            c.put(f"big/{i}", value)
        assert "snapshot saved at index" not in member.log_text()
        for i in range(60, 70):
            c.put(f"big/{i}", value)
    assert "snapshot saved at index" in member.log_text()
    cluster.kill(member)
    cluster.start_member(member)
    with cluster.client() as c:
        assert c.get("big/", prefix=True, count_only=True).count == 70


def test_the_store_is_synced_in_the_background_every_few_mib_of_writes(make_cluster):
    """Between snapshots the member syncs LMDB off its loop every STORE_SYNC_BYTES of
    applied log (4 MiB), so no sync has tens of MB to write while WAL fdatasyncs wait."""
    cluster = make_cluster(1, extra_args=["--log-level", "debug"])
    cluster.start()
    member = cluster.members[0]
    value = "v" * (256 << 10)
    with cluster.client() as client:
        for i in range(12):  # 3 MiB: not yet
            client.put(f"big/{i}", value)
        assert "store synced in the background" not in member.log_text()
        for i in range(12, 24):  # past 4 MiB
            client.put(f"big/{i}", value)
        deadline = time.monotonic() + 10
        while "store synced in the background" not in member.log_text():
            assert time.monotonic() < deadline, "no background sync after 6 MiB of writes"
            time.sleep(0.05)
        assert client.get("big/23").kvs[0].value == value.encode()
    assert "snapshot saved" not in member.log_text()  # the sync is not a snapshot
