"""The client-port fuzzer's long mode: a fresh 3-member cluster, many seeded inputs, the
checks after every round (tests/fuzzing/client_port.py has the inputs and the checks).

    python bench/fuzz_client.py --inputs 1000000 --round 20000 --seed 1

Prints inputs, sessions, connections the member closed and rates per round; exits 1 with
what was wrong as soon as a check fails (and keeps the data dirs and logs to look at).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from tests.e2e.harness import LocalCluster  # noqa: E402
from tests.fuzzing import client_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--round", type=int, default=20_000, help="inputs between checks")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="fuzz-client-")
    cluster = LocalCluster(root, 3)
    cluster.start()
    done, began = 0, time.monotonic()
    try:
        tracked = client_port.track_writes(cluster.client())
        endpoints = [("127.0.0.1", m.client_port) for m in cluster.members]
        seed = args.seed
        while done < args.inputs:
            n = min(args.round, args.inputs - done)
            stats = client_port.run(endpoints, seed, n, tracked.writes[0][2])
            done += stats.inputs
            problems = client_port.check_cluster(cluster, tracked)
            problems += client_port.peer_links_closed(cluster)
            print(
                f"seed {seed}: {stats.inputs} inputs in {stats.sessions} sessions "
                f"({stats.closed_by_member} closed by the member), {stats.seconds:.1f} s; "
                f"total {done} in {time.monotonic() - began:.0f} s",
                flush=True,
            )
            if problems or stats.refused:
                print("FAILED:", *problems, *stats.refused, f"(data and logs in {root})", sep="\n")
                return 1
            seed += 1
    finally:
        cluster.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    print(f"OK: {done} inputs, no member down, no acknowledged write lost, stores agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
