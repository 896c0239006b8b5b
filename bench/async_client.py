"""The public asyncio client's throughput: AsyncClient puts with N in flight.

Puts of 128-byte values over 100,000 16-byte keys from --in-flight worker tasks sharing
one AsyncClient (one connection), against a running cluster; prints writes/s, latency
p50/p99 and the client process's CPU per put (the client's own per-request cost, which
bench/load.py's bare protocol generator does not pay).

    pyraftkv cluster --size 3 &
    python bench/async_client.py --endpoints 127.0.0.1:2379,127.0.0.1:12379,127.0.0.1:22379
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyraftkv.client.aio import AsyncClient  # noqa: E402
from pyraftkv.node.event_loop import run  # noqa: E402


async def measure(endpoints: list[str], count: int, in_flight: int) -> dict:
    async with AsyncClient(endpoints) as client:
        await client.put(b"warm-up", b"x")
        numbers = iter(range(count))
        value = b"v" * 128
        latencies: list[float] = []

        async def worker() -> None:
            for i in numbers:
                sent = time.perf_counter()
                await client.put(b"k%015d" % (i % 100_000), value)
                latencies.append(time.perf_counter() - sent)

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(in_flight)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    latencies.sort()
    return {
        "writes_per_s": count / elapsed,
        "p50_ms": latencies[len(latencies) // 2] * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000,
        "cpu_us_per_put": cpu / count * 1e6,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--endpoints", default="127.0.0.1:2379")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--in-flight", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    for _ in range(args.rounds):
        r = run(measure(args.endpoints.split(","), args.count, args.in_flight))
        print(
            f"AsyncClient, {args.in_flight} in flight: {r['writes_per_s']:,.0f} writes/s, "
            f"p50 {r['p50_ms']:.1f} ms, p99 {r['p99_ms']:.1f} ms, "
            f"client CPU {r['cpu_us_per_put']:.1f} us/put",
            flush=True,
        )


if __name__ == "__main__":
    main()
