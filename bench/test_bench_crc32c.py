"""CRC32C throughput on both paths, large buffers (GB/s) and small ones (per-call cost)."""

from __future__ import annotations

import os

import pytest

from pyraftkv.crc32c import crc32c, crc32c_software

PATHS = pytest.mark.parametrize("checksum", [crc32c, crc32c_software], ids=["fast", "software"])


@PATHS
@pytest.mark.parametrize("size", [64, 4096, 16 << 20], ids=["64B", "4KiB", "16MiB"])
def test_crc32c_throughput(benchmark, checksum, size: int) -> None:
    data = os.urandom(size)
    result = benchmark(checksum, data, 0)
    assert result == checksum(data)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["GB/s (median)"] = round(size / benchmark.stats.stats.median / 1e9, 2)
