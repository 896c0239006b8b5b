"""The Prometheus histogram of WAL fdatasync latencies, from the WAL's own buckets."""

from pyraftkv.node.metrics import histogram_lines
from pyraftkv.node.ringproto import SyncLatency


def samples(lines):
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in lines
        if not line.startswith("#")
    }


def test_samples_count_under_every_bound_their_bucket_fits_below():
    latency = SyncLatency(
        count=7,
        sum_seconds=0.05,
        # (exclusive upper bound, samples): under 1 ms, exactly at 1 ms, across 2 ms, 9 s
        buckets=((0.0005, 2), (0.001, 1), (0.00225, 3), (9.0, 1)),
    )
    got = samples(histogram_lines("fsync", "help", latency))
    assert got['fsync_bucket{le="0.001"}'] == 3
    assert got['fsync_bucket{le="0.002"}'] == 3  # the bucket reaching 2.25 ms is not below
    assert got['fsync_bucket{le="0.004"}'] == 6
    assert got['fsync_bucket{le="8.192"}'] == 6
    assert got['fsync_bucket{le="+Inf"}'] == 7
    assert got["fsync_count"] == 7
    assert got["fsync_sum"] == 0.05


def test_an_empty_histogram_is_all_zeros_with_its_declaration():
    lines = histogram_lines("fsync", "help text", SyncLatency(0, 0.0, ()))
    assert lines[:2] == ["# HELP fsync help text", "# TYPE fsync histogram"]
    assert set(samples(lines).values()) == {0}
    assert len(samples(lines)) == 14 + 1 + 2
