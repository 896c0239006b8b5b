"""MVCC store apply throughput: batches of 10,000 requests in one LMDB write transaction,
the way the node applies committed raft entries; plus a range read and a reopen.

Run: pytest bench/test_bench_mvcc.py --benchmark-only
Figures per request are in each result's extra_info (requests_per_s).
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from pyraftkv.mvcc import MVCCStore, prefix_end
from pyraftkv.proto import rpc_pb2

BATCH = 10_000
PREFILL = 100_000
VALUE = b"v" * 128


def key(i: int) -> bytes:
    return b"/registry/pods/ns-%03d/pod-%07d" % (i % 100, i)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MVCCStore]:
    s = MVCCStore(tmp_path_factory.mktemp("mvcc") / "store")
    with s.write_batch(1) as b:
        for i in range(PREFILL):
            b.put(rpc_pb2.PutRequest(key=key(i), value=VALUE))
    yield s
    s.close()


_applied = itertools.count(2)
_new_keys = itertools.count(PREFILL)


def apply(store: MVCCStore, method: str, reqs: list) -> None:
    with store.write_batch(next(_applied)) as b:
        call = getattr(b, method)
        for req in reqs:
            call(req)


def per_request(benchmark, n: int) -> None:
    if not benchmark.stats:  # None under --benchmark-disable
        return
    benchmark.extra_info["requests_per_round"] = n
    benchmark.extra_info["requests_per_s"] = round(n / benchmark.stats.stats.median)


def test_apply_puts_of_new_keys(benchmark, store: MVCCStore) -> None:
    def setup():
        return (
            store,
            "put",
            [rpc_pb2.PutRequest(key=key(next(_new_keys)), value=VALUE) for _ in range(BATCH)],
        ), {}

    benchmark.pedantic(apply, setup=setup, rounds=15, iterations=1)
    per_request(benchmark, BATCH)


def test_apply_one_put_per_batch(benchmark, store: MVCCStore) -> None:
    """A lone writer's apply: one overwrite per write transaction, so the transaction's
    own cost (begin, the counters, commit) is most of it. 1,000 batches per round."""
    store.events_need_prev = lambda: False
    rng = random.Random(3)
    reqs = [rpc_pb2.PutRequest(key=key(rng.randrange(PREFILL)), value=VALUE) for _ in range(1000)]

    def run():
        for req in reqs:
            with store.write_batch(next(_applied)) as b:
                b.put(req)

    benchmark.pedantic(run, rounds=15, iterations=1)
    per_request(benchmark, len(reqs))


@pytest.mark.parametrize("prev", ["prev read", "no prev_kv watcher"])
def test_apply_puts_updating_existing_keys(benchmark, store: MVCCStore, prev: str) -> None:
    """Overwrites; unless a watcher asks for prev_kv the previous version is not read
    (MVCCStore.events_need_prev; the lessor knows each leased key's lease itself)."""
    store.events_need_prev = lambda: prev == "prev read"
    rng = random.Random(1)

    def setup():
        return (
            store,
            "put",
            [
                rpc_pb2.PutRequest(key=key(rng.randrange(PREFILL)), value=VALUE)
                for _ in range(BATCH)
            ],
        ), {}

    benchmark.pedantic(apply, setup=setup, rounds=15, iterations=1)
    per_request(benchmark, BATCH)


def test_apply_compare_and_swap_txns(benchmark, store: MVCCStore) -> None:
    """A txn per request: if the key is at a version, put it (a lock or CAS update)."""
    rng = random.Random(2)

    def setup():
        reqs = []
        for _ in range(BATCH):
            k = key(rng.randrange(PREFILL))
            reqs.append(
                rpc_pb2.TxnRequest(
                    compare=[
                        rpc_pb2.Compare(
                            key=k,
                            target=rpc_pb2.Compare.VERSION,
                            result=rpc_pb2.Compare.GREATER,
                            version=0,
                        )
                    ],
                    success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=VALUE))],
                )
            )
        return (store, "txn", reqs), {}

    benchmark.pedantic(apply, setup=setup, rounds=10, iterations=1)
    per_request(benchmark, BATCH)


def test_range_one_namespace_of_1000_pods(benchmark, store: MVCCStore) -> None:
    prefix = b"/registry/pods/ns-042/"
    req = rpc_pb2.RangeRequest(key=prefix, range_end=prefix_end(prefix))
    resp = benchmark(store.range, req)
    assert resp.count >= PREFILL // 100


def test_reopen_rebuilds_the_index(benchmark, tmp_path: Path) -> None:
    path = tmp_path / "reopen"
    with MVCCStore(path) as s, s.write_batch(1) as b:
        for i in range(PREFILL):
            b.put(rpc_pb2.PutRequest(key=key(i), value=VALUE))

    def reopen() -> None:
        MVCCStore(path).close()

    benchmark.pedantic(reopen, rounds=3, iterations=1)
    per_request(benchmark, PREFILL)
