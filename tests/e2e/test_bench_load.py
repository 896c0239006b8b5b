"""bench/load.py against a real member: the open loop keeps its rate (requests sent as they
fall due, not all at once) and every request is answered and counted; the closed loop
sends exactly what it was asked to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

LOAD = Path(__file__).resolve().parents[2] / "bench" / "load.py"


@pytest.fixture
def member(make_cluster):
    """A one-member cluster, started."""
    cluster = make_cluster(1)
    cluster.start()
    return cluster


def load(cluster, *args: str) -> dict:
    """bench/load.py's JSON summary of ``--count`` requests (``args``) to the leader."""
    endpoint = cluster.wait_leader().endpoint
    out = subprocess.run(
        [sys.executable, str(LOAD), "--json", "--endpoints", endpoint, "--duration", "0", *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_open_loop_keeps_its_rate_and_counts_every_reply(member):
    result = load(member, "--rate", "400", "--count", "400")
    assert result["requests"] == 400 and result["errors"] == 0
    assert result["mode"] == "open loop at 400/s"
    assert result["seconds"] >= 399 / 400  # paced, not sent in one burst
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    with member.client() as client:
        assert client.get(b"\0", range_end=b"\0", count_only=True).count > 0


def test_closed_loop_sends_the_count_asked_for(member):
    result = load(member, "--clients", "8", "--count", "300")
    assert result["requests"] == 300 and result["errors"] == 0
    assert result["mode"] == "closed loop"
