"""ReadIndex, snapshots, leader transfer and membership changes."""

from __future__ import annotations

import pytest

from pyraftkv.raft import (
    EMPTY_MEMBERSHIP,
    ConfChange,
    ConfChangeInProgress,
    ConfChangeRejected,
    ConfChangeType,
    Config,
    Entry,
    EntryType,
    LeaderTransferInProgress,
    MessageType,
    NoLeaderError,
    ProgressState,
    ProposalRefused,
    ReadState,
    Role,
    SnapshotMeta,
)
from pyraftkv.raft.log import RaftLog
from pyraftkv.raft.types import Membership

from .network import Network

# ---------------------------------------------------------------- ReadIndex


def test_read_index_waits_for_one_heartbeat_round_shared_by_all_reads() -> None:
    """Thesis §6.4: the leader "records its current commit index in a local variable
    readIndex" and "sends ... heartbeats"; once a majority acknowledges, the reads may
    proceed. Reads arriving together share one round."""
    net = Network()
    net.campaign(1)
    leader = net[1]
    commit = leader.commit_index
    for n in range(10):
        leader.read_index(b"r%d" % n)
    ready = leader.ready()
    assert ready.read_states == []  # not confirmed yet
    heartbeats = [m for m in ready.messages if m.type == MessageType.HEARTBEAT]
    assert sorted(m.to for m in heartbeats) == [2, 3]
    net.handle_ready(1, ready)
    net.deliver()
    assert net.read_states[1] == [ReadState(commit, b"r%d" % n) for n in range(10)]


def test_read_index_is_not_confirmed_without_a_majority() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(1)
    net[1].read_index(b"lonely")
    net.deliver()
    assert net.read_states[1] == []


def test_follower_forwards_read_index_to_the_leader() -> None:
    net = Network()
    net.campaign(1)
    net[1].propose([b"w"])
    net.deliver()
    net[3].read_index(b"from-3")
    net.deliver()
    assert net.read_states[3] == [ReadState(net[1].commit_index, b"from-3")]


def test_read_index_without_leader_is_refused() -> None:
    net = Network()
    with pytest.raises(NoLeaderError):
        net[2].read_index(b"x")


def test_new_leader_serves_reads_only_after_committing_in_its_term() -> None:
    """Thesis §6.4: "If the leader has not yet marked an entry from its current term
    committed, it waits until it has done so." """
    net = Network()
    net.campaign(1)
    net.dropped_types.add(MessageType.APP_RESP)  # the no-op cannot commit
    net[1].transfer_leadership(2)
    net.deliver()
    leader = net[2]
    assert leader.role == Role.LEADER and leader.commit_index < leader.log.last_index
    leader.read_index(b"early")
    net.tick_all(1)
    assert net.read_states[2] == []
    net.dropped_types.clear()
    net.tick_all(1)
    assert net.read_states[2] == [ReadState(leader.commit_index, b"early")]
    assert leader.commit_index == leader.log.last_index


def test_single_member_answers_reads_at_once() -> None:
    net = Network(ids=[1])
    net.campaign(1)
    net[1].read_index(b"solo")
    net.flush()
    assert net.read_states[1] == [ReadState(net[1].commit_index, b"solo")]


# ---------------------------------------------------------------- snapshots


def test_lagging_follower_gets_the_snapshot_and_catches_up() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(3)
    for n in range(5):
        net[1].propose([b"%d" % n])
        net.deliver()
    leader = net[1]
    meta = leader.compact(leader.log.applied)
    assert leader.log.first_index == meta.index + 1
    net.heal()
    net.tick(1)
    snaps = [m for m in net.sent if m.type == MessageType.SNAP]
    assert [m.snapshot for m in snaps] == [meta] and snaps[0].to == 3
    assert net.installed[3] == [meta]
    leader.report_snapshot(3, True)
    leader.propose([b"after"])
    net.deliver()
    assert net.terms(3) == net.terms(1) and net[3].commit_index == leader.commit_index
    assert net.applied[3][-1].data == b"after"
    assert net[3].membership == leader.membership


def test_failed_snapshot_is_retried() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(3)
    net[1].propose([b"x"])
    net.deliver()
    net[1].compact(net[1].log.applied)
    net.heal()
    net.dropped_types.add(MessageType.SNAP)
    net.tick(1)
    assert net[1].status().progress[3][2] == ProgressState.SNAPSHOT
    net[1].report_snapshot(3, False)
    net.dropped_types.clear()
    net.tick(1)
    assert net[3].commit_index == net[1].commit_index


def test_compact_refuses_unapplied_index() -> None:
    net = Network()
    net.campaign(1)
    with pytest.raises(ValueError):
        net[1].compact(net[1].log.applied + 1)


# ---------------------------------------------------------------- leader transfer


def test_leader_transfer_to_caught_up_follower() -> None:
    """Thesis §3.10: the leader brings the target up to date, then "sends it a TimeoutNow
    request. This request has the same effect as the target server's election timer
    firing"."""
    net = Network()
    net.campaign(1)
    net[1].transfer_leadership(2)
    net.deliver()
    assert net.leader().id == 2
    assert any(m.type == MessageType.TIMEOUT_NOW and m.to == 2 for m in net.sent)


def test_leader_transfer_catches_up_a_lagging_target_first() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(3)
    net[1].propose([b"a", b"b"])
    net.deliver()
    net.heal()
    net[1].transfer_leadership(3)
    with pytest.raises(LeaderTransferInProgress):
        net[1].propose([b"refused while transferring"])
    net.deliver()
    assert net.leader().id == 3
    assert net.terms(3) == net.terms(1)


def test_leader_transfer_to_a_lazy_follower_streams_it_what_it_lacks() -> None:
    """With lazy followers the target may be one the last appends skipped: it is sent
    all it lacks, one message after the other, not left to the next send_commit()."""
    config = Config(
        election_ticks=10, heartbeat_ticks=1, lazy_commit=True, lazy_followers=True,
        max_msg_bytes=1, max_inflight_msgs=1,
    )  # fmt: skip
    net = Network(config=config)
    net.campaign(1)
    net[1].send_commit()
    net.deliver()
    for data in (b"a", b"b", b"c", b"d"):
        net[1].propose([data])
        net.deliver()
    (lazy,) = [n for n in (2, 3) if net[n].log.last_index < net[1].log.last_index]
    net[1].transfer_leadership(lazy)
    net.deliver()
    assert net.leader().id == lazy


def test_leader_transfer_to_a_pre_candidate_still_hands_over() -> None:
    """A target that missed heartbeats (a stalled process) may be a pre-candidate when the
    leader's TimeoutNow arrives; it still campaigns, so the transfer does not fail."""
    net = Network()
    net.campaign(1)
    net.isolate(3)
    net.tick(3, 2 * net.config.election_ticks)  # its pre-votes are lost
    assert net[3].role == Role.PRE_CANDIDATE
    net.heal()
    net[1].transfer_leadership(3)
    net.deliver()
    assert net.leader().id == 3


def test_leader_transfer_gives_up_after_an_election_timeout() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(3)
    net.cut.discard((3, 1))
    net[1].transfer_leadership(3)
    for _ in range(net.config.election_ticks):
        net[1].tick()
    net.cut.discard((1, 3))
    net[1].propose([b"accepted again"])


# ---------------------------------------------------------------- membership


def add(net: Network, leader: int, change: ConfChange) -> None:
    net[leader].propose_conf_change(change)
    net.deliver()


def test_add_learner_then_promote() -> None:
    net = Network()
    net.campaign(1)
    net.add(4)
    add(net, 1, ConfChange(ConfChangeType.ADD_LEARNER, 4, b"name=four"))
    assert net[1].membership == Membership(frozenset({1, 2, 3}), frozenset({4}))
    net.tick(1)
    assert net.terms(4) == net.terms(1)
    # A learner never campaigns.
    for _ in range(50):
        net[4].tick()
    assert net[4].role == Role.FOLLOWER and net[4].term == net[1].term
    add(net, 1, ConfChange(ConfChangeType.PROMOTE_LEARNER, 4))
    assert net[4].membership.voters == {1, 2, 3, 4}
    net.isolate(1)
    net.campaign(4)
    assert net[4].role == Role.PRE_CANDIDATE or net[4].role == Role.LEADER


def test_learner_votes_do_not_count() -> None:
    net = Network(ids=[1, 2, 3])
    net.campaign(1)
    net.add(4)
    add(net, 1, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    net.isolate(1)
    net.cut |= {(2, 3), (3, 2)}  # 2 can reach only the learner 4
    for _ in range(3):
        net.campaign(2)
    assert net[2].role != Role.LEADER


def test_membership_changes_go_one_at_a_time() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(1)  # nothing commits
    net[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))
    with pytest.raises(ConfChangeInProgress):
        net[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 5))


@pytest.mark.parametrize(
    "change, error",
    [
        (ConfChange(ConfChangeType.ADD_VOTER, 2), "already exists"),
        (ConfChange(ConfChangeType.PROMOTE_LEARNER, 2), "not a learner"),
        (ConfChange(ConfChangeType.REMOVE_MEMBER, 9), "not found"),
        (ConfChange(ConfChangeType.UPDATE_MEMBER, 9, b"urls"), "not found"),
        (ConfChange(ConfChangeType.ADD_LEARNER, 0), "nonzero"),
    ],
)
def test_invalid_membership_change_is_rejected(change: ConfChange, error: str) -> None:
    net = Network()
    net.campaign(1)
    last = net[1].log.last_index
    with pytest.raises(ConfChangeRejected, match=error):
        net[1].propose_conf_change(change)
    assert net[1].log.last_index == last


def test_cannot_remove_the_last_voter() -> None:
    net = Network(ids=[1])
    net.campaign(1)
    with pytest.raises(ConfChangeRejected, match="last voter"):
        net[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_MEMBER, 1))


def test_membership_follows_the_log_and_reverts_when_truncated() -> None:
    """Thesis §4.1: "a server always uses the latest configuration in its log, regardless
    of whether the entry is committed"; an uncommitted change can be erased."""
    net = Network()
    net.campaign(1)
    net.cut |= {(1, 3), (3, 1)}
    net.dropped_types.add(MessageType.APP_RESP)
    net[1].propose_conf_change(ConfChange(ConfChangeType.REMOVE_MEMBER, 3))
    net.deliver()
    assert net[2].membership.voters == {1, 2}  # appended, not committed
    net.dropped_types.clear()
    net.isolate(1)
    net.cut -= {(2, 3), (3, 2)}
    for _ in range(3):
        net.campaign(3)
        if net[3].role == Role.LEADER:
            break
    # 2's log holds the removal of 3: its latest configuration {1, 2} means 3's vote
    # requests count for nothing with it, so 3 cannot win while 2 keeps that entry.
    assert net[3].role != Role.LEADER or net[2].membership.voters == {1, 2, 3}


def test_removed_leader_steps_down_after_commit_and_hands_over() -> None:
    """Thesis §4.2.2: the leader "steps down once the Cnew entry is committed" (pyraftkv
    then sends TimeoutNow to a caught-up voter so the cluster does not wait)."""
    net = Network()
    net.campaign(1)
    add(net, 1, ConfChange(ConfChangeType.REMOVE_MEMBER, 1))
    assert net[1].role == Role.FOLLOWER
    assert net.leader().id in (2, 3)
    new = net.leader()
    assert new.membership.voters == {2, 3}
    new.propose([b"still works"])
    net.deliver()
    assert net.applied[2][-1].data == net.applied[3][-1].data == b"still works"
    with pytest.raises(ProposalRefused):
        net[1].propose([b"x"])


def test_remove_follower_shrinks_the_quorum() -> None:
    net = Network()
    net.campaign(1)
    add(net, 1, ConfChange(ConfChangeType.REMOVE_MEMBER, 3))
    net.isolate(3)
    net[1].propose([b"two of two"])
    net.deliver()
    assert net.applied[2][-1].data == b"two of two"


def test_update_member_commits_and_changes_no_voter_or_learner() -> None:
    """etcd's ConfChangeUpdateNode (MemberUpdate): only the context (the new peer URLs)
    travels; the membership, hence the quorum, stays as it was."""
    net = Network()
    net.campaign(1)
    net.add(4)
    add(net, 1, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    before = net[1].membership
    index = net[1].propose_conf_change(ConfChange(ConfChangeType.UPDATE_MEMBER, 4, b"new"))
    net.deliver()
    for node in (1, 2, 3, 4):
        assert net[node].membership == before
        assert net[node].commit_index >= index
    add(net, 1, ConfChange(ConfChangeType.UPDATE_MEMBER, 2, b"http://other:2380"))
    assert net[1].membership == before
    net[1].propose([b"after"])
    net.deliver()
    assert net.applied[2][-1].data == net.applied[3][-1].data == b"after"


def test_conf_change_refused_until_leader_commits_in_its_term() -> None:
    """The 2015 single-server-change fix: a leader may not append a configuration entry
    until it has committed an entry of its current term."""
    net = Network()
    net.campaign(1)
    net.dropped_types.add(MessageType.APP_RESP)
    net[1].transfer_leadership(2)
    net.deliver()
    with pytest.raises(ConfChangeInProgress, match="its term"):
        net[2].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4))


def test_membership_at_names_the_configuration_of_an_index() -> None:
    net = Network()
    net.campaign(1)
    before = net[1].log.last_index
    add(net, 1, ConfChange(ConfChangeType.ADD_LEARNER, 4))
    assert net[1].membership_at(before) == Membership(frozenset({1, 2, 3}))
    assert net[1].membership_at(net[1].log.last_index).learners == {4}
    with pytest.raises(ValueError):
        net[1].membership_at(net[1].log.last_index + 1)


def test_log_kept_below_a_snapshot_is_bounded_by_entries_and_bytes() -> None:
    log = RaftLog(SnapshotMeta(10, 1, EMPTY_MEMBERSHIP))
    log.append([Entry(1, 10 + i, EntryType.NORMAL, b"x" * 100) for i in range(1, 21)])  # 11..30
    assert log.keep_tail(30, 5, 10_000) == 25  # five entries kept: 26..30
    assert log.keep_tail(30, 50, 350) == 27  # three entries of 100 bytes: 28..30
    assert log.keep_tail(30, 50, 10_000) == 10  # everything fits: nothing to drop
    assert log.keep_tail(20, 5, 10_000) == 15
    assert log.keep_tail(30, 5, 50) == 30  # not even one entry fits
