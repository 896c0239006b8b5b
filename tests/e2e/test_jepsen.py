"""Jepsen-style: read/write/compare-and-set clients on a 3-member cluster while a nemesis
partitions it (leader isolated, 2/1, bridge), kills -9 a member, pauses a Raft process or
an application process alone, moves the leader, slows every link and replaces a member
(removed, wiped, added back); the history must be linearizable. bench/jepsen.py runs the
same for longer, many times."""

from __future__ import annotations

import pytest

from .harness import LocalCluster
from .jepsen import FAULTS, cluster_answers, run
from .nemesis import Network


@pytest.mark.parametrize(
    ("flags", "duration_s"),
    [([], 16.0), (["--single-process"], 10.0)],  # the second kind shorter: the suite's budget
    ids=["two-process", "one"],
)
def test_history_is_linearizable_under_faults(tmp_path, flags, duration_s):
    """With --single-process members a pause of the Raft process pauses the whole member."""
    cluster = LocalCluster(str(tmp_path), 3, extra_args=flags)
    network = Network(cluster)
    try:
        cluster.start()
        result = run(cluster, network, list(FAULTS), duration_s=duration_s, hold_s=0.8, seed=9)
        text = "\n".join(result.report.lines())
        assert result.report.ok, text
        assert result.fault_errors == [], result.fault_errors
        assert result.faults == list(FAULTS)
        assert result.report.ops > 500, text
        assert cluster_answers(cluster)
    finally:
        cluster.stop_all()
