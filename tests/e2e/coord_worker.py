"""Client processes for the coordination end-to-end tests (lock contenders, lock holders,
election candidates, registered service instances, lease keepers).

Run as ``python -m tests.e2e.coord_worker COMMAND --endpoints ... --dir DIR ...`` from the
repository root. Workers report through files in DIR (so a test can kill -9 them and
still read what they did): every record is one JSON line appended with O_APPEND.
Timestamps are time.monotonic(), which on Linux is one clock for every process.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from pyraftkv import Client


def record(path: str, **fields) -> None:
    """Append one JSON line (a single write: lines from many processes never mix)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (json.dumps(fields) + "\n").encode())
    finally:
        os.close(fd)


def read_records(path: str) -> list[dict]:
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def wait_for_file(path: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise SystemExit(f"{path} never appeared")
        time.sleep(0.01)


def enter_exclusive(marker: str, violations: str, who: str) -> None:
    """Create the marker that only one process may hold; a second one is a violation."""
    try:
        fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        with open(marker) as f:
            holder = f.read()
        record(violations, who=who, found=holder, at=time.monotonic())
        return
    os.write(fd, who.encode())
    os.close(fd)


def leave_exclusive(marker: str, who: str) -> None:
    try:
        with open(marker) as f:
            if f.read() != who:
                return  # not ours: leave the evidence in place
        os.unlink(marker)
    except FileNotFoundError:
        pass


def bump_counter(path: str) -> None:
    """Read, pause, write back + 1: any overlap of two holders loses an increment."""
    try:
        with open(path) as f:
            value = int(f.read() or 0)
    except FileNotFoundError:
        value = 0
    time.sleep(0.005)
    with open(path, "w") as f:
        f.write(str(value + 1))


def lock_rounds(client: Client, args: argparse.Namespace) -> None:
    """Take the lock ``args.rounds`` times; the critical section checks it is alone."""
    who = f"contender-{args.id}"
    wait_for_file(os.path.join(args.dir, "go"))
    for round_ in range(args.rounds):
        requested_at = time.monotonic()
        with client.lock(args.name, ttl=args.ttl) as lock:
            acquired_at = time.monotonic()
            enter_exclusive(
                os.path.join(args.dir, "inside"), os.path.join(args.dir, "violations"), who
            )
            bump_counter(os.path.join(args.dir, "counter"))
            create_revision = client.get(lock.key).kvs[0].create_revision
            time.sleep(args.hold)
            record(
                os.path.join(args.dir, "acquisitions"),
                who=who,
                round=round_,
                key=lock.key.decode(),
                create_revision=create_revision,
                requested_at=requested_at,
                acquired_at=acquired_at,
                released_at=time.monotonic(),
            )
            leave_exclusive(os.path.join(args.dir, "inside"), who)


def hold_lock(client: Client, args: argparse.Namespace) -> None:
    """Take the lock, say so, and hold it until killed."""
    lock = client.lock(args.name, ttl=args.ttl)
    lock.acquire()
    record(os.path.join(args.dir, "held"), who=args.id, key=lock.key.decode(), at=time.monotonic())
    while True:
        time.sleep(1)


def candidate(client: Client, args: argparse.Namespace) -> None:
    """Campaign; once leader, hold the leader marker and keep checking we still lead."""
    who = f"candidate-{args.id}"
    election = client.election(args.name)
    marker, violations = os.path.join(args.dir, "leader"), os.path.join(args.dir, "violations")
    record(os.path.join(args.dir, "campaigning"), who=who, at=time.monotonic())
    election.campaign(who, ttl=args.ttl)
    enter_exclusive(marker, violations, who)
    record(os.path.join(args.dir, "won"), who=who, at=time.monotonic())
    while True:
        leader = election.leader()
        if leader is None or leader.value.decode() != who:
            record(violations, who=who, leader=str(leader), at=time.monotonic())
        time.sleep(0.1)


def register(client: Client, args: argparse.Namespace) -> None:
    """Register one service instance and stay alive until killed."""
    client.service_registry(args.name).register(args.id, args.value, ttl=args.ttl)
    record(os.path.join(args.dir, "registered"), who=args.id, at=time.monotonic())
    while True:
        time.sleep(1)


def keep_leases(client: Client, args: argparse.Namespace) -> None:
    """Grant ``count`` leases, each holding one key, and keep them alive until killed."""
    leases = []
    for i in range(args.count):
        lease = client.lease(args.ttl).grant()
        client.put(f"{args.name}{args.id}-{i}", "alive", lease=lease.id)
        leases.append(lease)
    record(
        os.path.join(args.dir, "leases"),
        who=args.id,
        ids=[lease.id for lease in leases],
        at=time.monotonic(),
    )
    while True:
        time.sleep(0.2)
        lost = [f"{lease.id:x}" for lease in leases if lease.expired]
        if lost:
            record(os.path.join(args.dir, "expired"), who=args.id, ids=lost, at=time.monotonic())
            return


COMMANDS = {
    "lock-rounds": lock_rounds,
    "hold-lock": hold_lock,
    "candidate": candidate,
    "register": register,
    "keep-leases": keep_leases,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("command", choices=sorted(COMMANDS))
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--dir", required=True)
    parser.add_argument("--name", default="lock")
    parser.add_argument("--id", default="0")
    parser.add_argument("--ttl", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--hold", type=float, default=0.01)
    parser.add_argument("--value", default="")
    parser.add_argument("--count", type=int, default=1)
    args = parser.parse_args(argv)
    with Client(args.endpoints.split(","), timeout=15) as client:
        COMMANDS[args.command](client, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
