"""The Raft process tells its application the leader, term, commit index, role and learner
flag (STATUS) when one of them changed, not with every Ready."""

from __future__ import annotations

from types import SimpleNamespace

from pyraftkv.node import ringproto as rp
from pyraftkv.node.raft_process import RaftProcess
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
