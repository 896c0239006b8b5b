"""The Raft process tells its application the leader, term, commit index, role and learner
flag (STATUS) when one of them changed, not with every Ready; its ticker drops missed ticks."""

from __future__ import annotations

from types import SimpleNamespace

from pyraftkv.node import ringproto as rp
from pyraftkv.node.raft_process import RaftProcess, next_tick_at
from pyraftkv.raft import Role


def test_status_goes_up_only_when_it_changed() -> None:
    core = SimpleNamespace(
        leader_id=1,
        term=2,
        commit_index=5,
        role=Role.LEADER,
        membership=SimpleNamespace(learners=frozenset()),
    )
    pushed: list[bytes] = []
    state = SimpleNamespace(id=1, core=core, _pushed_status=(), push_up=pushed.append)
    RaftProcess._push_status(state)
    RaftProcess._push_status(state)  # nothing changed: nothing sent
    core.commit_index = 6
    RaftProcess._push_status(state)
    core.membership.learners = frozenset({1})
    RaftProcess._push_status(state)
    assert [rp.unpack(m, rp.STATUS_FMT) for m in pushed] == [
        (1, 2, 5, int(Role.LEADER), 0),
        (1, 2, 6, int(Role.LEADER), 0),
        (1, 2, 6, int(Role.LEADER), 1),
    ]


def test_a_stalled_ticker_drops_the_ticks_it_missed() -> None:
    """On time or a little late, ticks keep their schedule; after a stall (SIGSTOP, swap)
    the next tick is one interval away, not a burst of the missed ones."""
    assert next_tick_at(10.0, 10.0, 0.1) == 10.1
    assert next_tick_at(10.0, 10.08, 0.1) == 10.1  # late: still due on schedule
    assert next_tick_at(10.0, 11.5, 0.1) == 11.6  # 1.5 s stopped: no 14 ticks at once
