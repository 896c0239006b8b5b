"""--strict-reconfig-check (etcd's default): refuse a membership change that would leave the
cluster without a quorum of started voters. A member counts as started once it has a name
(it published itself, or came from --initial-cluster); one added but never started does not.
The rules and the error are etcd's (IsReadyToAddVotingMember, ...RemoveVotingMember,
...PromoteMember)."""

from __future__ import annotations

from .. import errors
from ..admin.members import MemberList


def _voters(members: MemberList) -> list:
    return [m for m in (members.get(i) for i in members.ids()) if m and not m.is_learner]


def check_add_voter(members: MemberList) -> None:
    """Adding a voter: the started voters must be a quorum of the voters after the add (a
    second voter may join a single started one, to restore a cluster from one member)."""
    voters = _voters(members)
    total, started = len(voters) + 1, sum(1 for m in voters if m.name)
    if not (started == 1 and total == 2) and started < total // 2 + 1:
        raise errors.NotEnoughStartedMembers()


def check_remove_voter(members: MemberList, member_id: int) -> None:
    """Removing a voter: the started voters left must be a quorum of the voters left."""
    rest = [m for m in _voters(members) if m.id != member_id]
    if len(rest) == len(_voters(members)):  # a learner (or unknown): no quorum at stake
        return
    if sum(1 for m in rest if m.name) < len(rest) // 2 + 1:
        raise errors.NotEnoughStartedMembers()


def check_promote(members: MemberList) -> None:
    """Promoting a learner: counted as a started voter, the started voters must be a quorum."""
    voters = _voters(members)
    total, started = len(voters) + 1, 1 + sum(1 for m in voters if m.name)
    if started < total // 2 + 1:
        raise errors.NotEnoughStartedMembers()
