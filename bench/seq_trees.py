"""One writer's sequential puts against 3-member clusters run from two source trees,
alternating runs in one sitting: did a change cut one writer's latency, and where did the
CPU per put go?

    python bench/seq_trees.py /tmp/before /tmp/after [--runs 3] [--seconds 10] \\
        [--via-follower] [--single-process] [--after-flags FLAGS]

Trees are prepared as for bench/compare_trees.py (each with its extension built). Each run
starts a fresh cluster from one tree (its members import that tree's pyraftkv), sends
sequential puts (128-byte values) from this tree's blocking ``Client`` to the leader (to a
follower, which forwards them, with ``--via-follower``) for ``--seconds``, and reads the
CPU the leader's and one follower's two processes spent per put (/proc). Prints one line
per run. ``--after-flags`` adds member flags to the after tree's members (the same tree
twice then compares two settings).
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from bench.cluster_cpu import cpu_seconds, raft_pid  # noqa: E402
from bench.compare_trees import members_from, tree_parser  # noqa: E402
from pyraftkv import Client  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402


def run(tree: str, seconds: float, via_follower: bool, flags: list[str]) -> str:
    root = tempfile.mkdtemp(prefix="pyraftkv-seq-trees-")
    cluster = LocalCluster(root, 3, extra_args=flags)
    try:
        with members_from(tree):
            cluster.start()
        leader = cluster.wait_leader()
        follower = next(m for m in cluster.members if m is not leader)
        pids = {}
        for role, member in (("leader", leader), ("follower", follower)):
            if raft := raft_pid(member.process.pid):
                pids[f"{role} raft"] = raft
            pids[f"{role} app"] = member.process.pid
        with Client([(follower if via_follower else leader).endpoint]) as client:
            client.put(b"warm", b"up")
            before = {name: sum(cpu_seconds(pid)) for name, pid in pids.items()}
            latencies: list[float] = []
            end = time.perf_counter() + seconds
            while time.perf_counter() < end:
                start = time.perf_counter()
                client.put(b"seq/%012d" % len(latencies), b"v" * 128)
                latencies.append(time.perf_counter() - start)
            after = {name: sum(cpu_seconds(pid)) for name, pid in pids.items()}
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    latencies.sort()
    n = len(latencies)
    cpu = ", ".join(f"{name} {(after[name] - before[name]) / n * 1e6:.0f}" for name in pids)
    return (
        f"{n} puts  p50 {latencies[n // 2] * 1e3:.3f} ms  p99 {latencies[int(n * 0.99)] * 1e3:.3f}"
        f" ms  CPU us/put: {cpu}"
    )


def main() -> int:
    parser = tree_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--via-follower", action="store_true", help="put through a follower")
    parser.add_argument(
        "--single-process", action="store_true", help="members of both trees one process each"
    )
    args = parser.parse_args()
    both = ["--single-process"] if args.single_process else []
    sides = (
        ("before", args.before, both),
        ("after", args.after, both + shlex.split(args.after_flags)),
    )
    for _ in range(args.runs):
        for name, tree, flags in sides:
            line = run(tree, args.seconds, args.via_follower, flags)
            print(f"{name:<7} {line}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
