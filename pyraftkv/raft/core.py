"""RaftCore: the Raft consensus algorithm as a pure, deterministic state machine.

Inputs are method calls (tick, step, propose, ...); the only output is a Ready (see
ready.py for the persistence rule the shell must follow). No clocks, sockets, threads,
files or global randomness: time is tick(), randomness is the injected random.Random.

Design choices, each the simpler of two safe options:
- Membership follows the paper's rule (thesis §4.1): a member uses the latest
  configuration in its log, committed or not, from the moment the entry is appended (and
  falls back to the previous one if the entry is truncated away). The thesis proves
  single-member changes safe under this rule provided a leader starts a change only after
  the previous one committed and after it committed an entry of its own term (§4.1 and
  the 2015 fix). It also keeps safety independent of when the application process applies
  entries, which in pyraftkv happens asynchronously in another process.
- A proposal, conf change or leader transfer on a non-leader is refused with
  NotLeaderError/NoLeaderError (never forwarded, so never silently lost); the node forwards
  client requests at the application layer. ReadIndex requests are forwarded to the leader.
- A leader removed from the configuration keeps leading (without counting itself) until
  the removal commits, then hands over with TimeoutNow to a caught-up voter and steps down.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from .codec import decode_conf_change, encode_conf_change
from .errors import (
    ConfChangeInProgress,
    ConfChangeRejected,
    LeaderTransferInProgress,
    NoLeaderError,
    NotLeaderError,
    ProposalRefused,
    RestoreError,
    TooManyUncommitted,
)
from .log import RaftLog
from .progress import Progress, ProgressState
from .ready import Ready
from .types import (
    EMPTY_SNAPSHOT,
    ConfChange,
    ConfChangeType,
    Entry,
    EntryType,
    HardState,
    Membership,
    Message,
    MessageType,
    ReadState,
    Role,
    SnapshotMeta,
    SoftState,
    apply_conf_change,
    conf_change_problem,
)

# Module-level aliases: attribute lookups on the enum classes cost in the hot paths.
_APP = MessageType.APP
_APP_RESP = MessageType.APP_RESP
_VOTE = MessageType.VOTE
_VOTE_RESP = MessageType.VOTE_RESP
_PRE_VOTE = MessageType.PRE_VOTE
_PRE_VOTE_RESP = MessageType.PRE_VOTE_RESP
_HEARTBEAT = MessageType.HEARTBEAT
_HEARTBEAT_RESP = MessageType.HEARTBEAT_RESP
_SNAP = MessageType.SNAP
_TIMEOUT_NOW = MessageType.TIMEOUT_NOW
_READ_INDEX = MessageType.READ_INDEX
_READ_INDEX_RESP = MessageType.READ_INDEX_RESP
_DURABLE = MessageType.DURABLE
_NORMAL = EntryType.NORMAL
_CONF_CHANGE = EntryType.CONF_CHANGE

# Messages that may only leave once this Ready is durable (rule 3 in ready.py). Every
# other message leaves at once; a leader's included, because a candidate counts its own
# vote only once durable (see advance) and other votes only come after its VOTE left, so
# a leader's term and vote are always durable.
_AFTER_PERSIST = frozenset({_VOTE, _VOTE_RESP, _APP_RESP})

#: Context of a vote request sent on a leader's TimeoutNow: voters drop their leader lease.
CAMPAIGN_TRANSFER = b"transfer"

#: A lazy follower further behind than this many entries is sent appends at once.
LAZY_MAX_LAG = 1024

_U64_LIMIT = 1 << 64
EMPTY_HARD_STATE = HardState()


@dataclass(frozen=True, slots=True)
class Config:
    """Tunables of the core. Ticks are the shell's unit of time (e.g. 100 ms)."""

    election_ticks: int = 10  # T: election timeout is drawn from [T, 2T)
    heartbeat_ticks: int = 1
    max_msg_bytes: int = 1 << 20  # entry data per append message (at least one entry)
    max_inflight_msgs: int = 256  # pipelined appends per follower
    max_committed_bytes_per_ready: int = 64 << 20
    max_uncommitted_bytes: int = 256 << 20  # leader refuses proposals beyond this
    max_pending_reads: int = 1 << 16
    pre_vote: bool = True
    check_quorum: bool = True
    # False: a commit index that moved goes to the followers at once, in appends of its
    # own. True: it rides on the next append or heartbeat, or goes when the shell calls
    # send_commit() (a write then costs each follower one message and wake-up, not two).
    lazy_commit: bool = False
    # True: a new append goes at once only to the followers a quorum needs (those holding
    # the most); the others get theirs when the shell calls send_commit() (or on a
    # heartbeat's answer), in one message for all that came meanwhile. A write then
    # costs those followers no wake-up, write and fdatasync of its own.
    lazy_followers: bool = False

    def __post_init__(self) -> None:
        if not 1 <= self.heartbeat_ticks < self.election_ticks:
            raise ValueError("need 1 <= heartbeat_ticks < election_ticks")
        for name in (
            "max_msg_bytes",
            "max_inflight_msgs",
            "max_committed_bytes_per_ready",
            "max_uncommitted_bytes",
            "max_pending_reads",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive")


class Status(NamedTuple):
    """A member's state for status endpoints and tests."""

    id: int
    role: Role
    term: int
    vote: int
    leader_id: int
    commit: int
    applied: int  # handed to the application
    app_applied: int  # last reported by report_applied
    persisted: int
    last_index: int
    membership: Membership
    lead_transferee: int
    progress: dict[int, tuple[int, int, ProgressState]]  # leader only: match, next, state


class _PendingRead(NamedTuple):
    round: int
    index: int
    context: bytes
    requester: int


def _check_node_id(node_id: int, what: str = "node id") -> None:
    if not isinstance(node_id, int) or not 0 < node_id < _U64_LIMIT:
        raise ValueError(f"{what} must be a nonzero u64, got {node_id!r}")


class RaftCore:
    """One member's Raft state machine. Drive it with tick/step/propose/...; take its
    output with ready(), persist it by the rule in ready.py, then advance()."""

    def __init__(
        self,
        node_id: int,
        config: Config,
        rng: random.Random,
        *,
        hard_state: HardState = EMPTY_HARD_STATE,
        snapshot: SnapshotMeta = EMPTY_SNAPSHOT,
        entries: Sequence[Entry] = (),
        applied: int = 0,
    ) -> None:
        """Restore a member from what it persisted: its hard state, its last snapshot's
        metadata and the WAL entries after it (in WAL order, after replay). applied is the
        application's applied index; committed entries above it are handed out again. With
        the defaults this is a brand-new member that waits to be added to a cluster."""
        _check_node_id(node_id)
        self.id = node_id
        self.config = config
        self._rng = rng
        self.log = RaftLog(snapshot)
        entries = _validated_entries(snapshot, entries)
        last_index = snapshot.index + len(entries)
        last_term = entries[-1].term if entries else snapshot.term
        if hard_state.term < last_term:
            raise RestoreError(
                f"hard state term {hard_state.term} is below the last entry's term {last_term}"
            )
        if hard_state.commit > last_index:
            raise RestoreError(
                f"hard state commit {hard_state.commit} is beyond the last index {last_index}"
            )
        if hard_state.vote:
            _check_node_id(hard_state.vote, "hard state vote")
        self.log.entries.extend(entries)
        self.log.persisted = last_index
        self.log.unstable_from = last_index + 1
        if applied > last_index:
            raise RestoreError(f"applied index {applied} is beyond the last index {last_index}")
        # The application only ever applied committed entries, so they are committed even
        # if the hard state carrying that commit index was not yet written.
        self.log.committed = max(hard_state.commit, snapshot.index, applied)
        self.log.applied = max(snapshot.index, applied)
        self.app_applied = self.log.applied
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.lead = 0
        self.role = Role.FOLLOWER
        # (index, membership from that entry on) for each conf-change entry in the log.
        self._confs: list[tuple[int, Membership]] = []
        self.membership = snapshot.membership
        self._prev_hard_state = HardState(self.term, self.vote, self.log.committed)
        self._written_hard_state = self._prev_hard_state  # the last one handed out to write
        self._prev_soft_state = SoftState(0, Role.FOLLOWER, self.term)
        self._msgs: list[Message] = []
        self._msgs_after_persist: list[Message] = []
        self._read_states: list[ReadState] = []
        self._snapshot_to_install: SnapshotMeta | None = None
        self._ready_seq = 0
        self._next_advance_seq = 0
        self._progress: dict[int, Progress] = {}
        self._votes: dict[int, bool] = {}
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = config.election_ticks
        self._lead_transferee = 0
        self._first_index_of_term = 0
        self._needs_broadcast = False
        self._send_all = False  # the next broadcast goes to the lazy followers too
        self._first = 0  # the follower the next broadcast ranks first (send_first_to)
        self._leader_durable = 0  # a follower's: how far its leader said its log is durable
        self._durable_told = 0  # a leader's: how far it said its log is durable (reads wait)
        self._lazy: set[int] = set()  # followers the last broadcast left out
        self._commit_broadcast = 0  # the commit index the last broadcast carried
        self._uncommitted_bytes = 0
        self._read_round = 0
        self._reads_unsent: list[_PendingRead] = []
        self._reads_pending: deque[_PendingRead] = deque()
        self._reads_waiting_commit: list[tuple[bytes, int]] = []
        self._note_conf_entries(entries)
        self._become_follower(self.term, 0)

    @classmethod
    def bootstrap(
        cls, node_id: int, members: Mapping[int, bytes], config: Config, rng: random.Random
    ) -> RaftCore:
        """A member of a brand-new cluster: the log starts with one committed ADD_VOTER
        entry per initial member (sorted by id, term 1), as every member builds it alike;
        the application learns the members (and their contexts) by applying them."""
        if node_id not in members:
            raise ValueError(f"node {node_id:x} is not among the initial members")
        for member in members:
            _check_node_id(member, "member id")
        core = cls(node_id, config, rng)
        entries = [
            Entry(
                1,
                i + 1,
                _CONF_CHANGE,
                encode_conf_change(ConfChange(ConfChangeType.ADD_VOTER, member, context)),
            )
            for i, (member, context) in enumerate(sorted(members.items()))
        ]
        core.log.append(entries)
        core._note_conf_entries(entries)
        core.term = 1
        core.log.commit_to(len(entries))
        core._become_follower(1, 0)
        return core

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        """Advance logical time by one tick (elections, heartbeats, CheckQuorum)."""
        if self.role == Role.LEADER:
            self._tick_leader()
        else:
            self._tick_election()

    def step(self, msg: Message) -> None:
        """Feed one message received from a peer."""
        if msg.to != self.id:
            raise ValueError(f"message for {msg.to:x} stepped into member {self.id:x}")
        if not msg.sender:
            raise ValueError("message without a sender")
        msg_type = msg.type
        if msg.term > self.term:
            if msg_type is _VOTE or msg_type is _PRE_VOTE:
                in_lease = (
                    self.config.check_quorum
                    and self.lead != 0
                    and self._election_elapsed < self.config.election_ticks
                )
                if in_lease and msg.context != CAMPAIGN_TRANSFER:
                    # Thesis §4.2.3: a member that heard from a leader within the minimum
                    # election timeout ignores vote requests (removed or partitioned members
                    # must not disrupt a healthy leader).
                    return
            if msg_type is _PRE_VOTE or (msg_type is _PRE_VOTE_RESP and not msg.reject):
                pass  # a pre-vote never changes terms: it asks about a future one
            elif msg_type is _APP or msg_type is _HEARTBEAT or msg_type is _SNAP:
                self._become_follower(msg.term, msg.sender)
            else:
                self._become_follower(msg.term, 0)
        elif msg.term < self.term:
            if msg_type is _APP or msg_type is _HEARTBEAT:
                # A stale leader (e.g. one cut off while the others moved on) learns our
                # term from this and steps down; without it PreVote could leave it stuck.
                self._send(Message(_APP_RESP, msg.sender, self.id, self.term))
            elif msg_type is _PRE_VOTE:
                self._send(Message(_PRE_VOTE_RESP, msg.sender, self.id, self.term, reject=True))
            return
        if msg_type is _VOTE or msg_type is _PRE_VOTE:
            self._handle_vote_request(msg)
        elif self.role == Role.LEADER:
            self._step_leader(msg)
        elif self.role == Role.FOLLOWER:
            self._step_follower(msg)
        else:
            self._step_candidate(msg)

    def propose(self, payloads: Sequence[bytes]) -> int:
        """Append one NORMAL entry per payload (leader only); returns the last new index.
        Raises ProposalRefused subclasses (nothing is appended then)."""
        self._check_can_propose()
        if not payloads:
            raise ValueError("empty proposal")
        size = 0
        for payload in payloads:
            if type(payload) is not bytes:
                raise TypeError(f"payloads must be bytes, got {type(payload).__name__}")
            size += len(payload)
        if self._uncommitted_bytes + size > self.config.max_uncommitted_bytes:
            raise TooManyUncommitted(
                f"{self._uncommitted_bytes} uncommitted bytes; followers are not keeping up"
            )
        term, first = self.term, self.log.last_index + 1
        self.log.entries.extend(
            [Entry(term, first + i, _NORMAL, payload) for i, payload in enumerate(payloads)]
        )
        self._uncommitted_bytes += size
        self._needs_broadcast = True
        return self.log.last_index

    def propose_conf_change(self, change: ConfChange) -> int:
        """Append one membership change (leader only); returns its index. Changes go one
        at a time: ConfChangeInProgress until the previous one has committed."""
        self._check_can_propose()
        if not isinstance(change, ConfChange) or not isinstance(change.context, bytes):
            raise TypeError("change must be a ConfChange with bytes context")
        if self._confs and self._confs[-1][0] > self.log.committed:
            raise ConfChangeInProgress("a membership change is already in progress")
        if self.log.committed < self._first_index_of_term:
            raise ConfChangeInProgress("leader has not committed an entry of its term yet")
        if change.type not in ConfChangeType.__members__.values():
            raise ConfChangeRejected(f"unknown conf change type {change.type!r}")
        problem = conf_change_problem(self.membership, change)
        if problem:
            raise ConfChangeRejected(problem)
        entry = Entry(self.term, self.log.last_index + 1, _CONF_CHANGE, encode_conf_change(change))
        self.log.append([entry])
        self._note_conf_entries([entry])
        self._needs_broadcast = True
        self._maybe_commit()  # a smaller quorum may already hold more
        self._release_reads()
        return entry.index

    @property
    def commit_unsent(self) -> bool:
        """Leading, with a commit index no broadcast has carried yet (see lazy_commit), or
        a lazy follower not sent all there is (see lazy_followers)."""
        return self.role == Role.LEADER and (
            self.log.committed > self._commit_broadcast or self.lazy_behind
        )

    @property
    def lazy_behind(self) -> bool:
        """A follower the last broadcast left out lacks entries or the commit index."""
        log = self.log
        for node_id in self._lazy:
            progress = self._progress.get(node_id)
            if progress is not None and (
                progress.next <= log.last_index or progress.commit_sent < log.committed
            ):
                return True
        return False

    @property
    def commit_broadcast(self) -> int:
        """The commit index the leader's last broadcast of appends carried."""
        return self._commit_broadcast

    def send_commit(self) -> None:
        """Broadcast the commit index in the next Ready if no broadcast has carried it,
        and to every follower all it has not been sent."""
        if self.commit_unsent:
            self._needs_broadcast = True
            self._send_all = True

    def send_first_to(self, node_id: int) -> None:
        """Rank follower ``node_id`` first among those the next appends go to at once (a
        write it forwarded: its client waits for it to apply the write)."""
        self._first = node_id

    def send_commit_to(self, node_id: int) -> None:
        """Send follower ``node_id`` the commit index now, with any entries it lacks."""
        progress = self._progress.get(node_id)
        if self.role == Role.LEADER and progress is not None and node_id != self.id:
            self._send_append(node_id, progress, False)

    def send_durable_to(self, node_id: int) -> bool:
        """Tell follower ``node_id`` how far this leader's log is durable, if with this leader
        it makes a majority: it then commits without waiting for the commit index (see
        _commit_with_leader), one round trip sooner for a write it forwarded. False when
        nothing was sent (the follower needs the commit index)."""
        if not (
            self.role == Role.LEADER and node_id in self._progress and self._majority_with(node_id)
        ):
            return False
        self._durable_told = self.log.persisted
        self._send(Message(_DURABLE, node_id, self.id, self.term, index=self._durable_told))
        return True

    def read_index(self, context: bytes) -> None:
        """Ask for a linearizable read point; a ReadState(index, context) follows in a later
        Ready once leadership is confirmed. Followers forward to the leader (a lost
        request is never answered: the shell times out). Raises NoLeaderError."""
        if not isinstance(context, bytes):
            raise TypeError("context must be bytes")
        if self.role == Role.LEADER:
            if self._pending_read_count() >= self.config.max_pending_reads:
                raise ProposalRefused("too many pending reads")
            self._leader_read(context, self.id)
        elif self.lead:
            self._send(Message(_READ_INDEX, self.lead, self.id, self.term, context=context))
        else:
            raise NoLeaderError()

    def transfer_leadership(self, to: int) -> None:
        """Hand leadership to voter `to` (leader only): catch it up, then TimeoutNow.
        Proposals are refused until it completes or an election timeout passes."""
        self._check_leader()
        if to == self.id:
            return
        if to not in self.membership.voters:
            raise ProposalRefused(f"{to:x} is not a voter")
        if self._lead_transferee == to:
            return
        self._lead_transferee = to
        self._lazy.discard(to)  # its answers bring it the rest, one append after another
        self._election_elapsed = 0
        progress = self._progress[to]
        if progress.match == self.log.last_index:
            self._send(Message(_TIMEOUT_NOW, to, self.id, self.term))
        else:
            self._send_append(to, progress, True)

    def report_unreachable(self, peer: int) -> None:
        """The transport failed to deliver to peer: stop pipelining to it, probe instead."""
        progress = self._progress.get(peer) if self.role == Role.LEADER else None
        if progress is not None and progress.state == ProgressState.REPLICATE:
            progress.become_probe()

    def report_snapshot(self, peer: int, ok: bool) -> None:
        """The shell finished streaming the snapshot named by a SNAP message to peer."""
        progress = self._progress.get(peer) if self.role == Role.LEADER else None
        if progress is None or progress.state != ProgressState.SNAPSHOT:
            return
        if not ok:
            progress.pending_snapshot = 0
        progress.become_probe()
        progress.probe_sent = True  # wait for the follower's answer or a heartbeat reply

    def report_applied(self, index: int) -> None:
        """Record the application's applied index (for status only)."""
        if not self.app_applied <= index <= self.log.applied:
            raise ValueError(
                f"applied index {index} outside [{self.app_applied}, {self.log.applied}]"
            )
        self.app_applied = index

    def compact(self, index: int) -> SnapshotMeta:
        """The application holds a durable snapshot of its state at index (<= the applied
        index handed out): drop the log up to there. Returns the metadata to persist; a
        follower that needs an entry below it is sent a SNAP message naming it."""
        if not self.log.snapshot.index < index <= self.log.applied:
            raise ValueError(
                f"cannot compact to {index}: outside ({self.log.snapshot.index}, "
                f"{self.log.applied}]"
            )
        term = self.log.term(index)
        assert term is not None
        meta = SnapshotMeta(index, term, self.membership_at(index))
        self.log.compact(meta)
        self._confs = [conf for conf in self._confs if conf[0] > index]
        return meta

    # ------------------------------------------------------------------ output

    def has_ready(self) -> bool:
        """Whether ready() would return anything worth taking."""
        log = self.log
        return bool(
            self._msgs
            or self._msgs_after_persist
            or self._read_states
            or log.unstable_from <= log.last_index
            or self._snapshot_to_install is not None
            or min(log.committed, log.persisted) > log.applied
            or self._prev_hard_state != (self.term, self.vote, log.committed)
            or self._prev_soft_state != (self.lead, self.role, self.term)
            or (self.role == Role.LEADER and (self._needs_broadcast or self._reads_unsent))
        )

    def ready(self) -> Ready:
        """Take everything produced since the last call (see ready.py for what to do)."""
        if self.role == Role.LEADER:
            if self._reads_unsent:
                self._start_read_round()
            if self._needs_broadcast:
                self._broadcast_appends()
        log = self.log
        hard_state = HardState(self.term, self.vote, log.committed)
        prev_hard = self._prev_hard_state
        self._prev_hard_state = hard_state
        snapshot = self._snapshot_to_install
        entries = log.take_unstable()
        changed_hard = (
            hard_state.term != prev_hard.term
            or hard_state.vote != prev_hard.vote
            or ((entries or snapshot is not None) and hard_state != self._written_hard_state)
        )
        if changed_hard:
            self._written_hard_state = hard_state
        soft_state = SoftState(self.lead, self.role, self.term)
        changed_soft = soft_state != self._prev_soft_state
        self._prev_soft_state = soft_state
        self._snapshot_to_install = None
        messages, self._msgs = self._msgs, []
        persisted_messages, self._msgs_after_persist = self._msgs_after_persist, []
        read_states, self._read_states = self._read_states, []
        ready = Ready(
            seq=self._ready_seq,
            soft_state=soft_state if changed_soft else None,
            hard_state=hard_state if changed_hard else None,
            snapshot=snapshot,
            entries=entries,
            committed_entries=log.take_committed(self.config.max_committed_bytes_per_ready),
            messages=messages,
            persisted_messages=persisted_messages,
            read_states=read_states,
            must_sync=bool(entries)
            or snapshot is not None
            or hard_state.term != prev_hard.term
            or hard_state.vote != prev_hard.vote,
        )
        self._ready_seq += 1
        return ready

    def advance(self, ready: Ready) -> None:
        """Report that ready's snapshot, entries and hard state are durable."""
        if ready.seq != self._next_advance_seq:
            raise ValueError(f"advance of Ready {ready.seq}, expected {self._next_advance_seq}")
        self._next_advance_seq += 1
        if ready.entries:
            last = ready.entries[-1]
            self.log.persisted_to(last.index, last.term)
        hard_state = ready.hard_state
        if (
            hard_state is not None
            and self.role == Role.CANDIDATE
            and (hard_state.term, hard_state.vote) == (self.term, self.id)
        ):
            self._tally(self.id, True)  # our own vote is durable now
        if self.role == Role.LEADER:
            own = self._progress.get(self.id)
            if own is not None and own.maybe_update(self.log.persisted):
                self._maybe_commit()
        elif self._leader_durable:
            self._commit_with_leader()

    # ------------------------------------------------------------------ status

    @property
    def leader_id(self) -> int:
        """The leader this member knows (0 = none)."""
        return self.lead

    @property
    def commit_index(self) -> int:
        """The highest index known committed."""
        return self.log.committed

    def status(self) -> Status:
        """A snapshot of this member's state (progress is the leader's view, else empty)."""
        return Status(
            self.id,
            self.role,
            self.term,
            self.vote,
            self.lead,
            self.log.committed,
            self.log.applied,
            self.app_applied,
            self.log.persisted,
            self.log.last_index,
            self.membership,
            self._lead_transferee,
            {i: (p.match, p.next, p.state) for i, p in self._progress.items()},
        )

    # ------------------------------------------------------------------ roles

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = 0
        self.lead = 0
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._randomized_timeout = self.config.election_ticks + self._rng.randrange(
            self.config.election_ticks
        )
        self._lead_transferee = 0
        self._votes = {}
        self._progress = {}
        self._needs_broadcast = False
        self._send_all = False
        self._first = 0
        self._lazy = set()
        self._leader_durable = 0
        self._durable_told = 0
        # Reads waiting on this member as leader are dropped; the shell sees the change
        # of role in soft_state and fails them (the client retries).
        self._reads_unsent = []
        self._reads_pending.clear()
        self._reads_waiting_commit = []

    def _become_follower(self, term: int, lead: int) -> None:
        self._reset(term)
        self.lead = lead
        self.role = Role.FOLLOWER

    def _become_pre_candidate(self) -> None:
        # PreVote (thesis §9.6): ask whether we could win before disturbing anyone's term.
        self._reset(self.term)
        self.role = Role.PRE_CANDIDATE
        self._request_votes(_PRE_VOTE, b"")

    def _become_candidate(self, context: bytes = b"") -> None:
        self._reset(self.term + 1)
        self.vote = self.id
        self.role = Role.CANDIDATE
        self._request_votes(_VOTE, context)

    def _request_votes(self, msg_type: MessageType, context: bytes) -> None:
        # A real vote for ourselves counts only once durable (advance), like anyone's.
        if msg_type is _PRE_VOTE and self._poll(self.id, True):
            self._become_candidate()
            return
        term = self.term + 1 if msg_type is _PRE_VOTE else self.term
        last_index, last_term = self.log.last_index, self.log.last_term()
        for voter in sorted(self.membership.voters):
            if voter != self.id:
                self._send(
                    Message(msg_type, voter, self.id, term, last_term, last_index, context=context)
                )

    def _tally(self, voter: int, granted: bool) -> None:
        result = self._poll(voter, granted)
        if result is True:
            if self.role == Role.PRE_CANDIDATE:
                self._become_candidate()
            else:
                self._become_leader()
        elif result is False:
            self._become_follower(self.term, 0)

    def _become_leader(self) -> None:
        assert self.role == Role.CANDIDATE, self.role
        self._reset(self.term)
        self.lead = self.id
        self.role = Role.LEADER
        self._uncommitted_bytes = 0
        self._sync_progress()
        own = self._progress[self.id]
        own.maybe_update(self.log.persisted)
        own.become_replicate()
        # Raft §8: a leader commits a no-op entry at the start of its term, which commits
        # every earlier entry and lets ReadIndex know the commit index is current.
        self._first_index_of_term = self.log.last_index + 1
        self.log.append([Entry(self.term, self._first_index_of_term, _NORMAL, b"")])
        self._needs_broadcast = True

    def _promotable(self) -> bool:
        """Whether this member may campaign: it is a voter, or the change removing it is
        not known to be committed. Without the second case a cluster can wedge: a leader
        appends its own removal, crashes before the others hold the entry, and then it is
        the only member whose log could win while its own configuration bars it."""
        if self.id in self.membership.voters:
            return True
        confs = self._confs
        if not confs or confs[-1][0] <= self.log.committed:
            return False
        previous = confs[-2][1] if len(confs) > 1 else self.log.snapshot.membership
        return self.id in previous.voters

    def _hup(self, transfer: bool = False) -> None:
        if self.role == Role.LEADER or not self._promotable():
            return
        if self.config.pre_vote and not transfer:
            self._become_pre_candidate()
        else:
            self._become_candidate(CAMPAIGN_TRANSFER if transfer else b"")

    def _poll(self, voter: int, granted: bool) -> bool | None:
        """Record a vote; True when won, False when lost, None while undecided."""
        if voter in self.membership.voters:
            self._votes.setdefault(voter, granted)
        quorum = len(self.membership.voters) // 2 + 1
        granted_count = sum(self._votes.values())
        if granted_count >= quorum:
            return True
        if len(self._votes) - granted_count > len(self.membership.voters) - quorum:
            return False
        return None

    # ------------------------------------------------------------------ ticks

    def _tick_election(self) -> None:
        self._election_elapsed += 1
        # A member that may not campaign keeps counting, so its leader lease runs out and
        # it answers vote requests again.
        if self._election_elapsed >= self._randomized_timeout and self._promotable():
            self._election_elapsed = 0
            self._hup()

    def _tick_leader(self) -> None:
        self._heartbeat_elapsed += 1
        self._election_elapsed += 1
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            if self.config.check_quorum and not self._quorum_recently_active():
                # CheckQuorum (thesis §6.2): a leader that has not heard from a majority
                # within an election timeout steps down.
                self._become_follower(self.term, 0)
                return
            self._lead_transferee = 0  # a transfer that did not finish in time is abandoned
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeats()

    def _quorum_recently_active(self) -> bool:
        active = 0
        for node_id, progress in self._progress.items():
            if node_id == self.id:
                active += node_id in self.membership.voters
                continue
            if progress.recent_active and node_id in self.membership.voters:
                active += 1
            progress.recent_active = False
        return active >= len(self.membership.voters) // 2 + 1

    # ------------------------------------------------------------------ per-role steps

    def _handle_vote_request(self, msg: Message) -> None:
        pre = msg.type is _PRE_VOTE
        response = _PRE_VOTE_RESP if pre else _VOTE_RESP
        can_vote = (
            self.vote == msg.sender
            or (self.vote == 0 and self.lead == 0)
            or (pre and msg.term > self.term)
        )
        # Raft §5.4.1: "the voter denies its vote if its own log is more up-to-date than
        # that of the candidate."
        if can_vote and self.log.is_up_to_date(msg.index, msg.log_term):
            self._send(Message(response, msg.sender, self.id, msg.term))
            if not pre:
                self._election_elapsed = 0
                self.vote = msg.sender
        else:
            self._send(Message(response, msg.sender, self.id, self.term, reject=True))

    def _step_candidate(self, msg: Message) -> None:
        msg_type = msg.type
        if msg_type in (_APP, _HEARTBEAT, _SNAP, _TIMEOUT_NOW):  # each from the leader of its term
            # Raft §5.2: "If the leader's term is at least as large as the candidate's
            # current term, then the candidate recognizes the leader as legitimate."
            # A pre-candidate (one that missed heartbeats, say after a stall) asked to take
            # over the lead does so: ignoring the request would fail the transfer.
            self._become_follower(msg.term, msg.sender)
            self._step_follower(msg)
            return
        expected = _PRE_VOTE_RESP if self.role == Role.PRE_CANDIDATE else _VOTE_RESP
        if msg_type is expected:
            self._tally(msg.sender, not msg.reject)

    def _step_follower(self, msg: Message) -> None:
        msg_type = msg.type
        if msg_type is _APP:
            self._election_elapsed = 0
            self.lead = msg.sender
            self._handle_append(msg)
        elif msg_type is _HEARTBEAT:
            self._election_elapsed = 0
            self.lead = msg.sender
            assert msg.commit <= self.log.last_index, (msg.commit, self.log.last_index)
            self.log.commit_to(msg.commit)
            self._send(Message(_HEARTBEAT_RESP, msg.sender, self.id, self.term, index=msg.index))
        elif msg_type is _SNAP:
            self._election_elapsed = 0
            self.lead = msg.sender
            self._handle_snapshot(msg)
        elif msg_type is _TIMEOUT_NOW:
            self._hup(transfer=True)
        elif msg_type is _READ_INDEX_RESP:
            self._read_states.append(ReadState(msg.index, msg.context))
        elif msg_type is _DURABLE and msg.sender == self.lead and msg.index > self._leader_durable:
            self._leader_durable = msg.index
            self._commit_with_leader()

    def _handle_append(self, msg: Message) -> None:
        log = self.log
        if msg.index < log.committed:
            self._send(Message(_APP_RESP, msg.sender, self.id, self.term, index=log.committed))
            return
        if log.term(msg.index) != msg.log_term:
            # Fast back-off: name the last index that could match, so the leader skips
            # every index of a term it does not share with us in one round trip.
            hint = log.find_conflict_by_term(msg.index, msg.log_term)
            self._send(
                Message(
                    _APP_RESP,
                    msg.sender,
                    self.id,
                    self.term,
                    log.term(hint) or 0,
                    msg.index,
                    reject=True,
                    reject_hint=hint,
                )
            )
            return
        entries = msg.entries
        last_new = msg.index + len(entries)
        if entries:
            if entries[0].index > log.last_index:
                conflict = entries[0].index
            else:
                conflict = log.find_conflict(entries)
            if conflict:
                new = entries[conflict - entries[0].index :]
                truncated = conflict <= log.last_index
                if truncated:
                    self._confs = [c for c in self._confs if c[0] < conflict]
                    log.truncate_and_append(new)
                else:
                    log.append(new)
                self._note_conf_entries(new, truncated)
        log.commit_to(min(msg.commit, last_new))
        self._send(Message(_APP_RESP, msg.sender, self.id, self.term, index=last_new))

    def _handle_snapshot(self, msg: Message) -> None:
        snapshot = msg.snapshot
        assert snapshot is not None
        log = self.log
        if snapshot.index <= log.committed:
            pass  # old news
        elif log.term(snapshot.index) == snapshot.term:
            log.commit_to(snapshot.index)  # we hold it all already: just fast-forward
        else:
            log.restore(snapshot)
            self._confs = []
            self._set_membership(snapshot.membership)
            self._snapshot_to_install = snapshot
        self._send(Message(_APP_RESP, msg.sender, self.id, self.term, index=log.committed))

    def _step_leader(self, msg: Message) -> None:
        progress = self._progress.get(msg.sender)
        msg_type = msg.type
        if msg_type is _READ_INDEX:
            if self._pending_read_count() < self.config.max_pending_reads:
                self._leader_read(msg.context, msg.sender)
            return
        if progress is None:
            return  # not (or no longer) a member
        if msg_type is _APP_RESP:
            progress.recent_active = True
            if msg.reject:
                hint = msg.reject_hint
                if msg.log_term:
                    hint = self.log.find_conflict_by_term(hint, msg.log_term)
                if progress.maybe_decrease(msg.index, hint):
                    if progress.state == ProgressState.REPLICATE:
                        progress.become_probe()
                    self._lazy.discard(msg.sender)  # probing: each answer brings the next
                    self._send_append(msg.sender, progress, True)
                return
            if progress.maybe_update(msg.index):
                if progress.state == ProgressState.PROBE or (
                    progress.state == ProgressState.SNAPSHOT
                    and progress.match >= progress.pending_snapshot
                ):
                    progress.become_replicate()
                self._maybe_commit()
                if self.role != Role.LEADER:
                    return  # it committed its own removal and stepped down
                if msg.sender == self._lead_transferee and progress.match == self.log.last_index:
                    self._send(Message(_TIMEOUT_NOW, msg.sender, self.id, self.term))
            if progress.next <= self.log.last_index and msg.sender not in self._lazy:
                self._send_append(msg.sender, progress, False)
        elif msg_type is _HEARTBEAT_RESP:
            progress.recent_active = True
            progress.probe_sent = False
            if progress.state == ProgressState.REPLICATE and progress.is_paused():
                progress.inflight.popleft()  # a lost append must not stall the window
            if progress.match < self.log.last_index:
                self._send_append(msg.sender, progress, True)
            if msg.index > progress.read_round:
                progress.read_round = msg.index
                self._release_reads()

    # ------------------------------------------------------------------ replication

    def _send(self, msg: Message) -> None:
        msg_type = msg.type
        if msg_type in _AFTER_PERSIST:
            self._msgs_after_persist.append(msg)
        else:
            self._msgs.append(msg)

    def _send_append(self, to: int, progress: Progress, send_if_empty: bool) -> bool:
        """Send what progress says to send (respecting its state); False if nothing sent."""
        if progress.is_paused():
            return False
        log = self.log
        prev_index = progress.next - 1
        prev_term = log.term(prev_index)
        if prev_term is None:
            # The entries this follower needs are compacted: send the snapshot instead.
            snapshot = log.snapshot
            self._send(Message(_SNAP, to, self.id, self.term, snapshot=snapshot))
            progress.become_snapshot(snapshot.index)
            return True
        if progress.next <= log.last_index:
            entries = log.slice(progress.next, log.last_index + 1, self.config.max_msg_bytes)
        elif send_if_empty or progress.commit_sent < log.committed:
            entries = ()
        else:
            return False
        commit = log.committed
        self._send(Message(_APP, to, self.id, self.term, prev_term, prev_index, commit, entries))
        progress.commit_sent = commit
        if entries:
            progress.sent_entries(entries[-1].index)
        elif progress.state == ProgressState.PROBE:
            progress.probe_sent = True
        return True

    def _broadcast_appends(self) -> None:
        self._needs_broadcast = False
        self._commit_broadcast = self.log.committed
        send_all, self._send_all = self._send_all, False
        first, self._first = self._first, 0
        self._lazy = lazy = set() if send_all else self._lazy_followers(first)
        last = self.log.last_index
        for node_id, progress in self._progress.items():
            if node_id == self.id or node_id in lazy:
                continue
            sent = self._send_append(node_id, progress, False)
            while send_all and sent and progress.next <= last:  # all it lacks, at once
                sent = self._send_append(node_id, progress, False)

    def _lazy_followers(self, first: int) -> set[int]:
        """The followers a new append can skip (see Config.lazy_followers): voters beyond
        those a quorum needs, ranked by what they hold (``first`` ahead of all), that
        replicate normally, are not taking over the lead and are at most LAZY_MAX_LAG
        entries behind."""
        voters = self.membership.voters
        if not self.config.lazy_followers or len(voters) < 3:
            return set()
        progress = self._progress
        ranked = sorted(
            ((i == first, progress[i].match, i) for i in voters if i != self.id and i in progress),
            reverse=True,
        )
        needed = len(voters) // 2 + 1 - (self.id in voters)
        last = self.log.last_index
        return {
            i
            for _, match, i in ranked[needed:]
            if progress[i].state == ProgressState.REPLICATE
            and i != self._lead_transferee
            and last - match <= LAZY_MAX_LAG
        }

    def _broadcast_heartbeats(self) -> None:
        committed, round_ = self.log.committed, self._read_round
        for node_id, progress in self._progress.items():
            if node_id != self.id:
                # Never claim more than the follower is known to hold.
                self._send(
                    Message(
                        _HEARTBEAT,
                        node_id,
                        self.id,
                        self.term,
                        commit=min(progress.match, committed),
                        index=round_,
                    )
                )

    def _maybe_commit(self) -> bool:
        """Advance commit to the highest index a quorum of voters holds, if that entry is
        of the current term; True when it moved."""
        voters = self.membership.voters
        matches = sorted((p.match for i, p in self._progress.items() if i in voters), reverse=True)
        if len(matches) < len(voters):
            return False
        index = matches[len(voters) // 2]
        log = self.log
        # Raft §5.4.2: "Raft never commits log entries from previous terms by counting
        # replicas. Only log entries from the leader's current term are committed by
        # counting replicas" (Figure 8).
        if index <= log.committed or log.term(index) != self.term:
            return False
        old = log.committed
        first_in_term = old < self._first_index_of_term <= index
        log.commit_to(index)
        if not self.config.lazy_commit:
            self._needs_broadcast = True
        if self._uncommitted_bytes:
            size = sum(
                len(e.data)
                for e in log.entries[old - log.snapshot.index : index - log.snapshot.index]
            )
            self._uncommitted_bytes = max(0, self._uncommitted_bytes - size)
        if first_in_term:
            waiting, self._reads_waiting_commit = self._reads_waiting_commit, []
            for context, requester in waiting:
                self._leader_read(context, requester)
        if self.id not in voters and self._confs and self._confs[-1][0] <= index:
            self._step_down_removed()
        return True

    def _commit_with_leader(self) -> None:
        """A follower commits what both it and its leader hold durably, if the two are a
        majority of the voters (two or three voters) and the entry is of the leader's term.

        Such an entry is committed whoever knows it (Raft §5.4.3: an entry of the current
        term stored on a majority): every future leader needs a vote from one of the two.
        Both logs hold the same entry there, for only this term's leader makes entries of
        this term. Not while a membership change is in the log uncommitted: with it the
        next majority may be another (the leader refuses a second one meanwhile, so the
        voters differ from these by one member at most, which keeps two of three a quorum
        of both, but the rule does not lean on that)."""
        log = self.log
        index = min(self._leader_durable, log.persisted)
        if (
            index > log.committed
            and log.term(index) == self.term
            and self._majority_with(self.lead)
        ):
            log.commit_to(index)

    def _majority_with(self, other: int) -> bool:
        """Whether this member and voter ``other`` are a majority of the voters, with no
        membership change uncommitted in the log (see _commit_with_leader)."""
        voters = self.membership.voters
        return (
            len(voters) <= 3
            and self.id in voters
            and other in voters
            and other != self.id
            and not (self._confs and self._confs[-1][0] > self.log.committed)
        )

    def _step_down_removed(self) -> None:
        # Thesis §4.2.2: the removed leader steps down once the change commits; hand over
        # to the most caught-up voter right away instead of waiting for a timeout.
        best = max(sorted(self.membership.voters), key=lambda v: self._progress[v].match)
        if self._progress[best].match == self.log.last_index:
            self._broadcast_appends()  # carry the final commit index
            self._send(Message(_TIMEOUT_NOW, best, self.id, self.term))
        self._become_follower(self.term, 0)

    # ------------------------------------------------------------------ membership

    def _note_conf_entries(self, entries: Iterable[Entry], truncated: bool = False) -> None:
        membership = self._confs[-1][1] if self._confs else self.log.snapshot.membership
        changed = truncated and membership != self.membership
        for entry in entries:
            if entry.type == _CONF_CHANGE:
                membership = apply_conf_change(membership, decode_conf_change(entry.data))
                self._confs.append((entry.index, membership))
                changed = True
        if changed:
            self._set_membership(membership)

    def membership_at(self, index: int) -> Membership:
        """The membership in force at index (to name a snapshot taken there); index must
        lie between the last compaction point and the last index."""
        if not self.log.snapshot.index <= index <= self.log.last_index:
            raise ValueError(
                f"index {index} outside [{self.log.snapshot.index}, {self.log.last_index}]"
            )
        membership = self.log.snapshot.membership
        for conf_index, conf in self._confs:
            if conf_index > index:
                break
            membership = conf
        return membership

    def _set_membership(self, membership: Membership) -> None:
        self.membership = membership
        if self.role == Role.LEADER:
            self._sync_progress()
            if self._lead_transferee and self._lead_transferee not in membership.voters:
                self._lead_transferee = 0
        elif self.role != Role.FOLLOWER and not self._promotable():
            self._become_follower(self.term, 0)

    def _sync_progress(self) -> None:
        members = self.membership.members() | {self.id}
        for node_id in list(self._progress):
            if node_id not in members:
                del self._progress[node_id]
        for node_id in sorted(members):
            if node_id not in self._progress:
                self._progress[node_id] = Progress(
                    self.log.last_index + 1, self.config.max_inflight_msgs
                )

    # ------------------------------------------------------------------ proposals, reads

    def _check_leader(self) -> None:
        if self.role != Role.LEADER:
            raise NotLeaderError(self.lead) if self.lead else NoLeaderError()

    def _check_can_propose(self) -> None:
        self._check_leader()
        if self._lead_transferee:
            raise LeaderTransferInProgress(
                f"leadership is being transferred to {self._lead_transferee:x}"
            )
        if self.id not in self.membership.voters:
            raise ProposalRefused("leader is being removed from the cluster")

    def _leader_read(self, context: bytes, requester: int) -> None:
        if self.log.committed < self._first_index_of_term:
            # Raft §8: the leader must first commit an entry of its term to know the
            # current commit index; reads wait for that.
            self._reads_waiting_commit.append((context, requester))
            return
        # A follower told how far this log is durable may have committed (and answered a
        # write) up to there before this leader knows: a read waits for that too.
        index = max(self.log.committed, self._durable_told)
        if self.membership.voters == {self.id}:
            self._answer_read(index, context, requester)
            return
        self._reads_unsent.append(_PendingRead(0, index, context, requester))

    def _pending_read_count(self) -> int:
        return len(self._reads_pending) + len(self._reads_unsent) + len(self._reads_waiting_commit)

    def _start_read_round(self) -> None:
        # One heartbeat round confirms leadership for every read that arrived since the
        # last Ready (thesis §6.4), however many there are.
        self._read_round += 1
        round_ = self._read_round
        for read in self._reads_unsent:
            self._reads_pending.append(read._replace(round=round_))
        self._reads_unsent = []
        self._progress[self.id].read_round = round_
        self._broadcast_heartbeats()
        self._release_reads()

    def _release_reads(self) -> None:
        voters = self.membership.voters
        rounds = sorted(
            (p.read_round for i, p in self._progress.items() if i in voters), reverse=True
        )
        if len(rounds) < len(voters):
            return
        confirmed = rounds[len(voters) // 2]
        pending = self._reads_pending
        while pending and pending[0].round <= confirmed:
            read = pending.popleft()
            self._answer_read(read.index, read.context, read.requester)

    def _answer_read(self, index: int, context: bytes, requester: int) -> None:
        if requester == self.id:
            self._read_states.append(ReadState(index, context))
        else:
            self._send(
                Message(
                    _READ_INDEX_RESP, requester, self.id, self.term, index=index, context=context
                )
            )


def _validated_entries(snapshot: SnapshotMeta, entries: Sequence[Entry]) -> list[Entry]:
    """Check restored entries; drop those a later snapshot superseded."""
    entries = list(entries)
    # Entries written before a snapshot received from a leader may still be in the WAL
    # after it. The snapshot's entry is committed, so no valid entry after it has a lower
    # term: such entries are leftovers of the replaced log.
    skip = 0
    while skip < len(entries) and entries[skip].term < snapshot.term:
        skip += 1
    entries = entries[skip:]
    expected, prev_term = snapshot.index + 1, snapshot.term
    for entry in entries:
        if not isinstance(entry, Entry) or not isinstance(entry.data, bytes):
            raise RestoreError(f"not an Entry: {entry!r}")
        if entry.index != expected:
            raise RestoreError(f"entry index {entry.index} where {expected} was expected")
        if entry.term < prev_term:
            raise RestoreError(f"entry {entry.index} has term {entry.term} below {prev_term}")
        if entry.type not in (0, 1):
            raise RestoreError(f"entry {entry.index} has unknown type {entry.type}")
        expected, prev_term = expected + 1, entry.term
    return [e if type(e.type) is EntryType else e._replace(type=EntryType(e.type)) for e in entries]
