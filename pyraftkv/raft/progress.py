"""The leader's view of one follower's log: how far it matches and what to send next.

Invariants (asserted where they change):
    0 <= match < next
    PROBE:     at most one append in flight (probe_sent); next may be far above match
               while the leader searches backwards for the point where the logs agree.
    REPLICATE: next = match + 1 + entries in flight; appends are pipelined up to a window
               of max_inflight messages, each remembered by its last index in inflight.
    SNAPSHOT:  nothing is sent; pending_snapshot > match names the snapshot in transit.
"""

from __future__ import annotations

from collections import deque
from enum import IntEnum


class ProgressState(IntEnum):
    """How the leader replicates to a follower."""

    PROBE = 0
    REPLICATE = 1
    SNAPSHOT = 2


class Progress:
    """Replication progress of one member, kept by the leader (itself included)."""

    __slots__ = (
        "match",
        "next",
        "state",
        "probe_sent",
        "pending_snapshot",
        "recent_active",
        "inflight",
        "max_inflight",
        "read_round",
        "commit_sent",
    )

    def __init__(self, next_index: int, max_inflight: int) -> None:
        self.match = 0
        self.next = next_index
        self.state = ProgressState.PROBE
        self.probe_sent = False
        self.pending_snapshot = 0
        self.recent_active = False  # heard from since the last CheckQuorum round
        self.inflight: deque[int] = deque()
        self.max_inflight = max_inflight
        self.read_round = 0  # highest ReadIndex round this member acknowledged
        self.commit_sent = 0  # highest commit index sent in an append

    def __repr__(self) -> str:
        return (
            f"Progress(match={self.match}, next={self.next}, state={self.state.name}, "
            f"inflight={len(self.inflight)}, pending_snapshot={self.pending_snapshot})"
        )

    def _reset_state(self, state: ProgressState) -> None:
        self.state = state
        self.probe_sent = False
        self.pending_snapshot = 0
        self.inflight.clear()

    def become_probe(self) -> None:
        """Search for the match point one append at a time (after a rejection or restart)."""
        if self.state == ProgressState.SNAPSHOT:
            pending = self.pending_snapshot
            self._reset_state(ProgressState.PROBE)
            self.next = max(self.match + 1, pending + 1)
        else:
            self._reset_state(ProgressState.PROBE)
            self.next = self.match + 1

    def become_replicate(self) -> None:
        """Stream appends optimistically: the follower's log is known to match at match."""
        self._reset_state(ProgressState.REPLICATE)
        self.next = self.match + 1

    def become_snapshot(self, snapshot_index: int) -> None:
        """Stop appending until the snapshot at snapshot_index is installed or fails."""
        self._reset_state(ProgressState.SNAPSHOT)
        self.pending_snapshot = snapshot_index

    def is_paused(self) -> bool:
        """Whether an append may not be sent now."""
        if self.state == ProgressState.PROBE:
            return self.probe_sent
        if self.state == ProgressState.REPLICATE:
            return len(self.inflight) >= self.max_inflight
        return True

    def sent_entries(self, last_index: int) -> None:
        """Record an append carrying entries up to last_index."""
        if self.state == ProgressState.REPLICATE:
            assert last_index >= self.next, (last_index, self.next)
            self.next = last_index + 1
            self.inflight.append(last_index)
        else:
            self.probe_sent = True

    def maybe_update(self, index: int) -> bool:
        """The follower holds our log up to index; False when the news is stale."""
        updated = index > self.match
        if updated:
            self.match = index
            self.probe_sent = False
        if self.next <= index:
            self.next = index + 1
        inflight = self.inflight
        while inflight and inflight[0] <= index:
            inflight.popleft()
        assert 0 <= self.match < self.next, (self.match, self.next)
        return updated

    def maybe_decrease(self, rejected: int, hint: int) -> bool:
        """An append after index rejected was refused; hint is the leader-side index the
        follower's logs may match at. False when the rejection is stale."""
        if self.state == ProgressState.REPLICATE:
            if rejected <= self.match:
                return False  # an old append, since overtaken by a success
            self.next = self.match + 1
            return True
        if self.next - 1 != rejected:
            return False  # not the answer to our current probe
        self.next = max(min(rejected, hint + 1), self.match + 1, 1)
        self.probe_sent = False
        return True
