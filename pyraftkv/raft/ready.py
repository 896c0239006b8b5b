"""Ready: the one output of the Raft core, and the rule for persisting it.

THE PERSISTENCE RULE (the shell must follow it; the simulator checks that it suffices):

1. Send ``messages`` at once. They rely on nothing this member has not made durable yet:
   a leader's appends and heartbeats (its term and vote are durable before it can lead;
   the entries it sends may still be in flight to its own disk: the leader counts itself
   in the commit quorum only after ``advance`` reports them durable), pre-votes,
   heartbeat replies, read-index traffic.
2. Durably write, in this order and as one WAL write with ONE fdatasync when ``must_sync``:
   ``snapshot`` (its data first, then its metadata), ``entries`` (``entries[0].index`` may
   be at or below entries written before: everything from that index on is replaced) and
   ``hard_state``. A snapshot in a Ready replaces the whole log; entries written before it
   may stay in the WAL, ``RaftCore.restore`` discards those that cannot follow it.
3. Only then send ``persisted_messages``: granted or refused votes (a vote is a promise
   that must survive a crash), a candidate's vote requests (it voted for itself), and
   append/snapshot acknowledgements (the leader counts them toward commit).
4. Also once it is durable, call ``RaftCore.advance(ready)`` (before or after step 3).
   Readies may be pipelined: the shell may take more Readies before advancing earlier
   ones (persisting them in order, for example in a writer thread, and sending each
   Ready's ``messages`` at once), but must advance them in the order they were taken.

``committed_entries`` may be applied as soon as the Ready is taken (they are durable on a
majority and on this member). ``snapshot`` (a snapshot received from the leader) is
installed by the application once it is durable; entries after it come in later Readies.
After a restart, committed entries at or below the application's applied index passed to
the constructor are not handed out again.

``hard_state`` (term, vote, commit index) comes when the term or the vote changed, or with
entries or a snapshot; a commit index that moved alone is not written. It is volatile in
Raft: after a restart the leader tells it again, and everything the application applied
counts as committed (the constructor's ``applied``). So applying a commit costs no WAL
write on the path between the acknowledgement and the answer.
"""

from __future__ import annotations

from dataclasses import dataclass

from .types import Entry, HardState, Message, ReadState, SnapshotMeta, SoftState


@dataclass(slots=True)
class Ready:
    """Everything the core asks of the shell since the previous Ready (see module rule)."""

    seq: int
    soft_state: SoftState | None
    hard_state: HardState | None
    snapshot: SnapshotMeta | None
    entries: list[Entry]
    committed_entries: tuple[Entry, ...]
    messages: list[Message]
    persisted_messages: list[Message]
    read_states: list[ReadState]
    must_sync: bool
