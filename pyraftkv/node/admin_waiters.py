"""Membership changes and leader moves as the application process waits for them: each is
sent down to the Raft process with a request id and answered when the Raft process reports
the outcome, or failed once it has waited longer than the request timeout."""

from __future__ import annotations

import time
from collections.abc import Callable

from .. import errors
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from . import ringproto as rp
from .reply import Reply

CHANGE_REFUSED = (
    "etcdserver: membership change refused (another change is in progress, "
    "or the member does not exist)"
)
MOVE_FAILED = (
    "etcdserver: leadership transfer failed (target is not a voting member, "
    "or it did not catch up in time)"
)

RESPONSE_BY_METHOD = {
    BY_NAME[name].number: BY_NAME[name].response
    for name in ("MemberAdd", "MemberRemove", "MemberPromote", "MemberUpdate")
}


class AdminWaiters:
    """Clients waiting for a membership change or a leader move."""

    def __init__(self, app, send_down: Callable[[bytes], None], new_id: Callable[[], int]):
        self.app = app
        self._send_down = send_down
        self._new_id = new_id
        self._conf: dict[int, tuple[Reply, int, int, float]] = {}
        self._moves: dict[int, tuple[Reply, float]] = {}

    def change_membership(
        self, reply: Reply, method: int, change_type: int, node_id: int, context: bytes
    ) -> None:
        """Send a conf change down; answered when it applies (or is refused)."""
        request_id = self._new_id()
        deadline = time.monotonic() + self.app.request_timeout
        self._conf[request_id] = (reply, method, node_id, deadline)
        self._send_down(
            rp.pack(rp.CONF_CHANGE, rp.CONF, change_type, node_id, request_id, tail=context)
        )

    def conf_change_done(self, index: int, request_id: int, outcome: int) -> None:
        waiting = self._conf.pop(request_id, None)
        if waiting is None:
            return
        reply, method, node_id, _deadline = waiting
        app = self.app
        if outcome == rp.CONF_NOT_LEADER:
            reply.fail(errors.NotLeader(), app.members.client_url(app.leader_id))
            return
        if outcome == rp.CONF_LEARNER_NOT_READY:
            reply.fail(errors.LearnerNotReady())
            return
        if outcome != rp.CONF_APPLIED_OK:
            reply.fail(errors.ApiError(CHANGE_REFUSED))
            return
        members = app.members.to_rpc()
        response = RESPONSE_BY_METHOD[method](members=members)
        if method == BY_NAME["MemberAdd"].number:
            response.member.CopyFrom(next((m for m in members if node_id == m.ID), rpc.Member()))
        reply.answer(app.stamp(response).SerializeToString())

    def move_leader(self, reply: Reply, target: int) -> None:
        request_id = self._new_id()
        self._moves[request_id] = (reply, time.monotonic() + self.app.request_timeout)
        self._send_down(rp.pack(rp.MOVE_LEADER, rp.U64x2, target, request_id))

    def move_leader_done(self, request_id: int, ok: bool) -> None:
        waiting = self._moves.pop(request_id, None)
        if waiting is None:
            return
        if ok:
            waiting[0].answer(self.app.stamp(rpc.MoveLeaderResponse()).SerializeToString())
        else:
            waiting[0].fail(errors.ApiError(MOVE_FAILED))

    def expire(self, now: float) -> None:
        """Fail waits past the request timeout (the Raft process bounds its own retries;
        this keeps a lost report from holding a client forever)."""
        for table in (self._conf, self._moves):
            for request_id in [r for r, w in table.items() if w[-1] <= now]:
                table.pop(request_id)[0].fail(errors.TimedOut())
