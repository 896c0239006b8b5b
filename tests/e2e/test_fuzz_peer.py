"""The peer-port fuzzer against real members (a short seeded run; bench/fuzz_peer.py runs
the long one): no bytes on the peer port take a member down, lose an acknowledged write or
make the members' stores differ."""

from __future__ import annotations

import pytest

from ..fuzzing import client_port, peer_port
from .harness import LocalCluster


@pytest.mark.parametrize("flags", [[], ["--single-process"]], ids=["two-process", "one"])
def test_fuzzed_peer_port_leaves_every_member_serving_and_agreeing(tmp_path, flags):
    """Also against single-process members, whose Raft side shares the process that
    serves clients: a peer's bytes must not stop it either."""
    cluster = LocalCluster(str(tmp_path), 3, extra_args=flags)
    try:
        cluster.start()
        tracked = client_port.track_writes(cluster.client())
        cluster_id, members = peer_port.discover("127.0.0.1", cluster.members[0].peer_port)
        assert len(members) == 3
        targets = []
        for member in cluster.members:
            status = cluster.status(member)
            targets.append(
                peer_port.Target(
                    "127.0.0.1", member.peer_port, cluster_id, status.header.member_id, members
                )
            )
        stats = peer_port.run(targets, seed=1, inputs=3000)
        assert stats.accepted > stats.sessions // 3  # most reached the frame handling
        assert client_port.check_cluster(cluster, tracked) == []
        for member in cluster.members:
            assert "error handling what it sent" not in member.log_text(), member.name
    finally:
        cluster.stop_all()
