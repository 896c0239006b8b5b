"""What a hand-over between two processes costs when the woken one runs on another CPU.

Two processes pass a token back and forth through two eventfds (as a member's application
and Raft processes wake each other through the rings), ``--count`` round trips per case:
both pinned to one CPU, pinned to two different CPUs, and left to the kernel. This is the
measurement behind pyraftkv/node/cpu_pairing.py.

    python bench/cross_cpu_wakeup.py [--count 3000]
"""

from __future__ import annotations

import argparse
import os
import sys
import time


def round_trips(count: int, cpus: tuple[set[int], set[int]] | None) -> list[int]:
    """Round-trip times (ns) of ``count`` token passes; ``cpus``: where each side may run."""
    ping, pong = os.eventfd(0), os.eventfd(0)
    allowed = os.sched_getaffinity(0)
    child = os.fork()
    if child == 0:
        if cpus:
            os.sched_setaffinity(0, cpus[1])
        for _ in range(count):
            os.eventfd_read(ping)
            os.eventfd_write(pong, 1)
        os._exit(0)
    if cpus:
        os.sched_setaffinity(0, cpus[0])
    times = []
    try:
        for _ in range(count):
            start = time.perf_counter_ns()
            os.eventfd_write(ping, 1)
            os.eventfd_read(pong)
            times.append(time.perf_counter_ns() - start)
    finally:
        os.waitpid(child, 0)
        os.sched_setaffinity(0, allowed)
        os.close(ping)
        os.close(pong)
    return sorted(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=3000)
    args = parser.parse_args()
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        print("needs at least two CPUs", file=sys.stderr)
        return 2
    a, b = allowed[:2]
    cases = {
        "one CPU (both pinned together)": ({a}, {a}),
        "two CPUs (pinned apart)": ({a}, {b}),
        "left to the kernel": None,
    }
    for name, cpus in cases.items():
        times = round_trips(args.count, cpus)
        n = len(times)
        print(
            f"{name:<32} round trip p50 {times[n // 2] / 1000:6.1f} us  "
            f"p99 {times[n * 99 // 100] / 1000:6.1f} us"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
