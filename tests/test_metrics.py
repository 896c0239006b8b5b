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


def test_stages_never_go_negative_and_add_up_to_the_whole():
    from pyraftkv.node.write_trace import stage_seconds

    # The leader sends (3rd reading) before its WAL write (4th) ends; a majority answered
    # before its own fsync ended (5th > 6th); a missing reading (0) counts as the one before.
    readings = [1_000, 3_000, 3_500, 9_000, 5_000, 12_000, 11_000, 0, 20_000]
    seconds = stage_seconds(readings)
    assert len(seconds) == len(readings) - 1
    assert min(seconds) == 0.0
    assert abs(sum(seconds) - (20_000 - 1_000) / 1e9) < 1e-15
    assert seconds[:4] == [2e-6, 5e-7, 5.5e-6, 0.0]


def test_a_weighted_histogram_renders_cumulative_buckets_and_reads_back_quantiles():
    from pyraftkv.ctl.check import quantile
    from pyraftkv.node.write_trace import Histogram

    histogram = Histogram((0.001, 0.002, 0.004))
    histogram.observe(0.0005, 3)  # a batch of three writes
    histogram.observe(0.003)
    histogram.observe(9.0)
    got = samples(histogram.lines("x", 'stage="a"'))
    assert got['x_bucket{stage="a",le="0.001"}'] == 3
    assert got['x_bucket{stage="a",le="0.002"}'] == 3
    assert got['x_bucket{stage="a",le="0.004"}'] == 4
    assert got['x_bucket{stage="a",le="+Inf"}'] == got['x_count{stage="a"}'] == 5
    assert abs(got['x_sum{stage="a"}'] - 9.0045) < 1e-12
    assert quantile(histogram.bounds, histogram.counts, 0.5) < 0.001
    assert 0.002 < quantile(histogram.bounds, histogram.counts, 0.7) <= 0.004
    assert quantile(histogram.bounds, histogram.counts, 0.99) == 0.004
    assert quantile(histogram.bounds, [0, 0, 0, 0], 0.5) == 0.0
