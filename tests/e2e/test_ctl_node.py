"""pyraftkvctl end to end against a real 3-member pyraftkv cluster (no bridge, no etcd):
the key-value commands, watch, compaction, member list, endpoint status and health, also
with a member killed. One-shot commands run in-process through ``pyraftkv.ctl.run`` (the
console script's own code); watch runs as the ``python -m pyraftkv.ctl`` process."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from pyraftkv.ctl import run

from ..ctl_etcd_cluster import Result, wait_until
from .harness import LocalCluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """One cluster for the module (a test kills a member and starts it again)."""
    c = LocalCluster(str(tmp_path_factory.mktemp("ctl-node")), 3)
    c.start()
    yield c
    c.stop_all()


def ctl(cluster: LocalCluster, *args: str, stdin: bytes = b"", members=None) -> Result:
    endpoints = ",".join(m.endpoint for m in (members or cluster.members))
    out, err = io.BytesIO(), io.BytesIO()
    code = run([f"--endpoints={endpoints}", *args], io.BytesIO(stdin), out, err, environ={})
    return Result(code, out.getvalue(), err.getvalue())


def ok(result: Result) -> bytes:
    assert (result.code, result.err) == (0, b""), result
    return result.out


def revision_of(result: Result) -> int:
    return json.loads(ok(result))["header"]["revision"]


def test_put_get_del_through_any_member(cluster):
    first, second, third = cluster.members
    assert ok(ctl(cluster, "put", "kv/a", "1", members=[second])) == b"OK\n"
    put = ctl(cluster, "put", "kv/b", "two words", "-w", "json", members=[third])
    revision = revision_of(put)
    assert ok(ctl(cluster, "put", "kv/c", stdin=b"from stdin\n", members=[first])) == b"OK\n"
    assert ok(ctl(cluster, "put", "kv/a", "uno", "--prev-kv")) == b"OK\nkv/a\n1\n"
    # A linearizable read on any member sees every write.
    for member in cluster.members:
        got = ok(ctl(cluster, "get", "kv/", "--prefix", members=[member]))
        assert got == b"kv/a\nuno\nkv/b\ntwo words\nkv/c\nfrom stdin\n\n"
    assert ok(ctl(cluster, "get", "kv/", "--prefix", "--keys-only", "--limit=2")) == (
        b"kv/a\n\nkv/b\n\n"
    )
    by_value = ok(ctl(cluster, "get", "kv/", "--prefix", "--sort-by=VALUE", "--print-value-only"))
    assert by_value == b"from stdin\n\ntwo words\nuno\n"
    assert ok(ctl(cluster, "get", "kv/a", "--rev", str(revision))) == b"kv/a\n1\n"
    assert ok(ctl(cluster, "get", "kv/", "--prefix", "--count-only")) == b"3\n"
    got = json.loads(ok(ctl(cluster, "get", "kv/b", "-w", "json")))
    (kv,) = got["kvs"]
    assert base64.b64decode(kv["key"]) == b"kv/b" and kv["mod_revision"] == revision
    assert got["count"] == 1 and got["header"]["revision"] > revision
    # Serializable reads are served by the member asked, from what it applied.
    assert ok(ctl(cluster, "get", "kv/a", "--consistency=s", members=[third])) in (
        b"kv/a\nuno\n",
        b"kv/a\n1\n",
    )
    assert ok(ctl(cluster, "del", "kv/", "--prefix", "--prev-kv")).startswith(b"3\nkv/a\nuno\n")
    assert ok(ctl(cluster, "get", "kv/", "--prefix")) == b""
    assert ok(ctl(cluster, "del", "kv/none")) == b"0\n"


TXN = b'val("tx/k") = "old"\n\nput tx/k new --prev-kv\nget tx/k\n\nput tx/failed yes\n\n'


def test_txn_takes_the_branch_its_compares_choose(cluster):
    ok(ctl(cluster, "put", "tx/k", "old"))
    assert ok(ctl(cluster, "txn", stdin=TXN)) == b"SUCCESS\n\nOK\ntx/k\nold\n\ntx/k\nnew\n"
    assert ok(ctl(cluster, "txn", "-i", stdin=TXN)).startswith(b"compares:\n")
    assert ok(ctl(cluster, "txn", stdin=TXN)) == b"FAILURE\n\nOK\n"
    assert ok(ctl(cluster, "get", "tx/failed")) == b"tx/failed\nyes\n"
    response = json.loads(ok(ctl(cluster, "txn", "-w", "json", stdin=TXN)))
    assert "succeeded" not in response and response["responses"][0]["Response"]["ResponsePut"]
    bad = ctl(cluster, "txn", stdin=b'nonsense("k") = "1"\n\n\n')
    assert bad.code == 3 and bad.err.startswith(b"Error: malformed comparison")


def _ctl_process(cluster: LocalCluster, *args: str, stdout) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pyraftkv.ctl", f"--endpoints={cluster.endpoints[0]}", *args],
        stdout=stdout,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_watch_prints_every_event_then_ends_on_ctrl_c(cluster, tmp_path):
    """Watchers from a revision (one running a command per event) see every change made
    through a follower, once and in order; one started afterwards replays the same."""
    start = revision_of(ctl(cluster, "put", "w/start", "s", "-w", "json")) + 1
    paths = {name: tmp_path / name for name in ("prev", "exec", "replay")}
    with open(paths["prev"], "wb") as out:
        prev = _ctl_process(
            cluster, "watch", "w/", "--prefix", "--prev-kv", "--rev", str(start), stdout=out
        )
    with open(paths["exec"], "wb") as out:
        command = 'echo "$ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY=$ETCD_WATCH_VALUE"'
        runner = _ctl_process(
            cluster, "watch", "w/k", "--rev", str(start), "--", "sh", "-c", command, stdout=out
        )
    follower = next(m for m in cluster.members if m is not cluster.wait_leader())
    for argv in (["put", "w/k", "1"], ["put", "w/k", "2"], ["del", "w/k"]):
        ok(ctl(cluster, *argv, members=[follower]))
    with open(paths["replay"], "wb") as out:
        replay = _ctl_process(cluster, "watch", "w/", "--prefix", "--rev", str(start), stdout=out)
    for path in paths.values():
        wait_until(lambda path=path: b"DELETE" in path.read_bytes(), what=path.name)
    wait_until(lambda: paths["exec"].read_bytes().endswith(b'"DELETE" "w/k"=""\n'), what="the run")
    for process in (prev, runner, replay):
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        assert (process.returncode, err) == (-signal.SIGINT, b"")
    assert paths["prev"].read_bytes() == (
        b"PUT\nw/k\n1\nPUT\nw/k\n1\nw/k\n2\nDELETE\nw/k\n2\nw/k\n\n"
    )
    # Each reply's events are printed, then the command runs once per event (how the
    # events fell into replies depends on timing).
    lines = paths["exec"].read_bytes().splitlines(keepends=True)
    runs = [line for line in lines if line.startswith(b'"')]
    assert runs == [b'"PUT" "w/k"="1"\n', b'"PUT" "w/k"="2"\n', b'"DELETE" "w/k"=""\n']
    printed = b"".join(line for line in lines if not line.startswith(b'"'))
    assert printed == b"PUT\nw/k\n1\nPUT\nw/k\n2\nDELETE\nw/k\n\n"
    assert paths["replay"].read_bytes() == b"PUT\nw/k\n1\nPUT\nw/k\n2\nDELETE\nw/k\n\n"


def test_compaction_drops_old_revisions(cluster):
    old = revision_of(ctl(cluster, "put", "cp/k", "1", "-w", "json"))
    ok(ctl(cluster, "put", "cp/k", "2"))
    assert ok(ctl(cluster, "compaction", str(old))) == f"compacted revision {old}\n".encode()
    compacted = b"Error: etcdserver: mvcc: required revision has been compacted\n"
    assert ctl(cluster, "get", "cp/k", "--rev", str(old - 1)) == Result(1, b"", compacted)
    assert ok(ctl(cluster, "get", "cp/k", "--rev", str(old))) == b"cp/k\n1\n"
    again = ctl(cluster, "compaction", str(old))
    assert again == Result(1, b"", compacted)
    watch = ctl(cluster, "watch", "cp/k", "--rev", str(old - 1))
    assert watch.code == 5
    assert watch.err == (
        b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
        b"Error: watch is canceled by the server\n"
    )


def _member_ids(cluster: LocalCluster) -> dict[str, int]:
    members = json.loads(ok(ctl(cluster, "member", "list", "-w", "json")))["members"]
    return {m["name"]: m["ID"] for m in members}


def test_member_list_in_every_format(cluster):
    cluster.wait_published(cluster.members[0])
    ids = _member_ids(cluster)
    assert sorted(ids) == ["m1", "m2", "m3"]
    lines = ok(ctl(cluster, "member", "list")).decode().splitlines()
    expected = {
        f"{ids[m.name]:x}, started, {m.name}, http://127.0.0.1:{m.peer_port}, "
        f"http://{m.endpoint}, false"
        for m in cluster.members
    }
    assert set(lines) == expected
    table = ok(ctl(cluster, "member", "list", "-w", "table")).decode().splitlines()
    assert re.fullmatch(r"\|\s+ID\s+\|\s+STATUS\s+\|\s+NAME\s+\|.*IS LEARNER \|", table[1])
    assert len(table) == 3 + 3 + 1  # rule, header, rule, a row per member, rule


def test_endpoint_status_in_every_format(cluster):
    leader = cluster.wait_leader()
    ids = _member_ids(cluster)
    statuses = json.loads(ok(ctl(cluster, "endpoint", "status", "-w", "json")))
    assert [s["Endpoint"] for s in statuses] == cluster.endpoints
    for member, item in zip(cluster.members, statuses, strict=True):
        status = item["Status"]
        assert status["header"]["member_id"] == ids[member.name]
        assert status["leader"] == ids[leader.name]
        assert status["raftTerm"] >= 1 and status["raftIndex"] >= status["header"]["revision"]
        assert status["dbSize"] > 0
    rows = [
        [cell.strip() for cell in line.split("|")[1:-1]]
        for line in ok(ctl(cluster, "endpoint", "status", "-w", "table")).decode().splitlines()
        if line.startswith("|")
    ]
    assert rows[0][:5] == ["ENDPOINT", "ID", "VERSION", "DB SIZE", "IS LEADER"]
    assert [(row[0], row[1], row[4]) for row in rows[1:]] == [
        (m.endpoint, f"{ids[m.name]:x}", "true" if m is leader else "false")
        for m in cluster.members
    ]
    simple = ok(ctl(cluster, "endpoint", "status")).decode().splitlines()
    assert [line.split(", ")[0] for line in simple] == cluster.endpoints


def test_endpoint_health_then_a_member_killed(cluster):
    healthy = ctl(cluster, "endpoint", "health")
    assert (healthy.code, healthy.out) == (0, b"")
    lines = healthy.err.decode().splitlines()
    assert [line.split()[0] for line in lines] == cluster.endpoints
    assert all(" is healthy: successfully committed proposal: took = " in x for x in lines)
    report = json.loads(ok(ctl(cluster, "endpoint", "health", "-w", "json")))
    assert [(r["endpoint"], r["health"]) for r in report] == [(e, True) for e in cluster.endpoints]

    dead = next(m for m in cluster.members if m is not cluster.wait_leader())
    cluster.kill(dead)
    quick = "--command-timeout=1s"
    unhealthy = ctl(cluster, "endpoint", "health", quick)
    assert unhealthy.code == 1 and unhealthy.out == b""
    lines = unhealthy.err.decode().splitlines()
    assert lines[-1] == "Error: unhealthy cluster"
    for member in cluster.members:
        verdict = "unhealthy: failed to commit proposal" if member is dead else "healthy"
        assert any(line.startswith(f"{member.endpoint} is {verdict}") for line in lines), lines
    report = ctl(cluster, "endpoint", "health", quick, "-w", "json")
    assert report.code == 1 and report.err == b"Error: unhealthy cluster\n"
    health = {r["endpoint"]: (r["health"], bool(r.get("error"))) for r in json.loads(report.out)}
    assert health == {m.endpoint: (m is not dead, m is dead) for m in cluster.members}
    table = ctl(cluster, "endpoint", "health", quick, "-w", "table")
    assert table.code == 1 and f"| {dead.endpoint} |  false |".encode() in table.out
    # Status: the two that answer, and a line about the one that does not; exit 1.
    status = ctl(cluster, "endpoint", "status", quick)
    assert status.code == 1
    assert [line.split(", ")[0] for line in status.out.decode().splitlines()] == [
        m.endpoint for m in cluster.members if m is not dead
    ]
    assert status.err.startswith(f"Failed to get the status of endpoint {dead.endpoint} (".encode())
    # The survivors still take writes and answer reads.
    assert ok(ctl(cluster, "put", "after/kill", "v")) == b"OK\n"
    assert ok(ctl(cluster, "get", "after/kill")) == b"after/kill\nv\n"
    # Back in service for whatever runs next (it catches up from the others).
    cluster.start_member(dead)
    assert ok(ctl(cluster, "get", "after/kill", members=[dead])) == b"after/kill\nv\n"
