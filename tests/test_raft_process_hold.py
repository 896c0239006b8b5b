"""The Raft process's rule before a WAL write on its loop: peer frames always go out
first; what it queued for its application goes up first too, except on a follower whose
write waits for an fdatasync (its acknowledgement to the leader, on a writer's path, goes
first; the committed entries go up after it, with the rest of that Ready's messages)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pyraftkv.node.raft_process import RaftProcess


def process_state(leader: int) -> SimpleNamespace:
    sent: list = []
    state = SimpleNamespace(
        id=1,
        leader=leader,
        _up_batch=[b"committed"],
        transport=SimpleNamespace(flush=lambda: sent.append("peer frames")),
        link=SimpleNamespace(send_many=lambda batch: sent.append(list(batch))),
    )
    state.sent = sent
    return state


@pytest.mark.parametrize(
    ("leader", "sync", "pushed_up"),
    [
        (1, True, True),  # the leader: its application applies while its disk writes
        (1, False, True),
        (2, False, True),  # a follower's write without fdatasync (a commit index) is short
        (2, True, False),  # a follower's fdatasync: acknowledge first, push up after
        (0, True, False),  # no leader known: no one to serve meanwhile either
    ],
)
def test_before_a_wal_write_peer_frames_go_first_and_a_follower_holds_its_push_up(
    leader: int, sync: bool, pushed_up: bool
) -> None:
    state = process_state(leader)
    RaftProcess._before_blocking(state, sync)
    if pushed_up:
        assert state.sent == ["peer frames", [b"committed"]]
        assert state._up_batch == []
    else:
        assert state.sent == ["peer frames"]
        assert state._up_batch == [b"committed"]  # left for the end of this round of Readies
