"""Log replication: commit rules, Figures 7 and 8, pipelining, probing, fast back-off,
the persistence rule, proposals on non-leaders, restore and bootstrap."""

from __future__ import annotations

import random

import pytest

from pyraftkv.raft import (
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    NoLeaderError,
    NotLeaderError,
    ProgressState,
    RaftCore,
    RestoreError,
    Role,
    SnapshotMeta,
    TooManyUncommitted,
)
from pyraftkv.raft.types import Membership

from .network import CONFIG, Network, restored

# Figure 7: the leader for term 8 and the possible follower logs (terms of indexes 1..).
FIGURE7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE7_FOLLOWERS = {
    "a": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b": [1, 1, 1, 4],
    "c": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e": [1, 1, 1, 4, 4, 4, 4],
    "f": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


def test_committed_entries_reach_every_member() -> None:
    """§5.3: "Once the leader that created the entry has replicated it on a majority of
    the servers ... the entry is committed" and followers apply it in log order."""
    net = Network()
    net.campaign(1)
    last = net[1].propose([b"a", b"b", b"c"])
    net.deliver()
    for node in (1, 2, 3):
        assert net[node].commit_index == last
        assert [e.data for e in net.applied[node][-3:]] == [b"a", b"b", b"c"]


def test_lazy_commit_rides_on_the_next_append_or_goes_when_asked() -> None:
    """With lazy_commit a new commit index sends nothing of its own: the next append (or
    heartbeat) carries it, or send_commit() broadcasts it; without, it goes at once."""
    for lazy in (False, True):
        net = Network(config=Config(election_ticks=10, heartbeat_ticks=1, lazy_commit=lazy))
        net.campaign(1)
        net[1].send_commit()
        net.deliver()
        first = net[1].propose([b"a"])
        net.deliver()
        assert net[1].commit_index == first
        assert [net[n].commit_index == first for n in (2, 3)] == [not lazy] * 2
        assert net[1].commit_unsent is lazy
        if lazy:
            second = net[1].propose([b"b"])
            net.deliver()
            assert [net[n].commit_index for n in (2, 3)] == [first, first]  # carried along
            sent = len(net.sent)
            net[1].send_commit()
            net.deliver()
            assert [net[n].commit_index for n in (2, 3)] == [second, second]
            assert {m.type for m in net.sent[sent:]} == {MessageType.APP, MessageType.APP_RESP}
            assert not net[1].commit_unsent
            net[1].send_commit()  # nothing left to tell: nothing sent
            assert not net[1].has_ready()


def test_lazy_followers_get_a_new_append_only_when_sent_all_or_when_a_quorum_needs_them() -> None:
    """With lazy_followers a new entry goes to the followers a quorum needs (those holding
    the most); the rest get all they lack with send_commit(). A silent fast follower costs
    one send_commit() wait: the one that answered holds more and is the next one sent to."""
    config = Config(election_ticks=10, heartbeat_ticks=1, lazy_commit=True, lazy_followers=True)
    net = Network(ids=(1, 2, 3, 4, 5), config=config)
    net.campaign(1)
    net[1].send_commit()
    net.deliver()

    def holders(index: int) -> list[int]:
        return [n for n in (2, 3, 4, 5) if net[n].log.last_index >= index]

    first = net[1].propose([b"a"])
    net.deliver()
    assert net[1].commit_index == first
    eager = holders(first)
    assert len(eager) == 2  # with the leader, three of five
    assert net[1].commit_unsent  # the two others lack it
    net[1].send_commit()
    net.deliver()
    assert holders(first) == [2, 3, 4, 5]
    assert not net[1].commit_unsent

    second = net[1].propose([b"b"])
    net.deliver()
    eager = holders(second)
    for node in eager:
        net.isolate(node)  # the followers sent to first fall silent
    third = net[1].propose([b"c"])
    net.deliver()
    assert net[1].commit_index == second
    net[1].send_commit()
    net.deliver()
    assert net[1].commit_index == third
    fourth = net[1].propose([b"d"])
    net.deliver()
    assert net[1].commit_index == fourth  # sent to the two that answered, at once
    assert sorted(holders(fourth)) == sorted(set((2, 3, 4, 5)) - set(eager))


@pytest.mark.parametrize("case", sorted(FIGURE7_FOLLOWERS))
def test_figure7_leader_brings_any_follower_log_into_agreement(case: str) -> None:
    """§5.3: "the leader handles inconsistencies by forcing the followers' logs to
    duplicate its own" (Figure 7, cases a-f), with few round trips thanks to the
    follower's hint."""
    voters = [1, 2, 3]
    leader = restored(1, FIGURE7_LEADER, term=7, voters=voters)
    helper = restored(2, FIGURE7_LEADER, term=7, voters=voters)  # votes for the leader
    follower = restored(3, FIGURE7_FOLLOWERS[case], term=7, voters=voters)
    net = Network(cores={1: leader, 2: helper, 3: follower})
    net.cut |= {(3, 1), (1, 3)}
    net.campaign(1)
    assert net.leader().id == 1 and leader.term == 8
    net.heal()
    net.tick(1)
    assert net.terms(3) == net.terms(1)
    assert follower.commit_index == leader.log.last_index
    appends = [m for m in net.sent if m.to == 3 and m.type == MessageType.APP]
    assert len(appends) <= 5, f"{len(appends)} appends to repair case {case}"


def test_figure8_old_term_entry_is_never_committed_by_counting() -> None:
    """§5.4.2 / Figure 8: "Raft never commits log entries from previous terms by counting
    replicas. Only log entries from the leader's current term are committed by counting
    replicas". S1 (now leading term 5) copies its term-2 entry at index 2 to S2 and S3, a
    majority; it must not count that as committed, because S5 (last entry term 3) can
    still win and erase it."""
    voters = [1, 2, 3, 4, 5]
    config = Config(election_ticks=10, check_quorum=False)  # no leader lease to wait out
    logs = {1: [1, 2], 2: [1], 3: [1], 4: [1], 5: [1, 3]}
    cores = {n: restored(n, terms, 4, voters, config) for n, terms in logs.items()}
    net = Network(cores=cores, config=config)
    base = len(voters)  # the bootstrap conf entries come first
    old_index = base + 2
    net.cut |= {(1, 4), (4, 1), (1, 5), (5, 1)}
    net.dropped_types.add(MessageType.APP)  # S1 wins; its appends are lost for now
    net.campaign(1)
    s1 = net[1]
    assert s1.role == Role.LEADER and s1.log.term(old_index) == 2
    # (c): after the followers reject its first probe, S1 sends index 2 alone to S2 and
    # S3 (one entry per message), and both acknowledge it.
    old_entry = s1.log.entries[old_index - 1]
    for follower in (2, 3):
        app = Message(
            MessageType.APP,
            follower,
            1,
            s1.term,
            log_term=1,
            index=old_index - 1,
            commit=s1.commit_index,
            entries=(old_entry,),
        )
        net[follower].step(app)
        ready = net[follower].ready()
        net[follower].advance(ready)
        (ack,) = ready.persisted_messages
        assert ack.index == old_index and not ack.reject
        s1.step(ack)
    net.flush()
    assert s1.commit_index < old_index, "a term-2 entry on a majority must not commit"
    # (d): S1 crashes; S5, whose last term 3 beats term 2, wins and overwrites index 2.
    net.dropped_types.clear()
    net.inflight.clear()
    net.heal()
    net.cut |= {(1, n) for n in voters} | {(n, 1) for n in voters}
    for _ in range(3):
        net.campaign(5)
    assert net[5].role == Role.LEADER
    for node in (2, 3, 4, 5):
        assert net[node].log.term(old_index) == 3


def test_figure8_entry_commits_once_an_entry_of_the_current_term_does() -> None:
    """Figure 8 (e): once S1 replicates an entry of its own term to a majority, the
    earlier entries commit with it, and S5 can no longer win."""
    voters = [1, 2, 3, 4, 5]
    logs = {1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3]}
    cores = {n: restored(n, terms, 4, voters) for n, terms in logs.items()}
    net = Network(cores=cores)
    old_index = len(voters) + 2
    net.cut |= {(1, 5), (5, 1)}
    net.campaign(1)
    assert net[1].commit_index == net[1].log.last_index > old_index
    net.heal()
    net.isolate(1)
    for _ in range(3):
        net.campaign(5)
    assert net[5].role != Role.LEADER  # its log is now behind a majority


def test_leader_counts_itself_only_after_its_own_write() -> None:
    """Persistence rule: the leader's appends leave before its own fsync, and it adds its
    own match to the quorum only once advance() reports the entries durable."""
    net = Network()
    net.campaign(1)
    leader = net[1]
    index = leader.propose([b"x"])
    ready = leader.ready()
    assert [e.index for e in ready.entries] == [index]
    assert {m.to for m in ready.messages if m.type == MessageType.APP} == {2, 3}
    app_to_2 = next(m for m in ready.messages if m.to == 2)
    net[2].step(app_to_2)
    follower_ready = net[2].ready()
    assert follower_ready.messages == []  # the ack waits for the follower's own write
    (ack,) = follower_ready.persisted_messages
    net[2].advance(follower_ready)
    leader.step(ack)
    assert leader.commit_index < index  # one follower alone is not a majority of 3
    leader.advance(ready)
    assert leader.commit_index == index  # leader + follower 2


def test_pipelining_sends_a_window_of_appends_without_waiting() -> None:
    config = Config(election_ticks=10, max_inflight_msgs=4)
    net = Network(config=config)
    net.campaign(1)
    leader = net[1]
    net.cut.add((1, 2))
    before = len(net.sent)
    for n in range(10):
        leader.propose([b"%d" % n])
        net.flush()
    appends = [m for m in net.sent[before:] if m.to == 2 and m.type == MessageType.APP]
    assert len(appends) == 4  # the window is full; nothing more until acks come back
    assert leader.status().progress[2][2] == ProgressState.REPLICATE


def test_probe_state_sends_one_append_at_a_time() -> None:
    net = Network()
    net.campaign(1)
    net.isolate(3)
    for n in range(5):
        net[1].propose([b"%d" % n])
        net.deliver()
    net.heal()
    leader = net[1]
    leader.report_unreachable(3)
    assert leader.status().progress[3][2] == ProgressState.PROBE
    before = len(net.sent)
    leader.propose([b"more"])
    leader.propose([b"again"])
    net.flush()
    probes = [m for m in net.sent[before:] if m.to == 3 and m.type == MessageType.APP]
    assert len(probes) == 1


def test_follower_hint_skips_a_whole_conflicting_term() -> None:
    """Fast back-off: the rejection names the follower's last index of a term <= the
    probe's, so the leader jumps over the follower's divergent term at once."""
    voters = [1, 2, 3]
    leader = restored(1, [1] * 3 + [4] * 3, term=5, voters=voters)
    helper = restored(2, [1] * 3 + [4] * 3, term=5, voters=voters)
    follower = restored(3, [1] * 3 + [2] * 40, term=5, voters=voters)
    net = Network(cores={1: leader, 2: helper, 3: follower})
    net.campaign(1)
    net.tick(1)
    rejections = [m for m in net.sent if m.sender == 3 and m.reject]
    assert len(rejections) <= 2
    assert net.terms(3) == net.terms(1)


def test_proposal_on_follower_is_refused_naming_the_leader() -> None:
    net = Network()
    net.campaign(1)
    with pytest.raises(NotLeaderError, match="not leader \\(leader is 1\\)") as info:
        net[2].propose([b"x"])
    assert info.value.leader_id == 1
    assert not net[2].has_ready()


def test_proposal_without_leader_is_refused() -> None:
    net = Network()
    with pytest.raises(NoLeaderError):
        net[1].propose([b"x"])


def test_bad_proposals_change_nothing() -> None:
    net = Network()
    net.campaign(1)
    leader = net[1]
    last = leader.log.last_index
    with pytest.raises(TypeError):
        leader.propose([b"ok", "not bytes"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        leader.propose([])
    assert leader.log.last_index == last


def test_uncommitted_bytes_are_bounded() -> None:
    config = Config(election_ticks=10, max_uncommitted_bytes=100)
    net = Network(config=config)
    net.campaign(1)
    net.isolate(1)
    net[1].propose([b"x" * 60])
    with pytest.raises(TooManyUncommitted):
        net[1].propose([b"y" * 60])


def test_advance_must_follow_ready_order() -> None:
    net = Network()
    net.campaign(1)
    leader = net[1]
    leader.propose([b"a"])
    first = leader.ready()
    leader.propose([b"b"])
    second = leader.ready()
    with pytest.raises(ValueError):
        leader.advance(second)
    leader.advance(first)
    leader.advance(second)


def test_readies_can_be_pipelined_before_advance() -> None:
    """The shell may take several Readies while earlier ones are still being written."""
    net = Network()
    net.campaign(1)
    leader = net[1]
    readies = []
    for n in range(3):
        leader.propose([b"%d" % n])
        readies.append(leader.ready())
    assert [len(r.entries) for r in readies] == [1, 1, 1]
    for ready in readies:
        net._send(ready.messages)
        leader.advance(ready)
    net.deliver()
    assert all(net[n].commit_index == leader.log.last_index for n in (1, 2, 3))


def test_bootstrap_commits_the_initial_members() -> None:
    core = RaftCore.bootstrap(2, {1: b"a", 2: b"b", 3: b"c"}, CONFIG, random.Random(0))
    ready = core.ready()
    assert [e.index for e in ready.entries] == [1, 2, 3]
    assert ready.hard_state == HardState(1, 0, 3) and ready.must_sync
    assert ready.committed_entries == ()  # not durable yet
    core.advance(ready)
    assert [e.index for e in core.ready().committed_entries] == [1, 2, 3]
    assert core.membership == Membership(frozenset({1, 2, 3}))


def test_restart_from_persisted_state_resumes() -> None:
    net = Network()
    net.campaign(1)
    net[1].propose([b"a", b"b"])
    net.deliver()
    old = net[2]
    entries = list(old.log.entries)
    again = RaftCore(
        2,
        CONFIG,
        random.Random(5),
        hard_state=HardState(old.term, old.vote, old.commit_index),
        entries=entries,
        applied=3,
    )
    assert again.commit_index == old.commit_index and again.membership == old.membership
    handed = again.ready().committed_entries
    assert [e.index for e in handed] == list(range(4, old.commit_index + 1))


def test_restore_drops_entries_superseded_by_a_received_snapshot() -> None:
    members = Membership(frozenset({1, 2, 3}))
    stale = [Entry(2, 11, 0, b"old"), Entry(2, 12, 0, b"old")]
    core = RaftCore(
        1,
        CONFIG,
        random.Random(0),
        hard_state=HardState(5, 0, 10),
        snapshot=SnapshotMeta(10, 4, members),
        entries=stale,
    )
    assert core.log.last_index == 10 and core.commit_index == 10


@pytest.mark.parametrize(
    "hard_state, entries, error",
    [
        (HardState(1, 0, 5), [Entry(1, 1, 0, b"")], "commit 5 is beyond"),
        (HardState(1, 0, 0), [Entry(1, 2, 0, b"")], "index 2 where 1"),
        (HardState(1, 0, 0), [Entry(1, 1, 0, b""), Entry(1, 3, 0, b"")], "index 3"),
        (HardState(2, 0, 0), [Entry(2, 1, 0, b""), Entry(1, 2, 0, b"")], "term 1 below 2"),
        (HardState(1, 0, 0), [Entry(2, 1, 0, b"")], "below the last entry"),
        (HardState(1, 0, 0), [Entry(1, 1, 7, b"")], "unknown type"),
    ],
)
def test_restore_refuses_inconsistent_state(hard_state, entries, error) -> None:
    with pytest.raises(RestoreError, match=error):
        RaftCore(1, CONFIG, random.Random(0), hard_state=hard_state, entries=entries)


def test_must_sync_only_when_something_durable_changed() -> None:
    net = Network()
    net.campaign(1)
    follower = net[2]
    net[1].propose([b"x"])
    net.flush()
    (app,) = [m for m in net.inflight if m.to == 2]
    follower.step(app)
    ready = follower.ready()
    assert ready.entries and ready.must_sync
    follower.advance(ready)
    follower.step(
        app._replace(type=MessageType.HEARTBEAT, commit=app.entries[-1].index, entries=())
    )
    ready = follower.ready()  # only the commit index moved: nothing to write at all
    assert ready.hard_state is None and not ready.must_sync
    assert [e.data for e in ready.committed_entries] == [b"x"]
    follower.advance(ready)
    # The next write carries the commit index along with the entries.
    net[1].propose([b"y"])
    net.flush()
    app = [m for m in net.inflight if m.to == 2 and m.entries][-1]
    assert app.entries[-1].data == b"y"
    follower.step(app)
    ready = follower.ready()
    assert ready.entries and ready.must_sync
    assert ready.hard_state is not None and ready.hard_state.commit >= 2
    follower.advance(ready)


def test_a_restart_counts_what_the_application_applied_as_committed() -> None:
    """The WAL's commit index may lag (it is written only with entries, a term or a vote):
    entries the application applied are committed after a restart all the same, and are
    not handed out again."""
    entries = [Entry(1, i, 0, b"e%d" % i) for i in range(1, 6)]
    core = RaftCore(
        1, CONFIG, random.Random(0), hard_state=HardState(1, 1, 2), entries=entries, applied=4
    )
    assert core.commit_index == 4
    ready = core.ready()
    assert ready.committed_entries == ()


def _leading_unanswered(net: Network) -> None:
    """Member 1 leads, and hears no answer to its appends from here on."""
    net.campaign(1)
    net.dropped_types = {MessageType.APP_RESP}


def _durable_but_unacknowledged(net: Network) -> int:
    """The leader (1) appends an entry every follower persists, but hears no answer."""
    _leading_unanswered(net)
    last = net[1].propose([b"w"])
    net.deliver()
    assert net[1].commit_index < last
    return last


def test_a_follower_told_the_leader_holds_it_durably_commits_when_the_two_are_a_majority() -> None:
    """With three voters a follower and the leader are a majority: once the follower holds
    an entry of the leader's term durably and the leader says it does too, the entry is
    committed and the follower applies it, before the leader has counted anything."""
    net = Network()
    last = _durable_but_unacknowledged(net)
    assert net[1].send_durable_to(2)
    net.deliver()
    assert net[2].commit_index == last
    assert net.applied[2][-1].data == b"w"
    assert net[1].commit_index < last and net[3].commit_index < last
    # The leader's next reads wait for what a follower may have answered meanwhile.
    net[1].read_index(b"after")
    net.deliver()
    assert [r.index for r in net.read_states[1]] == [last]


def test_the_follower_commits_nothing_that_two_members_do_not_make_a_majority_of() -> None:
    """Neither side takes the shortcut with five voters: the leader sends nothing, and a
    follower told all the same does not commit."""
    net = Network(ids=(1, 2, 3, 4, 5))
    last = _durable_but_unacknowledged(net)
    assert net[1].send_durable_to(2) is False
    assert not net[1].has_ready()
    net[2].step(Message(MessageType.DURABLE, 2, 1, net[1].term, index=last))
    assert net[2].commit_index < last


def test_the_follower_commits_nothing_while_a_membership_change_is_uncommitted() -> None:
    net = Network()
    _leading_unanswered(net)
    last = net[1].propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, 4, b"four"))
    net.deliver()
    assert net[1].send_durable_to(2) is False
    net[2].step(Message(MessageType.DURABLE, 2, 1, net[1].term, index=last))
    assert net[2].log.last_index == last
    assert net[2].commit_index < last


def test_a_durable_notice_from_anyone_but_the_leader_changes_nothing() -> None:
    net = Network()
    last = _durable_but_unacknowledged(net)
    net[2].step(Message(MessageType.DURABLE, 2, 3, net[1].term, index=last))
    net[2].step(Message(MessageType.DURABLE, 2, 1, net[1].term - 1, index=last))
    assert net[2].commit_index < last
    net[1].step(Message(MessageType.DURABLE, 1, 2, net[1].term, index=last))
    assert net[1].commit_index < last


def test_a_follower_commits_only_what_it_holds_durably_itself() -> None:
    net = Network()
    _leading_unanswered(net)
    last = net[1].propose([b"w"])
    net.flush()
    follower = net[2]
    for app in [m for m in net.inflight if m.to == 2]:
        follower.step(app)
    ready = follower.ready()  # taken, not yet durable
    follower.step(Message(MessageType.DURABLE, 2, 1, net[1].term, index=last))
    assert follower.commit_index < last
    follower.advance(ready)
    assert follower.commit_index == last
