"""Membership changes and leader moves as the Raft process tracks them: changes waiting for
an earlier one to commit, which application request each proposed entry answers, and leader
transfers with their deadlines."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from google.protobuf.message import DecodeError

from ..errors import ConfigError
from ..proto import raft_internal_pb2 as internal
from ..raft import codec
from ..raft.errors import ConfChangeInProgress, NotLeaderError, ProposalRefused
from ..raft.types import ConfChange, ConfChangeType, Entry, EntryType
from . import ringproto as rp

if TYPE_CHECKING:
    from .raft_process import RaftProcess

log = logging.getLogger("pyraftkv.raft")

# How long a membership change may wait for an earlier one to commit.
CONF_CHANGE_WAIT_S = 5.0
# A learner is in sync (may be promoted) when it matches this fraction of the leader's log.
LEARNER_READY_FRACTION = 0.9


class MembershipChanges:
    """The Raft process's membership-change and leader-move requests from the application."""

    def __init__(self, process: RaftProcess) -> None:
        self.p = process
        self._conf_requests: dict[int, int] = {}  # entry index -> application request id
        self._conf_waiting: list[tuple[ConfChange, int, float]] = []
        self._move_requests: list[tuple[int, int, float]] = []  # (request id, target, deadline)
        # entry index -> member first known from that appended, not yet committed entry
        self._added_at: dict[int, int] = {}

    def tick(self) -> None:
        """Expire leader moves and retry waiting changes (called on every tick)."""
        self.expire_moves()
        if self._conf_waiting:
            self.retry_waiting()

    def request(self, message: bytes) -> None:
        change_type, node_id, request_id = rp.unpack(message, rp.CONF)
        try:
            change = ConfChange(ConfChangeType(change_type), node_id, rp.tail(message, rp.CONF))
        except ValueError:
            self.p.push_up(
                rp.pack(rp.CONF_CHANGE_APPLIED, rp.CONF_APPLIED, 0, request_id, rp.CONF_REFUSED)
            )
            return
        self._conf_waiting.append((change, request_id, time.monotonic() + CONF_CHANGE_WAIT_S))
        self.retry_waiting()

    def retry_waiting(self) -> None:
        """Propose waiting membership changes. One that must wait for an earlier change (or
        for a new leader's first commit) is tried again on later ticks, until its deadline."""
        waiting, self._conf_waiting = self._conf_waiting, []
        now = time.monotonic()
        for change, request_id, deadline in waiting:
            if change.type == ConfChangeType.PROMOTE_LEARNER and not self._learner_ready(
                change.node_id
            ):
                outcome = rp.CONF_LEARNER_NOT_READY
                self.p.push_up(
                    rp.pack(rp.CONF_CHANGE_APPLIED, rp.CONF_APPLIED, 0, request_id, outcome)
                )
                continue
            try:
                index = self.p.core.propose_conf_change(change)
            except ConfChangeInProgress:
                if now < deadline:
                    self._conf_waiting.append((change, request_id, deadline))
                    continue
                outcome = rp.CONF_REFUSED
            except NotLeaderError:
                outcome = rp.CONF_NOT_LEADER
            except (ProposalRefused, ValueError) as exc:
                log.info("membership change refused: %s", exc)
                outcome = rp.CONF_REFUSED
            else:
                self._conf_requests[index] = request_id
                continue
            self.p.push_up(rp.pack(rp.CONF_CHANGE_APPLIED, rp.CONF_APPLIED, 0, request_id, outcome))

    def _learner_ready(self, learner: int) -> bool:
        """etcd's rule on the leader: a learner may be promoted once its log matches at least
        90% of the leader's. Elsewhere (no progress known) the core refuses anyway."""
        progress = self.p.core.status().progress
        if learner not in progress or self.p.id not in progress:
            return True
        return progress[learner][0] >= LEARNER_READY_FRACTION * progress[self.p.id][0]

    def move_leader(self, target: int, request_id: int) -> None:
        core = self.p.core
        if target == 0:
            target = self._best_transferee()
        try:
            if not target:
                raise ProposalRefused("no other voter to hand leadership to")
            core.transfer_leadership(target)
        except (ProposalRefused, ValueError) as exc:
            log.info("leader transfer refused: %s", exc)
            if request_id:
                self.p.push_up(rp.pack(rp.MOVE_LEADER_DONE, rp.MOVE_DONE, request_id, 0))
            return
        log.info("transferring leadership to %x", target)
        deadline = (
            time.monotonic()
            + self.p.cfg.election_ticks * 2 * self.p.cfg.heartbeat_interval_ms / 1000
        )
        self._move_requests.append((request_id, target, deadline))

    def _best_transferee(self) -> int:
        status = self.p.core.status()
        voters = [v for v in status.membership.voters if v != self.p.id]
        if not voters:
            return 0
        return max(
            voters,
            key=lambda v: (
                status.progress[v][0] if v in status.progress else 0,  # match index
                self.p.transport.is_connected(v),
            ),
        )

    def expire_moves(self) -> None:
        if not self._move_requests:
            return
        now = time.monotonic()
        keep = []
        for request_id, target, deadline in self._move_requests:
            if self.p.leader == target:
                if request_id:
                    self.p.push_up(rp.pack(rp.MOVE_LEADER_DONE, rp.MOVE_DONE, request_id, 1))
            elif now > deadline:
                if request_id:
                    self.p.push_up(rp.pack(rp.MOVE_LEADER_DONE, rp.MOVE_DONE, request_id, 0))
            else:
                keep.append((request_id, target, deadline))
        self._move_requests = keep

    def on_appended(self, entries: list[Entry], truncate_from: int) -> None:
        """Entries are being appended to the log (from ``truncate_from`` on, replacing what
        was there, when it is not 0). The core counts a member added by such an entry from
        now on, so its address must be known now too: growing 1 -> 2 voters needs the
        newcomer's vote to commit the very entry that adds it. A member added only by
        entries that were replaced is forgotten again."""
        if truncate_from:
            members = self.p.core.membership.members()
            for index in [i for i in self._added_at if i >= truncate_from]:
                node_id = self._added_at.pop(index)
                if node_id not in members:
                    self.p.transport.remove_peer(node_id)
                    self.p.peer_urls.pop(node_id, None)
        for entry in entries:
            if entry.type == EntryType.CONF_CHANGE:
                self._learn_address(entry)

    def _learn_address(self, entry: Entry) -> None:
        change = codec.decode_conf_change(entry.data)
        if change.type in (ConfChangeType.ADD_VOTER, ConfChangeType.ADD_LEARNER) and change.context:
            try:
                attributes = internal.MemberAttributes.FromString(change.context)
                if change.node_id not in self.p.peer_urls:
                    self._added_at[entry.index] = change.node_id
                self.p.set_peer(change.node_id, list(attributes.peer_urls))
            except (DecodeError, ConfigError) as exc:
                # MemberAdd validated the URLs; an entry that still has bad ones only
                # leaves that member unreachable.
                log.error("member %x added with unusable peer URLs: %s", change.node_id, exc)

    def _move_peer(self, change: ConfChange) -> None:
        """MemberUpdate committed: reach that member at its new peer URLs from now on (the
        connection to the old address is dropped)."""
        try:
            attributes = internal.MemberAttributes.FromString(change.context)
            self.p.set_peer(change.node_id, list(attributes.peer_urls))
        except (DecodeError, ConfigError) as exc:
            log.error("member %x updated with unusable peer URLs: %s", change.node_id, exc)
            return
        log.info("member %x now at %s", change.node_id, ",".join(attributes.peer_urls))

    def on_committed(self, entry: Entry) -> None:
        change = codec.decode_conf_change(entry.data)
        for index in [i for i in self._added_at if i <= entry.index]:
            del self._added_at[index]
        if change.type in (ConfChangeType.ADD_VOTER, ConfChangeType.ADD_LEARNER):
            self._learn_address(entry)
            self._added_at.pop(entry.index, None)
        elif change.type == ConfChangeType.UPDATE_MEMBER:
            self._move_peer(change)
        elif change.type == ConfChangeType.REMOVE_MEMBER:
            if change.node_id == self.p.id:
                log.warning("this member was removed from the cluster")
            else:
                self.p.transport.remove_peer(change.node_id)
                self.p.peer_urls.pop(change.node_id, None)
        request_id = self._conf_requests.pop(entry.index, None)
        if request_id is not None:
            self.p.push_up(
                rp.pack(
                    rp.CONF_CHANGE_APPLIED,
                    rp.CONF_APPLIED,
                    entry.index,
                    request_id,
                    rp.CONF_APPLIED_OK,
                )
            )
        # A request whose entry was replaced by another leader's never commits.
        for index in [i for i in self._conf_requests if i <= entry.index]:
            self.p.push_up(
                rp.pack(
                    rp.CONF_CHANGE_APPLIED,
                    rp.CONF_APPLIED,
                    index,
                    self._conf_requests.pop(index),
                    rp.CONF_REFUSED,
                )
            )
