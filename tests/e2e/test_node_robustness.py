"""No input takes a member down (node side): odd but legal requests answered as etcd 3.4
answers them, membership growth one voter at a time, and peer-port messages that are
malformed or come from strangers. Real members on loopback; one 3-member cluster for the
module where the test leaves it as it found it."""

from __future__ import annotations

import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import zstandard

from pyraftkv import Client
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.ctl import run
from pyraftkv.errors import ApiError
from pyraftkv.node.peer_transport import (
    ACCEPT,
    CHANNEL_MESSAGES,
    CHANNEL_SNAPSHOT,
    FRAME,
    encode_handshake,
)
from pyraftkv.node.raft_process import FRAME_FORWARD, FRAME_RAFT
from pyraftkv.node.snapshot_transfer import TRAILER
from pyraftkv.proto import raft_internal_pb2 as internal
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME
from pyraftkv.raft import codec
from pyraftkv.raft.types import (
    Entry,
    EntryType,
    Membership,
    Message,
    MessageType,
    SnapshotMeta,
)

from ..ctl_etcd_cluster import Result, wait_until
from .harness import LocalCluster, Member, free_ports


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = LocalCluster(str(tmp_path_factory.mktemp("robust")), 3)
    c.start()
    yield c
    c.stop_all()


def ctl(cluster: LocalCluster, *args: str) -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    endpoints = ",".join(cluster.endpoints)
    code = run([f"--endpoints={endpoints}", *args], io.BytesIO(), out, err, environ={})
    return Result(code, out.getvalue(), err.getvalue())


def all_running(cluster: LocalCluster) -> None:
    time.sleep(0.3)
    for member in cluster.members:
        assert member.running, f"{member.name} died:\n{member.log_text()[-3000:]}"


PUT = BY_NAME["Put"].number

COMPACTED = (
    b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
    b"Error: watch is canceled by the server\n"
)


def test_a_watch_from_a_negative_revision_is_answered_as_etcd_does(cluster, tmp_path):
    """etcd 3.4 compares the start revision with its compaction point (-1 before any
    compaction): -1 on a never-compacted store watches from now on, anything lower (or -1
    after a compaction) is canceled as compacted."""
    out_path = tmp_path / "watch.out"
    endpoints = ",".join(cluster.endpoints)
    with open(out_path, "wb") as out:
        watcher = subprocess.Popen(
            [sys.executable, "-m", "pyraftkv.ctl", f"--endpoints={endpoints}"]
            + ["watch", "neg/a", "--rev=-1"],
            stdout=out,
            stderr=subprocess.PIPE,
            env={**os.environ, "ETCDCTL_API": "3"},
        )
    try:
        # Put until the watcher (a process still starting) prints an event: it watches
        # from "now", whenever its watch was created.
        def seen() -> bool:
            assert ctl(cluster, "put", "neg/a", "x").code == 0
            time.sleep(0.2)
            return out_path.read_bytes().startswith(b"PUT\nneg/a\nx\n")

        wait_until(seen, timeout=30, what="the event")
    finally:
        watcher.send_signal(signal.SIGINT)
        watcher.communicate(timeout=10)
    all_running(cluster)
    below = ctl(cluster, "watch", "neg/a", "--rev=-5")
    assert (below.code, below.err) == (5, COMPACTED)
    assert ctl(cluster, "put", "neg/a", "2").code == 0
    assert ctl(cluster, "compaction", "2").code == 0
    after = ctl(cluster, "watch", "neg/a", "--rev=-1")
    assert (after.code, after.err) == (5, COMPACTED)
    all_running(cluster)


def test_member_add_with_https_is_accepted_and_bad_urls_refused_as_etcd_does(cluster):
    with cluster.client() as c:
        for url in ("ftp://h:1", "http://h", "http://h:1/x", "h:1"):
            with pytest.raises(ApiError, match="etcdserver: given member URLs are invalid"):
                c.call("MemberAdd", rpc.MemberAddRequest(peerURLs=[url]), timeout=10)
        all_running(cluster)
        added = c.call(
            "MemberAdd",
            rpc.MemberAddRequest(peerURLs=["https://127.0.0.1:1"], isLearner=True),
            timeout=10,
        )
        assert list(added.member.peerURLs) == ["https://127.0.0.1:1"]
        all_running(cluster)
        c.call("MemberRemove", rpc.MemberRemoveRequest(ID=added.member.ID), timeout=10)
        assert len(c.member_list().members) == 3
        c.put("after-https-add", "ok")
    all_running(cluster)


def test_promoting_a_learner_that_is_not_in_sync_is_refused_as_etcd_does(cluster):
    _, peer_port = free_ports(2)  # nobody listens there: the learner never catches up
    with cluster.client() as c:
        added = c.call(
            "MemberAdd",
            rpc.MemberAddRequest(peerURLs=[f"http://127.0.0.1:{peer_port}"], isLearner=True),
            timeout=10,
        )
        try:
            for _ in range(2):  # whichever member takes it, the leader decides
                with pytest.raises(
                    ApiError,
                    match="^etcdserver: can only promote a learner member which is in sync "
                    "with leader$",
                ):
                    c.call("MemberPromote", rpc.MemberPromoteRequest(ID=added.member.ID))
            learner = next(m for m in c.member_list().members if m.ID == added.member.ID)
            assert learner.isLearner
        finally:
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=added.member.ID), timeout=10)
    all_running(cluster)


def _add_and_start(cluster: LocalCluster, name: str, learner: bool = False) -> Member:
    """MemberAdd, and start the newcomer while the add waits: adding the second voter
    commits only once the newcomer votes for it (the core counts a member from the moment
    its entry is appended)."""
    client_port, peer_port = free_ports(2)
    url = f"http://127.0.0.1:{peer_port}"
    newcomer = Member(
        name,
        client_port,
        peer_port,
        str(cluster.members[0].data_dir) + f"-{name}",
        ["--initial-cluster-state", "existing"],
    )
    with cluster.client() as c, ThreadPoolExecutor(1) as pool:
        request = rpc.MemberAddRequest(peerURLs=[url], isLearner=learner)
        adding = pool.submit(c.call, "MemberAdd", request, timeout=20)
        time.sleep(1.0)  # the entry is appended: the newcomer's peer query finds itself
        cluster.initial_cluster += f",{name}={url}"
        cluster.members.append(newcomer)
        cluster.start_member(newcomer, wait=False)
        added = adding.result()
    assert list(added.member.peerURLs) == [url]
    cluster.wait_serving(newcomer)
    return newcomer


class _Writer(threading.Thread):
    """Puts distinct keys one after another through whichever members are running, until
    stopped; remembers which puts were acknowledged (and in which phase of the test)."""

    def __init__(self, cluster: LocalCluster) -> None:
        super().__init__(daemon=True)
        self.cluster, self.phase = cluster, "start"
        self.acked: dict[bytes, bytes] = {}
        self.counts: Counter[str] = Counter()  # acknowledged puts by phase
        self.stop = threading.Event()

    def wait_acked(self, phase: str, timeout: float = 15.0) -> None:
        """Until a put of ``phase`` is acknowledged (the cluster takes writes again)."""
        deadline = time.monotonic() + timeout
        while not self.counts[phase]:
            assert time.monotonic() < deadline, f"no write acknowledged in phase {phase}"
            time.sleep(0.02)

    def _endpoints(self) -> list[str]:
        return [m.endpoint for m in self.cluster.members if m.running]

    def run(self) -> None:
        i = 0
        while not self.stop.is_set():
            endpoints = self._endpoints()
            try:
                with Client(endpoints, timeout=5) as c:
                    while not self.stop.is_set() and endpoints == self._endpoints():
                        key, value = f"load/{i:06d}", self.phase
                        i += 1  # a put that fails may or may not have applied: a new key
                        c.put(key, value)
                        self.acked[key.encode()] = value.encode()
                        self.counts[value] += 1
            except (ApiError, ConnectionLost, OSError, TimeoutError):
                time.sleep(0.05)


def test_a_cluster_grows_to_five_and_shrinks_to_three_under_writes(make_cluster):
    """1 -> 3 voters one at a time, a fourth as a learner promoted once caught up (etcd's
    safer way), a fifth voter; then back to 3: a follower removed, then the leader itself
    (it hands leadership over once its removal commits). A writer runs throughout: no
    acknowledged write is lost, and writes are acknowledged in every phase."""
    cluster = make_cluster(1)
    cluster.start()
    writer = _Writer(cluster)
    writer.start()
    removed: list[Member] = []
    try:
        for name in ("m2", "m3"):
            writer.wait_acked(writer.phase)
            writer.phase = f"grown-{name}"
            _add_and_start(cluster, name)
            cluster.wait_leader()
        writer.wait_acked(writer.phase)
        writer.phase = "learner"
        learner = _add_and_start(cluster, "m4", learner=True)
        cluster.wait_applied(learner, cluster.status(cluster.wait_leader()).raftIndex)
        learner_id = cluster.status(learner).header.member_id
        with cluster.client() as c:
            promoted = c.call("MemberPromote", rpc.MemberPromoteRequest(ID=learner_id), timeout=20)
        assert {m.ID: m.isLearner for m in promoted.members}[learner_id] is False
        writer.wait_acked(writer.phase)
        writer.phase = "promoted"
        _add_and_start(cluster, "m5")
        writer.phase = "five"
        for which in ("follower", "leader"):
            writer.wait_acked(writer.phase)
            leader = cluster.wait_leader()
            gone = leader if which == "leader" else next(m for m in cluster.members if m != leader)
            gone_id = cluster.status(gone).header.member_id
            with cluster.client([leader]) as c:
                left = c.call("MemberRemove", rpc.MemberRemoveRequest(ID=gone_id), timeout=20)
            assert gone_id not in [m.ID for m in left.members]
            cluster.members.remove(gone)
            removed.append(gone)
            writer.phase = f"without-{which}"
            cluster.wait_leader()  # among the members left
            status = cluster.status(gone)  # a removed leader has handed over
            assert status is None or status.leader != gone_id
        writer.wait_acked(writer.phase)
        writer.stop.set()
        writer.join(30)
        assert not writer.is_alive()
        index = cluster.status(cluster.wait_leader()).raftIndex
        for member in cluster.members:
            cluster.wait_applied(member, index)
            with Client([member.endpoint]) as c:
                got = c.get("load/", prefix=True, serializable=True)
                stored = {kv.key: kv.value for kv in got.kvs}
                assert {k: stored.get(k) for k in writer.acked} == writer.acked, member.name
                assert len(c.member_list().members) == 3
    finally:
        writer.stop.set()
        for member in removed:
            cluster.kill(member)


# -- the peer port ---------------------------------------------------------------------------


def _ids(cluster: LocalCluster) -> tuple[int, dict[str, int]]:
    """The cluster id and each member's id (by name), as anyone can learn them."""
    ids = {m.name: cluster.status(m).header.member_id for m in cluster.members}
    return cluster.status(cluster.members[0]).header.cluster_id, ids


def _peer_socket(member: Member, channel: int, cluster_id: int, sender: int, receiver: int):
    sock = socket.create_connection(("127.0.0.1", member.peer_port), timeout=5)
    sock.sendall(encode_handshake(channel, cluster_id, sender, receiver))
    return sock


def _closed(sock: socket.socket) -> bool:
    """Whether the member closed the connection (reading anything it sent first)."""
    sock.settimeout(5)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass
    return True


def _send_frames(sock: socket.socket, *frames: bytes) -> None:
    sock.sendall(b"".join(FRAME.pack(len(f)) + f for f in frames))


def test_a_stranger_is_refused_at_the_handshake(cluster):
    cluster_id, ids = _ids(cluster)
    with _peer_socket(cluster.members[0], CHANNEL_MESSAGES, cluster_id, 0x5EED, ids["m1"]) as s:
        answer = s.recv(200)
    assert answer[:1] == b"\x00" and b"5eed is not a member" in answer


def test_bad_peer_messages_close_that_connection_and_the_member_serves_on(cluster):
    cluster_id, ids = _ids(cluster)
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    term = cluster.status(leader).header.raft_term
    leader_id, follower_id = ids[leader.name], ids[follower.name]
    # A heartbeat claiming a commit index past the follower's log (an assert in the core).
    heartbeat = Message(MessageType.HEARTBEAT, follower_id, leader_id, term, commit=1 << 40)
    with _peer_socket(follower, CHANNEL_MESSAGES, cluster_id, leader_id, follower_id) as s:
        assert s.recv(1) == ACCEPT
        _send_frames(s, bytes((FRAME_RAFT,)) + codec.encode_message(heartbeat))
        assert _closed(s)
    # An append whose conf-change entry does not decode (it would follow the log exactly).
    at = cluster.status(follower)
    garbage = Entry(term, at.raftIndex + 1, EntryType.CONF_CHANGE, b"\xff\xff not a change")
    append = Message(
        MessageType.APP,
        follower_id,
        leader_id,
        term,
        log_term=term,
        index=at.raftIndex,
        commit=at.raftIndex,
        entries=(garbage,),
    )
    with _peer_socket(follower, CHANNEL_MESSAGES, cluster_id, leader_id, follower_id) as s:
        assert s.recv(1) == ACCEPT
        _send_frames(s, bytes((FRAME_RAFT,)) + codec.encode_message(append))
        assert _closed(s)
    # A raft message naming another sender than the connection's.
    forged = heartbeat._replace(sender=ids[next(n for n in ids if n not in (leader.name,))])
    with _peer_socket(follower, CHANNEL_MESSAGES, cluster_id, leader_id, follower_id) as s:
        assert s.recv(1) == ACCEPT
        _send_frames(s, bytes((FRAME_RAFT,)) + codec.encode_message(forged))
        assert _closed(s)
    # Forwarded proposals the leader must not propose: garbage, an unknown method, a put
    # without a key. Any of them committed would fail to apply on every member.
    bad_batches = [
        b"\xff\xfe garbage",
        internal.RequestBatch(
            requests=[internal.InternalRequest(member=follower_id, id=1, method=77)]
        ).SerializeToString(),
        internal.RequestBatch(
            requests=[
                internal.InternalRequest(
                    member=follower_id,
                    id=2,
                    method=PUT,
                    body=b"\x12\x01v",  # value, no key
                )
            ]
        ).SerializeToString(),
    ]
    for batch in bad_batches:
        with _peer_socket(leader, CHANNEL_MESSAGES, cluster_id, follower_id, leader_id) as s:
            assert s.recv(1) == ACCEPT
            _send_frames(s, bytes((FRAME_FORWARD,)) + follower_id.to_bytes(8, "big") + batch)
            assert _closed(s)
    # A snapshot whose checksum does not match what arrived.
    meta = SnapshotMeta(1 << 30, term, Membership(frozenset(ids.values())))
    snap = Message(MessageType.SNAP, follower_id, leader_id, term, snapshot=meta)
    chunk = zstandard.ZstdCompressor().compress(b"not a store" * 100)
    with _peer_socket(follower, CHANNEL_SNAPSHOT, cluster_id, leader_id, follower_id) as s:
        assert s.recv(1) == ACCEPT
        _send_frames(s, codec.encode_message(snap), chunk, b"", TRAILER.pack(1100, 12345))
        assert s.recv(1) == b"\x00"
    all_running(cluster)
    with cluster.client() as c:
        c.put("after-bad-peers", "ok")
        revision = c.get("after-bad-peers").header.revision
    for member in cluster.members:
        cluster.wait_applied(member, cluster.status(leader).raftIndex)
        with Client([member.endpoint]) as c:
            got = c.get("after-bad-peers", serializable=True)
            assert got.kvs[0].value == b"ok" and got.header.revision == revision
    all_running(cluster)


# -- snapshots ----------------------------------------------------------------------------


def _fill(client: Client, prefix: str, count: int) -> dict[bytes, bytes]:
    written = {}
    for i in range(count):
        key, value = f"{prefix}{i:04d}", f"v{i}"
        client.put(key, value)
        written[key.encode()] = value.encode()
    return written


def _has_all(cluster: LocalCluster, member: Member, prefix: str, written: dict) -> None:
    cluster.wait_applied(member, cluster.status(cluster.wait_leader()).raftIndex)
    with Client([member.endpoint]) as c:
        got = c.get(prefix, prefix=True, serializable=True)
    assert {kv.key: kv.value for kv in got.kvs} == written, member.name


def test_two_followers_needing_a_snapshot_at_once_both_get_one(make_cluster):
    """Both ask at the same applied index: the leader makes (or shares) files without a
    name collision, and stays up."""
    cluster = make_cluster(5, snapshot_count=40)
    cluster.start()
    leader = cluster.wait_leader()
    behind = [m for m in cluster.members if m is not leader][:2]
    for member in behind:
        cluster.kill(member)
    with cluster.client([leader]) as c:
        written = _fill(c, "two/", 150)
    for member in behind:
        cluster.start_member(member, wait=False)
    for member in behind:
        cluster.wait_serving(member)
        _has_all(cluster, member, "two/", written)
    assert "installed snapshot" in behind[0].log_text()
    all_running(cluster)


def test_a_store_ahead_of_its_wal_restarts_from_the_store(make_cluster):
    """A stop between installing a received snapshot into the store and recording it in the
    WAL leaves the store ahead of the WAL: the member restarts from its store. Made here by
    giving a lagging member the store of one that applied more (they are all alike)."""
    cluster = make_cluster(3)
    cluster.start()
    leader = cluster.wait_leader()
    lagging = next(m for m in cluster.members if m is not leader)
    with cluster.client([leader]) as c:
        written = _fill(c, "ahead/", 5)
        cluster.kill(lagging)
        written.update(_fill(c, "ahead/x", 20))
    for member in cluster.members:
        if member.running:
            cluster.kill(member)
    source = os.path.join(leader.data_dir, "member", "db", "data.mdb")
    shutil.copyfile(source, os.path.join(lagging.data_dir, "member", "db", "data.mdb"))
    cluster.start()
    with cluster.client() as c:
        c.put("ahead/z", "after")
    written[b"ahead/z"] = b"after"
    _has_all(cluster, lagging, "ahead/", written)
    assert "recording its state as a snapshot" in lagging.log_text()
