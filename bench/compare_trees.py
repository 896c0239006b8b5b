"""The same write load against 3-member clusters run from two source trees, alternating
runs in one sitting: did a change slow the native path?

    git archive <before-commit> | tar -x -C /tmp/before && (cd /tmp/before && \\
        python setup.py build_ext --inplace)          # likewise /tmp/after
    python bench/compare_trees.py /tmp/before /tmp/after [--runs 3] [--duration 8] \\
        [--clients 256] [--conns 6] [--rate W --leader] [--after-flags FLAGS]

Each run starts a fresh cluster from one tree (its members import that tree's pyraftkv;
the tests' harness: free loopback ports, data under a temporary dir), runs this tree's
bench/load.py against all three members (the leader only with ``--leader``; open loop at
``--rate`` writes/s), and stops it. Prints each tree's writes/s and p99 per run, median
p50/p99, and the change in median throughput.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from tests.e2e.harness import LocalCluster  # noqa: E402


@contextlib.contextmanager
def members_from(tree: str) -> Iterator[None]:
    """Clusters started inside run members that import ``tree``'s pyraftkv: on its path,
    and their working directory (``python -m`` puts that first, ahead of PYTHONPATH)."""
    saved_path, saved_cwd = os.environ.get("PYTHONPATH"), os.getcwd()
    os.environ["PYTHONPATH"] = os.path.abspath(tree)
    os.chdir(tree)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path


def run(args: argparse.Namespace, tree: str, member_flags: str = "") -> dict:
    with (
        members_from(tree),
        tempfile.TemporaryDirectory(prefix="pyraftkv-trees-bench-") as directory,
    ):
        cluster = LocalCluster(
            directory,
            3,
            snapshot_count=100_000,
            extra_args=["--log-level", "warning", *member_flags.split()],
        )
        cluster.start()
        try:
            endpoints = [cluster.wait_leader().endpoint] if args.leader else cluster.endpoints
            command = [
                *(sys.executable, os.path.join(HERE, "load.py"), "--json"),
                *("--endpoints", ",".join(endpoints)),
                *("--duration", str(args.duration)),
                *("--clients", str(args.clients), "--conns", str(args.conns)),
                *(("--rate", str(args.rate)) if args.rate else ()),
            ]
            env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
            out = subprocess.run(
                command, check=True, capture_output=True, text=True, env=env
            ).stdout
            return json.loads(out.strip().splitlines()[-1])
        finally:
            cluster.stop_all()


def tree_parser(doc: str) -> argparse.ArgumentParser:
    """The arguments every two-tree comparison takes: the trees and how many rounds."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("before", help="source tree (with its extension built)")
    parser.add_argument("after", help="source tree (with its extension built)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--after-flags",
        default="",
        metavar="FLAGS",
        help="member flags for the after tree's members only (e.g. --after-flags="
        "--single-process, with the same tree twice, compares the two ways to run a member)",
    )
    return parser


def main() -> int:
    parser = tree_parser(__doc__)
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--clients", type=int, default=256)
    parser.add_argument("--conns", type=int, default=6)
    parser.add_argument("--rate", type=int, default=0, help="open loop: writes/s (0: closed)")
    parser.add_argument("--leader", action="store_true", help="send to the leader only")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {"before": [], "after": []}
    for _ in range(args.runs):
        results["before"].append(run(args, args.before))
        results["after"].append(run(args, args.after, args.after_flags))
    medians = {}
    for name, runs in results.items():
        rates = " / ".join(
            f"{r['throughput_per_s']:,.0f} (p99 {r['latency_ms']['p99']:.1f})" for r in runs
        )
        medians[name] = sorted(r["throughput_per_s"] for r in runs)[len(runs) // 2]
        p50 = sorted(r["latency_ms"]["p50"] for r in runs)[len(runs) // 2]
        p99 = sorted(r["latency_ms"]["p99"] for r in runs)[len(runs) // 2]
        print(f"{name:6}  writes/s {rates}  p50 {p50:.1f} ms  p99 {p99:.1f} ms (medians)")
    change = 100 * (medians["after"] / medians["before"] - 1)
    print(f"median throughput change: {change:+.1f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
