"""pyraftkvctl check perf against a real member: etcdctl's load, report and clean-up."""

from __future__ import annotations

import io

import pytest

from pyraftkv.ctl import run
from pyraftkv.errors import Compacted


def ctl(endpoint: str, *argv: str) -> tuple[int, str, str]:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoint}", *argv], io.BytesIO(), out, err, environ={})
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_check_perf_passes_removes_its_keys_and_compacts(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    endpoint = cluster.endpoints[0]
    code, out, err = ctl(endpoint, "check", "perf", "--load=m", "--duration=3s", "--auto-compact")
    assert code == 0, (out, err)
    lines = out.split("\n")
    at = lines.index("PASS")  # etcdctl's output ends here; the stage breakdown follows
    assert lines[at - 4].rsplit("\r", 1)[-1] == " 3 / 3  100.00% 3s"
    throughput = int(lines[at - 3].removeprefix("PASS: Throughput is ").removesuffix(" writes/s"))
    assert throughput >= 900  # the m load's cap is 1000 writes/s
    assert lines[at + 1] == ""
    traced = int(lines[at + 2].removeprefix("Where each write's time went (").split()[0])
    assert 0 < traced <= throughput * 3
    assert lines[at + 3].split() == ["stage", "p50", "p99"]
    rows = [line.split() for line in lines[at + 4 :] if line]
    assert [row[0] for row in rows] == [
        "batch", "ring_down", "propose", "wal_write", "wal_fsync",
        "quorum", "commit", "ring_up", "apply", "reply", "total",
    ]  # fmt: skip
    for _stage, p50, _ms, p99, _ms2 in rows:
        assert 0 <= float(p50) <= float(p99)
    assert float(rows[-1][1]) > 0
    client = cluster.client()
    assert client.get("/etcdctl-check-perf/", prefix=True, count_only=True).count == 0
    with pytest.raises(Compacted):
        client.get("/etcdctl-check-perf/", prefix=True, revision=2)


def test_check_perf_fails_when_writes_are_refused(make_cluster):
    # A quota a few hundred writes fill: the rest are refused with NoSpace, so the check
    # reports the errors and fails, as etcdctl's does.
    cluster = make_cluster(1, extra_args=["--quota-backend-bytes=300000"])
    cluster.start()
    code, out, _ = ctl(cluster.endpoints[0], "check", "perf", "--load=m", "--duration=2s")
    assert code == 1
    assert "\nFAIL: too many errors\n" in out
    assert "FAIL: ERROR(etcdserver: mvcc: database space exceeded) -> " in out
    assert "\nFAIL\n\nWhere each write's time went (" in out  # the stage breakdown follows
