"""The application process's waiting rooms, driven directly: read rounds (boot nonce,
out-of-order confirmations, refusals, timeouts) and membership/leader-move waits that
time out instead of holding a client forever."""

from __future__ import annotations

import time

from pyraftkv import errors
from pyraftkv.node import ringproto as rp
from pyraftkv.node.admin_waiters import AdminWaiters
from pyraftkv.node.reads import RETRY_S, ReadRounds
from pyraftkv.node.reply import Reply
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.methods import BY_NAME


class Connection:
    """Records what a client stream was sent."""

    closed = False

    def __init__(self) -> None:
        self.replies: list[tuple[int, bytes]] = []
        self.errors: list[tuple[int, errors.ApiError]] = []

    def reply(self, stream: int, body: bytes) -> None:
        self.replies.append((stream, body))

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        self.errors.append((stream, error))


def rounds(sent: list[bytes], served: list[int]) -> ReadRounds:
    return ReadRounds(sent.append, lambda reply, serve: served.append(serve()), 5.0)


def test_read_contexts_differ_across_incarnations() -> None:
    first, second = [], []
    for sent in (first, second):
        reads = rounds(sent, [])
        reads.add(Reply(Connection(), 1), lambda: 1)
        reads.start_round()
    contexts = [rp.unpack(sent[0], rp.U64)[0] for sent in (first, second)]
    assert contexts[0] != contexts[1]


def test_an_unconfirmed_round_is_asked_for_again_until_it_is_confirmed() -> None:
    sent: list[bytes] = []
    served: list[int] = []
    reads = rounds(sent, served)
    reads.add(Reply(Connection(), 1), lambda: 1)
    reads.start_round()
    (context,) = rp.unpack(sent[0], rp.U64)
    now = time.monotonic()
    reads.expire(now)  # too early: nothing asked again
    assert len(sent) == 1
    reads.expire(now + RETRY_S + 0.01)
    reads.expire(now + 2 * RETRY_S + 0.02)
    assert [rp.unpack(m, rp.U64)[0] for m in sent] == [context] * 3  # the same context
    reads.confirmed(7, context, applied_index=7)
    assert served == [1] and not reads
    reads.confirmed(7, context, applied_index=7)  # the other answer: nothing more
    reads.expire(now + 3 * RETRY_S + 0.03)
    assert served == [1] and len(sent) == 3


def test_rounds_confirmed_out_of_order_are_served_in_index_order() -> None:
    sent: list[bytes] = []
    served: list[int] = []
    reads = rounds(sent, served)
    contexts = []
    for value in (1, 2):
        reads.add(Reply(Connection(), value), lambda value=value: value)
        reads.start_round()
        contexts.append(rp.unpack(sent[-1], rp.U64)[0])
    reads.confirmed(20, contexts[1], applied_index=5)
    reads.confirmed(10, contexts[0], applied_index=5)
    reads.serve_applied(10)
    assert served == [1]
    reads.serve_applied(20)
    assert served == [1, 2]
    reads.confirmed(30, 12345, applied_index=100)  # unknown (e.g. earlier boot): ignored
    assert served == [1, 2] and not reads


def test_refused_and_expired_rounds_fail_their_reads() -> None:
    sent: list[bytes] = []
    reads = rounds(sent, [])
    refused, expired = Connection(), Connection()
    reads.add(Reply(refused, 1), lambda: 0)
    reads.start_round()
    reads.refuse(rp.unpack(sent[-1], rp.U64)[0], errors.NoLeader(), "")
    reads.add(Reply(expired, 2), lambda: 0)
    reads.start_round()
    reads.expire(now=float("inf"))
    assert [type(e) for _s, e in refused.errors] == [errors.NoLeader]
    assert [type(e) for _s, e in expired.errors] == [errors.TimedOut]


class App:
    request_timeout = 5.0
    leader_id = 0

    def stamp(self, response):
        return response


def test_membership_and_move_waits_time_out() -> None:
    sent: list[bytes] = []
    ids = iter(range(1, 100))
    waiters = AdminWaiters(App(), sent.append, lambda: next(ids))
    conf, move, answered = Connection(), Connection(), Connection()
    waiters.change_membership(Reply(conf, 1), BY_NAME["MemberRemove"].number, 2, 7, b"")
    waiters.move_leader(Reply(move, 1), 9)
    waiters.move_leader(Reply(answered, 1), 9)
    waiters.move_leader_done(3, True)
    waiters.expire(now=0.0)  # nothing is due yet
    assert conf.errors == [] and move.errors == []
    waiters.expire(now=float("inf"))
    assert [type(e) for _s, e in conf.errors] == [errors.TimedOut]
    assert [type(e) for _s, e in move.errors] == [errors.TimedOut]
    assert answered.errors == []
    assert rpc.MoveLeaderResponse.FromString(answered.replies[0][1]) == rpc.MoveLeaderResponse()
    waiters.move_leader_done(2, True)  # a late report for an expired wait: nobody to answer
    assert move.replies == []
