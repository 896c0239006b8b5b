"""What a snapshot costs the writers: an open loop of writes to the leader of a fresh
3-member cluster, long enough for the members to snapshot, from two source trees in turn;
the latency of the writes answered around each snapshot against the rest.

    python bench/snapshot_stall.py BEFORE AFTER [--runs 3] [--rate 10000] [--seconds 75]

Trees are prepared as for bench/compare_trees.py (each with its extension built). The
members snapshot as `pyraftkv` does by default (100,000 entries or 64 MiB of log, so about
every 50 s at 10,000 writes/s of 128 bytes); after a snapshot each Raft process compacts
its log and releases the WAL segments below it. "Around" is from 0.2 s before a member
logs "snapshot saved" to 1 s after it. One line per run.
"""

from __future__ import annotations

import argparse
import datetime
import os
import re
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench.compare_trees import members_from, tree_parser  # noqa: E402
from bench.load import arguments, percentile, run_load  # noqa: E402
from pyraftkv.node.event_loop import run as run_loop  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402

SAVED = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) .*snapshot saved at index")


def snapshot_times(log_paths: list[str]) -> list[float]:
    """When any member logged a saved snapshot (seconds since the epoch), merged when
    within a second of each other (the members snapshot at the same index)."""
    times = []
    for path in log_paths:
        with open(path, errors="replace") as f:
            for line in f:
                if match := SAVED.match(line):
                    stamp = datetime.datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f")
                    times.append(stamp.timestamp())
    merged: list[float] = []
    for t in sorted(times):
        if not merged or t - merged[-1] > 1.0:
            merged.append(t)
    return merged


def summary(latencies: list[float]) -> str:
    if not latencies:
        return "none"
    latencies = sorted(latencies)
    return (
        f"{len(latencies):>6} writes p99 {percentile(latencies, 0.99) * 1e3:6.1f} "
        f"max {latencies[-1] * 1e3:6.1f} ms"
    )


def one_run(tree: str, args: argparse.Namespace) -> str:
    root = tempfile.mkdtemp(prefix="pyraftkv-snapshot-stall-")
    try:
        with members_from(tree):
            cluster = LocalCluster(root, 3, snapshot_count=100_000)
            cluster.start()
        try:
            load = arguments().parse_args(
                [
                    *("--endpoints", cluster.wait_leader().endpoint),
                    *("--rate", str(args.rate), "--conns", "1"),
                    *("--duration", str(args.seconds)),
                ]
            )
            began = time.time()
            result = run_loop(run_load(load, 1))
        finally:
            cluster.stop_all()
        snaps = snapshot_times([m.log_path for m in cluster.members])
        near: list[float] = []
        rest: list[float] = []
        for finished, latency in zip(result["finished"], result["latencies"], strict=True):
            at = began + finished
            close = any(s - 0.2 <= at <= s + 1.0 for s in snaps)
            (near if close else rest).append(latency)
        return (
            f"{len(snaps)} snapshot(s); around them {summary(near)}; "
            f"elsewhere {summary(rest)}; errors {result['errors']}"
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = tree_parser(__doc__)
    parser.add_argument("--rate", type=float, default=10_000.0, help="writes/s")
    parser.add_argument("--seconds", type=float, default=75.0)
    args = parser.parse_args()
    for _ in range(args.runs):
        for name, tree in (("before", args.before), ("after", args.after)):
            print(f"{name:6} {one_run(tree, args)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
