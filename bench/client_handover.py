"""What the blocking Client's hand-over to its event-loop thread costs one writer.

First a call that does nothing, handed to the client's loop thread and back (no server),
then sequential puts to the leader of a fresh 3-member cluster, alternating rounds of the
blocking ``Client`` (its direct path, client/direct.py), the same client with that path
held so every put is handed to its loop thread, and ``AsyncClient`` on this thread's own
loop. Each line gives the client process's CPU per put too.

    python bench/client_handover.py [--rounds 3] [--count 2000] [--single-process]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from pyraftkv import Client  # noqa: E402
from pyraftkv.client.aio import AsyncClient  # noqa: E402
from pyraftkv.node import event_loop  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402


def percentiles(seconds: list[float]) -> str:
    ordered = sorted(seconds)
    n = len(ordered)
    return f"p50 {ordered[n // 2] * 1e6:.0f} us  p99 {ordered[int(n * 0.99)] * 1e6:.0f} us"


async def nothing() -> None:
    return None


def blocking_puts(endpoint: str, count: int, direct: bool = True) -> list[float]:
    latencies = []
    with Client([endpoint]) as client:
        if not direct:
            client._direct.lock.acquire()  # as if another thread were on the direct path
        for i in range(count):
            start = time.perf_counter()
            client.put(b"handover/%08d" % i, b"v" * 128)
            latencies.append(time.perf_counter() - start)
        if not direct:
            client._direct.lock.release()
    return latencies


def handed_over_puts(endpoint: str, count: int) -> list[float]:
    return blocking_puts(endpoint, count, direct=False)


def async_puts(endpoint: str, count: int) -> list[float]:
    latencies: list[float] = []

    async def run() -> int:
        async with AsyncClient([endpoint]) as client:
            for i in range(count):
                start = time.perf_counter()
                await client.put(b"handover/%08d" % i, b"v" * 128)
                latencies.append(time.perf_counter() - start)
        return 0

    event_loop.run(run())
    return latencies


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument(
        "--single-process", action="store_true", help="members run with --single-process"
    )
    args = parser.parse_args()
    with Client(["127.0.0.1:1"]) as idle:  # never connects: only the hand-over is timed
        latencies = []
        for _ in range(5000):
            start = time.perf_counter()
            idle._run(nothing())
            latencies.append(time.perf_counter() - start)
    print(f"a call that does nothing, through Client's thread: {percentiles(latencies)}")
    root = tempfile.mkdtemp(prefix="pyraftkv-handover-")
    cluster = LocalCluster(root, 3, extra_args=["--single-process"] if args.single_process else [])
    try:
        cluster.start()
        endpoint = cluster.wait_leader().endpoint
        kinds = (
            ("Client", blocking_puts),
            ("Client, handed over", handed_over_puts),
            ("AsyncClient", async_puts),
        )
        for _ in range(args.rounds):
            for name, puts in kinds:
                cpu = time.process_time()
                latencies = puts(endpoint, args.count)
                cpu_us = (time.process_time() - cpu) / args.count * 1e6
                print(
                    f"{name:<20} sequential puts: {percentiles(latencies)}  CPU {cpu_us:.0f} us/put"
                )
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
