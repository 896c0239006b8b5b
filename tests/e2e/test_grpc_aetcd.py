"""aetcd 1.0 (an unmodified asyncio gRPC etcd client) against a 3-member pyraftkv: KV, txn,
watch, lease and lock, and the same client going on across a failover: the leader it talks
to is killed, the others elect a leader and take writes, the member is restarted."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("aetcd") is None, reason="aetcd not installed (test extras)"
)
WORKER = os.path.join(os.path.dirname(__file__), "aetcd_worker.py")


def test_aetcd_session_and_failover(cluster):
    member = cluster.wait_leader()
    host, port = member.endpoint.rsplit(":", 1)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    worker = subprocess.Popen(
        [sys.executable, WORKER, host, port],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=os.path.dirname(__file__),
    )
    try:
        assert worker.stdout.readline() == b"ready\n", worker.stderr.read1(65536)
        cluster.kill(member)
        survivors = [m for m in cluster.members if m is not member]
        cluster.wait_leader(among=survivors)
        with cluster.client(survivors) as client:
            client.put("during", "failover")
        cluster.start_member(member)
        cluster.wait_serving(member)
        out, err = worker.communicate(b"go\n", timeout=60)
    finally:
        worker.kill()
        worker.wait()
    assert out == b"done\n", err
    assert worker.returncode == 0, err
