"""pyraftkvctl's lease, lock and elect commands against etcdctl 3.4 on a live etcd cluster.

As in test_ctl_etcd.py: printers fed etcdctl's ``-w json`` answers must print what
etcdctl printed, and the same command line through pyraftkvctl (via the bridge to etcd's
JSON gateway, which carries the lease, lock and election calls too) and through etcdctl
must print the same bytes and exit with the same code. Remaining TTLs, which tick between
two runs, are masked. Skipped when the etcd binaries are absent.
"""

from __future__ import annotations

import json
import re

import pytest

from pyraftkv.proto import rpc_pb2 as rpc

from .ctl_etcd_cluster import (
    ETCD,
    ETCDCTL,
    MISSING,
    EtcdCluster,
    Result,
    interrupt,
    lease_response_from_json,
    message_from_json,
    printed,
    wait_until,
)
from .test_ctl_etcd import assert_same

pytestmark = pytest.mark.skipif(ETCD is None or ETCDCTL is None, reason=MISSING)


@pytest.fixture(scope="module")
def etcd(tmp_path_factory):
    cluster = EtcdCluster(tmp_path_factory.mktemp("etcd"))
    try:
        yield cluster
    finally:
        cluster.close()


def grant(etcd: EtcdCluster, ttl: int = 100) -> str:
    """A new lease (made by etcdctl), in hex."""
    result = etcd.etcdctl("lease", "grant", str(ttl))
    assert result.code == 0, result.err
    return result.out.split()[1].decode()


_REMAINING = re.compile(rb"remaining\(\d+s\)|\"ttl\":\d+")
_KEY_LISTS = re.compile(rb"(attached keys\(\[|\"keys\":\[)(.*?)\]")


def comparable(result: Result) -> Result:
    """The output without the remaining TTL (it ticks between two runs) and with a lease's
    keys in one order (etcd lists them in no particular order)."""
    out = _REMAINING.sub(b"remaining", result.out)
    out = _KEY_LISTS.sub(lambda m: m[1] + b" ".join(sorted(re.split(rb"[ ,]", m[2]))) + b"]", out)
    return Result(result.code, out, result.err)


# -- printers fed etcdctl's JSON ------------------------------------------------------------


def test_lease_grant_printers_match_etcdctl(etcd):
    theirs_json = etcd.etcdctl("lease", "grant", "100", "-w", "json")
    resp = lease_response_from_json(theirs_json.out, rpc.LeaseGrantResponse)
    assert resp.TTL == 100 and resp.ID > 0
    assert printed("json", "lease_grant", resp).out == theirs_json.out
    theirs = etcd.etcdctl("lease", "grant", "100")
    their_id = int(theirs.out.split()[1], 16)
    mine = printed("simple", "lease_grant", rpc.LeaseGrantResponse(ID=their_id, TTL=100))
    assert mine.out == theirs.out


def _same_remaining(etcd: EtcdCluster, argv: list[str]) -> tuple[Result, Result]:
    """etcdctl's JSON and simple answers for the same remaining TTL (retried across a tick)."""
    for _ in range(5):
        first = etcd.etcdctl(*argv, "-w", "json")
        simple = etcd.etcdctl(*argv)
        again = etcd.etcdctl(*argv, "-w", "json")
        if json.loads(again.out)["ttl"] == json.loads(first.out)["ttl"]:
            return first, simple
    raise AssertionError("the remaining TTL kept changing")


def test_lease_timetolive_printers_match_etcdctl(etcd):
    lease = grant(etcd)
    for key in ("ttl/b", "ttl/a", "ttl/ü"):
        assert etcd.etcdctl("put", f"--lease={lease}", key, "v").code == 0
    for keys in (["--keys"], []):
        theirs_json, theirs = _same_remaining(etcd, ["lease", "timetolive", lease, *keys])
        resp = lease_response_from_json(theirs_json.out, rpc.LeaseTimeToLiveResponse)
        assert resp.grantedTTL == 100 and len(resp.keys) == (3 if keys else 0)
        assert printed("json", "lease_time_to_live", resp, keys=bool(keys)).out == theirs_json.out
        if keys:  # etcd lists a lease's keys in no particular order: take the simple one's
            order = theirs.out.split(b"attached keys([")[1].split(b"])")[0].split(b" ")
            assert sorted(order) == sorted(resp.keys)
            resp.keys[:] = order
        assert printed("simple", "lease_time_to_live", resp, keys=bool(keys)).out == theirs.out
    # Gone: "already expired", and -1 / 0 in JSON.
    assert etcd.etcdctl("lease", "revoke", lease).code == 0
    theirs_json, theirs = _same_remaining(etcd, ["lease", "timetolive", lease, "--keys"])
    resp = lease_response_from_json(theirs_json.out, rpc.LeaseTimeToLiveResponse)
    assert (resp.TTL, resp.grantedTTL) == (-1, 0)
    assert printed("json", "lease_time_to_live", resp, keys=True).out == theirs_json.out
    assert theirs.out == f"lease {lease} already expired\n".encode()
    assert printed("simple", "lease_time_to_live", resp, keys=True).out == theirs.out


def test_lease_list_keep_alive_and_revoke_printers_match_etcdctl(etcd):
    lease = grant(etcd)
    theirs_json = etcd.etcdctl("lease", "list", "-w", "json")
    resp = lease_response_from_json(theirs_json.out, rpc.LeaseLeasesResponse)
    assert int(lease, 16) in [item.ID for item in resp.leases]
    assert printed("json", "lease_leases", resp).out == theirs_json.out
    theirs = etcd.etcdctl("lease", "list")
    # etcd lists leases in no stable order: take the simple answer's.
    order = [int(line, 16) for line in theirs.out.splitlines()[1:]]
    assert sorted(order) == sorted(item.ID for item in resp.leases)
    del resp.leases[:]
    resp.leases.extend(rpc.LeaseStatus(ID=lease_id) for lease_id in order)
    assert printed("simple", "lease_leases", resp).out == theirs.out

    theirs_json = etcd.etcdctl("lease", "keep-alive", "--once", lease, "-w", "json")
    resp = lease_response_from_json(theirs_json.out, rpc.LeaseKeepAliveResponse)
    assert (int(lease, 16), 100) == (resp.ID, resp.TTL)
    assert printed("json", "lease_keep_alive", resp).out == theirs_json.out
    theirs = etcd.etcdctl("lease", "keep-alive", "--once", lease)
    assert printed("simple", "lease_keep_alive", resp).out == theirs.out

    theirs_json = etcd.etcdctl("lease", "revoke", lease, "-w", "json")
    resp = message_from_json(theirs_json.out, rpc.LeaseRevokeResponse)
    assert resp.header.revision > 0
    assert printed("json", "lease_revoke", int(lease, 16), resp).out == theirs_json.out
    other = grant(etcd)
    theirs = etcd.etcdctl("lease", "revoke", other)
    assert printed("simple", "lease_revoke", int(other, 16), resp).out == theirs.out

    # No leases at all: an empty list, not null.
    revoke_all(etcd)
    theirs_json = etcd.etcdctl("lease", "list", "-w", "json")
    resp = lease_response_from_json(theirs_json.out, rpc.LeaseLeasesResponse)
    assert b'"leases":[]' in theirs_json.out
    assert printed("json", "lease_leases", resp).out == theirs_json.out
    assert printed("simple", "lease_leases", resp).out == etcd.etcdctl("lease", "list").out


# -- end to end through the bridge ------------------------------------------------------------


def revoke_all(etcd: EtcdCluster) -> None:
    listed = etcd.etcdctl("lease", "list", "-w", "json").out
    for item in lease_response_from_json(listed, rpc.LeaseLeasesResponse).leases:
        etcd.etcdctl("lease", "revoke", f"{item.ID:x}")


def test_lease_commands_match_etcdctl(etcd):
    revoke_all(etcd)  # one lease, so that lease list has one order
    lease = grant(etcd)
    for key in ("e2e/x", "e2e/y"):
        assert_same(etcd.ctl("put", f"--lease={lease}", key, "v"), Result(0, b"OK\n", b""))
    for argv in (
        ["lease", "timetolive", lease],
        ["lease", "timetolive", lease, "--keys"],
        ["lease", "timetolive", lease, "--keys", "-w", "json"],
        ["lease", "keep-alive", "--once", lease],
        ["lease", "keep-alive", "--once", lease, "-w", "json"],
        ["lease", "list"],
        ["lease", "list", "-w", "json"],
    ):
        assert_same(comparable(etcd.ctl(*argv)), comparable(etcd.etcdctl(*argv)))
    # Grants and revokes change the state: compare runs on two leases, IDs swapped.
    for write_out in ("simple", "json"):
        ours = etcd.ctl("lease", "grant", "100", "-w", write_out)
        theirs = etcd.etcdctl("lease", "grant", "100", "-w", write_out)
        ids = [re.search(rb"lease (\w+)|\"ID\":(\d+)", r.out).group(1, 2) for r in (ours, theirs)]
        (ours_id, ours_decimal), (theirs_id, theirs_decimal) = ids
        swapped = ours.out.replace(ours_id or ours_decimal, theirs_id or theirs_decimal)
        assert (ours.code, swapped, ours.err) == (theirs.code, theirs.out, theirs.err)
        ours_lease = (ours_id or f"{int(ours_decimal):x}".encode()).decode()
        theirs_lease = (theirs_id or f"{int(theirs_decimal):x}".encode()).decode()
        ours = etcd.ctl("lease", "revoke", ours_lease, "-w", write_out)
        theirs = etcd.etcdctl("lease", "revoke", theirs_lease, "-w", write_out)
        assert ours.code == theirs.code == 0
        if write_out == "simple":
            assert ours.out.replace(ours_lease.encode(), theirs_lease.encode()) == theirs.out
        else:  # a revoke that deletes no key makes no revision: the same header
            assert ours.out == theirs.out and b'"header":{' in ours.out
    # The lease's keys went with it.
    assert etcd.ctl("lease", "revoke", lease).code == 0
    assert_same(etcd.ctl("get", "e2e/", "--prefix"), Result(0, b"", b""))
    assert_same(etcd.ctl("lease", "timetolive", lease), etcd.etcdctl("lease", "timetolive", lease))


SAME_ERRORS = [
    ["lease", "grant"],
    ["lease", "grant", "abc"],
    ["lease", "grant", "0x10"],
    ["lease", "grant", "99999999999999999999"],
    ["lease", "grant", "9000000001"],
    ["lease", "revoke"],
    ["lease", "revoke", "zz"],
    ["lease", "revoke", "1234"],
    ["lease", "timetolive"],
    ["lease", "timetolive", "zz"],
    ["lease", "timetolive", "1234"],
    ["lease", "timetolive", "1234", "-w", "json"],
    ["lease", "timetolive", "8000000000000000"],
    ["lease", "keep-alive"],
    ["lease", "keep-alive", "1", "2"],
    ["lease", "keep-alive", "--once", "1234"],
    ["lease", "keep-alive", "1234"],
    ["-w", "json", "lease", "keep-alive", "1234"],
    ["-w", "table", "lease", "keep-alive", "1234"],
    ["-w", "table", "lease", "list"],
    ["-w", "table", "lease", "timetolive", "1"],
    ["put", "--lease=zz", "k", "v"],
    ["put", "--lease=1234", "k", "v"],
    ["lock"],
    ["lock", "errs", "no-such-command-here"],
    ["lock", "errs", "--", "sh", "-c", "echo out; echo err >&2; exit 3"],
    ["lock", "errs", "--", "sh", "-c", "kill -9 $$"],
    ["-w", "table", "lock", "errs", "--", "sh", "-c", 'echo "${ETCD_LOCK_KEY%/*}"'],
    ["elect"],
    ["elect", "e"],
    ["elect", "-l", "e", "p"],
    ["elect", "a", "b", "c"],
    ["compaction", "x"],
    ["member", "remove", "zz"],
    ["member", "remove", "1ffffffffffffffff"],
]


@pytest.mark.parametrize("argv", SAME_ERRORS, ids=" ".join)
def test_lease_lock_elect_errors_match_etcdctl(etcd, argv):
    assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


@pytest.mark.parametrize("argv", [["get", "a", "--limit=x"], ["get", "a", "--limit=1_"]])
def test_flag_values_are_refused_like_etcdctl(etcd, argv):
    ours, theirs = etcd.ctl(*argv), etcd.etcdctl(*argv)
    assert ours.code == theirs.code == 1
    assert ours.err.splitlines()[0] == theirs.err.splitlines()[0]


def test_go_integer_literals_are_read_like_etcdctl(etcd):
    for i in range(12):
        etcd.etcdctl("put", f"n/{i:02d}", "v")
    for limit in ("1_0", "0x_2", "010", "0b11", "+2"):
        argv = ["get", "n/", "--prefix", "--keys-only", f"--limit={limit}"]
        assert_same(etcd.ctl(*argv), etcd.etcdctl(*argv))


def _key_masked(resp: rpc.RangeResponse) -> rpc.RangeResponse:
    """The answer with what differs between two holders blanked: revisions, the lease."""
    masked = rpc.RangeResponse()
    masked.CopyFrom(resp)
    masked.header.revision = 0
    for kv in masked.kvs:
        kv.key = kv.key.rsplit(b"/", 1)[0]
        kv.create_revision = kv.mod_revision = kv.lease = 0
    return masked


def test_lock_and_elect_json_match_etcdctl(etcd, tmp_path):
    """Held lock and won election print their key as a get (with count); a listener prints
    each leader as a get without one. Ctrl-C ends each with 0."""
    runs = {}
    for who, launch in (("ours", etcd.ctl_process), ("theirs", etcd.etcdctl_process)):
        paths = {role: tmp_path / f"{who}-{role}" for role in ("lock", "listen", "elect")}
        with open(paths["listen"], "wb") as out:
            listener = launch("-w", "json", "elect", "-l", f"elect-{who}", stdout=out)
        with open(paths["lock"], "wb") as out:
            holder = launch("-w", "json", "lock", f"lock-{who}", stdout=out)
        with open(paths["elect"], "wb") as out:
            candidate = launch("-w", "json", "elect", f"elect-{who}", "proposal", stdout=out)
        for path in paths.values():
            wait_until(lambda path=path: path.read_bytes().endswith(b"\n"), what=path.name)
        exits = [interrupt(p) for p in (holder, candidate, listener)]
        runs[who] = ([paths[role].read_bytes() for role in ("lock", "elect", "listen")], exits)
        for name in (f"lock-{who}", f"elect-{who}"):  # unlocked, resigned
            assert etcd.etcdctl("get", name, "--prefix").out == b""
    (ours, ours_exits), (theirs, theirs_exits) = runs["ours"], runs["theirs"]
    assert ours_exits == theirs_exits == [(0, b"")] * 3
    for mine, etcds in zip(ours, theirs, strict=True):
        resp = message_from_json(etcds, rpc.RangeResponse)
        assert printed("json", "get", resp).out == etcds  # (the printer, on etcdctl's answer)
        expected = _key_masked(resp)
        expected.kvs[0].key = expected.kvs[0].key.replace(b"theirs", b"ours")
        assert _key_masked(message_from_json(mine, rpc.RangeResponse)) == expected
    assert b'"count":1' in theirs[0] and b'"count"' not in theirs[2]
