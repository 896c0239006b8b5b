"""pyraftkvctl check linearizability on a real 3-member cluster: a healthy cluster passes,
and the check fails when it should: serializable reads from a member whose Raft process is
paused are stale, while linearizable reads under the same fault stay correct."""

from __future__ import annotations

import io

from pyraftkv.ctl.main import run

from .nemesis import paused, raft_pid


def check(cluster, *flags: str) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["--endpoints", ",".join(cluster.endpoints), "--command-timeout", "1s"]
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
        code, text = check(cluster, "--duration", "2s", "--keys", "2", "--serializable")
    assert code == 1, text
    assert text.startswith("not linearizable:"), text
    assert "smallest failing window" in text and "read ->" in text, text
