"""The Raft process's part of the per-write stage trace (see write_trace.py), and the
heartbeat round trips to each peer (etcd_network_peer_round_trip_time_seconds).

Traced proposals are few (at most one per trace interval), so every hook here is a dict
check when none is open. Readings are ``time.monotonic_ns``, one clock for both processes.
A follower forwards its traced proposals to the leader and knows their entry index only when
the leader's AppendEntries brings the entry back: until then the trace waits under the
proposal's length and hash.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from . import ringproto as rp
from .write_trace import (
    COMMITTED,
    MAX_OPEN_TRACES,
    QUORUM,
    RAFT_IN,
    RAFT_READINGS,
    WAL_SYNCED,
    WAL_WRITTEN,
)

# Heartbeat round trip samples kept between two reports to the application.
MAX_RTT_SAMPLES = 1024


def _readings(received: int, batched: int, popped: int) -> list[int]:
    readings = [0] * RAFT_READINGS
    readings[0], readings[1], readings[RAFT_IN] = received, batched, popped
    return readings


class RaftTrace:
    """Open traces by entry index, stamped as their entry moves through this process."""

    def __init__(self) -> None:
        self.open: dict[int, list[int]] = {}
        self.forwarding: dict[tuple[int, int], list[int]] = {}  # (len, hash) -> readings
        self._forwarded: set[int] = set()  # indexes in ``open`` that a follower forwarded
        self._heartbeat_sent: dict[int, int] = {}
        self._rtt: list[tuple[int, float]] = []

    def proposed(self, index: int, received: int, batched: int, popped: int) -> None:
        """A traced proposal became entry ``index`` on this leader."""
        self._open(index, _readings(received, batched, popped))

    def forwarded(self, data: bytes, received: int, batched: int, popped: int) -> None:
        """On a follower: a traced proposal went to the leader."""
        if len(self.forwarding) >= MAX_OPEN_TRACES:  # lost with a leader change
            self.forwarding.pop(next(iter(self.forwarding)))
        self.forwarding[len(data), hash(data)] = _readings(received, batched, popped)

    def came_back(self, entries: Sequence) -> None:
        """On a follower: entries the leader appended here; a forwarded traced proposal
        among them becomes the open trace of its index (``stamp`` then marks it SENT)."""
        lengths = {length for length, _ in self.forwarding}
        for entry in entries:
            if len(entry.data) in lengths:
                readings = self.forwarding.pop((len(entry.data), hash(entry.data)), None)
                if readings is not None:
                    self._open(entry.index, readings)
                    self._forwarded.add(entry.index)

    def _open(self, index: int, readings: list[int]) -> None:
        if len(self.open) >= MAX_OPEN_TRACES:  # orphans of a lost leadership
            oldest = next(iter(self.open))
            del self.open[oldest]
            self._forwarded.discard(oldest)
        self.open[index] = readings

    def within(self, first: int, last: int) -> list[list[int]]:
        """The open traces of entries first..last."""
        return [r for i, r in self.open.items() if first <= i <= last]

    def stamp(self, entries: Sequence, reading: int) -> None:
        """Stamp ``reading`` now on the traces among ``entries``."""
        now = time.monotonic_ns()
        for readings in self.within(entries[0].index, entries[-1].index):
            readings[reading] = now

    @staticmethod
    def written(traced: list[list[int]]) -> None:
        """On the WAL writer thread: the entries are written (not yet synced)."""
        now = time.monotonic_ns()
        for readings in traced:
            readings[WAL_WRITTEN] = now

    @staticmethod
    def synced(traced: list[list[int]], synced_ns: int) -> None:
        for readings in traced:
            readings[WAL_SYNCED] = synced_ns

    def check_quorum(self, commit_index: int) -> None:
        """Stamp the traces whose entry a majority now holds."""
        now = 0
        for index, readings in self.open.items():
            if index <= commit_index and not readings[QUORUM]:
                now = now or time.monotonic_ns()
                readings[QUORUM] = now

    def committed(self, first: int, last: int) -> list[bytes]:
        """TRACE messages for the traced entries among first..last, now going up the ring."""
        out = []
        now = time.monotonic_ns()
        for index in [i for i in self.open if first <= i <= last]:
            readings = self.open.pop(index)
            readings[COMMITTED] = now
            forwarded = index in self._forwarded
            self._forwarded.discard(index)
            out.append(rp.pack(rp.TRACE, rp.TRACE_FMT, index, forwarded, *readings))
        return out

    # -- heartbeat round trips ----------------------------------------------------------------

    def heartbeat_sent(self, peer: int) -> None:
        self._heartbeat_sent[peer] = time.monotonic_ns()

    def heartbeat_answered(self, peer: int) -> None:
        sent = self._heartbeat_sent.pop(peer, 0)
        if sent and len(self._rtt) < MAX_RTT_SAMPLES:
            self._rtt.append((peer, (time.monotonic_ns() - sent) / 1e9))

    def take_rtt(self) -> list[tuple[int, float]]:
        samples, self._rtt = self._rtt, []
        return samples
