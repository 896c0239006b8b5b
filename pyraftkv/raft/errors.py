"""Exceptions of the Raft core. The node maps ProposalRefused subclasses to API errors
(NotLeaderError -> errors.NotLeader, NoLeaderError -> errors.NoLeader, others -> retry)."""

from __future__ import annotations


class RaftError(Exception):
    """Base of every error the Raft core raises on purpose."""


class ProposalRefused(RaftError):
    """The core did not accept a proposal, read or request; nothing was changed."""


class NotLeaderError(ProposalRefused):
    """Only the leader accepts this; leader_id names the leader this member knows."""

    def __init__(self, leader_id: int) -> None:
        super().__init__(f"not leader (leader is {leader_id:x})")
        self.leader_id = leader_id


class NoLeaderError(ProposalRefused):
    """No leader is known right now (an election is under way or the member is cut off)."""

    def __init__(self) -> None:
        super().__init__("no leader")


class LeaderTransferInProgress(ProposalRefused):
    """The leader is handing leadership over and accepts no new proposals meanwhile."""


class ConfChangeInProgress(ProposalRefused):
    """An earlier membership change is not committed yet (changes go one at a time)."""


class ConfChangeRejected(ProposalRefused):
    """The membership change is invalid for the current membership."""


class TooManyUncommitted(ProposalRefused):
    """The leader holds too many uncommitted bytes (followers cannot keep up)."""


class RestoreError(RaftError, ValueError):
    """Persisted state handed to RaftCore.restore is inconsistent (corrupt or misordered)."""


class CodecError(RaftError, ValueError):
    """A buffer is not a valid encoded message (malformed, truncated or trailing bytes)."""
