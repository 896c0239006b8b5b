"""bench/load.py against a real member: the open loop keeps its rate (requests sent as they
fall due, not all at once) and every request is answered and counted; the closed loop
sends exactly what it was asked to."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOAD = Path(__file__).resolve().parents[2] / "bench" / "load.py"


def load(endpoint: str, *args: str) -> dict:
    out = subprocess.run(
        [sys.executable, str(LOAD), "--json", "--endpoints", endpoint, *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_open_loop_keeps_its_rate_and_counts_every_reply(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    endpoint = cluster.wait_leader().endpoint
    result = load(endpoint, "--rate", "400", "--count", "400", "--duration", "0")
    assert result["requests"] == 400 and result["errors"] == 0
    assert result["mode"] == "open loop at 400/s"
    assert result["seconds"] >= 399 / 400  # paced, not sent in one burst
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["max"]
    with cluster.client() as client:
        assert client.get(b"\0", range_end=b"\0", count_only=True).count > 0


def test_closed_loop_sends_the_count_asked_for(make_cluster):
    cluster = make_cluster(1)
    cluster.start()
    endpoint = cluster.wait_leader().endpoint
    result = load(endpoint, "--clients", "8", "--count", "300", "--duration", "0")
    assert result["requests"] == 300 and result["errors"] == 0
    assert result["mode"] == "closed loop"
