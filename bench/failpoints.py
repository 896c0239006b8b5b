"""Crash recovery at every failpoint: for each point, a 3-member cluster under write load
has a member crash there (the leader too for the points a leader passes), restarts it,
and checks that no acknowledged write was lost and every member's store hashes the same.

    python bench/failpoints.py [--points raftBeforeFsync,appBeforeReply] [--rounds 1]

Each point gets a fresh cluster (the tests' harness, data under a temporary dir, with a
small --snapshot-count so the snapshot points see snapshots being sent). Prints one line
per point and exits 1 if any failed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from pyraftkv.failpoints import POINTS  # noqa: E402
from tests.e2e.crash_recovery import SNAPSHOT_POINTS, crash_at  # noqa: E402
from tests.e2e.harness import LocalCluster  # noqa: E402


def run_point(point: str, leader: bool) -> tuple[bool, str]:
    with tempfile.TemporaryDirectory() as root:
        cluster = LocalCluster(root, 3, snapshot_count=200)
        try:
            cluster.start()
            crashed = crash_at(cluster, point, "bench/", leader=leader)
            return True, f"{crashed.name} crashed and recovered"
        except BaseException as exc:  # report and go on with the next point
            return False, "".join(traceback.format_exception_only(type(exc), exc)).strip()[:500]
        finally:
            cluster.stop_all()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--points", default=",".join(POINTS))
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    failed = 0
    runs = 0
    for _ in range(args.rounds):
        for point in args.points.split(","):
            roles = [False] if point in SNAPSHOT_POINTS else [False, True]
            for leader in roles:
                started = time.monotonic()
                ok, text = run_point(point, leader)
                runs += 1
                failed += not ok
                who = "leader" if leader else "follower"
                if point in SNAPSHOT_POINTS:
                    who = "snapshot"
                print(
                    f"{'ok  ' if ok else 'FAIL'} {point:26} {who:8} "
                    f"{time.monotonic() - started:5.1f}s  {text}",
                    flush=True,
                )
    print(f"{runs - failed}/{runs} crash-recovery runs passed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
