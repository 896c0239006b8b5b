"""Leader election: timeouts, votes, PreVote, CheckQuorum, and the vote persistence rule.

Quotes are from the Raft paper (Ongaro & Ousterhout 2014) and Ongaro's thesis (2014)."""

from __future__ import annotations

import random

import pytest

from pyraftkv.raft import (
    Config,
    HardState,
    Message,
    MessageType,
    RaftCore,
    Role,
)

from .network import CONFIG, Network, restored


def test_election_timeout_is_randomized_in_t_to_2t() -> None:
    """§5.2: "Raft uses randomized election timeouts ... chosen randomly from a fixed
    interval"; pyraftkv draws it from [T, 2T) ticks with the injected generator."""
    seen = set()
    for seed in range(200):
        core = RaftCore.bootstrap(1, {1: b"", 2: b""}, CONFIG, random.Random(seed))
        ticks = 0
        while core.role == Role.FOLLOWER:
            core.tick()
            ticks += 1
            assert ticks < 2 * CONFIG.election_ticks
        seen.add(ticks)
    assert min(seen) == CONFIG.election_ticks
    assert max(seen) == 2 * CONFIG.election_ticks - 1


def test_same_seed_same_behaviour() -> None:
    """Determinism: the only randomness is the injected generator."""

    def run(seed: int) -> list:
        net = Network(seed=seed)
        net.tick_all(40)
        return [(m.type, m.sender, m.to, m.term) for m in net.sent]

    assert run(7) == run(7)


def test_candidate_votes_for_itself_and_asks_every_voter() -> None:
    """§5.2: "a follower increments its current term and transitions to candidate state.
    It then votes for itself and issues RequestVote RPCs in parallel." The requests leave
    only after the term and self-vote are durable."""
    config = Config(election_ticks=10, pre_vote=False)
    core = RaftCore.bootstrap(1, {1: b"", 2: b"", 3: b""}, config, random.Random(1))
    core.advance(core.ready())
    while core.role == Role.FOLLOWER:
        core.tick()
    assert (core.role, core.term, core.vote) == (Role.CANDIDATE, 2, 1)
    ready = core.ready()
    assert ready.hard_state == HardState(2, 1, 3) and ready.must_sync
    assert ready.messages == []
    assert sorted(m.to for m in ready.persisted_messages if m.type == MessageType.VOTE) == [2, 3]


def test_single_voter_leads_only_once_its_vote_is_durable() -> None:
    """A vote is a promise that must survive a crash, the candidate's own included."""
    core = RaftCore.bootstrap(1, {1: b""}, CONFIG, random.Random(1))
    core.advance(core.ready())
    while core.role != Role.CANDIDATE:
        core.tick()
    ready = core.ready()
    assert core.role == Role.CANDIDATE
    core.advance(ready)
    assert core.role == Role.LEADER


def test_one_vote_per_term_first_come_first_served() -> None:
    """§5.2: "Each server will vote for at most one candidate in a given term, on a
    first-come-first-served basis"."""
    core = RaftCore.bootstrap(1, {1: b"", 2: b"", 3: b""}, CONFIG, random.Random(1))
    core.advance(core.ready())
    core.step(Message(MessageType.VOTE, 1, 2, 5, log_term=1, index=3))
    core.step(Message(MessageType.VOTE, 1, 3, 5, log_term=1, index=3))
    core.step(Message(MessageType.VOTE, 1, 2, 5, log_term=1, index=3))  # retry: same answer
    ready = core.ready()
    answers = [(m.to, m.reject) for m in ready.persisted_messages]
    assert answers == [(2, False), (3, True), (2, False)]
    assert ready.hard_state == HardState(5, 2, 3)
    assert ready.messages == []  # votes wait for durability


def test_vote_denied_to_a_less_up_to_date_log() -> None:
    """§5.4.1: "the voter denies its vote if its own log is more up-to-date than that of
    the candidate. ... If the logs have last entries with different terms, then the log
    with the later term is more up-to-date. If the logs end with the same term, then
    whichever log is longer is more up-to-date." """
    voter = restored(1, [2, 2], term=2, voters=[1, 2, 3])  # last entry (5, term 2)
    cases = [((4, 2), True), ((5, 1), True), ((5, 2), False), ((6, 2), False), ((3, 3), False)]
    for n, ((index, log_term), rejected) in enumerate(cases):
        voter.step(Message(MessageType.VOTE, 1, 2, 10 + n, log_term=log_term, index=index))
        (answer,) = voter.ready().persisted_messages
        assert answer.reject is rejected, (index, log_term)


def test_election_elects_exactly_one_leader_and_commits_a_noop() -> None:
    """§8: "having each leader commit a blank no-op entry into the log at the start of
    its term"."""
    net = Network()
    net.campaign(1)
    leader = net.leader()
    assert leader.id == 1
    assert leader.log.entries[-1].data == b"" and leader.log.entries[-1].term == leader.term
    assert all(core.commit_index == leader.log.last_index for core in net.cores.values())
    assert all(core.leader_id == 1 for core in net.cores.values())


def test_candidate_returns_to_follower_on_append_from_leader_of_same_term() -> None:
    """§5.2: "If the leader's term ... is at least as large as the candidate's current
    term, then the candidate recognizes the leader as legitimate and returns to follower
    state." """
    config = Config(election_ticks=10, pre_vote=False)
    net = Network(config=config)
    net.isolate(3)
    net.campaign(3)
    assert net[3].role == Role.CANDIDATE
    net.heal()
    term = net[3].term
    net[3].step(Message(MessageType.APP, 3, 1, term, log_term=1, index=3, commit=3))
    assert net[3].role == Role.FOLLOWER and net[3].leader_id == 1


def test_higher_term_turns_leader_into_follower() -> None:
    """§5.1: "If a candidate or leader discovers that its term is out of date, it
    immediately reverts to follower state." """
    net = Network()
    net.campaign(1)
    leader = net[1]
    leader.step(Message(MessageType.HEARTBEAT_RESP, 1, 2, leader.term + 3))
    assert (leader.role, leader.term, leader.leader_id) == (Role.FOLLOWER, leader.term, 0)


def test_stale_term_messages_are_rejected() -> None:
    """§5.1: "If a server receives a request with a stale term number, it rejects the
    request." The stale leader is told the newer term."""
    net = Network()
    net.campaign(1)
    net.campaign(2)  # term moves on; 1 follows 2
    follower = net[1]
    follower.step(Message(MessageType.APP, 1, 3, 1, log_term=1, index=3, commit=3, entries=()))
    (answer,) = follower.ready().persisted_messages
    assert answer.type == MessageType.APP_RESP and answer.term == follower.term


def test_prevote_keeps_a_returning_partitioned_member_from_disrupting() -> None:
    """Thesis §9.6: with PreVote "a server would first ask other servers whether its log
    was up-to-date enough to get their vote", so a member rejoining from a partition
    does not force the healthy leader out by a higher term."""
    net = Network()
    net.campaign(1)
    term = net[1].term
    net.isolate(3)
    for _ in range(100):
        net[3].tick()
        net.deliver()
    assert net[3].term == term  # pre-votes never raise the term
    net.heal()
    net.tick_all(30)
    assert net.leader().id == 1 and net[1].term == term


def test_without_prevote_the_returning_member_disrupts() -> None:
    """The counterpart of the PreVote test: proves that test can fail."""
    net = Network(config=Config(election_ticks=10, pre_vote=False, check_quorum=False))
    net.campaign(1)
    term = net[1].term
    net.isolate(3)
    net.tick(3, 20 * 10)
    assert net[3].term > term
    net.heal()
    net.tick_all(30)
    assert net[1].term > term


def test_check_quorum_leader_steps_down_when_cut_off() -> None:
    """Thesis §6.2: "a leader steps down if an election timeout elapses without a
    successful round of heartbeats to a majority of its cluster"."""
    net = Network()
    net.campaign(1)
    net.isolate(1)
    for _ in range(2 * CONFIG.election_ticks):
        net[1].tick()
        net.deliver()
    assert net[1].role == Role.FOLLOWER and net[1].leader_id == 0


def test_leader_lease_ignores_vote_requests() -> None:
    """Thesis §4.2.3: "if a server receives a RequestVote request within the minimum
    election timeout of hearing from a current leader, it does not update its term or
    grant its vote"."""
    net = Network()
    net.campaign(1)
    follower = net[2]
    term = follower.term
    follower.step(Message(MessageType.VOTE, 2, 3, term + 1, log_term=9, index=99))
    follower.step(Message(MessageType.PRE_VOTE, 2, 3, term + 1, log_term=9, index=99))
    assert follower.term == term and not follower.has_ready()


def test_pre_candidate_does_not_change_term_or_vote() -> None:
    net = Network()
    net.isolate(2)
    net.campaign(2)
    assert net[2].role == Role.PRE_CANDIDATE
    assert (net[2].term, net[2].vote) == (1, 0)


@pytest.mark.parametrize("msg_to", [2, 0])
def test_step_refuses_misrouted_messages(msg_to: int) -> None:
    net = Network()
    with pytest.raises(ValueError):
        net[1].step(Message(MessageType.HEARTBEAT, msg_to, 3, 1))


def test_votes_from_an_older_term_are_not_counted() -> None:
    """§5.1: stale-term messages are rejected: a grant from an earlier election must not
    count toward the current one."""
    config = Config(election_ticks=10, pre_vote=False)
    net = Network(ids=[1, 2, 3, 4, 5], config=config)
    net.isolate(1)
    candidate = net[1]
    while candidate.term < 3:  # two elections without answers
        candidate.tick()
    assert (candidate.role, candidate.term) == (Role.CANDIDATE, 3)
    ready = candidate.ready()
    candidate.advance(ready)
    for voter in (2, 3):
        candidate.step(Message(MessageType.VOTE_RESP, 1, voter, 2))  # term-2 grants
    assert candidate.role == Role.CANDIDATE


def test_prevote_denied_to_a_less_up_to_date_log() -> None:
    """Thesis §9.6: a pre-vote is granted only if the candidate's "log was up-to-date
    enough to get their vote"."""
    voter = restored(1, [2, 2], term=2, voters=[1, 2, 3])
    voter.step(Message(MessageType.PRE_VOTE, 1, 2, 3, log_term=1, index=9))
    (answer,) = voter.ready().messages
    assert answer.type == MessageType.PRE_VOTE_RESP and answer.reject
    voter.step(Message(MessageType.PRE_VOTE, 1, 2, 3, log_term=2, index=9))
    (answer,) = voter.ready().messages
    assert not answer.reject and voter.term == 2  # granted, term unchanged
