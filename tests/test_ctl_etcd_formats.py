"""pyraftkvctl's ``-w fields``, ``-w protobuf`` and ``watch -i`` against etcdctl 3.4 on one
live 3-member etcd cluster (pyraftkvctl through the bridge of ctl_etcd_cluster), byte for
byte. Reads and watches see the same state, so their outputs must be identical; writes
are compared with the revisions and lease IDs they made masked. Skipped when the etcd
binaries are absent.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence

import pytest

from pyraftkv.proto import rpc_pb2 as rpc

from .ctl_etcd_cluster import (
    ETCD,
    ETCDCTL,
    MISSING,
    EtcdCluster,
    Result,
    interrupt,
    message_from_json,
    wait_until,
)

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        for key, value in [("f/a", "1"), ("f/b", "two words"), ("f/ü", "ü%d"), ("f/c", "3")]:
            assert cluster.etcdctl("put", key, value).code == 0
        assert cluster.etcdctl("put", "f/bin", stdin=b"\xff\x00\n").code == 0
        yield cluster
    finally:
        cluster.close()


def assert_same(ours: Result, theirs: Result) -> None:
    assert (ours.code, ours.out, ours.err) == (theirs.code, theirs.out, theirs.err)


READS = [
    ["get", "f/a"],
    ["get", "f/", "--prefix"],
    ["get", "f/", "--prefix", "--keys-only", "--hex"],
    ["get", "f/", "--prefix", "--limit", "2"],
    ["get", "f/missing"],
    ["member", "list"],
]


@pytest.mark.parametrize("write_out", ["fields", "protobuf"])
@pytest.mark.parametrize("argv", READS, ids=" ".join)
def test_reads_match_etcdctl(etcd, argv, write_out):
    theirs = etcd.etcdctl("-w", write_out, *argv)
    assert theirs.code == 0 and theirs.out
    assert_same(etcd.ctl("-w", write_out, *argv), theirs)


def test_endpoint_answers_etcdctl_cannot_marshal_fail_alike(etcd):
    for argv in (["endpoint", "status"], ["endpoint", "health"], ["endpoint", "hashkv"]):
        theirs = etcd.etcdctl("-w", "protobuf", *argv)
        assert theirs.code == 4
        assert theirs.err == b"Error: protobuf not supported as output format\n"
        assert_same(etcd.ctl("-w", "protobuf", *argv), theirs)


# -- writes: the same commands on fresh keys, revisions and lease IDs masked -----------------

_NUMBERS = re.compile(r'"(Revision|\w*ModRevision|\w*CreateRevision|ID|Lease|TTL)" : \d+')


def masked_fields(result: Result) -> tuple[int, str, bytes]:
    return result.code, _NUMBERS.sub(r'"\1" : N', result.out.decode()), result.err


def masked_protobuf(message_type, data: bytes):
    """The message with its revisions and lease IDs zeroed (they differ between runs); the
    bytes must be the message's own encoding (nothing around it)."""
    message = message_type.FromString(data)
    assert message.SerializeToString() == data
    for header in _all(message, "header"):
        header.revision = 0
    for kv in [*_all(message, "kvs"), *_all(message, "prev_kv"), *_all(message, "prev_kvs")]:
        kv.create_revision = kv.mod_revision = kv.lease = 0
    if message_type is rpc.ResponseHeader:
        message.revision = 0
    return message


def _all(message, name: str) -> list:
    """Every sub-message called ``name`` in ``message``, however deep."""
    found = []
    for field, value in message.ListFields():
        values = list(value) if isinstance(value, Sequence) else [value]
        if field.name == name:
            found.extend(v for v in values if hasattr(v, "ListFields"))
        for v in values:
            if hasattr(v, "ListFields"):
                found.extend(_all(v, name))
    return found


TXN = b'val("w/txn") = "before"\n\nput w/txn after --prev-kv\nget w/txn\ndel w/none\n\n\n'


def test_writes_match_etcdctl(etcd):
    def twice(*argv: str, seed=(), stdin: bytes = b"") -> tuple[Result, Result]:
        """(ours, theirs), each after the same seeding writes."""
        results = []
        for run in (etcd.ctl, etcd.etcdctl):
            for seed_argv in seed:
                assert etcd.etcdctl(*seed_argv).code == 0
            results.append(run(*argv, stdin=stdin))
        return results[0], results[1]

    seed_put = [["del", "w/k"], ["put", "w/k", "old"]]  # the same versions
    seed_del = [["put", "w/d/1", "x"], ["put", "w/d/2", "y"]]
    seed_txn = [["del", "w/txn"], ["put", "w/txn", "before"]]
    for write_out in ("fields", "protobuf"):
        cases = [
            (rpc.PutResponse, ["put", "w/k", "new"], seed_put, b""),
            (rpc.PutResponse, ["put", "w/k", "new", "--prev-kv"], seed_put, b""),
            (rpc.DeleteRangeResponse, ["del", "w/d/", "--prefix", "--prev-kv"], seed_del, b""),
            (rpc.TxnResponse, ["txn"], seed_txn, TXN),
            (rpc.ResponseHeader, ["lease", "grant", "100"], (), b""),
        ]
        for message_type, argv, seed, stdin in cases:
            ours, theirs = twice("-w", write_out, *argv, seed=seed, stdin=stdin)
            assert theirs.code == 0 and theirs.out, argv
            if write_out == "fields":
                assert masked_fields(ours) == masked_fields(theirs), argv
            else:
                assert (ours.code, ours.err) == (theirs.code, theirs.err)
                assert masked_protobuf(message_type, ours.out) == masked_protobuf(
                    message_type, theirs.out
                ), argv
    assert b'"Succeeded" : true\n' in twice("-w", "fields", "txn", seed=seed_txn, stdin=TXN)[0].out


def test_lease_answers_match_etcdctl(etcd):
    def lease() -> str:
        granted = json.loads(etcd.etcdctl("lease", "grant", "100", "-w", "json").out)
        return f"{granted['ID']:x}"

    mine = lease()
    etcd.etcdctl("put", "--lease", mine, "l/a", "1")
    etcd.etcdctl("put", "--lease", mine, "l/b", "2")
    for write_out in ("fields", "protobuf"):
        for argv in (["lease", "timetolive", mine, "--keys"], ["lease", "list"]):
            theirs = etcd.etcdctl("-w", write_out, *argv)
            ours = etcd.ctl("-w", write_out, *argv)
            # remaining TTLs tick; etcd lists leases in no particular order
            assert sorted(re.sub(rb'"TTL" : \d+', b"T", ours.out).splitlines()) == sorted(
                re.sub(rb'"TTL" : \d+', b"T", theirs.out).splitlines()
            )
            assert (ours.code, ours.err) == (theirs.code, theirs.err) == (0, b"")
        ours = etcd.ctl("-w", write_out, "lease", "keep-alive", "--once", mine)
        theirs = etcd.etcdctl("-w", write_out, "lease", "keep-alive", "--once", mine)
        assert_same(ours, theirs)
    # etcdctl cannot marshal a revoke's answer: it says so, after revoking (and so do we).
    ours, theirs = (
        run("-w", "protobuf", "lease", "revoke", lease()) for run in (etcd.ctl, etcd.etcdctl)
    )
    assert theirs.code == 4
    assert theirs.err.startswith(b"Error: marshal unsupported for type clientv3.LeaseRevoke")
    masked = [re.sub(rb"revision:\d+", b"revision:N", r.err) for r in (ours, theirs)]
    assert (ours.code, ours.out, masked[0]) == (theirs.code, theirs.out, masked[1])


# -- watch: fields and protobuf replies, and watch -i ------------------------------------------


def _events(write_out: str, data: bytes) -> int:
    if write_out == "fields":
        return data.count(b'"Type" : ')
    return sum(len(reply.events) for reply in watch_replies(data))


def watch_replies(data: bytes) -> list[rpc.WatchResponse]:
    """Back-to-back marshalled WatchResponses (as etcdctl -w protobuf watch prints them)
    split: a message's fields come in field order, so a field number lower than the last,
    or a non-repeated one again, starts the next message."""
    replies, start, last, i = [], 0, 0, 0
    while i < len(data):
        tag, after = _varint(data, i)
        number, wire_type = tag >> 3, tag & 7
        if i > start and (number < last or (number == last and number != 11)):
            replies.append(rpc.WatchResponse.FromString(data[start:i]))
            start = i
        last = number
        if wire_type == 0:
            _, i = _varint(data, after)
        elif wire_type == 2:
            length, i = _varint(data, after)
            i += length
        else:
            raise ValueError(f"unexpected wire type {wire_type}")
    if start < len(data):
        replies.append(rpc.WatchResponse.FromString(data[start:]))
    return replies


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[i]
        value |= (byte & 0x7F) << shift
        i += 1
        if not byte & 0x80:
            return value, i
        shift += 7


def test_watch_fields_and_protobuf_match_etcdctl(etcd, tmp_path):
    put = etcd.etcdctl("put", "wf/0", "s", "-w", "json")
    start = str(message_from_json(put.out, rpc.PutResponse).header.revision + 1)
    processes = {}
    for write_out in ("fields", "protobuf"):
        for who, launch in (("ours", etcd.ctl_process), ("theirs", etcd.etcdctl_process)):
            path = tmp_path / f"{who}-{write_out}"
            with open(path, "wb") as out:
                argv = ["-w", write_out, "watch", "wf/", "--prefix", "--prev-kv", "--rev", start]
                processes[who, write_out] = (launch(*argv, stdout=out), path)
    try:
        for count, argv in enumerate(
            (["put", "wf/a", "1"], ["put", "wf/a", "2%d"], ["del", "wf/a"]), 1
        ):
            assert etcd.etcdctl(*argv).code == 0
            for (_, write_out), (_, path) in processes.items():
                wait_until(
                    lambda path=path, write_out=write_out, count=count: (
                        _events(write_out, path.read_bytes()) >= count
                    )
                )
    finally:
        for process, _ in processes.values():
            interrupt(process)
    for write_out in ("fields", "protobuf"):
        ours, theirs = (processes[who, write_out][1].read_bytes() for who in ("ours", "theirs"))
        assert ours == theirs, write_out
    replies = watch_replies(processes["theirs", "protobuf"][1].read_bytes())
    assert [len(reply.events) for reply in replies] == [1, 1, 1]
    assert replies[2].events[0].prev_kv.value == b"2%d"
    fields = processes["theirs", "fields"][1].read_bytes()
    assert b'"Type" : DELETE\n"PrevKey" : "wf/a"\n' in fields and b'"Value" : "2%d"\n' in fields


def run_interactive(
    etcd, who: str, lines: list[str], writes, tmp_path, *, ends_itself: bool = False
) -> Result:
    """``watch -i`` fed ``lines`` (each taken before the next), then ``writes`` (each seen
    before the next, by the count of lines printed), then the end of its input."""
    out_path = tmp_path / f"{who}-{len(lines)}.out"
    assert etcd.etcdctl("del", "wi/", "--prefix").code == 0  # each run from the same state
    ours = who == "ours"
    eps = etcd.bridge_for(etcd.endpoints[0]) if ours else etcd.endpoints[0]
    program = ["python", "-m", "pyraftkv.ctl"] if ours else [ETCDCTL]
    if ours:
        program[0] = sys.executable
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env.update(ETCDCTL_API="3", PYTHONUNBUFFERED="1")
    with open(out_path, "wb") as out:
        process = subprocess.Popen(
            [*program, f"--endpoints={eps}", "watch", "-i"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
    for line in lines:
        process.stdin.write(line.encode() + b"\n")
        process.stdin.flush()
    time.sleep(1.0)  # every watch created (nothing to wait on: creation prints nothing)
    for argv, lines_after in writes:
        assert etcd.etcdctl(*argv).code == 0
        wait_until(lambda n=lines_after: out_path.read_bytes().count(b"\n") >= n)
    if ends_itself:
        process.wait(20)
    _, err = process.communicate(timeout=20)
    err = re.sub(rb'\{"level":.*\n', b"", err)
    return Result(process.returncode, out_path.read_bytes(), err)


def test_interactive_watch_matches_etcdctl(etcd, tmp_path):
    lines = [
        "watch wi/a",
        "watch --prefix wi/p",
        "foo bar",
        "watch",
        "",
        "watch wi/a wi/b --prefix",
        "watch --prev-kv wi/c",
        'watch wi/x -- sh -c "echo ran $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE"',
    ]
    writes = [
        (["put", "wi/a", "1"], 3),
        (["put", "wi/p1", "2"], 6),
        (["put", "wi/c", "3"], 9),
        (["put", "wi/c", "4"], 14),
        (["put", "wi/x", "5"], 18),
    ]
    ours, theirs = (
        run_interactive(etcd, who, lines, writes, tmp_path) for who in ("ours", "theirs")
    )
    assert theirs.code == 3
    assert theirs.out == (
        b"PUT\nwi/a\n1\nPUT\nwi/p1\n2\nPUT\nwi/c\n3\nPUT\nwi/c\n3\nwi/c\n4\n"
        b'PUT\nwi/x\n5\nran "wi/x"="5"\n'
    )
    assert theirs.err == (
        b"Invalid command foo bar (only support watch)\n"
        b"Invalid command watch (command type or key is not provided)\n"
        b"Invalid command:  (watch and progress supported)\n"
        b"Invalid command watch wi/a wi/b --prefix "
        b"(`range_end` and `--prefix` are mutually exclusive)\n"
        b"Error: Error reading watch request line: EOF\n"
    )
    assert_same(ours, theirs)


@pytest.mark.parametrize(
    "line",
    ["watch wi/a --", "watch --rev=zz wi/a", "watch --prefix", "watch --bogus wi/a"],
)
def test_interactive_watch_bad_lines_end_it_like_etcdctl(etcd, tmp_path, line):
    ours, theirs = (run_interactive(etcd, who, [line], [], tmp_path) for who in ("ours", "theirs"))
    assert theirs.code == 128
    assert_same(ours, theirs)


def test_interactive_watch_command_failure_ends_it_like_etcdctl(etcd, tmp_path):
    lines = ['watch wi/f -- sh -c "exit 3"']
    writes = [(["put", "wi/f", "1"], 3)]
    ours, theirs = (
        run_interactive(etcd, who, lines, writes, tmp_path, ends_itself=True)
        for who in ("ours", "theirs")
    )
    assert (theirs.code, theirs.err) == (1, b'command ["sh" "-c" "exit 3"] error (exit status 3)\n')
    assert_same(ours, theirs)
