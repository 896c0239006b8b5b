"""--strict-reconfig-check (etcd's default): refuse a membership change that would leave the
cluster without a quorum of started voters. A member counts as started once it has a name
(it published itself, or came from --initial-cluster); one added but never started does not.
The rules and the error are etcd's (IsReadyToAddVotingMember, ...RemoveVotingMember,
...PromoteMember).

The second rule, on the leader: a change must not break the quorum of voters it can reach.
``reachable`` is the set of members the leader heard from in the last HEALTH_INTERVAL_S
(itself included), or None where unknown (a follower: its change is refused as not the
leader's anyway). Refusals are etcd's "etcdserver: unhealthy cluster"."""

from __future__ import annotations

from .. import errors
from ..admin.members import MemberList

# etcd's HealthInterval: how recently the leader must have heard from a voter.
HEALTH_INTERVAL_S = 5.0


def _voters(members: MemberList) -> list:
    return [m for m in (members.get(i) for i in members.ids()) if m and not m.is_learner]


def check_add_voter(members: MemberList, reachable: set[int] | None = None) -> None:
    """Adding a voter: the started voters must be a quorum of the voters after the add (a
    second voter may join a single started one, to restore a cluster from one member), and
    every started voter must be reachable (the newcomer counts in the quorum at once)."""
    voters = _voters(members)
    total, started = len(voters) + 1, sum(1 for m in voters if m.name)
    if not (started == 1 and total == 2) and started < total // 2 + 1:
        raise errors.NotEnoughStartedMembers()
    if reachable is not None and any(m.name and m.id not in reachable for m in voters):
        raise errors.UnhealthyCluster()


def check_remove_voter(
    members: MemberList, member_id: int, reachable: set[int] | None = None
) -> None:
    """Removing a voter: the started voters left must be a quorum of the voters left, and
    so must the reachable ones (as etcd counts them: removing an unreachable voter takes
    nothing from the reachable quorum, so it is always allowed)."""
    voters = _voters(members)
    rest = [m for m in voters if m.id != member_id]
    if len(rest) == len(voters):  # a learner (or unknown): no quorum at stake
        return
    if sum(1 for m in rest if m.name) < len(rest) // 2 + 1:
        raise errors.NotEnoughStartedMembers()
    if reachable is None or member_id not in reachable:
        return
    if sum(1 for m in rest if m.id in reachable) < len(rest) // 2 + 1:
        raise errors.UnhealthyCluster()


def check_promote(members: MemberList) -> None:
    """Promoting a learner: counted as a started voter, the started voters must be a quorum."""
    voters = _voters(members)
    total, started = len(voters) + 1, 1 + sum(1 for m in voters if m.name)
    if started < total // 2 + 1:
        raise errors.NotEnoughStartedMembers()
