"""One script in ``-w fields`` and ``-w protobuf`` (and a ``watch -i`` session) run with
etcdctl against a fresh etcd 3.4 member and with pyraftkvctl against a fresh pyraftkv
member. Both start at revision 1 and take the same writes, so revisions must agree; what
differs by nature is masked: cluster and member IDs, Raft terms, lease IDs, remaining
TTLs. Skipped when the etcd binaries are absent.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pyraftkv.ctl import run
from pyraftkv.proto import rpc_pb2 as rpc

from ..ctl_etcd_cluster import ETCD, ETCDCTL, MISSING, Result, wait_until
from .test_ctl_make_mirror import ETCDCTL_ENV, etcdctl, solo_etcd

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)


@pytest.fixture
def etcd(tmp_path):
    """A fresh etcd member (at revision 1, as the fresh pyraftkv member it is compared with)."""
    with solo_etcd(tmp_path) as endpoint:
        yield endpoint


def ours(endpoint: str, *args: str, stdin: bytes = b"") -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoint}", *args], io.BytesIO(stdin), out, err, {})
    return Result(code, out.getvalue(), err.getvalue())


TXN = b'value("k1") = "v%d"\n\nput k2 b\nget k1\ndel k0 --prev-kv\n\nput k3 c\n\n'

# (command, the message a protobuf answer holds)
SCRIPT = [
    (["put", "k0", "zero"], rpc.PutResponse),
    (["put", "k1", "v1"], rpc.PutResponse),
    (["put", "k1", "v%d", "--prev-kv"], rpc.PutResponse),
    (["get", "k", "--prefix"], rpc.RangeResponse),
    (["get", "k", "--prefix", "--keys-only", "--limit=1"], rpc.RangeResponse),
    (["get", "nothing"], rpc.RangeResponse),
    (["txn"], rpc.TxnResponse),
    (["del", "k2", "--prev-kv"], rpc.DeleteRangeResponse),
    (["lease", "grant", "100"], rpc.ResponseHeader),
]


def session(tool, endpoint: str, write_out: str) -> list[tuple[Result, type | None]]:
    """The script, then a lease's commands by the ID the grant printed; each result with
    the message its protobuf form holds (None: compared as text)."""
    results = [
        (tool(endpoint, "-w", write_out, *argv, stdin=TXN if argv == ["txn"] else b""), kind)
        for argv, kind in SCRIPT
    ]
    lease = f"{json.loads(tool(endpoint, 'lease', 'grant', '100', '-w', 'json').out)['ID']:x}"
    assert tool(endpoint, "put", "--lease", lease, "lk", "v").code == 0
    for argv in (
        ["lease", "timetolive", lease, "--keys"],
        ["lease", "keep-alive", "--once", lease],
    ):
        results.append((tool(endpoint, "-w", write_out, *argv), rpc.ResponseHeader))
    results.append((tool(endpoint, "-w", write_out, "lease", "revoke", lease), None))
    return results


_MASKS = [
    (re.compile(rb'"(ClusterID|MemberID|RaftTerm|ID|Lease|PrevLease|TTL)" : \d+'), rb'"\1" : N'),
    (re.compile(rb"(cluster_id|member_id|raft_term):\d+"), rb"\1:N"),
]


def masked_text(result: Result) -> tuple[int, bytes, bytes]:
    out, err = result.out, result.err
    for pattern, replacement in _MASKS:
        out, err = pattern.sub(replacement, out), pattern.sub(replacement, err)
    return result.code, out, err


def masked_message(message_type, data: bytes):
    message = message_type.FromString(data)
    assert message.SerializeToString() == data  # the message alone, nothing around it
    headers = [message] if message_type is rpc.ResponseHeader else []
    headers += [message.header] if message_type is not rpc.ResponseHeader else []
    if message_type is rpc.TxnResponse:
        for op in message.responses:
            headers.append(getattr(op, op.WhichOneof("response")).header)
    for header in headers:
        header.cluster_id = header.member_id = header.raft_term = 0
    return message


def test_fields_and_protobuf_sessions_match_etcd(etcd, make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    pyraftkv = cluster.endpoints[0]
    theirs = session(etcdctl, etcd, "fields") + session(etcdctl, etcd, "protobuf")
    mine = session(ours, pyraftkv, "fields") + session(ours, pyraftkv, "protobuf")
    half = len(theirs) // 2
    for i, ((got, kind), (want, _)) in enumerate(zip(mine, theirs, strict=True)):
        if i < half or kind is None:
            assert masked_text(got) == masked_text(want), i
        else:
            assert (got.code, got.err) == (want.code, want.err) == (0, b""), i
            assert masked_message(kind, got.out) == masked_message(kind, want.out), i
    theirs = [result for result, _ in theirs]
    # What the script means to show (on etcd's side).
    assert theirs[2].out.endswith(
        b'"PrevKey" : "k1"\n"PrevCreateRevision" : 3\n"PrevModRevision"'
        b' : 3\n"PrevVersion" : 1\n"PrevValue" : "v1"\n"PrevLease" : 0\n'
    )
    assert b'"Succeeded" : true\n' in theirs[6].out
    assert theirs[-1].code == 4 and b"marshal unsupported" in theirs[-1].err


def interactive(program: list[str], endpoint: str, tool, out_path: Path) -> Result:
    """watch -i with two watches, a progress request and two writes, then end of input."""
    with open(out_path, "wb") as out:
        process = subprocess.Popen(
            [*program, f"--endpoints={endpoint}", "watch", "-i"],
            stdin=subprocess.PIPE,
            stdout=out,
            stderr=subprocess.PIPE,
            env={**ETCDCTL_ENV, "PYTHONUNBUFFERED": "1"},
        )
    for line in (b"watch wa", b"watch --prefix --prev-kv wp/", b"nonsense"):
        process.stdin.write(line + b"\n")
    process.stdin.flush()
    time.sleep(1.0)  # the watches are created (creation prints nothing)
    process.stdin.write(b"progress\n")
    process.stdin.flush()
    wait_until(lambda: out_path.read_bytes().count(b"progress notify") == 2)
    for argv, lines in ((["put", "wa", "1"], 5), (["put", "wp/x", "2"], 8)):
        assert tool(endpoint, *argv).code == 0
        wait_until(lambda n=lines: out_path.read_bytes().count(b"\n") >= n)
    _, err = process.communicate(timeout=20)
    return Result(process.returncode, out_path.read_bytes(), re.sub(rb'\{"level":.*\n', b"", err))


def test_interactive_watch_matches_etcd(etcd, make_cluster, tmp_path):
    cluster = make_cluster(1)
    cluster.start()
    # the same revisions on both sides
    for endpoint, tool in ((etcd, etcdctl), (cluster.endpoints[0], ours)):
        assert tool(endpoint, "del", "", "--from-key").code == 0
    theirs = interactive([ETCDCTL], etcd, etcdctl, tmp_path / "theirs")
    mine = interactive(
        [sys.executable, "-m", "pyraftkv.ctl"], cluster.endpoints[0], ours, tmp_path / "ours"
    )
    assert theirs.code == 3
    assert theirs.err == (
        b"Invalid command nonsense (only support watch)\n"
        b"Error: Error reading watch request line: EOF\n"
    )
    assert theirs.out.endswith(b"PUT\nwa\n1\nPUT\nwp/x\n2\n")
    progress = re.compile(rb"progress notify: \d+\n")
    assert len(progress.findall(theirs.out)) == 2
    # (the revisions differ: etcd's member has its own history from the other test)
    assert (mine.code, progress.sub(b"P", mine.out), mine.err) == (
        theirs.code,
        progress.sub(b"P", theirs.out),
        theirs.err,
    )


AUTH_SESSION = [
    (["user", "add", "u1", "--new-user-password=pw"], rpc.AuthUserAddResponse),
    (["role", "add", "r1"], rpc.AuthRoleAddResponse),
    (
        ["role", "grant-permission", "r1", "readwrite", "a", "--prefix"],
        rpc.AuthRoleGrantPermissionResponse,
    ),
    (["role", "grant-permission", "r1", "read", "b"], rpc.AuthRoleGrantPermissionResponse),
    (["role", "get", "r1"], rpc.AuthRoleGetResponse),
    (["role", "list"], rpc.AuthRoleListResponse),
    (["user", "grant-role", "u1", "r1"], rpc.AuthUserGrantRoleResponse),
    (["user", "get", "u1"], rpc.AuthUserGetResponse),
    (["user", "list"], rpc.AuthUserListResponse),
    (["user", "get", "u1", "--detail"], None),
    (["user", "revoke-role", "u1", "r1"], rpc.AuthUserRevokeRoleResponse),
    (["role", "revoke-permission", "r1", "b"], rpc.AuthRoleRevokePermissionResponse),
    (["role", "delete", "r1"], rpc.AuthRoleDeleteResponse),
    (["user", "delete", "u1"], rpc.AuthUserDeleteResponse),
    (["auth", "disable"], None),
]


def test_auth_commands_in_fields_and_protobuf_match_etcd(etcd, make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    for write_out in ("fields", "protobuf"):
        for argv, kind in AUTH_SESSION:
            want = etcdctl(etcd, "-w", write_out, *argv)
            got = ours(cluster.endpoints[0], "-w", write_out, *argv)
            if write_out == "fields" or kind is None:
                if argv[-1] == "--detail" and write_out == "protobuf":
                    # "User: u1", an empty line, then the role's RoleGetResponse
                    head = b"User: u1\n\n"
                    assert got.out[: len(head)] == want.out[: len(head)] == head
                    message = [
                        masked_message(rpc.AuthRoleGetResponse, r.out[len(head) :])
                        for r in (got, want)
                    ]
                    assert message[0] == message[1]
                    continue
                assert masked_text(got) == masked_text(want), argv
            else:
                assert (got.code, got.err) == (want.code, want.err) == (0, b""), argv
                assert masked_message(kind, got.out) == masked_message(kind, want.out), argv
    # (what the session means to show, on etcd's side: a refusal, and permissions listed)
    refused = etcdctl(etcd, "-w", "fields", "user", "list")
    assert (refused.code, refused.err) == (4, b"Error: fields not supported as output format\n")
