"""Entries/s through a 3-member in-memory Raft cluster: batching, no I/O, messages passed
directly, every Ready "persisted" at once. Measures the consensus core's own CPU cost.

    pytest bench/test_bench_raft.py --benchmark-only
"""

from __future__ import annotations

import random

import pytest

from pyraftkv.raft import Config, RaftCore, Role

ENTRIES = 20_000
PAYLOAD = b"x" * 100


def elected_cluster() -> dict[int, RaftCore]:
    config = Config(election_ticks=10, max_msg_bytes=1 << 20, max_inflight_msgs=256)
    members = {1: b"", 2: b"", 3: b""}
    cores = {n: RaftCore.bootstrap(n, members, config, random.Random(n)) for n in members}
    for _ in range(40):
        for core in cores.values():
            core.tick()
        pump(cores)
        if any(core.role == Role.LEADER for core in cores.values()):
            return cores
    raise AssertionError("no leader elected")


def pump(cores: dict[int, RaftCore]) -> int:
    """Run every shell until quiet; returns how many entries the members applied."""
    applied = 0
    busy = True
    while busy:
        busy = False
        for core in cores.values():
            if not core.has_ready():
                continue
            busy = True
            ready = core.ready()
            applied += len(ready.committed_entries)
            for msg in ready.messages:
                cores[msg.to].step(msg)
            core.advance(ready)
            for msg in ready.persisted_messages:
                cores[msg.to].step(msg)
    return applied


@pytest.mark.parametrize("batch", [1, 16, 256])
def test_entries_per_second(benchmark, batch: int) -> None:
    """Proposals of `batch` entries each, until ENTRIES are applied on all 3 members."""

    def setup():
        cores = elected_cluster()
        leader = next(c for c in cores.values() if c.role == Role.LEADER)
        return (cores, leader), {}

    def run(cores, leader) -> None:
        start = leader.commit_index
        payloads = [PAYLOAD] * batch
        applied = 0
        for _ in range(ENTRIES // batch):
            leader.propose(payloads)
            applied += pump(cores)
        assert leader.commit_index - start == ENTRIES // batch * batch
        assert applied >= 3 * (ENTRIES // batch * batch)

    benchmark.pedantic(run, setup=setup, rounds=5, iterations=1)
    if benchmark.stats:  # None under --benchmark-disable
        benchmark.extra_info["entries/s (median)"] = round(
            ENTRIES // batch * batch / benchmark.stats.stats.median
        )
