"""pyraftkvctl against etcdctl 3.4, byte for byte, on a live 3-member etcd cluster.

Two kinds of checks:
- printers: etcdctl's ``-w json`` answer is turned back into the protobuf response (it is
  the same message) and given to pyraftkvctl's printers, whose simple / json / table text
  must equal what etcdctl printed for the same state;
- end to end: the same command line through pyraftkvctl (via a bridge from the native
  protocol to etcd's JSON gateway) and through etcdctl must print the same bytes and exit
  with the same code.
Only values that differ by nature are masked (health check timings). Skipped when the
etcd binaries are absent.
"""

from __future__ import annotations

import re
import signal
import time

import pytest

from pyraftkv.client import Client
from pyraftkv.proto import rpc_pb2 as rpc

from .ctl_etcd_cluster import (
    ETCD,
    ETCDCTL,
    MISSING,
    EndpointHealth,
    EtcdCluster,
    Result,
    hashes_from_json,
    health_from_json,
    interrupt,
    message_from_json,
    printed,
    statuses_from_json,
    wait_until,
    watch_response_from_json,
)

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        for key, value in [("d/a", "1"), ("d/b", "two words"), ("d/ü", "ü"), ("d/c", "3")]:
            assert cluster.etcdctl("put", key, value).code == 0
        # A binary value with a NUL and a newline, from stdin.
        assert cluster.etcdctl("put", "d/bin", stdin=b"\xff\x00\xfe\n").code == 0
        assert cluster.etcdctl("put", "d/c", "three").code == 0
        settle(cluster)
        yield cluster
    finally:
        cluster.close()


def settle(etcd: EtcdCluster) -> None:
    """Wait until etcd's own start-up writes and backend commits are done, so that two
    `endpoint status` calls in a row see the same indexes and sizes."""

    def status() -> bytes:
        return etcd.etcdctl("endpoint", "status", "-w", "json", endpoints=etcd.endpoints).out

    previous = status()
    for _ in range(50):
        time.sleep(0.2)
        current = status()
        if current == previous:
            return
        previous = current
    raise AssertionError("etcd's status kept changing")


def assert_same(ours: Result, theirs: Result) -> None:
    assert (ours.code, ours.out.decode(errors="replace"), ours.err.decode(errors="replace")) == (
        theirs.code,
        theirs.out.decode(errors="replace"),
        theirs.err.decode(errors="replace"),
    )
    assert (ours.out, ours.err) == (theirs.out, theirs.err)  # the exact bytes too


# -- reads: printers fed with etcdctl's JSON, and the whole command end to end --------------

GETS = [
    ["get", "d/a"],
    ["get", "d/", "--prefix"],
    ["get", "d/", "--prefix", "--keys-only"],
    ["get", "d/", "--prefix", "--limit", "2"],
    ["get", "d/", "--prefix", "--sort-by", "VALUE", "--order", "DESCEND"],
    ["get", "d/", "--prefix", "--sort-by=modify", "--order=ascend"],
    ["get", "d/a", "d/c"],
    ["get", "d/", "--from-key", "--keys-only"],
    ["get", "d/", "--prefix", "--consistency=s"],
    ["get", "d/missing"],
]


@pytest.mark.parametrize("argv", GETS, ids=" ".join)
def test_get_printers_match_etcdctl(etcd, argv):
    theirs_json = etcd.etcdctl(*argv, "-w", "json")
    resp = message_from_json(theirs_json.out, rpc.RangeResponse)
    assert printed("json", "get", resp).out == theirs_json.out
    assert printed("simple", "get", resp).out == etcd.etcdctl(*argv).out
    assert printed("simple", "get", resp, hex_bytes=True).out == etcd.etcdctl(*argv, "--hex").out
    assert (
        printed("simple", "get", resp, value_only=True).out
        == etcd.etcdctl(*argv, "--print-value-only").out
    )


@pytest.mark.parametrize("argv", GETS, ids=" ".join)
@pytest.mark.parametrize("write_out", ["simple", "json"])
def test_get_matches_etcdctl(etcd, argv, write_out):
    assert_same(etcd.ctl(*argv, "-w", write_out), etcd.etcdctl(*argv, "-w", write_out))


def test_get_at_a_revision_matches_etcdctl(etcd):
    revision = message_from_json(etcd.etcdctl("get", "d/a", "-w", "json").out, rpc.RangeResponse)
    older = str(revision.kvs[0].mod_revision)
    for write_out in ("simple", "json"):
        argv = ["get", "d/", "--prefix", "--rev", older, "-w", write_out]
        assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


def test_member_list_matches_etcdctl(etcd):
    theirs_json = etcd.etcdctl("member", "list", "-w", "json")
    resp = message_from_json(theirs_json.out, rpc.MemberListResponse)
    assert len(resp.members) == 3
    assert printed("json", "member_list", resp).out == theirs_json.out
    for write_out in ("simple", "table"):
        theirs = etcd.etcdctl("member", "list", "-w", write_out)
        assert printed(write_out, "member_list", resp).out == theirs.out
        assert_same(etcd.ctl("member", "list", "-w", write_out), theirs)
    # The long member name is wrapped inside its table cell, as etcdctl does.
    assert b" first member of the |" in theirs.out
    assert b" differential test cluster |" in theirs.out


def test_endpoint_status_matches_etcdctl(etcd):
    argv = ["endpoint", "status"]
    every = {"endpoints": etcd.endpoints}
    theirs_json = etcd.etcdctl(*argv, "-w", "json", **every)
    statuses = statuses_from_json(theirs_json.out)
    assert [ep for ep, _ in statuses] == etcd.endpoints
    assert printed("json", "endpoint_status", statuses).out == theirs_json.out
    for write_out in ("simple", "table"):
        theirs = etcd.etcdctl(*argv, "-w", write_out, **every)
        assert printed(write_out, "endpoint_status", statuses).out == theirs.out
    for write_out in ("simple", "json", "table"):
        assert_same(
            etcd.ctl(*argv, "-w", write_out, **every), etcd.etcdctl(*argv, "-w", write_out, **every)
        )


def test_endpoint_hashkv_printers_match_etcdctl(etcd):
    argv = ["endpoint", "hashkv"]
    every = {"endpoints": etcd.endpoints}
    theirs_json = etcd.etcdctl(*argv, "-w", "json", **every)
    hashes = hashes_from_json(theirs_json.out)
    assert len(hashes) == 3 and hashes[0][1].hash
    assert printed("json", "endpoint_hashkv", hashes).out == theirs_json.out
    for write_out in ("simple", "table"):
        assert (
            printed(write_out, "endpoint_hashkv", hashes).out
            == etcd.etcdctl(*argv, "-w", write_out, **every).out
        )


def _health_from_simple(err: bytes) -> list[EndpointHealth]:
    results = []
    for line in err.decode().splitlines():
        ep, took = re.fullmatch(
            r"(\S+) is healthy: successfully committed proposal: took = (\S+)", line
        ).groups()
        results.append(EndpointHealth(ep, True, took))
    return results


def _health_from_table(out: bytes) -> list[EndpointHealth]:
    rows = [line.split("|")[1:-1] for line in out.decode().splitlines() if line.startswith("|")]
    return [
        EndpointHealth(ep.strip(), health.strip() == "true", took.strip(), error.strip())
        for ep, health, took, error in rows[1:]
    ]


def test_endpoint_health_matches_etcdctl(etcd):
    argv = ["endpoint", "health"]
    every = {"endpoints": etcd.endpoints}
    theirs_json = etcd.etcdctl(*argv, "-w", "json", **every)
    results = health_from_json(theirs_json.out)
    assert sorted(r.endpoint for r in results) == sorted(etcd.endpoints)
    assert all(r.healthy for r in results)
    assert printed("json", "endpoint_health", results).out == theirs_json.out
    # Timings differ from run to run: feed each format the results that run printed.
    simple = etcd.etcdctl(*argv, **every)
    assert (simple.code, simple.out) == (0, b"")
    assert printed("simple", "endpoint_health", _health_from_simple(simple.err)).err == simple.err
    table = etcd.etcdctl(*argv, "-w", "table", **every)
    assert printed("table", "endpoint_health", _health_from_table(table.out)).out == table.out
    # End to end, with the timings masked; ours lists endpoints in --endpoints order.
    ours = etcd.ctl(*argv, **every)
    mask = re.compile(rb"took = \S+")
    assert ours.code == 0 and ours.out == b""
    assert sorted(mask.sub(b"took = T", ours.err).splitlines()) == sorted(
        mask.sub(b"took = T", simple.err).splitlines()
    )


def test_endpoint_health_of_a_dead_endpoint(etcd):
    dead = "127.0.0.1:1"
    argv = ["endpoint", "health", "--command-timeout=1s"]
    ours = etcd.ctl(*argv, f"--endpoints={etcd.bridges[0].endpoint},{dead}")
    theirs = etcd.etcdctl(*argv, endpoints=[etcd.endpoints[0], dead])
    assert ours.code == theirs.code == 1
    for result in (ours, theirs):
        lines = result.err.decode().splitlines()
        assert lines[-1] == "Error: unhealthy cluster"
        assert any(
            line.startswith(f"{dead} is unhealthy: failed to commit proposal: ") for line in lines
        )
        assert any(line.startswith(f"{etcd.endpoints[0]} is healthy") for line in lines)


# -- writes: the same state before each run --------------------------------------------------


def test_put_matches_etcdctl(etcd):
    argv = ["put", "w/put", "new", "--prev-kv"]
    etcd.etcdctl("put", "w/put", "old")
    theirs_json = etcd.etcdctl(*argv, "-w", "json")
    resp = message_from_json(theirs_json.out, rpc.PutResponse)
    assert resp.prev_kv.value == b"old"
    assert printed("json", "put", resp).out == theirs_json.out
    etcd.etcdctl("put", "w/put", "old")
    theirs = etcd.etcdctl(*argv)
    assert theirs.out == b"OK\nw/put\nold\n"
    assert printed("simple", "put", resp).out == theirs.out
    etcd.etcdctl("put", "w/put", "old")
    assert_same(etcd.ctl(*argv), theirs)
    # Without --prev-kv, and with the value read from stdin (kept with its newline).
    assert_same(etcd.ctl("put", "w/stdin", stdin=b"line\n"), Result(0, b"OK\n", b""))
    got = message_from_json(etcd.etcdctl("get", "w/stdin", "-w", "json").out, rpc.RangeResponse)
    assert got.kvs[0].value == b"line\n"


def test_put_errors_from_the_server_match_etcdctl(etcd):
    argv = ["put", "w/never-created", "--ignore-value"]
    assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


def test_del_matches_etcdctl(etcd):
    def seed():
        for key in ("w/del/1", "w/del/2"):
            etcd.etcdctl("put", key, "v")

    argv = ["del", "w/del/", "--prefix", "--prev-kv"]
    seed()
    theirs_json = etcd.etcdctl(*argv, "-w", "json")
    resp = message_from_json(theirs_json.out, rpc.DeleteRangeResponse)
    assert resp.deleted == 2
    assert printed("json", "delete", resp).out == theirs_json.out
    seed()
    theirs = etcd.etcdctl(*argv)
    assert printed("simple", "delete", resp).out == theirs.out
    seed()
    assert_same(etcd.ctl(*argv), theirs)
    assert_same(etcd.ctl("del", "w/del/none"), etcd.etcdctl("del", "w/del/none"))


TXN = (
    b'mod("w/txn") > "0"\nval("w/txn") = "before"\n\n'
    b"put w/txn after --prev-kv\nget w/txn\ndel w/txn-other --prev-kv\n"
    b"get w/ --prefix --keys-only\n\nput w/txn failed\n\n"
)


def test_txn_matches_etcdctl(etcd):
    def seed():
        etcd.etcdctl("put", "w/txn", "before")
        etcd.etcdctl("put", "w/txn-other", "x")

    seed()
    theirs_json = etcd.etcdctl("txn", "-w", "json", stdin=TXN)
    resp = message_from_json(theirs_json.out, rpc.TxnResponse)
    assert resp.succeeded and len(resp.responses) == 4
    assert printed("json", "txn", resp).out == theirs_json.out
    seed()
    theirs = etcd.etcdctl("txn", stdin=TXN)
    assert printed("simple", "txn", resp).out == theirs.out
    for flags in ([], ["-i"], ["--interactive"]):
        seed()
        theirs = etcd.etcdctl("txn", *flags, stdin=TXN)
        seed()
        ours = etcd.ctl("txn", *flags, stdin=TXN)
        assert_same(ours, theirs)
    # The failure branch: the value no longer matches.
    etcd.etcdctl("put", "w/txn", "changed")
    failed = etcd.etcdctl("txn", stdin=TXN)
    etcd.etcdctl("put", "w/txn", "changed")
    assert failed.out == b"FAILURE\n\nOK\n"
    assert_same(etcd.ctl("txn", stdin=TXN), failed)


# -- watch -------------------------------------------------------------------------------


def _events_seen(variant: str, output: bytes) -> int:
    if variant == "json":
        return len(output.splitlines())
    if variant == "exec":
        return output.count(b"run ")
    return output.count(b"PUT\n") + output.count(b"DELETE\n")


def test_watch_matches_etcdctl(etcd, tmp_path):
    """Watchers from the same revision see the same events; Ctrl-C ends both alike."""
    start = (
        message_from_json(
            etcd.etcdctl("put", "wt/start", "s", "-w", "json").out, rpc.PutResponse
        ).header.revision
        + 1
    )
    variants = {
        "simple": ["wt/", "--prefix"],
        "prev": ["wt/", "--prefix", "--prev-kv"],
        "json": ["wt/", "--prefix", "-w", "json"],
        "exec": [
            "wt/key",
            "--",
            "sh",
            "-c",
            'echo "run $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE '
            '$ETCD_WATCH_REVISION"',
        ],
    }
    processes = {}
    for variant, args in variants.items():
        for who, launch in (("ours", etcd.ctl_process), ("theirs", etcd.etcdctl_process)):
            path = tmp_path / f"{who}-{variant}.out"
            with open(path, "wb") as out:
                process = launch("watch", "--rev", str(start), *args, stdout=out)
            processes[who, variant] = (process, path)

    # One write at a time, each seen by every watcher before the next: one event a reply.
    writes = [
        (["put", "wt/key", "v1"], 1),
        (["put", "wt/key", "v 2"], 2),
        (["del", "wt/key"], 3),
        (["put", "wt/other", "x"], 3),  # not a change of wt/key: the exec watchers skip it
        (["put", "wt/key", "end"], 4),
    ]
    try:
        for count, (argv, key_events) in enumerate(writes, 1):
            assert etcd.etcdctl(*argv).code == 0
            for (_, variant), (_, path) in processes.items():
                want = key_events if variant == "exec" else count
                wait_until(
                    lambda path=path, variant=variant, want=want: (
                        _events_seen(variant, path.read_bytes()) >= want
                    ),
                    what=f"{variant} watcher after {argv}",
                )
    finally:
        exits = {key: interrupt(process) for key, (process, _) in processes.items()}
    outputs = {key: path.read_bytes() for key, (_, path) in processes.items()}
    for variant in variants:
        assert outputs["ours", variant] == outputs["theirs", variant], variant
        # Ctrl-C ends both quietly, as killed by SIGINT.
        assert exits["ours", variant] == exits["theirs", variant] == (-signal.SIGINT, b""), variant
    assert outputs["ours", "simple"].startswith(b"PUT\nwt/key\nv1\nPUT\nwt/key\nv 2\nDELETE\n")
    assert b'run "DELETE" "wt/key" "" ' in outputs["ours", "exec"]
    # Printers: etcdctl's JSON lines, back into responses, give etcdctl's other outputs.
    responses = [watch_response_from_json(line) for line in outputs["theirs", "json"].splitlines()]
    assert len(responses) == 5
    ours_json = b"".join(printed("json", "watch", r).out for r in responses)
    assert ours_json == outputs["theirs", "json"]
    ours_simple = b"".join(printed("simple", "watch", r).out for r in responses)
    assert ours_simple == outputs["theirs", "simple"]


SEEDED = [b"d/a", b"d/b", "d/ü".encode(), b"d/c", b"d/bin", b"d/c"]


def test_watch_replays_history_like_etcdctl(etcd, tmp_path):
    processes = {}
    for who, launch in (("ours", etcd.ctl_process), ("theirs", etcd.etcdctl_process)):
        with open(tmp_path / who, "wb") as out:
            processes[who] = launch("watch", "d/", "--prefix", "--rev", "1", stdout=out)
    try:
        for who in processes:
            wait_until(
                lambda who=who: (tmp_path / who).read_bytes().count(b"PUT\n") == len(SEEDED),
                what=f"{who} history",
            )
    finally:
        exits = {who: interrupt(process) for who, process in processes.items()}
    assert exits["ours"] == exits["theirs"] == (-signal.SIGINT, b"")
    ours = (tmp_path / "ours").read_bytes()
    assert ours == (tmp_path / "theirs").read_bytes()
    assert ours.startswith(b"PUT\nd/a\n1\nPUT\nd/b\ntwo words\n")


def test_blocking_client_watch_replays_history(etcd):
    with Client([etcd.bridges[0].endpoint], timeout=10) as client:
        watch = client.watch("d/", prefix=True, start_revision=1)
        events = [watch.get(timeout=10) for _ in SEEDED]
        watch.cancel()
    assert [event.kv.key for event in events] == SEEDED
    assert [event.kv.version for event in events] == [1, 1, 1, 1, 1, 2]


def test_compacted_revisions_match_etcdctl(tmp_path):
    # A cluster of its own: the module's keeps its history for the tests that replay it.
    etcd = EtcdCluster(tmp_path)
    try:
        compacted_revisions_match_etcdctl(etcd)
    finally:
        etcd.close()


def compacted_revisions_match_etcdctl(etcd: EtcdCluster) -> None:
    head = message_from_json(etcd.etcdctl("put", "cp/k", "1", "-w", "json").out, rpc.PutResponse)
    old = head.header.revision
    etcd.etcdctl("put", "cp/k", "2")
    assert_same(
        etcd.ctl("compaction", str(old)), Result(0, f"compacted revision {old}\n".encode(), b"")
    )
    for argv in (["compaction", str(old)], ["get", "cp/k", "--rev", str(old - 1)]):
        assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))
    theirs = etcd.etcdctl("watch", "cp/k", "--rev", str(old - 1), "-w", "json")
    ours = etcd.ctl("watch", "cp/k", "--rev", str(old - 1), "-w", "json")
    assert theirs.code == 5
    assert (
        ours.err
        == theirs.err
        == (
            b"watch was canceled (etcdserver: mvcc: required revision has been compacted)\n"
            b"Error: watch is canceled by the server\n"
        )
    )
    assert ours.code == theirs.code
    assert ours.out == theirs.out and b'"Canceled":true' in ours.out


# -- members and leadership ----------------------------------------------------------------


def _members(etcd: EtcdCluster) -> rpc.MemberListResponse:
    return message_from_json(
        etcd.etcdctl("member", "list", "-w", "json").out, rpc.MemberListResponse
    )


def test_member_add_and_remove_match_etcdctl(etcd):
    # Learners (one at a time: etcd's limit), so the cluster's quorum never changes.
    add = ["member", "add", "extra", "--peer-urls=http://127.0.0.1:9", "--learner"]
    # etcd refuses membership changes ("unhealthy cluster") until every member has been
    # connected for 5 s, which a freshly started cluster may not yet be.
    for _ in range(40):
        theirs_add = etcd.etcdctl(*add, "-w", "json")
        if b"unhealthy cluster" not in theirs_add.err:
            break
        time.sleep(0.25)
    added = message_from_json(theirs_add.out, rpc.MemberAddResponse)
    assert added.member.isLearner
    mine = printed("json", "member_add", added, "extra", ["http://127.0.0.1:9"])
    assert mine.out == theirs_add.out
    theirs_remove = etcd.etcdctl("member", "remove", f"{added.member.ID:x}", "-w", "json")
    removed = message_from_json(theirs_remove.out, rpc.MemberRemoveResponse)
    mine = printed("json", "member_changed", "removed from", added.member.ID, removed)
    assert mine.out == theirs_remove.out

    # etcdctl's simple lines, from the response its add made (its variables are ETCD_*).
    theirs = etcd.etcdctl("member", "add", "extra3", "--peer-urls=http://127.0.0.1:11", "--learner")
    theirs_id = int(theirs.out.split()[1], 16)
    members = _members(etcd)
    new = next(member for member in members.members if theirs_id == member.ID)
    response = rpc.MemberAddResponse(header=members.header, member=new, members=members.members)
    mine = printed("simple", "member_add", response, "extra3", ["http://127.0.0.1:11"])
    assert mine.out == theirs.out.replace(b"ETCD_", b"PYRAFTKV_")
    theirs_remove = etcd.etcdctl("member", "remove", f"{theirs_id:x}")
    mine = printed("simple", "member_changed", "removed from", theirs_id, members)
    assert mine.out == theirs_remove.out

    # Ours, end to end through the bridge.
    ours = etcd.ctl("member", "add", "extra2", "--peer-urls=http://127.0.0.1:10", "--learner")
    assert ours.code == 0, ours.err
    new_id = int(ours.out.split()[1], 16)
    members = _members(etcd)
    cluster = ",".join(
        f"{'extra2' if new_id == member.ID else member.name}={url}"
        for member in members.members
        for url in member.peerURLs
    )
    assert ours.out.decode() == (
        f"Member {new_id:16x} added to cluster {members.header.cluster_id:16x}\n\n"
        f'PYRAFTKV_NAME="extra2"\nPYRAFTKV_INITIAL_CLUSTER="{cluster}"\n'
        'PYRAFTKV_INITIAL_ADVERTISE_PEER_URLS="http://127.0.0.1:10"\n'
        'PYRAFTKV_INITIAL_CLUSTER_STATE="existing"\n'
    )
    # Promoting a learner that never started fails the same way in both.
    promote = ["member", "promote", f"{new_id:x}"]
    assert_same(etcd.ctl(*promote), etcd.etcdctl(*promote))
    ours = etcd.ctl("member", "remove", f"{new_id:x}")
    assert (
        ours.out
        == f"Member {new_id:16x} removed from cluster {members.header.cluster_id:16x}\n".encode()
    )
    again = ["member", "remove", f"{new_id:x}"]
    assert_same(etcd.ctl(*again), etcd.etcdctl(*again))


def test_move_leader_matches_etcdctl(etcd):
    every = {"endpoints": etcd.endpoints}
    statuses = statuses_from_json(etcd.etcdctl("endpoint", "status", "-w", "json", **every).out)
    leader = statuses[0][1].leader
    others = [s.header.member_id for _, s in statuses if s.header.member_id != leader]
    theirs = etcd.etcdctl("move-leader", f"{others[0]:x}", **every)
    assert theirs.out == f"Leadership transferred from {leader:x} to {others[0]:x}\n".encode()
    ours = etcd.ctl("move-leader", f"{leader:x}", **every)
    assert (ours.code, ours.out, ours.err) == (
        0,
        f"Leadership transferred from {others[0]:x} to {leader:x}\n".encode(),
        b"",
    )
    # Asked of an endpoint that is not the leader: both refuse.
    follower = next(ep for ep, s in statuses if s.header.member_id != leader)
    argv = ["move-leader", f"{leader:x}"]
    assert_same(etcd.ctl(*argv, endpoints=[follower]), etcd.etcdctl(*argv, endpoints=[follower]))


# -- errors that stop before or at the server ----------------------------------------------

SAME_ERRORS = [
    ["get"],
    ["get", "a", "--sort-by=FOO"],
    ["get", "a", "--order=SIDEWAYS"],
    ["get", "a", "--consistency=x"],
    ["get", "a", "--prefix", "--from-key"],
    ["del"],
    ["put"],
    ["compaction"],
    ["member", "remove"],
    ["member", "add"],
    ["member", "add", "x"],
    ["member", "add", "x", "--peer-urls=foo"],
    ["member", "remove", "1234"],
    ["txn", "extra"],
    ["-w", "xml", "get", "a"],
    ["-w", "table", "get", "a"],
    ["compaction", "999999999"],
]


@pytest.mark.parametrize("argv", SAME_ERRORS, ids=" ".join)
def test_errors_match_etcdctl(etcd, argv):
    assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


def test_unknown_flag_reports_like_etcdctl(etcd):
    ours, theirs = etcd.ctl("get", "a", "--bogus"), etcd.etcdctl("get", "a", "--bogus")
    assert ours.code == theirs.code == 1
    assert ours.err.splitlines()[0] == theirs.err.splitlines()[0] == b"Error: unknown flag: --bogus"


def test_bad_txn_input_matches_etcdctl(etcd):
    for stdin in (
        b"bogus\n\n\n\n",
        b'foo("k") > "1"\n\n\n\n',
        b'mod("k") > "x"\n\n\n\n',
        b"\nfrobnicate k v\n\n\n",
    ):
        ours, theirs = etcd.ctl("txn", stdin=stdin), etcd.etcdctl("txn", stdin=stdin)
        assert ours.code == theirs.code == 3
        # Ours may add the reason in parentheses; the rest is etcdctl's text.
        assert ours.err.startswith(theirs.err.rstrip(b"\n")), (ours.err, theirs.err)


def test_process_exits_quietly_on_interrupt(etcd, tmp_path):
    put = etcd.etcdctl("put", "quiet/k", "v", "-w", "json")
    revision = message_from_json(put.out, rpc.PutResponse).header.revision
    with open(tmp_path / "out", "wb") as out:
        process = etcd.ctl_process("watch", "quiet/k", "--rev", str(revision), stdout=out)
    wait_until(lambda: b"quiet/k" in (tmp_path / "out").read_bytes(), what="the event")
    assert interrupt(process) == (-signal.SIGINT, b"")
    assert (tmp_path / "out").read_bytes() == b"PUT\nquiet/k\nv\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["check", "perf", "--load=huge"],
        ["check", "perf", "--prefix=d/"],  # d/ holds the fixture's keys
    ],
)
def test_check_perf_refusals_match_etcdctl(etcd, argv):
    assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


def test_check_perf_runs_against_etcd(etcd):
    """The same load through pyraftkvctl reaches real etcd, reports in etcdctl's words and
    removes its keys."""
    ours = etcd.ctl("check", "perf", "--load=s", "--duration=2s", "--prefix=/cp/")
    assert ours.code == 0, ours.err
    report = ours.out.decode().split("\n")[-6:]
    assert report[0].endswith(" 2 / 2  100.00% 2s")
    assert re.fullmatch(r"PASS: Throughput is \d+ writes/s", report[1])
    assert re.fullmatch(r"PASS: Slowest request took \d+\.\d{6}s", report[2])
    assert re.fullmatch(r"PASS: Stddev is \d+\.\d{6}s", report[3])
    assert report[4:] == ["PASS", ""]
    left = etcd.etcdctl("get", "/cp/", "--prefix", "-w", "json")
    assert left.code == 0 and b'"kvs"' not in left.out
