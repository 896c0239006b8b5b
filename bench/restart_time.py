"""Restart time and memory of a member holding a large store.

Builds a store of --keys keys offline (as bench/member_join.py does), restores it into the
data dir of each member of a --members cluster (1 by default), starts them and writes
--writes more puts over the same keys (so the WAL and the history hold something), then
--rounds times: kill -9 of every member's two processes, start again, and time until the
first member answers a linearizable read (its client port polled every 5 ms, then one
Range; with several members that includes electing a leader). Prints the first member's
resident memory per process (anonymous and file-backed: LMDB's pages are the latter)
before the kill and after each restart, and the data dir's sizes.

    PYTHONPATH=. python bench/restart_time.py --keys 1000000 --writes 200000
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, ".."))

from member_join import make_backup, restore_backup  # noqa: E402

from pyraftkv import Client  # noqa: E402
from pyraftkv.client.aio import AsyncClient  # noqa: E402
from tests.e2e.harness import LocalCluster, Member  # noqa: E402


def rss_mb(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident MB of a process."""
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            name, _, value = line.partition(":")
            if name in ("RssAnon", "RssFile"):
                fields[name] = int(value.split()[0]) // 1024
    return fields["RssAnon"], fields["RssFile"]


def memory(member: Member) -> str:
    """Both processes' resident memory, as printed."""
    app = member.process.pid
    (raft,) = subprocess.run(
        ["pgrep", "-P", str(app)], capture_output=True, text=True, check=True
    ).stdout.split()
    (a_anon, a_file), (r_anon, r_file) = rss_mb(app), rss_mb(int(raft))
    return f"app {a_anon} MB anon + {a_file} MB file, Raft {r_anon} MB anon + {r_file} MB file"


def dir_mb(path: str) -> float:
    return sum(
        os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files
    ) / (1 << 20)


def start_until_read(cluster: LocalCluster, key: bytes) -> float:
    """Starts every member; seconds until a linearizable Range of key is answered by the
    first."""
    started = time.monotonic()
    for member in cluster.members:
        cluster.start_member(member, wait=False)
    member = cluster.members[0]
    while True:
        assert member.running, member.log_text()[-2000:]
        try:
            socket.create_connection(("127.0.0.1", member.client_port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.005)
    with Client([member.endpoint], timeout=30) as client:
        assert client.get(key).count == 1
    return time.monotonic() - started


async def write(endpoint: str, writes: int, keys: int, in_flight: int = 256) -> None:
    """writes puts over the keys, in_flight at a time."""
    async with AsyncClient([endpoint]) as client:
        numbers = iter(range(writes))

        async def writer() -> None:
            for i in numbers:
                await client.put(b"key/%09d" % (i * 7919 % keys), b"w" * 128)

        await asyncio.gather(*(writer() for _ in range(in_flight)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=256)
    parser.add_argument("--writes", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=1)
    args = parser.parse_args()
    root = tempfile.mkdtemp(dir=os.environ.get("TMPDIR"))
    cluster = LocalCluster(
        root,
        args.members,
        snapshot_count=100_000,
        token="bench-restart",
        extra_args=["--heartbeat-interval", "100", "--election-timeout", "1000"],  # etcd's
    )
    member = cluster.members[0]
    try:
        backup = os.path.join(root, "backup.db")
        make_backup(backup, args.keys, args.value_bytes)
        for m in cluster.members:
            restore_backup(backup, cluster, m)
        os.remove(backup)
        print(
            f"{args.members} member(s), keys {args.keys:,} ({args.value_bytes} B values), "
            f"then {args.writes:,} puts"
        )
        first = start_until_read(cluster, b"key/000000001")
        print(f"first start from the restored backup: {first:.2f} s")
        started = time.monotonic()
        asyncio.run(write(member.endpoint, args.writes, args.keys))
        took = time.monotonic() - started
        print(f"{args.writes:,} puts in {took:.1f} s; before the kill: {memory(member)}")
        print(
            f"data dir: {dir_mb(member.data_dir):.0f} MB, of which WAL "
            f"{dir_mb(os.path.join(member.data_dir, 'member', 'wal')):.0f} MB"
        )
        times = []
        for n in range(args.rounds):
            for m in cluster.members:
                cluster.kill(m)
            times.append(start_until_read(cluster, b"key/000000002"))
            print(
                f"restart {n + 1}: first linearizable read after {times[-1]:.2f} s; "
                f"{memory(member)}",
                flush=True,
            )
        times.sort()
        print(
            f"restart to first linearizable read: median {times[len(times) // 2]:.2f} s, "
            f"range {times[0]:.2f}-{times[-1]:.2f} s"
        )
    finally:
        cluster.stop_all()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
