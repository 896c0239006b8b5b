"""The client-port fuzzer against real members (a short seeded run; bench/fuzz_client.py
runs the long one): no input takes a member down, loses an acknowledged write or makes the
members' stores differ. And the fuzzer's checks do catch a member that goes down."""

from __future__ import annotations

import os

import pytest

from ..fuzzing import client_port
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
