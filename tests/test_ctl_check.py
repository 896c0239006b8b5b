"""check perf's pure parts: etcdctl's key encoding, progress line, PASS/FAIL rule and the stage
breakdown."""

from __future__ import annotations

import random

from pyraftkv.ctl.check import (
    KEY_BYTES,
    LOADS,
    Result,
    check_key,
    progress_line,
    stage_lines,
    verdict,
    zigzag_varint,
)
from pyraftkv.node.write_trace import STAGE_BUCKETS, STAGES


def test_varint_is_gos_put_varint():
    # binary.PutVarint: zig-zag, then 7 bits a byte, low group first.
    assert zigzag_varint(0) == b"\x00"
    assert zigzag_varint(1) == b"\x02"
    assert zigzag_varint(-1) == b"\x01"
    assert zigzag_varint(63) == b"\x7e"
    assert zigzag_varint(64) == b"\x80\x01"
    assert zigzag_varint((1 << 63) - 1) == b"\xfe" + b"\xff" * 8 + b"\x01"


def test_keys_are_prefix_and_256_bytes():
    rng = random.Random(7)
    keys = {check_key(b"/p/", rng) for _ in range(1000)}
    assert len(keys) == 1000
    assert all(k.startswith(b"/p/") and len(k) == 3 + KEY_BYTES for k in keys)


def test_progress_line_as_etcdctl_prints_it():
    assert progress_line(0, 60, 0.0) == " 0 / 60    0.00%"
    assert progress_line(1, 60, 1.0) == " 1 / 60    1.67% 00m59s"
    assert progress_line(60, 60, 60.2) == " 60 / 60  100.00% 1m0s"


def test_a_fast_steady_run_passes():
    lines, ok = verdict(Result([0.002] * 1400, {}, 9.0), LOADS["s"])
    assert ok
    assert lines == [
        "PASS: Throughput is 156 writes/s",
        "PASS: Slowest request took 0.002000s",
        "PASS: Stddev is 0.000000s",
        "PASS",
    ]


def test_each_rule_can_fail():
    slow = [0.01] * 100 + [0.9]
    lines, ok = verdict(Result(slow, {"etcdserver: request timed out": 3}, 10.0), LOADS["m"])
    assert not ok
    assert lines == [
        "FAIL: too many errors",
        "FAIL: ERROR(etcdserver: request timed out) -> 3",
        "FAIL: Throughput too low: 11 writes/s",
        "Slowest request took too long: 0.900000s",
        "PASS: Stddev is 0.088119s",
        "FAIL",
    ]
    spread = [0.0] * 500 + [0.45] * 500
    lines, ok = verdict(Result(spread, {}, 1.0), LOADS["s"])
    assert not ok and lines[2] == "Stddev too high: 0.225000s" and lines[-1] == "FAIL"


def test_stage_lines_print_leader_and_forwarded_writes_apart():
    """Writes a follower forwarded get a breakdown of their own, after the leaders'."""

    def histogram(bucket: int, writes: int) -> tuple[tuple[float, ...], list[int]]:
        counts = [0] * (len(STAGE_BUCKETS) + 1)
        counts[bucket] = writes
        return STAGE_BUCKETS, counts

    after = {name: histogram(2, 5) for name in (*STAGES, "total")}
    after |= {f"forwarded/{name}": histogram(6, 3) for name in (*STAGES, "total")}
    lines = stage_lines({}, after)
    first = lines.index(
        "Where each write's time went (5 writes traced; per-stage percentiles, which do not "
        "add up):"
    )
    second = lines.index(
        "Where each write a follower forwarded's time went (3 writes traced; per-stage "
        "percentiles, which do not add up):"
    )
    assert first < second
    leader_rows = [line.split()[0] for line in lines[first + 2 : second - 1]]
    forwarded_rows = [line.split() for line in lines[second + 2 :]]
    assert leader_rows == [*STAGES, "total"]
    assert [row[0] for row in forwarded_rows] == [*STAGES, "total"]
    for row in forwarded_rows:  # the p50 lies in the bucket the forwarded writes fell in
        assert STAGE_BUCKETS[5] * 1000 < float(row[1]) <= STAGE_BUCKETS[6] * 1000
    # Only forwarded writes traced: just their breakdown.
    only = stage_lines({}, {k: v for k, v in after.items() if k.startswith("forwarded/")})
    assert only[1].startswith("Where each write a follower forwarded's time went (3 writes")
