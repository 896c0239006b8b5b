"""The dashboard's view of a cluster, from hand-made polls (pyraftkv/dashboard/state.py)."""

from __future__ import annotations

import math

import pytest

from pyraftkv.dashboard.state import (
    ClusterView,
    MemberSample,
    bucket_delta,
    histogram,
    parse_metrics,
    quantile,
)

METRICS = """\
# HELP etcd_disk_wal_fsync_duration_seconds fdatasync latencies of the write-ahead log.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 2
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.002"} 6
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 8
etcd_disk_wal_fsync_duration_seconds_sum 0.02
etcd_disk_wal_fsync_duration_seconds_count 8
pyraftkv_write_stage_duration_seconds_bucket{stage="apply",le="0.001"} 4
pyraftkv_write_stage_duration_seconds_bucket{stage="apply",le="+Inf"} 4
pyraftkv_requests_total{method="Range"} 12
not a sample line
etcd_debugging_mvcc_current_revision 40
"""


def test_metrics_text_is_parsed_into_samples_and_histograms() -> None:
    samples = parse_metrics(METRICS)
    assert samples['pyraftkv_requests_total{method="Range"}'] == 12
    assert samples["etcd_debugging_mvcc_current_revision"] == 40
    assert "not a sample" not in " ".join(samples)
    assert histogram(samples, "etcd_disk_wal_fsync_duration_seconds") == [
        (0.001, 2),
        (0.002, 6),
        (math.inf, 8),
    ]
    assert histogram(samples, "pyraftkv_write_stage_duration_seconds", 'stage="apply"') == [
        (0.001, 4),
        (math.inf, 4),
    ]


def test_quantiles_interpolate_inside_the_bucket() -> None:
    buckets = [(1.0, 2), (2.0, 6), (4.0, 10), (math.inf, 10)]
    assert quantile(buckets, 0.5) == pytest.approx(1.75)  # rank 5: 3/4 into (1, 2]
    assert quantile(buckets, 0.9) == pytest.approx(3.5)  # rank 9: 3/4 into (2, 4]
    assert quantile(buckets, 0.1) == pytest.approx(0.5)  # rank 1: half of (0, 1]
    assert quantile([(1.0, 0), (math.inf, 4)], 0.5) == 1.0  # above every bound
    assert quantile([(1.0, 0), (math.inf, 0)], 0.5) is None


def test_bucket_deltas_are_what_was_seen_between_scrapes() -> None:
    old = [(1.0, 2), (math.inf, 3)]
    assert bucket_delta([(1.0, 5), (math.inf, 9)], old) == [(1.0, 3), (math.inf, 6)]
    restarted = [(1.0, 1), (math.inf, 1)]
    assert bucket_delta(restarted, old) == restarted  # a counter went back: take the new


def status(member_id: int, leader: int, term: int = 2, index: int = 10) -> dict:
    return {
        "header": {"member_id": member_id},
        "leader": leader,
        "raftTerm": term,
        "raftIndex": index,
        "raftAppliedIndex": index,
        "dbSize": 4096,
        "dbSizeInUse": 2048,
        "isLearner": False,
        "errors": [],
    }


MEMBERS = [{"ID": 1, "name": "m1"}, {"ID": 2, "name": "m2"}, {"ID": 3, "name": "m3"}]


def poll(leader: int, revision: float, up=(1, 2, 3), members=MEMBERS, term: int = 2):
    return [
        MemberSample(
            f"e{i}",
            status(i, leader, term) if i in up else None,
            {
                "etcd_debugging_mvcc_current_revision": revision,
                'pyraftkv_requests_total{method="Range"}': revision / 2,
            },
            members=members,
        )  # fmt: skip
        if i in up
        else MemberSample(f"e{i}", None, error="connection refused")
        for i in (1, 2, 3)
    ]


def test_rows_rates_and_the_event_log_follow_the_polls() -> None:
    now = [100.0]
    view = ClusterView(["e1", "e2", "e3"], clock=lambda: now[0])
    first = view.update(poll(leader=1, revision=10))
    assert first["leader"] == "m1"
    assert [r["role"] for r in first["members"]] == ["leader", "follower", "follower"]
    assert first["writes_per_s"] is None  # one poll: no rate yet
    assert [e["text"] for e in first["events"]] == ["m1 (1) is the leader"]

    now[0] = 101.0
    state = view.update(poll(leader=1, revision=110))
    assert state["writes_per_s"] == 100.0  # revisions per second on the leader
    assert state["reads_per_s"] == 150.0  # Range requests per second, all members

    now[0] = 102.0
    state = view.update(poll(leader=2, revision=120, up=(2, 3), term=3))
    assert state["leader"] == "m2"
    roles = {r["endpoint"]: r["role"] for r in state["members"]}
    assert roles == {"e1": "down", "e2": "leader", "e3": "follower"}
    assert {e["text"] for e in state["events"][:2]} == {
        "m2 (2) became the leader",
        "e1 stopped answering",
    }

    now[0] = 103.0
    grown = [*MEMBERS, {"ID": 4, "name": "m4"}]
    state = view.update(poll(leader=2, revision=130, members=grown, term=3))
    assert {e["text"] for e in state["events"][:2]} == {"e1 answers again", "member m4 (4) added"}
    now[0] = 104.0
    state = view.update(poll(leader=2, revision=140, members=MEMBERS[1:], term=3))
    assert state["events"][0]["text"] == "member m4 (4) removed"
    assert "member m1 (1) removed" in [e["text"] for e in state["events"]]
    assert len(state["throughput"]) == 4


def test_a_cluster_without_a_leader_says_so_once() -> None:
    now = [0.0]
    view = ClusterView(["e1", "e2", "e3"], clock=lambda: now[0])
    view.update(poll(leader=3, revision=1))
    now[0] = 1.0
    state = view.update(poll(leader=0, revision=1))
    now[0] = 2.0
    state = view.update(poll(leader=0, revision=1))
    assert state["leader"] is None
    assert [e["text"] for e in state["events"]] == ["no leader", "m3 (3) is the leader"]
