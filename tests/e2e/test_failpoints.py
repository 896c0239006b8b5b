"""A member crashed at a failpoint under load recovers: no acknowledged write lost, every
member's store hashes the same. A few points here; bench/failpoints.py runs them all.
Failpoints switched on and off on a running member."""

from __future__ import annotations

import os
import time

import pytest

from pyraftkv.failpoints import FILE_ENV

from .crash_recovery import check_recovered, crash_at
from .harness import LocalCluster

# (point, crash the leader?)
POINTS = [("raftBeforeFsync", True), ("appApplyMidBatch", False), ("appBeforeReply", True)]


def test_crash_at_failpoints_under_load(make_cluster):
    cluster = make_cluster(3)
    cluster.start()
    for n, (point, leader) in enumerate(POINTS):
        crash_at(cluster, point, f"fp{n}/", leader=leader)


def test_recovery_check_fails_on_a_lost_write(cluster):
    """The check itself can fail: a key reported acknowledged but not in the store."""
    with cluster.client() as c:
        c.put("lost/a", "v")
    check_recovered(cluster, "lost/", {"lost/a"})
    with pytest.raises(AssertionError, match="lost 1 acknowledged"):
        check_recovered(cluster, "lost/", {"lost/a", "lost/b"})


def test_failpoints_switched_on_and_off_on_a_running_member(tmp_path):
    """Through PYRAFTKV_FAILPOINTS_FILE, without a restart: a point of the application
    process slows replies while on and not after; a bad spec changes nothing; a point of
    the Raft process crashes the member; cleared, the member restarts and catches up."""
    cluster = LocalCluster(str(tmp_path), 3)
    member = cluster.members[2]
    path = member.data_dir + ".failpoints"
    member.env[FILE_ENV] = path

    def switch(spec: str) -> None:
        with open(path + ".tmp", "w") as f:
            f.write(spec)
        os.replace(path + ".tmp", path)

    def hits() -> int:
        return member.log_text().count("failpoint appBeforeReply: sleep")

    try:
        cluster.start()
        with cluster.client([member]) as c:
            c.put("k", "1")
            assert hits() == 0
            switch("appBeforeReply=sleep(300)")
            started = time.monotonic()
            assert c.get("k").kvs[0].value == b"1"
            assert time.monotonic() - started >= 0.3
            assert hits() >= 1
            switch("appBeforeReply=explode")  # refused: the sleep stays on
            before = hits()
            c.get("k")
            assert hits() > before
            assert "bad term 'explode'" in member.log_text()
            switch("")
            before = hits()
            for _ in range(5):
                c.get("k")
            assert hits() == before
        switch("raftBeforeFsync=crash")
        with cluster.client([cluster.members[0]]) as c:
            c.put("k", "2")  # the other two acknowledge; the member crashes at its fsync
        assert member.process.wait(30) != 0
        assert "failpoint raftBeforeFsync: crash" in member.log_text()
        os.unlink(path)
        cluster.start_member(member)
        with cluster.client([member]) as c:
            assert c.get("k").kvs[0].value == b"2"
    finally:
        cluster.stop_all()


@pytest.mark.parametrize("point", ["appBeforeBackendCommit", "appAnsweredBeforeApply"])
def test_an_answer_written_before_the_store_commits_survives_a_crash_there(tmp_path, point):
    """An apply answers its writes before its LMDB transaction commits, and an entry of
    one plain put even before that put is applied (the entry is already in the WAL): a
    member that dies in between has answered, and after a restart it applies the entry
    again, to the revision it answered with."""
    cluster = LocalCluster(str(tmp_path), 1)
    member = cluster.members[0]
    path = member.data_dir + ".failpoints"
    member.env[FILE_ENV] = path
    try:
        cluster.start()
        with cluster.client([member]) as c:
            c.put("k", "1")
            # put 1 is answered inside its apply batch, before that batch passes the
            # failpoint: a read answered after it shows the loop has left that batch.
            c.get("k", serializable=True)
            with open(path, "w") as f:
                f.write(f"{point}=crash")
            answered = c.put("k", "2").header.revision
        assert member.process.wait(30) != 0
        assert f"failpoint {point}: crash" in member.log_text()
        os.unlink(path)
        cluster.start_member(member)
        with cluster.client([member]) as c:
            kv = c.get("k").kvs[0]
            assert (kv.value, kv.mod_revision) == (b"2", answered)
    finally:
        cluster.stop_all()


def test_a_follower_that_committed_with_the_leader_and_answered_survives_a_crash(tmp_path):
    """One writer through a follower: the follower commits with the leader (told the
    leader's WAL holds the write) and answers before it applies; killed there, it comes
    back with the write at the revision answered, and the leader has it too."""
    cluster = LocalCluster(str(tmp_path), 3)
    path = os.path.join(str(tmp_path), "follower.failpoints")
    for member in cluster.members:
        member.env[FILE_ENV] = path  # only the member whose client waits answers early
    try:
        cluster.start()
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        with cluster.client([follower]) as c:
            for i in range(20):  # the leader sees one writer, one write at a time
                c.put("k", str(i))
            c.get("k", serializable=True)  # the last put's apply is over (see above)
            with open(path, "w") as f:
                f.write("appAnsweredBeforeApply=crash")
            answered = c.put("k", "last").header.revision
        assert follower.process.wait(30) != 0
        assert "failpoint appAnsweredBeforeApply: crash" in follower.log_text()
        os.unlink(path)
        cluster.start_member(follower)
        for member in (follower, leader):
            with cluster.client([member]) as c:
                kv = c.get("k").kvs[0]
                assert (kv.value, kv.mod_revision) == (b"last", answered), member.name
    finally:
        cluster.stop_all()
