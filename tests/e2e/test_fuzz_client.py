"""The client-port fuzzer against real members (a short seeded run; bench/fuzz_client.py
runs the long one): no input takes a member down, loses an acknowledged write or makes the
members' stores differ. And the fuzzer's checks do catch a member that goes down, and one
that forwards a proposal its leader refuses."""

from __future__ import annotations

import os
import socket

import pytest

from pyraftkv.node.peer_transport import CHANNEL_MESSAGES, FRAME, HANDSHAKE, MAGIC, VERSION
from pyraftkv.proto import raft_internal_pb2 as internal
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME

from ..fuzzing import client_port
from ..fuzzing.peer_port import FRAME_FORWARD, discover
from .harness import LocalCluster

SEEDS = [int(s) for s in os.environ.get("PYRAFTKV_FUZZ_SEEDS", "1,2").split(",")]
INPUTS = int(os.environ.get("PYRAFTKV_FUZZ_INPUTS", "1500"))


def endpoints(cluster: LocalCluster) -> list[tuple[str, int]]:
    return [("127.0.0.1", m.client_port) for m in cluster.members]


@pytest.mark.parametrize("seed", SEEDS)
def test_fuzzed_client_port_leaves_every_member_serving_and_agreeing(tmp_path, seed):
    cluster = LocalCluster(str(tmp_path), 3)
    try:
        cluster.start()
        tracked = client_port.track_writes(cluster.client())
        first_revision = tracked.writes[0][2]
        stats = client_port.run(endpoints(cluster), seed, INPUTS, first_revision)
        assert stats.inputs == INPUTS and stats.bytes_back > 0 and stats.refused == []
        assert client_port.check_cluster(cluster, tracked) == []
        assert client_port.peer_links_closed(cluster) == []
    finally:
        cluster.stop_all()


def test_the_checks_catch_a_member_that_goes_down(tmp_path, monkeypatch):
    """A member made to crash after some replies (a failpoint) is reported."""
    cluster = LocalCluster(str(tmp_path), 3)
    try:
        cluster.start()
        tracked = client_port.track_writes(cluster.client([cluster.members[1]]))
        victim = cluster.members[0]
        cluster.kill(victim)
        monkeypatch.setenv("PYRAFTKV_FAILPOINTS", "appBeforeReply=5*off->crash")
        cluster.start_member(victim)
        monkeypatch.delenv("PYRAFTKV_FAILPOINTS")
        stats = client_port.run([("127.0.0.1", victim.client_port)], 7, 300, tracked.writes[0][2])
        assert stats.refused == [f"127.0.0.1:{victim.client_port}"]
        problems = client_port.check_cluster(cluster, tracked)
        assert any(
            p.startswith(("member m1 is down", "member m1 does not answer")) for p in problems
        ), problems
    finally:
        cluster.stop_all()


def test_the_checks_catch_a_proposal_a_leader_refused(cluster):
    """A forwarded batch holding a request no member's checks let through (a DeleteRange of
    an empty key), sent to the leader's peer port as one of its followers: the leader
    closes that peer connection, and the checks report it."""
    tracked = client_port.track_writes(cluster.client())
    assert client_port.peer_links_closed(cluster) == []
    leader = cluster.wait_leader()
    follower = next(m for m in cluster.members if m is not leader)
    cluster_id, _ = discover("127.0.0.1", leader.peer_port)
    leader_id = cluster.status(leader).header.member_id
    follower_id = cluster.status(follower).header.member_id
    batch = internal.RequestBatch()
    batch.requests.add(
        member=follower_id,
        id=1,
        method=BY_NAME["DeleteRange"].number,
        body=rpc.DeleteRangeRequest(key=b"").SerializeToString(),
    )
    body = bytes((FRAME_FORWARD,)) + follower_id.to_bytes(8, "big") + batch.SerializeToString()
    hello = HANDSHAKE.pack(MAGIC, VERSION, CHANNEL_MESSAGES, cluster_id, follower_id, leader_id)
    with socket.create_connection(("127.0.0.1", leader.peer_port), timeout=5) as sock:
        sock.sendall(hello)
        assert sock.recv(1) == b"\x01"
        sock.sendall(FRAME.pack(len(body)) + body)
        sock.settimeout(5)
        assert sock.recv(1) == b""  # the leader closed it
    assert client_port.check_cluster(cluster, tracked) == []
    problems = client_port.peer_links_closed(cluster)
    assert any("forwarded a bad proposal" in p for p in problems), problems
