"""pyraftkvctl check linearizability on a real 3-member cluster: a healthy cluster passes,
and the check fails when it should: serializable reads from a member whose Raft process is
paused are stale, while linearizable reads under the same fault stay correct. The same over
etcd's gRPC API, against pyraftkv and against real etcd 3.4."""

from __future__ import annotations

import io

import pytest

from pyraftkv.ctl.main import run

from ..ctl_etcd_cluster import ETCD, MISSING, EtcdCluster
from .harness import free_ports
from .nemesis import paused, raft_pid

# The serializable run under a paused follower. A client on the paused member sees a stale
# read only when it reads after another client's write to that key returned, but it waits
# out a 1 s timeout on each of its writes and compare-and-sets (half of its ops): in 2 s,
# its 2 clients made no such read about one run in 16; in 5 s about one run in 1,000.
# More clients would miss less often, but each of their timed-out writes is an operation
# of unknown outcome, and the checker's search grows exponentially with those open at
# once (12 clients: 48-224 s per test instead of about 20).
STALE_READS = ("--clients", "6", "--duration", "5s", "--keys", "2", "--serializable")


def check(cluster, *flags: str) -> tuple[int, str]:
    return check_endpoints(cluster.endpoints, *flags)


def check_endpoints(endpoints, *flags: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--endpoints", ",".join(endpoints), "--command-timeout", "1s"]
    code = run(
        [*argv, "check", "linearizability", "--clients", "6", *flags], stdout=out, stderr=err
    )
    return code, out.getvalue() + err.getvalue()


def test_healthy_cluster_is_linearizable(cluster):
    code, text = check(cluster, "--duration", "2s", "--keys", "3")
    assert code == 0, text
    assert text.startswith("linearizable: "), text
    ops = int(text.split()[1])
    assert ops > 100, text


def test_stale_member_fails_serializable_but_not_linearizable_reads(cluster):
    leader = cluster.wait_leader()
    stale = next(m for m in cluster.members if m is not leader)
    with paused(raft_pid(stale)):  # its store stops moving; its client port still answers
        code, text = check(cluster, "--duration", "2s", "--keys", "2")
        assert code == 0, text
        code, text = check(cluster, *STALE_READS)
    assert code == 1, text
    assert text.startswith("not linearizable:"), text
    assert "smallest failing window" in text and "read ->" in text, text


def test_stale_member_over_grpc(cluster):
    """--protocol grpc against pyraftkv's gRPC front: linearizable reads pass, serializable
    reads from a paused follower are caught."""
    leader = cluster.wait_leader()
    stale = next(m for m in cluster.members if m is not leader)
    code, text = check(cluster, "--protocol", "grpc", "--duration", "2s", "--keys", "2")
    assert code == 0, text
    assert text.startswith("linearizable: "), text
    assert int(text.split()[1]) > 50, text
    with paused(raft_pid(stale)):
        code, text = check(cluster, "--protocol", "grpc", *STALE_READS)
    assert code == 1, text
    assert text.startswith("not linearizable:") and "read ->" in text, text


@pytest.mark.skipif(ETCD is None, reason=MISSING)
def test_real_etcd_over_grpc(tmp_path):
    """The check drives etcd 3.4 itself over gRPC: linearizable reads through all three
    members; serializable reads through one (a member answers a write once it applied it,
    so its own local reads are not stale; spread over members they may well be)."""
    etcd = EtcdCluster(tmp_path)
    try:
        for endpoints, flags in ((etcd.endpoints, ()), (etcd.endpoints[1:2], ("--serializable",))):
            code, text = check_endpoints(
                endpoints, "--protocol", "grpc", "--duration", "2s", "--keys", "3", *flags
            )
            assert code == 0, text
            assert text.startswith("linearizable: "), text
            assert int(text.split()[1]) > 50, text
    finally:
        etcd.close()


def test_grpc_without_endpoint_or_bad_protocol_fails_clearly(cluster):
    (port,) = free_ports(1)
    code, text = check_endpoints([f"127.0.0.1:{port}"], "--protocol", "grpc", "--duration", "1s")
    assert code == 2, text
    assert "no endpoint answers over gRPC" in text, text
    code, text = check(cluster, "--protocol", "http", "--duration", "1s")
    assert code == 128, text
    assert "unknown --protocol 'http'" in text, text
