"""The same scripts run with etcdctl against a real 3-member etcd 3.4 cluster and with
pyraftkvctl (and, for the maintenance script, etcdctl too) against a real 3-member pyraftkv
cluster. The transcripts (every command's output and exit code, in order) must be the same
once what differs by nature is masked: IDs (renamed in order of appearance, the same ID
getting the same name wherever it shows), revisions where the scripts differ, remaining
TTLs, times, sizes and hashes. Skipped when the etcd binaries are absent.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest

from pyraftkv.admin.cluster import member_id
from pyraftkv.ctl import run
from pyraftkv.proto import rpc_pb2 as rpc

from ..ctl_etcd_cluster import (
    ETCD,
    ETCD_LOG_LINE,
    ETCDCTL,
    MISSING,
    NAMES,
    EtcdCluster,
    Result,
    free_ports,
    wait_until,
)

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)


class Side:
    """One CLI (``program``) against one cluster (``endpoints``): one-shot commands, and
    commands left running; ``transcript`` records what each printed and its exit code."""

    def __init__(self, program: list[str], endpoints: list[str], env: dict, tmp: Path) -> None:
        self.endpoints = endpoints
        self.endpoints_flag = f"--endpoints={','.join(endpoints)}"
        self.program = program
        self.argv = [*program, self.endpoints_flag]
        self.env, self.tmp = env, tmp
        self.transcript: list[tuple[str, Result]] = []
        self._count = 0

    def run(self, *args: str, record: bool = True, endpoint: str = "") -> Result:
        """One command on every endpoint, or on ``endpoint`` only."""
        argv = [*self.program, f"--endpoints={endpoint}"] if endpoint else self.argv
        done = subprocess.run(
            [*argv, *args],
            capture_output=True,
            env=self.env,
            timeout=30,
            stdin=subprocess.DEVNULL,
        )
        return self._record(args, Result(done.returncode, done.stdout, done.stderr), record)

    def _record(self, args, result: Result, record: bool) -> Result:
        result.err = ETCD_LOG_LINE.sub(b"", result.err)
        if record:
            self.transcript.append((" ".join(args), result))
        return result

    def snapshot_status(self, path: str, *args: str) -> Result:
        """snapshot status of a file this side saved (an offline command: the file's
        format is the server's, so pyraftkv's backups are read by pyraftkvctl)."""
        return self.run("snapshot", "status", path, *args)

    def start(self, *args: str) -> Background:
        self._count += 1
        return Background(self, args, self.tmp / f"bg{self._count}")


class OursSide(Side):
    """pyraftkvctl: one-shot commands in-process (the same code as the console script,
    without its start-up time), long-running ones as processes."""

    def __init__(self, endpoints: list[str], tmp: Path) -> None:
        program = [sys.executable, "-m", "pyraftkv.ctl"]
        super().__init__(program, endpoints, {**os.environ, "PYTHONUNBUFFERED": "1"}, tmp)

    def run(self, *args: str, record: bool = True, endpoint: str = "") -> Result:
        out, err = io.BytesIO(), io.BytesIO()
        flag = f"--endpoints={endpoint}" if endpoint else self.endpoints_flag
        code = run([flag, *args], io.BytesIO(), out, err, {})
        return self._record(args, Result(code, out.getvalue(), err.getvalue()), record)


class Background:
    """A command left running (keep-alive, lock, elect), its output in files."""

    def __init__(self, side: Side, args: tuple[str, ...], path: Path) -> None:
        self.side, self.args = side, args
        self.out_path, self.err_path = path.with_suffix(".out"), path.with_suffix(".err")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.process = subprocess.Popen(
                [*side.argv, *args], stdout=out, stderr=err, env=side.env, stdin=subprocess.DEVNULL
            )

    def output(self) -> bytes:
        return self.out_path.read_bytes()

    def wait_for(self, text: bytes, count: int = 1) -> None:
        wait_until(
            lambda: self.output().count(text) >= count,
            timeout=20,
            what=f"{text!r} from {' '.join(self.args)}",
        )

    def end(self, how: signal.Signals | None = None) -> Result:
        """Signal it (or let it finish) and record what it printed and its exit code."""
        if how is not None:
            self.process.send_signal(how)
        result = Result(self.process.wait(20), self.output(), self.err_path.read_bytes())
        return self.side._record((f"[{how.name if how else 'end'}]", *self.args), result, True)


def lease_of(key_line: bytes) -> str:
    """The lease ID in hex from a lock or election key (name/<lease in hex>)."""
    return key_line.split(b"\n")[0].rsplit(b"/", 1)[1].decode()


def wait_for_keys(side: Side, prefix: str, count: int) -> None:
    """Until ``count`` lock waiters or candidates have their keys under ``prefix``."""

    def keys() -> int:
        return side.run("get", prefix, "--prefix", "--keys-only", record=False).out.count(b"/")

    wait_until(lambda: keys() == count, what=f"{count} keys under {prefix}")


def revision(side: Side) -> int:
    """The store's revision now (from a get's header)."""
    return json.loads(side.run("get", "-w", "json", "x", record=False).out)["header"]["revision"]


def script(side: Side) -> None:
    """Watches, leases, locks and elections, as an operator would drive them from a shell."""
    # -- watches (from a revision, so that nothing depends on when the watch starts) -----
    start = revision(side) + 1
    side.run("put", "w/a", "1")
    side.run("put", "w/b", "2")
    side.run("put", "w/a", "3")
    side.run("del", "w/b")
    everything = side.start("watch", "w/", "--prefix", f"--rev={start}")
    everything.wait_for(b"DELETE")
    everything.end(signal.SIGINT)
    previous = side.start("watch", "w/a", f"--rev={start}", "--prev-kv")
    previous.wait_for(b"w/a\n3\n")
    previous.end(signal.SIGINT)
    live = side.start("watch", "w/", "--prefix", "--prev-kv", f"--rev={revision(side) + 1}")
    side.run("put", "w/a", "4")
    side.run("del", "w/", "--prefix")
    live.wait_for(b"DELETE")
    live.end(signal.SIGINT)

    # -- leases ------------------------------------------------------------------------
    grant = side.run("lease", "grant", "60")
    lease = grant.out.split()[1].decode()
    side.run("put", f"--lease={lease}", "svc/a", "1")
    side.run("put", f"--lease={lease}", "svc/b", "2")
    side.run("lease", "timetolive", lease)
    side.run("lease", "timetolive", lease, "--keys")
    side.run("lease", "timetolive", lease, "--keys", "-w", "json")
    side.run("lease", "keep-alive", "--once", lease)
    side.run("lease", "keep-alive", "--once", lease, "-w", "json")
    side.run("lease", "list")
    side.run("lease", "revoke", lease)
    side.run("get", "svc/", "--prefix")  # the lease's keys went with it
    side.run("lease", "timetolive", lease)
    side.run("lease", "timetolive", lease, "-w", "json")
    side.run("lease", "revoke", lease)
    side.run("lease", "keep-alive", "--once", lease)
    side.run("lease", "keep-alive", lease)
    side.run("put", f"--lease={lease}", "svc/c", "3")
    side.run("lease", "list")
    # A lease nobody keeps alive expires (decided by the leader).
    short = side.run("lease", "grant", "1").out.split()[1].decode()
    side.run("put", f"--lease={short}", "svc/short", "x")
    wait_until(
        lambda: b"already expired" in side.run("lease", "timetolive", short, record=False).out,
        what="the 1 s lease to expire",
    )
    side.run("lease", "timetolive", short)
    side.run("get", "svc/short")
    # keep-alive renews until the lease is revoked, then says so and exits 0 ...
    kept = side.run("lease", "grant", "6").out.split()[1].decode()
    keeper = side.start("lease", "keep-alive", kept)
    keeper.wait_for(b"keepalived")
    side.run("lease", "revoke", kept)
    keeper.end()
    # ... or until interrupted.
    kept = side.run("lease", "grant", "6").out.split()[1].decode()
    keeper = side.start("lease", "keep-alive", kept)
    keeper.wait_for(b"keepalived")
    keeper.end(signal.SIGINT)
    side.run("lease", "revoke", kept)

    # -- locks -------------------------------------------------------------------------
    side.run(
        "lock", "job", "--", "sh", "-c", 'echo "prefix=${ETCD_LOCK_KEY%/*} rev=$ETCD_LOCK_REV"'
    )
    side.run("lock", "job", "--", "sh", "-c", "echo failing; exit 3")
    side.run("lock", "job", "no-such-command-here")
    holder = side.start("lock", "job")
    holder.wait_for(b"job/")
    waiter = side.start("lock", "--ttl=5", "job", "--", "sh", "-c", "echo second holder")
    wait_for_keys(side, "job/", 2)
    impatient = side.start("lock", "job")
    wait_for_keys(side, "job/", 3)
    impatient.end(signal.SIGINT)  # gives up waiting: "context canceled", exit 1
    assert waiter.process.poll() is None and waiter.output() == b""  # still waiting
    holder.end(signal.SIGINT)  # releases the lock ...
    waiter.end()  # ... so the waiter runs its command and exits
    holder = side.start("lock", "job")  # the lock is free again
    holder.wait_for(b"job/")
    holder.end(signal.SIGTERM)
    # A holder whose lease is lost (here revoked; the same as an expiry) says so, exit 1.
    doomed = side.start("lock", "--ttl=3", "job")
    doomed.wait_for(b"job/")
    side.run("lease", "revoke", lease_of(doomed.output()))
    doomed.end()

    # -- elections ---------------------------------------------------------------------
    listener = side.start("elect", "-l", "pool")
    alice = side.start("elect", "pool", "alice")
    alice.wait_for(b"alice")
    listener.wait_for(b"alice")
    bob = side.start("elect", "pool", "bob")
    wait_for_keys(side, "pool/", 2)
    carol = side.start("elect", "pool", "carol")
    wait_for_keys(side, "pool/", 3)
    dave = side.start("elect", "pool", "dave")
    wait_for_keys(side, "pool/", 4)
    dave.end(signal.SIGINT)  # gives up campaigning: "context canceled", exit 1
    side.run("elect", "pool", "dave", "-l")
    alice.end(signal.SIGTERM)  # resigns: bob, next in line, leads
    bob.wait_for(b"bob")
    listener.wait_for(b"bob")
    bob_lease = lease_of(bob.output())
    bob.end(signal.SIGKILL)  # dies leading; when its lease goes, carol leads
    side.run("lease", "revoke", bob_lease)  # (as its expiry would, without the wait)
    carol.wait_for(b"carol")
    listener.wait_for(b"carol")
    carol.end(signal.SIGINT)
    listener.end(signal.SIGINT)


def _namer(names: dict[int, str]):
    def name(value: int) -> str:
        return names.setdefault(value, f"L{len(names) + 1}")

    return name


def masked(transcript: list[tuple[str, Result]]) -> list[tuple[str, int, str, str]]:
    """The transcript with lease IDs renamed in order of appearance and the numbers that
    differ by nature (revisions, header IDs, remaining TTLs) replaced."""
    name = _namer({})

    def mask(text: str) -> str:
        text = re.sub(r'"(cluster_id|member_id|revision|raft_term)":\d+', r'"\1":N', text)
        text = re.sub(r'"(ID|id|lease)":(\d+)', lambda m: f'"{m[1]}":{name(int(m[2]))}', text)
        text = re.sub(r"\b[0-9a-f]{10,16}\b", lambda m: name(int(m[0], 16)), text)
        text = re.sub(r'"ttl":\d+', '"ttl":N', text)
        text = re.sub(r"remaining\(\d+s\)", "remaining(Ns)", text)
        # etcd lists a lease's keys in no particular order (pyraftkv sorts them).
        text = re.sub(
            r"attached keys\(\[(.*?)\]\)",
            lambda m: f"attached keys([{' '.join(sorted(m[1].split()))}])",
            text,
        )
        text = re.sub(
            r'"keys":\[(.*?)\]', lambda m: f'"keys":[{",".join(sorted(m[1].split(",")))}]', text
        )
        return re.sub(r"rev=\d+", "rev=N", text)

    return [
        (mask(command), r.code, mask(r.out.decode()), mask(r.err.decode()))
        for command, r in transcript
    ]


@pytest.fixture
def etcd(tmp_path):
    cluster = EtcdCluster(tmp_path)
    try:
        yield cluster
    finally:
        cluster.close()


def test_lease_lock_and_election_scripts_match_etcd(etcd, make_cluster, tmp_path):
    """The watch, lease, lock and election script: etcdctl against etcd 3.4, pyraftkvctl
    against pyraftkv and etcdctl against pyraftkv (gRPC) print the same."""
    pyraftkv = make_cluster(3)
    pyraftkv.start()
    (tmp_path / "theirs").mkdir()
    (tmp_path / "ours").mkdir()
    etcd_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    theirs = Side([ETCDCTL], etcd.endpoints, {**etcd_env, "ETCDCTL_API": "3"}, tmp_path / "theirs")
    ours = OursSide(pyraftkv.endpoints, tmp_path / "ours")
    (tmp_path / "grpc").mkdir()
    over_grpc = Side([ETCDCTL], pyraftkv.endpoints, theirs.env, tmp_path / "grpc")
    for side in (theirs, ours, over_grpc):
        script(side)
    expected = masked(theirs.transcript)
    for name, side in (("pyraftkvctl", ours), ("etcdctl -> pyraftkv", over_grpc)):
        for step_theirs, step_ours in zip(expected, masked(side.transcript), strict=True):
            assert step_ours == step_theirs, name
    # The script says what it means to (checked on etcd's side, so it cannot agree with us
    # by accident).
    outputs = {command: (code, out) for command, code, out, _ in expected}
    assert outputs["lease timetolive L1 --keys"] == (
        0,
        "lease L1 granted with TTL(60s), remaining(Ns), attached keys([svc/a svc/b])\n",
    )
    assert outputs["lease keep-alive L1"] == (0, "lease L1 expired or revoked.\n")
    assert outputs["[end] lock --ttl=5 job -- sh -c echo second holder"] == (0, "second holder\n")
    assert outputs["[SIGINT] watch w/ --prefix --rev=N"][1] == (
        "PUT\nw/a\n1\nPUT\nw/b\n2\nPUT\nw/a\n3\nDELETE\nw/b\n\n"
    )
    assert outputs["[SIGINT] watch w/a --rev=N --prev-kv"][1] == (
        "PUT\nw/a\n1\nPUT\nw/a\n1\nw/a\n3\n"
    )
    assert outputs["[SIGINT] watch w/ --prefix --prev-kv --rev=N"][1] == (
        "PUT\nw/a\n3\nw/a\n4\nDELETE\nw/a\n4\nw/a\n\n"
    )
    listened = outputs["[SIGINT] elect -l pool"][1]
    assert re.fullmatch(r"pool/(L\d+)\nalice\npool/(L\d+)\nbob\npool/(L\d+)\ncarol\n", listened)


# -- maintenance -------------------------------------------------------------------------------


def statuses(side: Side) -> list[dict]:
    """Each endpoint's status (etcdctl's JSON), in endpoint order."""
    out = side.run("endpoint", "status", "-w", "json", record=False).out
    return [item["Status"] for item in json.loads(out)]


def member_ids(side: Side) -> list[int]:
    return [status["header"]["member_id"] for status in statuses(side)]


def wait_for_leader(side: Side, leader: int) -> None:
    """Until every member names ``leader`` as the leader."""
    wait_until(  # (a member between leaders names none: no "leader" field)
        lambda: {s.get("leader") for s in statuses(side)} == {leader}, what=f"leader {leader:x}"
    )


def wait_for_same_hashes(side: Side) -> None:
    """Until every member has applied the same writes (equal HashKV at equal revisions)."""

    def same() -> bool:
        out = side.run("endpoint", "hashkv", "-w", "json", record=False).out
        answers = [item["HashKV"] for item in json.loads(out)]
        return (
            None not in answers
            and len(
                {(a["header"]["revision"], a["hash"], a.get("compact_revision")) for a in answers}
            )
            == 1
        )

    wait_until(same, what="equal hashes")


def raise_alarm(endpoint: str, member_id: int) -> None:
    """Raise NOSPACE for ``member_id`` through etcd's gRPC Alarm call (no CLI raises one)."""
    with grpc.insecure_channel(endpoint) as channel:
        alarm = channel.unary_unary(
            "/etcdserverpb.Maintenance/Alarm",
            request_serializer=rpc.AlarmRequest.SerializeToString,
            response_deserializer=rpc.AlarmResponse.FromString,
        )
        request = rpc.AlarmRequest(
            action=rpc.AlarmRequest.ACTIVATE, memberID=member_id, alarm=rpc.NOSPACE
        )
        assert len(alarm(request, timeout=10).alarms) == 1


def maintenance_script(side: Side) -> None:
    """member list, move-leader, endpoint status and hashkv, defrag, alarms, snapshots."""
    first, second, third = side.endpoints
    ids = member_ids(side)
    side.names = {ids[i]: f"M{i + 1}" for i in range(3)}
    side.names[statuses(side)[0]["header"]["cluster_id"]] = "C"
    for i in range(5):
        side.run("put", f"k{i}", f"v{i}")
    # (on one endpoint: etcdctl would spread calls over several, and headers name the member)
    side.run("member", "list", endpoint=first)
    side.run("member", "list", "-w", "json", endpoint=first)
    side.run("member", "list", "-w", "table", endpoint=first)
    if statuses(side)[0]["leader"] != ids[1]:  # the second member leads first ...
        side.run("move-leader", f"{ids[1]:x}", record=False)
    wait_for_leader(side, ids[1])
    side.run("move-leader", f"{ids[0]:x}")  # ... then hands over to the first
    wait_for_leader(side, ids[0])
    side.run("move-leader", f"{ids[0]:x}")
    side.run("move-leader", "1")
    side.run("move-leader", "zz")
    side.run("move-leader", f"{ids[1]:x}", endpoint=third)
    wait_for_same_hashes(side)
    side.run("endpoint", "status")
    side.run("endpoint", "status", "-w", "json")
    side.run("endpoint", "status", "-w", "table")
    side.run("endpoint", "hashkv")
    side.run("endpoint", "hashkv", "-w", "json")
    side.run("endpoint", "hashkv", "-w", "table")
    side.run("endpoint", "hashkv", "--rev=3")
    side.run("compaction", "3")
    wait_for_same_hashes(side)
    side.run("endpoint", "hashkv", "--rev=2")
    side.run("endpoint", "hashkv", "--rev=99")
    side.run("defrag")
    side.run("defrag", "--cluster")
    side.run("defrag", endpoint=second)
    raise_alarm(first, ids[0])
    side.run("alarm", "list")
    side.run("alarm", "list", "-w", "json")
    side.run("put", "x", "refused")
    side.run("alarm", "disarm")
    side.run("alarm", "disarm", "-w", "json")
    side.run("alarm", "list")
    side.run("alarm", "list", "-w", "json")
    side.run("put", "x", "accepted")
    backup = str(side.tmp / "backup.db")
    side.run("snapshot", "save", backup, endpoint=first)
    side.run("snapshot", "save", backup)
    side.snapshot_status(backup)
    side.snapshot_status(backup, "-w", "json")
    side.snapshot_status(backup, "-w", "table")


class GrpcSide(Side):
    """etcdctl against pyraftkv (over gRPC); a backup it saved is pyraftkv's LMDB file, so
    pyraftkvctl describes it (etcdctl reads bbolt files only)."""

    def snapshot_status(self, path: str, *args: str) -> Result:
        out, err = io.BytesIO(), io.BytesIO()
        code = run(["snapshot", "status", path, *args], io.BytesIO(), out, err, {})
        result = Result(code, out.getvalue(), err.getvalue())
        return self._record(("snapshot", "status", path, *args), result, True)


def masked_maintenance(side: Side) -> list[tuple[str, int, str, str]]:
    """A maintenance transcript with what differs by nature named (member IDs by endpoint,
    the cluster ID; ports and hashes in order of appearance, the same value getting the
    same name) or masked
    (versions, sizes, Raft terms and indexes, key counts of backups); table padding is
    collapsed, as masked cells differ in width."""
    name = _namer({})

    def mask(text: str) -> str:
        text = text.replace(str(side.tmp), "<tmp>")
        text = re.sub(r"127\.0\.0\.1:(\d+)", lambda m: f"127.0.0.1:{name(int(m[1]))}", text)
        text = re.sub(r"\b\d+(\.\d+)? [kMG]?B\b", "SIZE", text)
        # snapshot status: hash (hex), revision, total keys, size
        text = re.sub(  # (etcdctl prints the hash in %x: 7 digits or fewer when it can)
            r"\b([0-9a-f]{1,8})(, | \| +)(\d+)(, | \| +)\d+(, | \| +)SIZE",
            lambda m: f"{name(int(m[1], 16))}{m[2]}{m[3]}{m[4]}K{m[5]}SIZE",
            text,
        )
        for number, number_name in side.names.items():  # members by endpoint, the cluster
            text = re.sub(rf"\b({number}|{number:x})\b", number_name, text)
        text = re.sub(r"\b\d{7,}\b", lambda m: name(int(m[0])), text)  # hashes
        text = re.sub(
            r'"(dbSize|dbSizeInUse|totalSize|totalKey|raftIndex|raftAppliedIndex|raftTerm|raft_term)":\d+',
            r'"\1":N',
            text,
        )
        text = re.sub(r'"version":"[^"]*"', '"version":V', text)
        # endpoint status: version, (size), leader, learner, term, index, applied index
        text = re.sub(
            r"\b\d+\.\d+\.\d+(, | \| +)(SIZE)(, | \| +)(true|false)(, | \| +)(true|false)"
            r"(, | \| +)\d+(, | \| +)\d+(, | \| +)\d+",
            r"V\1SIZE\3\4\5\6\7T\8I\9I",
            text,
        )
        text = re.sub(r"took = [\d.]+[µm]?s", "took = T", text)  # endpoint health
        text = re.sub(r'"took":"[^"]*"', '"took":"T"', text)
        # member add: pyraftkvctl names pyraftkv's environment variables
        text = re.sub(r"\bPYRAFTKV_(NAME|INITIAL_)", r"ETCD_\1", text)
        text = re.sub(  # member add: the new member's place among the others is by ID
            r'ETCD_INITIAL_CLUSTER="([^"]*)"',
            lambda m: f'ETCD_INITIAL_CLUSTER="{",".join(sorted(m[1].split(",")))}"',
            text,
        )
        text = re.sub(r"-{2,}", "-", text)
        return re.sub(r" {2,}", " ", text)

    return [
        (mask(command), r.code, mask(r.out.decode()), mask(r.err.decode()))
        for command, r in side.transcript
    ]


def like_etcd(etcd: EtcdCluster, make_cluster):
    """A maker of pyraftkv clusters with the etcd cluster's member names, listed in the same
    order: the cluster token is chosen so that the member IDs sort as etcd's do."""
    listed = json.loads(etcd.etcdctl("member", "list", "-w", "json").out)["members"]
    etcd_order = [member["name"] for member in listed]  # by member ID

    def fresh_cluster() -> list[str]:
        cluster = make_cluster(3)
        for member, member_name in zip(cluster.members, NAMES, strict=True):
            member.name = member_name
        urls = {m.name: f"http://{m.peer_url_host}" for m in cluster.members}
        cluster.token = next(
            token
            for token in (f"cmp-{i}" for i in range(1000))
            if sorted(urls, key=lambda n: member_id([urls[n]], token)) == etcd_order
        )
        cluster.initial_cluster = ",".join(f"{n}={url}" for n, url in urls.items())
        cluster.start()
        return cluster.endpoints

    return fresh_cluster


def test_maintenance_commands_match_etcd(etcd, make_cluster, tmp_path):
    """member list, move-leader, endpoint status/hashkv, defrag, alarm list/disarm and
    snapshot save/status: etcdctl against etcd 3.4, pyraftkvctl against pyraftkv and
    etcdctl against pyraftkv print the same (each pyraftkv side on a fresh cluster whose
    members have the etcd cluster's names)."""
    etcd_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    etcd_env["ETCDCTL_API"] = "3"

    fresh_cluster = like_etcd(etcd, make_cluster)
    sides = {
        "etcdctl -> etcd": Side([ETCDCTL], etcd.endpoints, etcd_env, tmp_path / "theirs"),
        "pyraftkvctl -> pyraftkv": OursSide(fresh_cluster(), tmp_path / "ours"),
        "etcdctl -> pyraftkv": GrpcSide([ETCDCTL], fresh_cluster(), etcd_env, tmp_path / "grpc"),
    }
    for side in sides.values():
        side.tmp.mkdir()
        maintenance_script(side)
    (expected, *others) = [masked_maintenance(side) for side in sides.values()]
    for name, got in zip(list(sides)[1:], others, strict=True):
        for step_theirs, step_ours in zip(expected, got, strict=True):
            assert step_ours == step_theirs, name
    # What the script means to show (on etcd's side, so it cannot agree with us by accident).
    outputs = {command: (code, out, err) for command, code, out, err in reversed(expected)}
    assert outputs["alarm list"] == (0, "memberID:M1 alarm:NOSPACE \n", "")  # the first
    assert outputs["put x refused"][::2] == (
        1,
        "Error: etcdserver: mvcc: database space exceeded\n",
    )
    assert outputs["move-leader M1"] == (0, "Leadership transferred from M2 to M1\n", "")
    hashes = outputs["endpoint hashkv"][1].splitlines()
    assert len(hashes) == 3 and len({line.split(", ")[1] for line in hashes}) == 1
    assert outputs["defrag"][1].count("Finished defragmenting etcd member[127.0.0.1:") == 3
    assert outputs["snapshot save <tmp>/backup.db"] == (
        0,
        "Snapshot saved at <tmp>/backup.db\n",
        "",
    )


def member_update_script(side: Side) -> None:
    """member update: a follower moved to a new peer URL and back, and the refusals."""
    ids = member_ids(side)
    side.names = {ids[i]: f"M{i + 1}" for i in range(3)}
    side.names[statuses(side)[0]["header"]["cluster_id"]] = "C"
    if statuses(side)[0]["leader"] != ids[0]:  # the moved member follows
        side.run("move-leader", f"{ids[0]:x}", record=False)
    wait_for_leader(side, ids[0])
    first, moved = side.endpoints[0], f"{ids[2]:x}"
    listed = json.loads(side.run("member", "list", "-w", "json", record=False).out)
    urls = {m["ID"]: m["peerURLs"][0] for m in listed["members"]}
    new_url = f"http://127.0.0.1:{free_ports(1)[0]}"
    side.run("member", "update", moved, f"--peer-urls={new_url}", endpoint=first)
    side.run("member", "list", endpoint=first)
    side.run("member", "update", moved, f"--peer-urls={urls[ids[2]]}", "-w", "json", endpoint=first)
    side.run(
        "member", "update", moved, f"--peer-urls={urls[ids[2]]}", "-w", "table", endpoint=first
    )
    side.run("member", "update", moved, f"--peer-urls={urls[ids[0]]}", endpoint=first)
    side.run("member", "update", "1234", "--peer-urls=http://127.0.0.1:1", endpoint=first)
    side.run("member", "update", moved, endpoint=first)
    side.run("member", "update", "zz", "--peer-urls=http://127.0.0.1:1", endpoint=first)
    side.run("member", "update", "--peer-urls=http://127.0.0.1:1", endpoint=first)
    side.run("put", "after", "update", endpoint=first)


def member_add_script(side: Side) -> None:
    """member add (a learner and a voter; neither is started), promote, remove, their
    refusals, and endpoint health."""

    def published() -> bool:  # every member's client URLs known (a fresh cluster's may not)
        listed = json.loads(side.run("member", "list", "-w", "json", record=False).out)
        return all(member.get("clientURLs") for member in listed["members"])

    wait_until(published, what="every member's client URLs published")
    ids = member_ids(side)
    side.names = {ids[i]: f"M{i + 1}" for i in range(3)}
    side.names[statuses(side)[0]["header"]["cluster_id"]] = "C"
    first = side.endpoints[0]
    learner_url = f"http://127.0.0.1:{free_ports(1)[0]}"
    added = side.run("member", "add", "newbie", f"--peer-urls={learner_url}", "--learner")
    assert added.code == 0, (side.program, added)
    side.names[int(added.out.split()[1], 16)] = "NEW1"
    wait_until(  # (applied by every member a moment after the one that answered)
        lambda: side.run("member", "list", endpoint=first, record=False).out.count(b"\n") == 4,
        what="the learner listed",
    )
    listed = side.run("member", "list", endpoint=first, record=False)  # by ID: by name here
    lines = listed.out.splitlines(keepends=True)
    listed.out = b"".join(sorted(lines, key=lambda line: line.split(b", ")[2]))
    side._record(("member", "list"), listed, True)
    leader = statuses(side)[0]["leader"]
    follower = side.endpoints[next(i for i, n in enumerate(ids) if n != leader)]
    side.run("member", "promote", f"{int(added.out.split()[1], 16):x}", endpoint=follower)
    side.run("member", "promote", f"{ids[1]:x}", endpoint=first)
    side.run("member", "promote", "1234", endpoint=first)
    # (a URL list: etcd's new ID hashes the URLs and the second, so the same list again
    # within a second would clash on the ID first)
    also = f"http://127.0.0.1:{free_ports(1)[0]}"
    side.run("member", "add", "again", f"--peer-urls={also},{learner_url}", endpoint=first)
    side.run("member", "remove", f"{int(added.out.split()[1], 16):x}", endpoint=first)
    side.run("member", "remove", "1234", endpoint=first)
    voter_url = f"http://127.0.0.1:{free_ports(1)[0]}"
    added = side.run("member", "add", "voter", f"--peer-urls={voter_url}", endpoint=first)
    side.names[int(added.out.split()[1], 16)] = "NEW2"
    side.run("member", "remove", added.out.split()[1].decode(), endpoint=first)
    wait_until(  # (the leader answered; the first member applies it a moment later)
        lambda: side.run("member", "list", endpoint=first, record=False).out.count(b"\n") == 3,
        what="the voter gone from the list",
    )
    side.run("member", "list", "-w", "json", endpoint=first)
    side.run("endpoint", "health", endpoint=first)
    side.run("endpoint", "health", "-w", "json", endpoint=first)
    side.run("put", "after", "membership", endpoint=first)


def test_a_watch_on_a_member_without_a_leader_ends_as_etcdctls(etcd, make_cluster, tmp_path):
    """etcdctl's watch requires a leader (clientv3.WithRequireLeader): on a member that
    loses its quorum it ends, and on one without a leader it does not start: "watch was
    canceled (etcdserver: no leader)", exit 5. pyraftkvctl's does the same (after trying
    the other endpoints it was given, none here)."""
    pyraftkv = make_cluster(3)
    pyraftkv.start()
    pyraftkv.wait_leader()
    etcd_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    theirs = Side([ETCDCTL], etcd.endpoints[:1], {**etcd_env, "ETCDCTL_API": "3"}, tmp_path / "e")
    ours = OursSide(pyraftkv.endpoints[:1], tmp_path / "p")
    sides = {
        theirs: lambda: [p.kill() for p in etcd.processes[1:]],
        ours: lambda: [pyraftkv.kill(m) for m in pyraftkv.members[1:]],
    }
    for side, lose_quorum in sides.items():
        side.tmp.mkdir()
        side.run("put", "k", "v1")
        watching = side.start("watch", "k", "--rev=1")
        watching.wait_for(b"v1")
        lose_quorum()
        watching.end()
        side.run("watch", "k")
    expected = [(args, r.code, r.out, r.err) for args, r in theirs.transcript]
    assert [(args, r.code, r.out, r.err) for args, r in ours.transcript] == expected
    canceled = (
        b"watch was canceled (etcdserver: no leader)\nError: watch is canceled by the server\n"
    )
    assert expected[1:] == [
        ("[end] watch k --rev=1", 5, b"PUT\nk\nv1\n", canceled),
        ("watch k", 5, b"", canceled),
    ]


def test_member_update_matches_etcd(etcd, make_cluster, tmp_path):
    """etcdctl against etcd 3.4, pyraftkvctl against pyraftkv and etcdctl against pyraftkv
    (gRPC) print the same for member update, add (learner and voter), promote, remove and
    their refusals, and endpoint health."""
    etcd_env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    etcd_env["ETCDCTL_API"] = "3"
    started = time.monotonic()  # (etcd's cluster started just before)
    fresh_cluster = like_etcd(etcd, make_cluster)
    sides = {
        "etcdctl -> etcd": Side([ETCDCTL], etcd.endpoints, etcd_env, tmp_path / "theirs"),
        "pyraftkvctl -> pyraftkv": OursSide(fresh_cluster(), tmp_path / "ours"),
        "etcdctl -> pyraftkv": Side([ETCDCTL], fresh_cluster(), etcd_env, tmp_path / "grpc"),
    }
    added = {}
    for name, side in reversed(sides.items()):
        if side.endpoints == etcd.endpoints:
            # etcd adds members only once every voter has been connected for 5 s
            time.sleep(max(0.0, started + 5.5 - time.monotonic()))
        side.tmp.mkdir()
        member_add_script(side)
        added[name] = masked_maintenance(side)
        side.transcript = []
        member_update_script(side)
    (expected_added, *others_added) = [added[name] for name in sides]
    for name, got in zip(list(sides)[1:], others_added, strict=True):
        for step_theirs, step_ours in zip(expected_added, got, strict=True):
            assert step_ours == step_theirs, name
    (expected, *others) = [masked_maintenance(side) for side in sides.values()]
    for name, got in zip(list(sides)[1:], others, strict=True):
        for step_theirs, step_ours in zip(expected, got, strict=True):
            assert step_ours == step_theirs, name
    added_out = {command: (code, out, err) for command, code, out, err in expected_added}
    assert added_out["member promote NEW1"][2] == (
        "Error: etcdserver: can only promote a learner member which is in sync with leader\n"
    )
    assert added_out["member remove NEW1"] == (0, "Member NEW1 removed from cluster C\n", "")
    assert "NEW1, unstarted, , http://" in added_out["member list"][1]
    assert "is healthy: successfully committed proposal" in added_out["endpoint health"][2]
    outputs = [(code, out, err) for _command, code, out, err in expected]
    assert outputs[0] == (0, "Member M3 updated in cluster C\n", "")
    assert outputs[4][::2] == (1, "Error: etcdserver: Peer URLs already exists\n")
    assert outputs[5][::2] == (1, "Error: etcdserver: member not found\n")
    assert outputs[-1][:2] == (0, "OK\n")
