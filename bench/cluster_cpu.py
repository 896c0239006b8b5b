"""CPU per durable write in each process of a 3-member cluster, next to throughput.

Starts a fresh 3-member cluster on loopback, runs bench/load.py against it for a fixed
number of writes, and reads each process's CPU time (user + system, /proc/<pid>/stat)
before and after. CPU time per write is far steadier than writes/s on a shared machine,
so it is what to compare between versions; the table matches the budget in DESIGN.md.

    python bench/cluster_cpu.py --count 100000 --clients 512 --conns 6
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from tests.e2e.harness import LocalCluster  # noqa: E402

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a live process, all its threads included."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def children(pid: int) -> list[int]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return [int(p) for p in f.read().split()]


def raft_pid(app_pid: int) -> int | None:
    """The member's Raft process (its own session, still the application's child); None
    for a ``--single-process`` member."""
    for child in children(app_pid):
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"raft_process" in f.read():
                return child
    return None


def member_pids(members, leader) -> dict[str, int]:
    """Each member's processes by name ("m1 app (leader)", "m1 raft (leader)"; a
    ``--single-process`` member is one "m1 member (leader)")."""
    pids = {}
    for m in members:
        role = "leader" if m is leader else "follower"
        raft = raft_pid(m.process.pid)
        pids[f"{m.name} {'app' if raft else 'member'} ({role})"] = m.process.pid
        if raft:
            pids[f"{m.name} raft ({role})"] = raft
    return pids


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--clients", type=int, default=512)
    parser.add_argument("--conns", type=int, default=6)
    parser.add_argument("--value-size", type=int, default=128)
    parser.add_argument(
        "--leader-only",
        action="store_true",
        help="send every request to the leader (default: to all members)",
    )
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="pyraftkv-cpu-")
    cluster = LocalCluster(
        root, 3, extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000"]
    )
    try:
        cluster.start()
        leader = cluster.wait_leader()
        targets = [leader] if args.leader_only else cluster.members
        pids = member_pids(cluster.members, leader)
        index_before = cluster.status(leader).raftIndex
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        load = subprocess.Popen(
            [
                sys.executable,
                os.path.join(HERE, "load.py"),
                "--endpoints",
                ",".join(m.endpoint for m in targets),
                "--clients",
                str(args.clients),
                "--conns",
                str(args.conns),
                "--duration",
                "0",
                "--count",
                str(args.count),
                "--value-size",
                str(args.value_size),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        summary = load.communicate()[0].strip()
        load_cpu = cpu_seconds_of_finished(load.pid)
        after = {name: cpu_seconds(pid) for name, pid in pids.items()}
        entries = cluster.status(leader).raftIndex - index_before
        print(summary)
        print(f"{entries} Raft entries: {args.count / max(1, entries):.1f} writes per entry")
        print(f"{'process':<28} {'CPU us/write':>12} {'of it system':>12}")
        total = 0.0
        for name in pids:
            user = after[name][0] - before[name][0]
            system = after[name][1] - before[name][1]
            total += user + system
            print(
                f"{name:<28} {(user + system) / args.count * 1e6:12.1f} "
                f"{system / args.count * 1e6:12.1f}"
            )
        print(f"{'all members':<28} {total / args.count * 1e6:12.1f}")
        if load_cpu is not None:
            print(f"{'load generator':<28} {load_cpu / args.count * 1e6:12.1f}")
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)
    return 0


def cpu_seconds_of_finished(pid: int) -> float | None:
    """CPU of a reaped child is gone from /proc; read it from our rusage of children."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


if __name__ == "__main__":
    sys.exit(main())
