"""The Raft process tells its application the leader, term, commit index, role and learner
flag (STATUS) when one of them changed, not with every Ready; its ticker drops missed ticks;
a leader tells a lone writer's member when its WAL holds the write."""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

from pyraftkv.node import ringproto as rp
from pyraftkv.node.raft_process import ONE_WRITER_READIES, RaftProcess, next_tick_at
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


def _durable_state(alone: int, forwarded: list[tuple[int, int]]) -> SimpleNamespace:
    told: list[int] = []
    core = SimpleNamespace(
        advance=lambda ready: None, send_durable_to=lambda node: told.append(node) or node != 3
    )
    ready = SimpleNamespace(persisted_messages=[], entries=[SimpleNamespace(index=7)])
    return SimpleNamespace(
        core=core,
        told=told,
        _in_flight=deque([[ready, True]]),
        _forwarded=deque(forwarded),
        _alone_readies=alone,
        _told_durable=0,
        _told={},
        trace=SimpleNamespace(open=False),
        schedule=lambda: None,
    )


def test_a_leader_tells_a_lone_forwarding_writers_member_its_log_is_durable() -> None:
    """One writer through a follower: once the leader's WAL holds the write, the follower
    that forwarded it is told (it may then commit with the leader, RaftCore.send_durable_to);
    its next write, sent before the leader counted the answer, still counts as alone."""
    state = _durable_state(ONE_WRITER_READIES, [(7, 2), (7, 2), (7, 3)])
    RaftProcess._advance_durable(state)
    # 3 cannot commit with the leader (the core sent it nothing): it waits for the commit.
    assert sorted(state.told) == [2, 3] and state._told == {2: 7}
    assert state._told_durable == 7
    # Many writers at once (not alone), or nothing forwarded: nobody is told.
    for alone, forwarded in ((ONE_WRITER_READIES - 1, [(7, 2)]), (ONE_WRITER_READIES, [])):
        state = _durable_state(alone, forwarded)
        RaftProcess._advance_durable(state)
        assert state.told == []


def test_a_write_after_one_the_follower_was_told_durable_is_still_one_writers() -> None:
    """The follower's client moves on as soon as the follower commits, before the leader
    has counted the answer: the next write is still one writer's (written at once, on the
    loop), unless nothing was told."""
    for told, alone in ((7, True), (0, False)):
        submitted: list[bool] = []
        state = SimpleNamespace(
            _in_flight=deque(),
            _last_written=7,
            _told_durable=told,
            _alone_readies=ONE_WRITER_READIES,
            membership=SimpleNamespace(on_appended=lambda entries, truncate_from: None),
            trace=SimpleNamespace(within=lambda first, last: None),
            core=SimpleNamespace(commit_index=6),
            writer=SimpleNamespace(
                submit=lambda write, sync, done, one, into=submitted: into.append(one)
            ),
        )
        ready = SimpleNamespace(
            snapshot=None, entries=[SimpleNamespace(index=8)], hard_state=None, must_sync=True
        )
        RaftProcess._persist(state, ready)
        assert submitted == [alone]


def test_only_followers_not_told_the_write_was_durable_get_its_commit_at_once() -> None:
    state = SimpleNamespace(
        _forwarded=deque([(5, 2), (6, 3), (7, 2), (9, 3)]),
        core=SimpleNamespace(commit_index=7),
        _told={2: 7, 3: 5},
    )
    assert RaftProcess._origins_to_tell(state) == {3}
    assert list(state._forwarded) == [(9, 3)]
    state.core.commit_index, state._told = 9, {3: 9}
    assert RaftProcess._origins_to_tell(state) == set()
