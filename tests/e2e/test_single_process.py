"""Members started with ``--single-process``: the Raft side runs on the application's own
event loop (a LocalLink instead of the shared memory rings), so a member is one process.
Real members on loopback: one process each, writes, linearizable and serializable reads,
watches, kill -9 and SIGTERM with restarts, a cluster mixing both kinds of member, and the
refusal to start on a corrupt write-ahead log."""

from __future__ import annotations

import contextlib
import glob
import os
import subprocess
import threading
import time

from pyraftkv import Client
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError

from .harness import LocalCluster, Member, child_pids, put_retrying

SINGLE = "--single-process"


def cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return "(gone)"


def raft_children(member: Member) -> list[str]:
    return [c for pid in child_pids(member.process.pid) if "raft_process" in (c := cmdline(pid))]


def assert_one_process(member: Member) -> None:
    assert member.running, f"{member.name} died:\n{member.log_text()[-3000:]}"
    children = {pid: cmdline(pid) for pid in child_pids(member.process.pid)}
    assert children == {}, f"{member.name} (pid {member.process.pid}) has children: {children}"
    # Its log says which side wrote each line: one process writes them all as "member".
    log = member.log_text()
    assert "[member] pyraftkv.raft" in log and "[raft]" not in log and "[app]" not in log


def member_id(cluster: LocalCluster, member: Member) -> int:
    status = cluster.status(member, 2.0)
    assert status is not None, f"{member.name} does not answer"
    return status.header.member_id


def value_of(client: Client, key: str, **options) -> bytes | None:
    response = client.get(key, **options)
    return response.kvs[0].value if response.kvs else None


def wait_serializable(member: Member, key: str, value: bytes, timeout: float = 15.0) -> None:
    """Until ``member`` itself (a serializable read, answered from its own store) has
    ``key`` = ``value``."""
    deadline = time.monotonic() + timeout
    seen = None
    with Client([member.endpoint], timeout=2, connect_timeout=1) as client:
        while time.monotonic() < deadline:
            with contextlib.suppress(ApiError, ConnectionLost, OSError, TimeoutError):
                seen = value_of(client, key, serializable=True)
                if seen == value:
                    return
            time.sleep(0.05)
    raise AssertionError(f"{member.name} has {key}={seen!r}, not {value!r}, after {timeout}s")


def serializable_values(member: Member, prefix: str) -> dict[bytes, bytes]:
    with Client([member.endpoint], timeout=5) as client:
        response = client.get(prefix, prefix=True, serializable=True)
    return {kv.key: kv.value for kv in response.kvs}


def test_three_single_process_members_write_read_and_watch(make_cluster):
    cluster = make_cluster(3, extra_args=[SINGLE])
    cluster.start()
    for member in cluster.members:
        assert_one_process(member)
    leader = cluster.wait_leader()
    first, second = [m for m in cluster.members if m is not leader]

    watch_client = cluster.client([second], timeout=5)
    watch = watch_client.watch("sp/", prefix=True)
    via_leader = cluster.client([leader], timeout=5)
    via_follower = cluster.client([first], timeout=5)
    written = []  # (key, value, revision) in the order acknowledged
    for i in range(10):
        for client, kind in ((via_leader, "leader"), (via_follower, "follower")):
            key, value = f"sp/{i:02}/{kind}", f"{kind}-{i}"
            revision = client.put(key, value).header.revision
            assert not written or revision > written[-1][2]
            written.append((key.encode(), value.encode(), revision))
    # The last write went through the leader; the other follower's linearizable read (its
    # default) must see it at once, without waiting for it to apply anything on its own.
    last = via_leader.put("sp/last", "final").header.revision
    written.append((b"sp/last", b"final", last))
    reader = cluster.client([second], timeout=5)
    response = reader.get("sp/last")
    assert [(kv.value, kv.mod_revision) for kv in response.kvs] == [(b"final", last)]
    assert response.header.revision >= last
    assert value_of(reader, "sp/00/follower") == b"follower-0"

    events = []
    for _ in written:
        events.append(watch.get(timeout=10))
    watch.cancel()
    assert [(e.type, e.kv.key, e.kv.value, e.kv.mod_revision) for e in events] == [
        (0, key, value, revision) for key, value, revision in written
    ]
    for member in cluster.members:  # still one process each after the traffic
        assert_one_process(member)


def test_kill_9_of_the_single_process_leader_loses_no_acknowledged_write(make_cluster):
    cluster = make_cluster(3, extra_args=[SINGLE])
    cluster.start()
    leader = cluster.wait_leader()
    others = [m for m in cluster.members if m is not leader]
    before = cluster.client([leader], timeout=5)
    for i in range(20):
        put_retrying(before, f"before/{i:03}", f"v{i}")

    # A writer keeps writing through the leader while it is killed: every write it saw
    # acknowledged must survive.
    acked: dict[bytes, bytes] = {}
    stop = threading.Event()
    failure: list[BaseException] = []

    def write() -> None:
        with Client([leader.endpoint], timeout=2, connect_timeout=1) as client:
            i = 0
            while not stop.is_set():
                key, value = f"during/{i:05}", f"d{i}"
                try:
                    client.put(key, value)
                except (ApiError, ConnectionLost, OSError, TimeoutError) as exc:
                    failure.append(exc)
                    return
                acked[key.encode()] = value.encode()
                i += 1

    writer = threading.Thread(target=write)
    writer.start()
    time.sleep(1.0)
    cluster.kill(leader)
    stop.set()
    writer.join(10)
    assert not writer.is_alive()
    assert len(acked) > 10, f"the writer barely wrote before the kill ({len(acked)} writes)"
    assert failure, "the writer never noticed its member was killed"

    new_leader = cluster.wait_leader(among=others)
    assert new_leader is not leader
    survivors = cluster.client(others, timeout=5)
    for i in range(10):
        survivors.put(f"after/{i:03}", f"a{i}")
    latest = survivors.put("after/latest", "L").header.revision

    cluster.start_member(leader)
    assert_one_process(leader)
    wait_serializable(leader, "after/latest", b"L")
    with Client([leader.endpoint], timeout=5) as client:
        response = client.get("after/latest", serializable=True)
        assert response.kvs[0].mod_revision == latest
    # Everything acknowledged, before the kill and after, is on the restarted member...
    expected = {f"before/{i:03}".encode(): f"v{i}".encode() for i in range(20)}
    expected |= acked
    expected |= {f"after/{i:03}".encode(): f"a{i}".encode() for i in range(10)}
    expected[b"after/latest"] = b"L"
    on_restarted = {}
    for prefix in ("before/", "during/", "after/"):
        on_restarted |= serializable_values(leader, prefix)
    missing = {k: v for k, v in expected.items() if on_restarted.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged writes missing on the restarted member"
    # ... and readable (linearizable) through the whole cluster.
    everything = cluster.client(timeout=5)
    found = {}
    for prefix in ("before/", "during/", "after/"):
        found |= {kv.key: kv.value for kv in everything.get(prefix, prefix=True).kvs}
    missing = {k: v for k, v in expected.items() if found.get(k) != v}
    assert not missing, f"{len(missing)} acknowledged writes lost: {sorted(missing)[:5]}"
    assert cluster.wait_leader() in cluster.members


def test_sigterm_exits_0_and_a_restart_serves_the_data_from_disk(make_cluster):
    cluster = make_cluster(3, extra_args=[SINGLE])
    cluster.start()
    leader = cluster.wait_leader()
    client = cluster.client(timeout=5)
    for i in range(15):
        client.put(f"kept/{i:02}", f"k{i}")

    # The leader hands leadership over, then stops cleanly.
    assert cluster.terminate(leader) == 0, leader.log_text()[-3000:]
    assert "transferring leadership before stopping" in leader.log_text()
    assert leader.log_text().rstrip().endswith("pyraftkv.server: stopped")
    others = [m for m in cluster.members if m is not leader]
    cluster.wait_leader(among=others, timeout=10)
    cluster.client(others, timeout=5).put("kept/last", "written-with-one-member-down")

    # The rest stop too: whatever a restart serves, it read from its own data dir.
    for member in others:
        assert cluster.terminate(member) == 0, member.log_text()[-3000:]
    for member in cluster.members:
        cluster.start_member(member, wait=False)
    for member in cluster.members:
        cluster.wait_serving(member)
        assert_one_process(member)
    cluster.wait_leader()
    expected = {f"kept/{i:02}".encode(): f"k{i}".encode() for i in range(15)}
    expected[b"kept/last"] = b"written-with-one-member-down"
    for member in cluster.members:
        wait_serializable(member, "kept/last", b"written-with-one-member-down")
        assert serializable_values(member, "kept/") == expected, member.name
    assert value_of(cluster.client(timeout=5), "kept/07") == b"k7"


def test_a_mixed_cluster_of_one_and_two_process_members(make_cluster):
    cluster = make_cluster(3)
    two_process, *single = cluster.members
    for member in single:
        member.extra_args.append(SINGLE)
    cluster.start()
    for member in single:
        assert_one_process(member)
    # The two-process member does have its Raft child (so the check above can see one).
    assert len(raft_children(two_process)) == 1, child_pids(two_process.process.pid)
    assert "[raft] pyraftkv.raft" in two_process.log_text()

    ids = {m.name: member_id(cluster, m) for m in cluster.members}
    # Each member leads in turn: a two-process leader with single-process followers, and
    # a single-process leader with one follower of each kind.
    for target in cluster.members:
        leader = cluster.wait_leader()
        if leader is not target:
            with Client([leader.endpoint], timeout=5) as client:
                client.move_leader(ids[target.name])
            deadline = time.monotonic() + 10
            while (leader := cluster.wait_leader()) is not target:
                assert time.monotonic() < deadline, f"leadership never moved to {target.name}"
                time.sleep(0.05)
        revisions = {}
        for writer in cluster.members:
            with Client([writer.endpoint], timeout=5) as client:
                key = f"mixed/{target.name}/{writer.name}"
                revisions[key] = client.put(key, f"by {writer.name}").header.revision
        for key, revision in revisions.items():
            value = f"by {key.rsplit('/', 1)[1]}".encode()
            for reader in cluster.members:
                with Client([reader.endpoint], timeout=5) as client:
                    response = client.get(key)  # linearizable, through this member
                    assert [(kv.value, kv.mod_revision) for kv in response.kvs] == [
                        (value, revision)
                    ], (key, reader.name)
    for member in cluster.members:
        wait_serializable(member, "mixed/m3/m3", b"by m3")
        assert len(serializable_values(member, "mixed/")) == 9, member.name
    assert len(raft_children(two_process)) == 1
    for member in single:
        assert_one_process(member)


def _flip_middle_of_the_wal(member: Member) -> str:
    (segment,) = glob.glob(os.path.join(member.data_dir, "member", "wal", "*.wal"))
    with open(segment, "rb") as f:
        data = f.read()
    end = len(data.rstrip(b"\0"))  # segments are preallocated with zeros
    assert end > 1000, f"too little in the WAL to damage its middle ({end} bytes)"
    with open(segment, "r+b") as f:
        f.seek(end // 2)
        f.write(bytes([data[end // 2] ^ 0xFF]))
    return segment


def _start_and_wait_exit(cluster: LocalCluster, member: Member) -> tuple[int, str]:
    """Start ``member``; its exit status and what it logged on this start."""
    already = len(member.log_text())
    cluster.start_member(member, wait=False)
    try:
        code = member.process.wait(30)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{member.name} kept running:\n{member.log_text()[-3000:]}") from None
    return code, member.log_text()[already:]


def test_a_corrupt_wal_stops_the_start_like_a_two_process_member(make_cluster):
    cluster = make_cluster(1, extra_args=[SINGLE])
    cluster.start()
    (member,) = cluster.members
    with cluster.client(timeout=5) as client:
        for i in range(30):
            client.put(f"w/{i:02}", "x" * 100)
    assert cluster.terminate(member) == 0
    segment = _flip_middle_of_the_wal(member)

    code, output = _start_and_wait_exit(cluster, member)
    assert code != 0, output
    assert f"corrupt write-ahead log: {segment} at offset" in output, output
    assert "CRITICAL [member]" in output, output
    assert "serving clients" not in output, output
    assert "pyraftkv: the Raft side could not start (exit status 2" in output, output
    assert cluster.status(member, 0.5) is None

    # The same data dir in a two-process member: the same refusal, the same status.
    member.extra_args.remove(SINGLE)
    two_code, two_output = _start_and_wait_exit(cluster, member)
    assert two_code == code, two_output

    def reason(text: str) -> str:
        (line,) = [x for x in text.splitlines() if "corrupt write-ahead log" in x]
        return line.split("pyraftkv.", 1)[1].split(": ", 1)[1]

    assert reason(two_output) == reason(output)
    assert "serving clients" not in two_output
