"""A leader taking one write at a time has its application and Raft processes share one
CPU, and so does a follower forwarding one write at a time (the leader's then spread);
concurrent writers spread them again; idle followers are left to the kernel; when
leadership moves, the pinning moves with it."""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time

import pytest

from pyraftkv import Client
from pyraftkv.client.aio import AsyncClient

from .harness import LocalCluster, Member, child_pids, wait_for

pytestmark = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="pairing needs at least two CPUs to choose from"
)


def member_processes(member: Member) -> list[int]:
    """The member's application process and its Raft child."""
    pids = [member.process.pid, *child_pids(member.process.pid)]
    assert len(pids) == 2, f"{member.name}: expected two processes, found {pids}"
    return pids


def cpu_sets(member: Member) -> set[frozenset[int]]:
    """The CPU sets the threads of both processes may run on."""
    return {
        frozenset(os.sched_getaffinity(int(tid)))
        for pid in member_processes(member)
        for tid in os.listdir(f"/proc/{pid}/task")
    }


def concurrent_puts(endpoint: str, stop: threading.Event, writers: int = 8) -> None:
    """Puts from ``writers`` tasks at once until ``stop`` is set, each pausing 0-2 ms
    between puts so that they do not fall into step (one batch at a time)."""

    async def main() -> None:
        async with AsyncClient([endpoint], timeout=10) as client:

            async def writer(n: int) -> None:
                while not stop.is_set():
                    await client.put(f"load/{n}", "x" * 128)
                    await asyncio.sleep(random.random() / 500)

            await asyncio.gather(*(writer(n) for n in range(writers)))

    asyncio.run(main())


def paired(member: Member) -> bool:
    sets = cpu_sets(member)
    return len(sets) == 1 and len(next(iter(sets))) == 1


def test_the_idle_leader_is_pinned_to_one_cpu_and_the_pinning_follows_leadership(make_cluster):
    allowed = frozenset(os.sched_getaffinity(0))
    cluster: LocalCluster = make_cluster(2)
    cluster.start()
    leader = cluster.wait_leader()
    (follower,) = [m for m in cluster.members if m is not leader]
    wait_for(lambda: paired(leader), "the idle leader's processes to share a CPU", 10)
    assert cpu_sets(follower) == {allowed}
    assert "the application and Raft processes now share CPU" in leader.log_text()

    with Client([leader.endpoint], timeout=5) as client:
        client.put("paired", "yes")  # the pinned pair serves
        client.move_leader(cluster.status(follower).header.member_id)
    wait_for(lambda: cluster.wait_leader() is follower, "leadership to move", 10)
    wait_for(lambda: paired(follower), "the new leader's processes to pair", 10)
    wait_for(lambda: cpu_sets(leader) == {allowed}, "the old leader to be freed", 10)

    # One writer through the follower: the follower's two processes are on its path, the
    # leader's application is not (it only applies), so the pinning moves to the follower.
    with Client([leader.endpoint], timeout=5) as client:
        deadline = time.monotonic() + 10
        while not paired(leader) or cpu_sets(follower) != {allowed}:
            assert time.monotonic() < deadline, (cpu_sets(leader), cpu_sets(follower))
            client.put("forwarded", "yes")
            time.sleep(0.01)
        assert client.get("paired").kvs[0].value == b"yes"
    assert "writes forwarded here" in follower.log_text()
    assert "(following): the application and Raft processes now share CPU" in leader.log_text()


def test_concurrent_writers_spread_the_pair(make_cluster):
    allowed = frozenset(os.sched_getaffinity(0))
    cluster: LocalCluster = make_cluster(2)
    cluster.start()
    leader = cluster.wait_leader()
    wait_for(lambda: paired(leader), "the idle leader's processes to share a CPU", 10)
    stop = threading.Event()
    load = threading.Thread(target=concurrent_puts, args=(leader.endpoint, stop))
    load.start()
    try:
        wait_for(lambda: cpu_sets(leader) == {allowed}, "concurrent writers to spread it", 10)
    finally:
        stop.set()
        load.join()
    assert "of write batches concurrent" in leader.log_text()
