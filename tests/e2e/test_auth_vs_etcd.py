"""The same auth session, run twice: with etcdctl against a real etcd 3.4 member and with
pyraftkvctl against a real pyraftkv member. Every command's output, error and exit code
must be the same: creating root, enabling auth (refused without root), users and roles, a
range permission, allowed and refused reads, writes, txns and watches, a wrong password,
a password change, a revoked role, and disabling auth."""

from __future__ import annotations

import io
import os
import re
import subprocess
import time

import pytest

from pyraftkv.ctl import run

from ..ctl_etcd_cluster import ETCD, ETCD_LOG_LINE, ETCDCTL, MISSING, Result, wait_until
from . import gateway_http as gateway
from .harness import LocalCluster, free_ports

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)

STTY_COMPLAINT = re.compile(rb"^stty: .*\n", re.MULTILINE)
ROOT = ["--user=root:rootpw"]
ALICE = ["--user=alice:alicepw"]
SESSION: list[tuple[list[str], bytes]] = [
    (["auth", "enable"], b""),
    (["user", "add", "root", "--new-user-password=rootpw"], b""),
    (["user", "list"], b""),
    (["auth", "enable"], b""),
    (["get", "foo"], b""),
    (["user", "add", "x:y"], b""),
    ([*ROOT, "user", "add", "alice", "--interactive=false"], b"alicepw\n"),
    ([*ROOT, "user", "add", "alice:again"], b""),
    ([*ROOT, "role", "add", "reader"], b""),
    ([*ROOT, "role", "add", "reader"], b""),
    ([*ROOT, "role", "grant-permission", "reader", "readwrite", "foo", "zoo"], b""),
    ([*ROOT, "role", "grant-permission", "reader", "read", "--prefix", "pre/"], b""),
    ([*ROOT, "role", "grant-permission", "reader", "write", "from/", "--from-key"], b""),
    ([*ROOT, "role", "grant-permission", "reader", "rw", "x"], b""),
    ([*ROOT, "role", "grant-permission", "nobody", "read", "x"], b""),
    ([*ROOT, "role", "get", "reader"], b""),
    ([*ROOT, "user", "grant-role", "alice", "reader"], b""),
    ([*ROOT, "user", "grant-role", "alice", "nobody"], b""),
    ([*ROOT, "user", "grant-role", "nobody", "reader"], b""),
    ([*ROOT, "user", "get", "alice"], b""),
    ([*ROOT, "user", "get", "alice", "--detail"], b""),
    ([*ROOT, "user", "get", "nobody"], b""),
    ([*ROOT, "user", "get", "root"], b""),
    ([*ROOT, "user", "get", "root", "--detail"], b""),
    ([*ROOT, "role", "get", "root"], b""),
    ([*ROOT, "role", "get", "nobody"], b""),
    ([*ROOT, "role", "revoke-permission", "reader", "nothing"], b""),
    ([*ROOT, "user", "revoke-role", "nobody", "reader"], b""),
    ([*ROOT, "role", "add", ""], b""),
    ([*ROOT, "user", "list"], b""),
    ([*ROOT, "role", "list"], b""),
    ([*ALICE, "put", "foo", "1"], b""),
    ([*ALICE, "put", "goo", "2"], b""),
    # --user without a password: "Password: " and a line of stdin (not a terminal here)
    (["--user=alice", "get", "foo", "--print-value-only"], b"alicepw\n"),
    (["--user=alice", "get", "foo"], b"wrong\n"),
    (["--user=alice", "--password=alicepw", "get", "foo", "--print-value-only"], b""),
    (["--user=alice:alicepw", "--password=alicepw", "get", "foo"], b""),
    ([*ALICE, "get", "foo", "--print-value-only"], b""),
    ([*ALICE, "get", "foo", "zoo", "--keys-only"], b""),
    ([*ALICE, "get", "a", "zzz"], b""),
    ([*ALICE, "put", "zz", "1"], b""),
    ([*ALICE, "put", "pre/a", "1"], b""),
    ([*ALICE, "get", "pre/a"], b""),
    ([*ALICE, "put", "from/x", "1"], b""),
    ([*ALICE, "get", "from/x"], b""),
    ([*ALICE, "del", "foo"], b""),
    ([*ALICE, "txn"], b'value("foo") = "1"\n\nput goo 3\n\nput hoo 4\n\n'),
    ([*ALICE, "txn"], b'value("zz") = "1"\n\nput goo 3\n\n\n'),
    ([*ALICE, "txn"], b'value("foo") = "x"\n\nput goo 3\n\nput zz 4\n\n'),
    ([*ALICE, "watch", "zz"], b""),
    ([*ALICE, "user", "list"], b""),
    ([*ALICE, "role", "add", "r2"], b""),
    ([*ALICE, "compaction", "1"], b""),
    (["--user=alice:wrong", "get", "foo"], b""),
    (["--user=nobody:pw", "get", "foo"], b""),
    ([*ROOT, "user", "passwd", "alice", "--interactive=false"], b"newpw\n"),
    ([*ALICE, "get", "foo"], b""),
    (["--user=alice:newpw", "get", "foo", "--print-value-only"], b""),
    ([*ROOT, "role", "revoke-permission", "reader", "foo", "zoo"], b""),
    ([*ROOT, "role", "revoke-permission", "reader", "foo", "zoo"], b""),
    (["--user=alice:newpw", "get", "foo"], b""),
    ([*ROOT, "user", "revoke-role", "alice", "reader"], b""),
    ([*ROOT, "user", "revoke-role", "alice", "reader"], b""),
    (["--user=alice:newpw", "get", "pre/a"], b""),
    ([*ROOT, "user", "delete", "root"], b""),
    ([*ROOT, "role", "delete", "root"], b""),
    ([*ROOT, "user", "revoke-role", "root", "root"], b""),
    ([*ROOT, "role", "delete", "reader"], b""),
    ([*ROOT, "user", "delete", "alice"], b""),
    ([*ROOT, "user", "delete", "alice"], b""),
    ([*ROOT, "auth", "disable"], b""),
    (["get", "foo", "--print-value-only"], b""),
    (["auth", "disable"], b""),
    (["user", "list"], b""),
]


def _etcd(tmp_path, *extra: str) -> tuple[subprocess.Popen, str]:
    client, peer = free_ports(2)
    log = open(tmp_path / "etcd.log", "wb")  # noqa: SIM115 (lives with the process)
    process = subprocess.Popen(
        [
            ETCD,
            *("--data-dir", str(tmp_path / "etcd")),
            *("--listen-client-urls", f"http://127.0.0.1:{client}"),
            *("--advertise-client-urls", f"http://127.0.0.1:{client}"),
            *("--listen-peer-urls", f"http://127.0.0.1:{peer}"),
            *("--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}"),
            *("--initial-cluster", f"default=http://127.0.0.1:{peer}"),
            *extra,
        ],
        stdout=log,
        stderr=log,
    )
    return process, f"127.0.0.1:{client}"


def _etcdctl(endpoint: str, args: list[str], stdin: bytes) -> Result:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ETCDCTL_")}
    env["ETCDCTL_API"] = "3"
    argv = [ETCDCTL, f"--endpoints={endpoint}", "--command-timeout=3s", *args]
    if args[-2:] == ["watch", "zz"] or args[-1:] == ["zz"] and "watch" in args:
        argv = ["timeout", "3", *argv]
    done = subprocess.run(argv, input=stdin, capture_output=True, env=env, timeout=30)
    # etcdctl runs stty to turn echo off, which complains when stdin is not a terminal
    stderr = STTY_COMPLAINT.sub(b"", ETCD_LOG_LINE.sub(b"", done.stderr))
    return Result(done.returncode, done.stdout, stderr)


def _pyraftkvctl(endpoint: str, args: list[str], stdin: bytes) -> Result:
    out, err = io.BytesIO(), io.BytesIO()
    argv = [f"--endpoints={endpoint}", "--command-timeout=3s", *args]
    code = run(argv, io.BytesIO(stdin), out, err, environ={})
    return Result(code, out.getvalue(), err.getvalue())


def test_the_same_auth_session_on_etcd_and_pyraftkv(tmp_path):
    etcd, etcd_endpoint = _etcd(tmp_path)
    cluster = LocalCluster(str(tmp_path), 1, extra_args=["--bcrypt-cost", "4"])
    try:
        cluster.start()
        wait_until(lambda: _etcdctl(etcd_endpoint, ["endpoint", "health"], b"").code == 0)
        ours = cluster.members[0].endpoint
        differences = []
        for args, stdin in SESSION:
            theirs = _etcdctl(etcd_endpoint, args, stdin)
            mine = _pyraftkvctl(ours, args, stdin)
            if theirs != mine:
                differences.append(f"{' '.join(args)}\n  etcd:     {theirs}\n  pyraftkv: {mine}")
        assert not differences, "\n".join(differences)
    finally:
        cluster.stop_all()
        etcd.kill()
        etcd.wait(10)


def _token_session(endpoint: str, ctl) -> list:
    """Root, auth on, a token from the JSON gateway; then what a read answers with that
    token, with a forged one, and with the token once it has been idle past the TTL."""
    assert ctl(endpoint, ["user", "add", "root", "--new-user-password=rootpw"], b"").code == 0
    assert ctl(endpoint, ["auth", "enable"], b"").code == 0
    login = gateway.call(endpoint, "/v3/auth/authenticate", {"name": "root", "password": "pw"})
    seen = [(login.status, login.json)]
    login = gateway.call(endpoint, "/v3/auth/authenticate", {"name": "root", "password": "rootpw"})
    token = login.json["token"]
    seen.append(login.status)

    def read(with_token: str):
        answer = gateway.call(
            endpoint,
            "/v3/kv/range",
            {"key": gateway.b64("k")},
            headers={"Authorization": with_token},
        )
        body = answer.json
        return answer.status, body if answer.status != 200 else body.get("count", 0)

    seen.append(read(token))
    seen.append(read(token + "x"))
    seen.append(read("no-such-token"))

    def post(path: str, body: dict, with_token: str = ""):
        headers = {"Authorization": with_token} if with_token else {}
        answer = gateway.call(endpoint, path, body, headers=headers)
        return answer.status, answer.json if answer.status != 200 else "ok"

    # a lease without keys may be revoked without a user; one with keys may not
    for lease in (7001, 7002):
        seen.append(post("/v3/lease/grant", {"TTL": 60, "ID": lease}, token))
    put = {"key": gateway.b64("k"), "value": gateway.b64("v"), "lease": 7002}
    seen.append(post("/v3/kv/put", put, token))
    seen.append(post("/v3/lease/revoke", {"ID": 7001}))
    seen.append(post("/v3/lease/revoke", {"ID": 7002}))
    time.sleep(3.5)  # --auth-token-ttl 1: idle past it
    seen.append(read(token))
    return seen


def test_token_expiry_and_bad_tokens_as_etcds(tmp_path):
    """The token part of the session, over the JSON gateway (etcdctl authenticates anew
    for every command): a wrong password, a good token, a forged one, an expired one."""
    etcd, etcd_endpoint = _etcd(tmp_path, "--auth-token-ttl", "1")
    cluster = LocalCluster(
        str(tmp_path), 1, extra_args=["--bcrypt-cost", "4", "--auth-token-ttl", "1"]
    )
    try:
        cluster.start()
        wait_until(lambda: _etcdctl(etcd_endpoint, ["endpoint", "health"], b"").code == 0)
        theirs = _token_session(etcd_endpoint, _etcdctl)
        mine = _token_session(cluster.members[0].endpoint, _pyraftkvctl)
        assert mine == theirs
        assert theirs[-1][0] != 200 and "invalid auth token" in str(theirs[-1][1])
    finally:
        cluster.stop_all()
        etcd.kill()
        etcd.wait(10)
