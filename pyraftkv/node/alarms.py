"""The cluster's alarms, as etcd's: (member, alarm type) pairs raised and cleared through the
log, so every member holds the same set and refuses the same writes. They live in the store's
meta table (they survive restarts, snapshots and backups).

NOSPACE is raised by a member whose backend passed --quota-backend-bytes; while it is set,
writes that add data are refused on every member until `alarm disarm`. CORRUPT is raised by
the corruption check and names the member whose hash differs."""

from __future__ import annotations

from typing import Any

from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME

META_KEY = b"alarms"
NOSPACE = rpc.NOSPACE
CORRUPT = rpc.CORRUPT
# While CORRUPT is raised these are refused with "etcdserver: corrupt cluster" (etcd's list);
# reads go on, so data can be inspected and saved.
REFUSED_WHEN_CORRUPT = frozenset(
    BY_NAME[name].number
    for name in ("Put", "DeleteRange", "Txn", "Compact", "LeaseGrant", "LeaseRevoke")
)


class Alarms:
    """The alarm set of one member's store (the same on every member)."""

    def __init__(self, raised: set[tuple[int, int]] | None = None) -> None:
        self.raised: set[tuple[int, int]] = raised or set()

    @classmethod
    def load(cls, store: Any) -> Alarms:
        """The alarms kept in ``store`` (none in a store that never had one)."""
        response = rpc.AlarmResponse.FromString(store.get_meta(META_KEY) or b"")
        return cls({(a.memberID, a.alarm) for a in response.alarms})

    def has(self, alarm: int) -> bool:
        """Whether any member has ``alarm`` raised (asked for every write: no alarm is the
        case to answer without a loop)."""
        return bool(self.raised) and any(kind == alarm for _, kind in self.raised)

    def has_for(self, member: int, alarm: int) -> bool:
        return (member, alarm) in self.raised

    def members(self, kind: int = rpc.NONE) -> list[rpc.AlarmMember]:
        """Every alarm raised (of type ``kind`` unless NONE), ordered by member then type
        (etcd lists them so)."""
        return [
            rpc.AlarmMember(memberID=m, alarm=a)
            for m, a in sorted(self.raised)
            if kind in (rpc.NONE, a)
        ]

    def apply(self, batch: Any, body: bytes) -> tuple[rpc.AlarmResponse, None]:
        """A committed Alarm ACTIVATE or DEACTIVATE; answers with the alarms it changed."""
        request = rpc.AlarmRequest.FromString(body)
        pair = (request.memberID, request.alarm)
        response = rpc.AlarmResponse()
        if request.action == rpc.AlarmRequest.ACTIVATE:
            if request.alarm == rpc.NONE:
                return response, None
            self.raised.add(pair)
        elif request.action == rpc.AlarmRequest.DEACTIVATE:
            if pair not in self.raised:
                return response, None
            self.raised.discard(pair)
        else:
            return rpc.AlarmResponse(alarms=self.members()), None
        response.alarms.add(memberID=request.memberID, alarm=request.alarm)
        batch.put_meta(META_KEY, rpc.AlarmResponse(alarms=self.members()).SerializeToString())
        return response, None
