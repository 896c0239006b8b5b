"""Jepsen-style runs, long: each run starts a fresh cluster (3 members, or --members), runs
read/write/compare-and-set clients while a nemesis injects every fault of tests/e2e/jepsen.py (in a
random order per run: partitions, kill -9, SIGSTOP of the Raft or the application process
alone, leader moves, slow links), then checks the history for linearizability.

    python bench/jepsen.py [--runs 5] [--duration 60] [--hold 2] [--clients 10] [--keys 5]
                           [--members 3] [--serializable]

Prints one line per run and a total; exits 1 if any history was not linearizable (its
smallest failing window is printed). --serializable makes reads serializable, which is
expected to fail under partitions.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from tests.e2e.harness import LocalCluster  # noqa: E402
from tests.e2e.jepsen import FAULTS, run  # noqa: E402
from tests.e2e.nemesis import Network  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--hold", type=float, default=2.0, help="seconds each fault lasts")
    parser.add_argument("--rounds", type=int, default=2, help="times each fault is injected")
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--keys", type=int, default=5)
    parser.add_argument("--serializable", action="store_true")
    parser.add_argument("--members", type=int, default=3, help="cluster size (5: 3/2 splits)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--single-process", action="store_true", help="members in one process each")
    args = parser.parse_args()
    failed = total_ops = total_faults = 0
    for n in range(args.runs):
        seed = args.seed + n
        faults = list(FAULTS) * args.rounds
        random.Random(seed).shuffle(faults)
        with tempfile.TemporaryDirectory() as root:
            flags = ["--single-process"] if args.single_process else []
            cluster = LocalCluster(root, args.members, extra_args=flags)
            network = Network(cluster)
            try:
                cluster.start()
                result = run(
                    cluster,
                    network,
                    faults,
                    duration_s=args.duration,
                    clients=args.clients,
                    keys=args.keys,
                    hold_s=args.hold,
                    seed=seed,
                    serializable=args.serializable,
                )
            finally:
                cluster.stop_all()
        report = result.report
        report.time_unit = (1_000_000, "ms")
        total_ops += report.ops
        total_faults += len(result.faults)
        failed += not report.ok
        print(
            f"run {n + 1}: {len(result.faults)} faults ({len(result.fault_errors)} failed to "
            f"inject), {report.ops} ops ({report.unknown} unknown), "
            f"{'linearizable' if report.ok else 'NOT LINEARIZABLE'}, {result.elapsed_s:.0f}s",
            flush=True,
        )
        for error in result.fault_errors:
            print("   fault error:", error)
        if not report.ok:
            print("\n".join("   " + line for line in report.lines()))
    print(
        f"{args.runs - failed}/{args.runs} runs linearizable; {total_faults} faults injected, "
        f"{total_ops} ops checked"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
