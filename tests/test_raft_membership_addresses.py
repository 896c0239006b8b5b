"""When the Raft process knows an added member's address: from the moment the entry adding
it is appended (the core counts the member from then on), and no longer once that entry is
replaced by another leader's."""

from __future__ import annotations

from pyraftkv.node.raft_membership import MembershipChanges
from pyraftkv.proto import raft_internal_pb2 as internal
from pyraftkv.raft.codec import encode_conf_change
from pyraftkv.raft.types import ConfChange, ConfChangeType, Entry, EntryType, Membership


class _Transport:
    def __init__(self) -> None:
        self.removed: list[int] = []

    def remove_peer(self, member: int) -> None:
        self.removed.append(member)


class _Core:
    membership = Membership(frozenset({1, 2}))


class _Process:
    """What MembershipChanges uses of its Raft process."""

    def __init__(self) -> None:
        self.id = 1
        self.core = _Core()
        self.transport = _Transport()
        self.peer_urls: dict[int, list[str]] = {2: ["http://127.0.0.1:2"]}

    def set_peer(self, member: int, urls: list[str]) -> None:
        self.peer_urls[member] = urls


def _add(index: int, member: int, url: str) -> Entry:
    context = internal.MemberAttributes(id=member, peer_urls=[url]).SerializeToString()
    change = encode_conf_change(ConfChange(ConfChangeType.ADD_VOTER, member, context))
    return Entry(2, index, EntryType.CONF_CHANGE, change)


def test_an_added_member_is_reachable_once_appended_and_forgotten_when_replaced() -> None:
    process = _Process()
    changes = MembershipChanges(process)  # type: ignore[arg-type]
    changes.on_appended([Entry(2, 4, EntryType.NORMAL, b""), _add(5, 3, "http://h:3")], 0)
    assert process.peer_urls[3] == ["http://h:3"]
    # Another leader's entries replace index 5 on: member 3 is not in the membership now.
    changes.on_appended([Entry(3, 5, EntryType.NORMAL, b"")], truncate_from=5)
    assert 3 not in process.peer_urls and process.transport.removed == [3]
    # A member known before (the initial cluster) is kept even if an add of it is replaced.
    changes.on_appended([_add(6, 2, "http://127.0.0.1:2")], 0)
    changes.on_appended([Entry(3, 6, EntryType.NORMAL, b"")], truncate_from=6)
    assert 2 in process.peer_urls and process.transport.removed == [3]


def test_a_committed_add_stays_when_later_entries_are_replaced() -> None:
    process = _Process()
    changes = MembershipChanges(process)  # type: ignore[arg-type]
    added = _add(5, 3, "http://h:3")
    changes.on_appended([added], 0)
    process.core.membership = Membership(frozenset({1, 2, 3}))
    changes.on_committed(added)
    changes.on_appended([Entry(3, 6, EntryType.NORMAL, b"")], truncate_from=6)
    assert process.peer_urls[3] == ["http://h:3"] and process.transport.removed == []
