"""The peer-port fuzzer's long mode: a fresh 3-member cluster, many seeded inputs on its
peer ports, the checks after every round (tests/fuzzing/peer_port.py).

    python bench/fuzz_peer.py --inputs 1000000 --round 20000 --seed 1

Exits 1 with what was wrong as soon as a check fails, or when a member logged an
unexpected error while handling a peer's bytes (it survives those, but each is a check
the peer boundary is missing); the data dirs and logs are kept then.
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
from tests.fuzzing import client_port, peer_port  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, default=1_000_000)
    parser.add_argument("--round", type=int, default=20_000, help="inputs between checks")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="fuzz-peer-")
    cluster = LocalCluster(root, 3)
    cluster.start()
    done, began, seed = 0, time.monotonic(), args.seed
    try:
        tracked = client_port.track_writes(cluster.client())
        cluster_id, members = peer_port.discover("127.0.0.1", cluster.members[0].peer_port)
        targets = [
            peer_port.Target(
                "127.0.0.1", m.peer_port, cluster_id, cluster.status(m).header.member_id, members
            )
            for m in cluster.members
        ]
        while done < args.inputs:
            stats = peer_port.run(targets, seed, min(args.round, args.inputs - done))
            done += stats.inputs
            problems = client_port.check_cluster(cluster, tracked)
            problems += [
                f"{m.name} logged an unexpected error handling a peer's bytes"
                for m in cluster.members
                if "error handling what it sent" in m.log_text()
            ]
            print(
                f"seed {seed}: {stats.inputs} inputs in {stats.sessions} sessions "
                f"({stats.accepted} accepted), {stats.seconds:.1f} s; total {done} in "
                f"{time.monotonic() - began:.0f} s",
                flush=True,
            )
            if problems:
                print("FAILED:", *problems, f"(data and logs in {root})", sep="\n")
                return 1
            seed += 1
    finally:
        cluster.stop_all()
    shutil.rmtree(root, ignore_errors=True)
    print(f"OK: {done} inputs, no member down, no acknowledged write lost, stores agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
