"""WAL append + fdatasync per batch (group commit), on real files: entries/s and fsync latency."""

from __future__ import annotations

import os

import pytest

from pyraftkv.wal import WriteAheadLog

ENTRY_BYTES = 128  # a small put request


@pytest.mark.parametrize("batch_size", [1, 64, 1024])
def test_wal_append_and_sync(benchmark, tmp_path, batch_size: int) -> None:
    wal = WriteAheadLog.create(tmp_path / "wal", b"bench")
    payload = os.urandom(ENTRY_BYTES)
    next_index = 1

    def append_batch_and_sync() -> None:
        nonlocal next_index
        batch = [(1, next_index + i, 0, payload) for i in range(batch_size)]
        wal.append(batch, hard_state=(1, 1, next_index - 1))
        wal.sync()
        next_index += batch_size

    benchmark.pedantic(append_batch_and_sync, rounds=300, warmup_rounds=10)
    latency = wal.sync_latency.snapshot()
    wal.close()
    assert latency.count == (next_index - 1) // batch_size
    reopened, recovery = WriteAheadLog.open(tmp_path / "wal")  # everything written reads back
    reopened.close()
    assert len(recovery.entries) == next_index - 1
    if not benchmark.stats:  # --benchmark-disable
        return
    benchmark.extra_info["entries/s (median)"] = round(batch_size / benchmark.stats.stats.median)
    benchmark.extra_info["fsync p50 ms"] = round(latency.p50_seconds * 1e3, 3)
    benchmark.extra_info["fsync p99 ms"] = round(latency.p99_seconds * 1e3, 3)
    benchmark.extra_info["fsync max ms"] = round(latency.max_seconds * 1e3, 3)


@pytest.mark.parametrize("batch_size", [64, 1024])
def test_wal_append_only(benchmark, tmp_path, batch_size: int) -> None:
    """The CPU cost of framing and writing (no fdatasync): the per-entry overhead."""
    wal = WriteAheadLog.create(tmp_path / "wal", b"bench")
    payload = os.urandom(ENTRY_BYTES)
    next_index = 1

    def append_batch() -> None:
        nonlocal next_index
        wal.append([(1, next_index + i, 0, payload) for i in range(batch_size)])
        next_index += batch_size

    benchmark.pedantic(append_batch, rounds=500, warmup_rounds=10)
    assert wal.last_index == next_index - 1 > 0
    wal.close()
    if benchmark.stats:  # None under --benchmark-disable
        median = benchmark.stats.stats.median
        benchmark.extra_info["us per entry (median)"] = round(median / batch_size * 1e6, 3)
