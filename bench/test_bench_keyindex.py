"""Key index at one million keys: put, get, range, count, compaction, and memory per key.

Run: pytest bench/test_bench_keyindex.py --benchmark-only
Figures per operation are in each result's extra_info (ops_per_s, bytes_per_key).
"""

from __future__ import annotations

import random

import pytest

from pyraftkv.keyindex import KeyIndex

N_KEYS = 1_000_000
OPS = 10_000


def make_keys(n: int, seed: int = 1) -> list[bytes]:
    """n distinct 16-byte keys that share a prefix, the way etcd keys do, in random order."""
    keys = [b"/registry/%06d" % i for i in range(n)]
    random.Random(seed).shuffle(keys)
    return keys


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096


@pytest.fixture(scope="module")
def keys() -> list[bytes]:
    return make_keys(N_KEYS)


@pytest.fixture(scope="module")
def index(keys: list[bytes]) -> KeyIndex:
    idx = KeyIndex()
    for i, key in enumerate(keys):
        idx.put(key, 2 + i, 0)
    return idx


class Revisions:
    """Hands out fresh main revisions above everything already in the index."""

    main = 10 * N_KEYS

    def next(self) -> int:
        Revisions.main += 1
        return Revisions.main


def per_op(benchmark, n: int) -> None:
    if not benchmark.stats:  # None under --benchmark-disable
        return
    benchmark.extra_info["ops_per_round"] = n
    benchmark.extra_info["ops_per_s"] = round(n / benchmark.stats.stats.median)


def test_memory_per_key_16_byte_keys_one_revision(benchmark) -> None:
    keys = make_keys(N_KEYS, seed=2)
    holder: list[KeyIndex] = []

    def build() -> None:
        holder.clear()
        idx = KeyIndex()
        for i, key in enumerate(keys):
            idx.put(key, 2 + i, 0)
        holder.append(idx)

    before = rss_bytes()
    benchmark.pedantic(build, rounds=1, iterations=1)
    after = rss_bytes()
    keys_held, revisions, allocated = holder[0].stats()
    assert keys_held == N_KEYS and revisions == N_KEYS
    benchmark.extra_info["rss_bytes_per_key"] = round((after - before) / N_KEYS, 1)
    benchmark.extra_info["allocated_bytes_per_key"] = round(allocated / N_KEYS, 1)
    per_op(benchmark, N_KEYS)


def test_put_new_revision_of_existing_key(benchmark, index: KeyIndex, keys) -> None:
    rng = random.Random(3)
    revs = Revisions()

    def setup():
        return (rng.sample(keys, OPS), revs.next()), {}

    def run(sample: list[bytes], main: int) -> None:
        put = index.put
        for sub, key in enumerate(sample):
            put(key, main, sub)

    benchmark.pedantic(run, setup=setup, rounds=20, iterations=1)
    per_op(benchmark, OPS)


def test_put_new_key(benchmark, index: KeyIndex) -> None:
    rng = random.Random(4)
    revs = Revisions()

    def setup():
        main = revs.next()  # new keys land between existing ones all over the tree
        return (
            [b"/registry/%06d.%d" % (rng.randrange(N_KEYS), main) for _ in range(OPS)],
            main,
        ), {}

    def run(new_keys: list[bytes], main: int) -> None:
        put = index.put
        for sub, key in enumerate(new_keys):
            put(key, main, sub)

    benchmark.pedantic(run, setup=setup, rounds=20, iterations=1)
    per_op(benchmark, OPS)


def test_get(benchmark, index: KeyIndex, keys) -> None:
    sample = random.Random(5).sample(keys, OPS)
    at = 10 * N_KEYS

    def run() -> None:
        get = index.get
        for key in sample:
            get(key, at)

    benchmark.pedantic(run, rounds=20, iterations=1)
    per_op(benchmark, OPS)


def test_range_100_keys(benchmark, index: KeyIndex) -> None:
    rng = random.Random(6)

    def run() -> None:
        first = rng.randrange(N_KEYS - 100)
        start, end = b"/registry/%06d" % first, b"/registry/%06d" % (first + 100)
        items, total = index.range(start, end, 10 * N_KEYS)
        assert len(items) == total == 100

    benchmark(run)


def test_count_all_keys(benchmark, index: KeyIndex) -> None:
    total = benchmark(index.count, b"", None, 10 * N_KEYS)
    assert total >= N_KEYS
    per_op(benchmark, total)


def test_compact_one_million_keys_two_revisions_each(benchmark, keys) -> None:
    def setup():
        idx = KeyIndex()
        for i, key in enumerate(keys):
            idx.put(key, 2 + i, 0)
        for i, key in enumerate(keys):
            idx.put(key, 2 + N_KEYS + i, 0)
        return (idx,), {}

    def run(idx: KeyIndex) -> None:
        assert len(idx.compact(2 + 2 * N_KEYS)) == N_KEYS

    benchmark.pedantic(run, setup=setup, rounds=3, iterations=1)
    per_op(benchmark, N_KEYS)
