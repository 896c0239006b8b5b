"""The cluster's member list as the application process knows it (etcd's Member records).

It changes only by applying committed conf-change entries and attribute publications, so
every member derives the same list; it is stored with the key-value data (same LMDB
transaction as the applied index) and rebuilt from there on restart.
"""

from __future__ import annotations

from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc


class MemberList:
    """Member id -> attributes (name, peer and client URLs, learner flag)."""

    def __init__(self) -> None:
        self._members: dict[int, internal.MemberAttributes] = {}
        self.removed: set[int] = set()

    # -- persistence ------------------------------------------------------------------------

    def encode(self) -> bytes:
        """All members (and ids ever removed) as bytes for the store's metadata."""
        batch = internal.MemberAttributesList(
            members=list(self._members.values()), removed=sorted(self.removed)
        )
        return batch.SerializeToString()

    @classmethod
    def decode(cls, data: bytes) -> MemberList:
        members = cls()
        parsed = internal.MemberAttributesList.FromString(data)
        for member in parsed.members:
            members._members[member.id] = member
        members.removed = set(parsed.removed)
        return members

    # -- changes (applied from the log) ------------------------------------------------------

    def add(self, attributes: internal.MemberAttributes) -> None:
        self._members[attributes.id] = attributes
        self.removed.discard(attributes.id)

    def remove(self, member_id: int) -> None:
        self._members.pop(member_id, None)
        self.removed.add(member_id)

    def promote(self, member_id: int) -> None:
        member = self._members.get(member_id)
        if member is not None:
            member.is_learner = False

    def update_peer_urls(self, member_id: int, peer_urls: list[str]) -> None:
        """MemberUpdate: the member is now reached at these peer URLs (nothing else changes)."""
        member = self._members.get(member_id)
        if member is not None:
            del member.peer_urls[:]
            member.peer_urls.extend(peer_urls)

    def publish(self, attributes: internal.MemberAttributes) -> None:
        """A member announced its name and client URLs (peer URLs stay as configured)."""
        member = self._members.get(attributes.id)
        if member is None:
            return  # removed meanwhile
        member.name = attributes.name
        del member.client_urls[:]
        member.client_urls.extend(attributes.client_urls)

    # -- queries ------------------------------------------------------------------------------

    def __contains__(self, member_id: int) -> bool:
        return member_id in self._members

    def __len__(self) -> int:
        return len(self._members)

    def get(self, member_id: int) -> internal.MemberAttributes | None:
        return self._members.get(member_id)

    def ids(self) -> list[int]:
        return sorted(self._members)

    def client_url(self, member_id: int) -> str:
        member = self._members.get(member_id)
        return member.client_urls[0] if member is not None and member.client_urls else ""

    def to_rpc(self) -> list[rpc.Member]:
        """The members as etcd's Member messages, ordered by id."""
        return [
            rpc.Member(
                ID=m.id,
                name=m.name,
                peerURLs=list(m.peer_urls),
                clientURLs=list(m.client_urls),
                isLearner=m.is_learner,
            )
            for _, m in sorted(self._members.items())
        ]
