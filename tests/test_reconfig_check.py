"""etcd's --strict-reconfig-check rules for membership changes, on member lists: the
started-quorum rule and the reachable-quorum rule (ids 1..n; ``reachable`` as the leader
sees it, itself included)."""

from __future__ import annotations

import pytest

from pyraftkv.admin.members import MemberList
from pyraftkv.errors import NotEnoughStartedMembers, UnhealthyCluster
from pyraftkv.node import reconfig_check
from pyraftkv.proto import raft_internal_pb2 as internal


def members(started: int, unstarted: int = 0, learners: int = 0) -> MemberList:
    result = MemberList()
    for i in range(started + unstarted + learners):
        result.add(
            internal.MemberAttributes(
                id=i + 1, name=f"m{i}" if i < started else "", is_learner=i >= started + unstarted
            )
        )
    return result


@pytest.mark.parametrize(
    ("started", "unstarted", "allowed"),
    [(1, 0, True), (3, 1, True), (3, 2, False), (2, 0, True), (2, 1, False), (1, 1, False)],
)
def test_add_voter(started, unstarted, allowed):
    check = lambda: reconfig_check.check_add_voter(members(started, unstarted))  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(NotEnoughStartedMembers, match="not enough started members"):
            check()


def test_remove_voter_counts_the_started_voters_left():
    five = members(3, 2)
    reconfig_check.check_remove_voter(five, 4)  # an unstarted one: 3 of 4 started left
    with pytest.raises(NotEnoughStartedMembers):
        reconfig_check.check_remove_voter(five, 1)  # 2 of 4 started left
    reconfig_check.check_remove_voter(members(1, 2, learners=1), 4)  # a learner: no quorum


def test_promote_counts_the_learner_as_started():
    reconfig_check.check_promote(members(2, 0, learners=1))  # 3 of 3
    reconfig_check.check_promote(members(2, 1, learners=1))  # 3 of 4
    with pytest.raises(NotEnoughStartedMembers):
        reconfig_check.check_promote(members(2, 3, learners=1))  # 3 of 6


@pytest.mark.parametrize(
    ("started", "unstarted", "reachable", "allowed"),
    [
        (3, 0, {1, 2, 3}, True),
        (3, 0, {1, 2}, False),  # one started voter not heard from lately
        (3, 0, None, True),  # unknown (not the leader): the started rule only
        (3, 1, {1, 2, 3}, True),  # a never-started voter is not waited for
        (1, 0, {1}, True),
        (5, 0, {1, 2, 3, 4}, False),  # even with a reachable quorum, as etcd
    ],
)
def test_add_voter_needs_every_started_voter_reachable(started, unstarted, reachable, allowed):
    check = lambda: reconfig_check.check_add_voter(members(started, unstarted), reachable)  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(UnhealthyCluster, match="^etcdserver: unhealthy cluster$"):
            check()


@pytest.mark.parametrize(
    ("size", "reachable", "removed", "allowed"),
    [
        (3, {1, 2, 3}, 3, True),  # 2 of 2 reachable left
        (3, {1, 2}, 3, True),  # removing the unreachable one takes nothing away
        (3, {1, 2}, 2, False),  # 1 of 2 reachable left
        (3, {1, 2}, 1, False),  # the leader itself: 1 of 2 reachable left
        (5, {1, 2, 3, 4}, 1, True),  # 3 of 4 reachable left
        (5, {1, 2, 3}, 1, False),  # 2 of 4 reachable left
        (5, {1, 2, 3}, 5, True),  # an unreachable one
        (3, None, 2, True),  # unknown (not the leader): the started rule only
    ],
)
def test_remove_voter_keeps_a_reachable_quorum(size, reachable, removed, allowed):
    check = lambda: reconfig_check.check_remove_voter(members(size), removed, reachable)  # noqa: E731
    if allowed:
        check()
    else:
        with pytest.raises(UnhealthyCluster, match="^etcdserver: unhealthy cluster$"):
            check()


def test_removing_a_learner_ignores_reachability():
    reconfig_check.check_remove_voter(members(3, learners=1), 4, {1})
