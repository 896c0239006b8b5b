"""The peer fault layer's rules file: drop, delay and changes picked up while running, for
messages and snapshot streams."""

from __future__ import annotations

import asyncio
import json
import os
import time

import pytest

from pyraftkv.node import peer_faults
from pyraftkv.node.peer_faults import LinkCut, PeerFaults


def write(path, rules) -> None:
    with open(str(path) + ".tmp", "w") as f:
        json.dump(rules, f)
    os.replace(str(path) + ".tmp", path)


def test_drop_delay_and_reload(tmp_path):
    path = tmp_path / "faults.json"
    faults = PeerFaults(str(path))
    delivered = []

    async def scenario():
        def deliver(peer, frames):
            delivered.append((peer, frames))

        assert not faults.intercept(2, [b"a"], deliver)  # no file: no faults
        write(path, {"drop": [2], "delay_ms": {"3": 30}})
        assert faults.intercept(2, [b"b"], deliver)  # dropped
        assert faults.intercept(3, [b"c"], deliver)  # held back
        assert not faults.intercept(4, [b"d"], deliver)
        assert delivered == []
        await asyncio.sleep(0.1)
        assert delivered == [(3, [b"c"])]
        write(path, {})
        assert not faults.intercept(2, [b"e"], deliver)  # healed

    asyncio.run(scenario())


def test_unset_means_no_fault_layer():
    assert os.environ.get(peer_faults.ENV) or peer_faults.FAULTS is None


def test_snapshot_streams_are_cut_and_slowed(tmp_path):
    path = tmp_path / "faults.json"
    faults = PeerFaults(str(path))

    async def scenario():
        await faults.on_stream(2)  # no file: no faults
        write(path, {"drop": [2], "delay_ms": {"3": 50}})
        with pytest.raises(LinkCut):
            await faults.on_stream(2)
        started = time.monotonic()
        await faults.on_stream(3)
        assert time.monotonic() - started >= 0.05
        write(path, {})
        await faults.on_stream(2)  # healed

    asyncio.run(scenario())
