"""How long a large store takes to move: a backup restored into a new 3-member cluster, and
a member joining that cluster from a snapshot once the log was compacted.

Builds a store of --keys keys (--value-bytes random values) offline and copies it into a backup
file (the format `snapshot save` writes), then times, with real member processes on
loopback:

1. `pyraftkvctl snapshot restore` of the backup into each of 3 new members' data dirs;
2. starting the 3 members until every one serves and counts every key;
3. after writes that make the leader take a Raft snapshot and compact its log
   (--snapshot-count), `member add` of a fourth voter and its start: until it has applied
   the leader's index (it can only get there from a snapshot of the whole store) and
   counts every key.

    PYTHONPATH=. python bench/member_join.py --keys 1000000
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from pyraftkv import Client  # noqa: E402
from pyraftkv.mvcc.store import MVCCStore  # noqa: E402
from pyraftkv.proto import rpc_pb2 as rpc  # noqa: E402
from tests.e2e.harness import LocalCluster, Member, free_ports  # noqa: E402

SNAPSHOT_COUNT = 1000


def make_backup(path: str, keys: int, value_bytes: int) -> None:
    """A backup of a store holding ``keys`` keys with random (incompressible) values
    (applied index 1 per 10,000 keys)."""
    with tempfile.TemporaryDirectory(dir=os.path.dirname(path)) as scratch:
        store = MVCCStore(scratch, map_size=64 << 30)
        for index, start in enumerate(range(0, keys, 10_000), 1):
            values = os.urandom(10_000 * value_bytes)
            with store.write_batch(index, 1) as batch:
                for i in range(start, min(keys, start + 10_000)):
                    at = (i - start) * value_bytes
                    value = values[at : at + value_bytes]
                    batch.put(rpc.PutRequest(key=b"key/%09d" % i, value=value))
        store.sync()
        store.snapshot_to(path)
        store.close()


def restore_backup(backup: str, cluster: LocalCluster, member: Member) -> None:
    """`pyraftkvctl snapshot restore` of the backup into the member's data dir."""
    subprocess.run(
        [sys.executable, "-m", "pyraftkv.ctl", "snapshot", "restore", backup]
        + ["--name", member.name, "--data-dir", member.data_dir]
        + ["--initial-cluster", cluster.initial_cluster]
        + ["--initial-cluster-token", cluster.token]
        + ["--initial-advertise-peer-urls", f"http://{member.peer_url_host}"],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def count(member: Member) -> int:
    with Client([member.endpoint], timeout=120) as c:
        return c.get("key/", prefix=True, count_only=True, serializable=True).count


def logged(member: Member, text: str) -> tuple[float, str]:
    """When a member last logged a line containing text (epoch seconds), and the line."""
    lines = [line for line in member.log_text().splitlines() if text in line]
    assert lines, f"{member.name} never logged {text!r}"
    stamp = datetime.datetime.strptime(lines[-1][:23], "%Y-%m-%d %H:%M:%S.%f").timestamp()
    return stamp, lines[-1].split(": ", 1)[-1]


def timed(what: str, started: float) -> float:
    took = time.monotonic() - started
    print(f"{what}: {took:.1f} s", flush=True)
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=256)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as root:
        backup = os.path.join(root, "backup.db")
        started = time.monotonic()
        make_backup(backup, args.keys, args.value_bytes)
        print(f"keys {args.keys:,}, values {args.value_bytes} B", flush=True)
        timed(f"backup built offline ({os.path.getsize(backup) / 1e6:.0f} MB)", started)

        cluster = LocalCluster(root, 3, snapshot_count=SNAPSHOT_COUNT, token="bench-restore")
        try:
            started = time.monotonic()
            for m in cluster.members:
                one = time.monotonic()
                restore_backup(backup, cluster, m)
                timed(f"  snapshot restore {m.name}", one)
            timed("snapshot restore, 3 members", started)

            started = time.monotonic()
            cluster.start(wait=False)
            for m in cluster.members:
                cluster.wait_serving(m, timeout=600)
            leader = cluster.wait_leader(timeout=600)
            timed("3 restored members started, serving, leader elected", started)
            assert all(count(m) == args.keys for m in cluster.members)
            timed("... and each counted every key (serializable count)", started)

            with cluster.client([leader]) as c:
                for i in range(SNAPSHOT_COUNT + 200):
                    c.put(f"extra/{i:05d}", "x")
            deadline = time.monotonic() + 120
            while "log compacted" not in leader.log_text():
                assert time.monotonic() < deadline, "the leader did not compact its log"
                time.sleep(0.2)

            client_port, peer_port = free_ports(2)
            url = f"http://127.0.0.1:{peer_port}"
            started, add_at = time.monotonic(), time.time()
            with cluster.client([leader]) as c:
                c.call("MemberAdd", rpc.MemberAddRequest(peerURLs=[url]), timeout=30)
            joiner = Member(
                "m4",
                client_port,
                peer_port,
                os.path.join(root, "m4.pyraftkv"),
                ["--initial-cluster-state", "existing"],
            )
            cluster.initial_cluster += f",m4={url}"
            cluster.members.append(joiner)
            cluster.start_member(joiner, wait=False)
            index = cluster.status(leader).raftIndex
            cluster.wait_applied(joiner, index, timeout=1200)
            took = timed("member add + start until the newcomer applied the leader index", started)
            assert count(joiner) == args.keys
            timed("... and counted every key (serializable count)", started)
            phases = [
                (leader, "needs a snapshot", "leader: asked for a snapshot file"),
                (leader, "sent to member", "leader: snapshot sent"),
                (joiner, "received snapshot", "newcomer: snapshot received"),
                (joiner, "installed snapshot", "newcomer: snapshot installed"),
            ]
            for member, text, what in phases:
                stamp, line = logged(member, text)
                print(f"  {what} at +{stamp - add_at:.1f} s: {line}")
            print(f"join from a snapshot of {args.keys:,} keys: {took:.1f} s")
        finally:
            cluster.stop_all()


if __name__ == "__main__":
    main()
