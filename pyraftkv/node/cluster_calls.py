"""The Cluster and Maintenance calls on the native protocol: the member list and its
changes, status, leader moves, HashKV, and backups streamed from a consistent copy."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import secrets
from typing import TYPE_CHECKING

from .. import errors
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..protocol.frames import FLAG_END
from ..protocol.methods import BY_NAME
from . import reconfig_check
from .lease_calls import require_leader
from .reply import Reply

if TYPE_CHECKING:
    from .client_connection import ClientConnection

# A backup (Snapshot call) travels in messages of this many bytes of the database.
SNAPSHOT_CHUNK_BYTES = 1 << 20


class ClusterCalls:
    """Handlers of the Cluster service and of the Maintenance calls."""

    def __init__(self, app) -> None:
        self.app = app

    def handlers(self) -> dict:
        return {
            "MemberList": self.member_list,
            "MemberAdd": self.member_add,
            "MemberRemove": self.member_remove,
            "MemberPromote": self.member_promote,
            "MemberUpdate": self.member_update,
            "Status": self.status,
            "MoveLeader": self.move_leader,
            "HashKV": self.hash_kv,
            "Hash": self.hash,
            "Snapshot": self.snapshot,
            "Alarm": self.alarm,
            "Defragment": self.defragment,
        }

    def _leader_only(self) -> None:
        """Membership changes are checked and proposed by the leader: a follower's view may
        lag (a member just added not known yet), so its client is sent there first."""
        app = self.app
        if app.leader_id and app.leader_id != app.member_id:
            error = errors.NotLeader()
            error.leader_url = app.members.client_url(app.leader_id)  # type: ignore[attr-defined]
            raise error

    def member_list(self, connection, stream, flags, body):
        rpc.MemberListRequest.FromString(body)
        response = rpc.MemberListResponse(members=self.app.members.to_rpc())
        connection.answer(stream, response)

    def member_add(self, connection, stream, flags, body):
        self._leader_only()
        from ..admin.cluster import Url, member_id
        from ..errors import ConfigError
        from ..raft.types import ConfChangeType

        request = rpc.MemberAddRequest.FromString(body)
        if not request.peerURLs:
            raise errors.InvalidArgument("etcdserver: member peer URLs are not provided")
        try:
            urls = [Url.parse(u, "peerURLs").text for u in request.peerURLs]
        except ConfigError:
            raise errors.InvalidArgument("etcdserver: given member URLs are invalid") from None
        for member in self.app.members.to_rpc():
            if set(member.peerURLs) & set(urls):
                raise errors.PeerUrlExists()
        # The id the new member computes for itself from its flags (etcd derives it the same way).
        new_id = member_id(urls, self.app.cluster_token)
        attributes = internal.MemberAttributes(
            id=new_id, peer_urls=urls, is_learner=request.isLearner
        )
        change = ConfChangeType.ADD_LEARNER if request.isLearner else ConfChangeType.ADD_VOTER
        if self.app.strict_reconfig_check and not request.isLearner:
            reconfig_check.check_add_voter(self.app.members, self.app.reachable())
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberAdd"].number,
            int(change),
            new_id,
            attributes.SerializeToString(),
        )

    def member_remove(self, connection, stream, flags, body):
        self._leader_only()
        from ..raft.types import ConfChangeType

        request = rpc.MemberRemoveRequest.FromString(body)
        if request.ID not in self.app.members:
            raise errors.MemberNotFound()
        if self.app.strict_reconfig_check:
            reconfig_check.check_remove_voter(self.app.members, request.ID, self.app.reachable())
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberRemove"].number,
            int(ConfChangeType.REMOVE_MEMBER),
            request.ID,
            b"",
        )

    def member_promote(self, connection, stream, flags, body):
        self._leader_only()
        from ..raft.types import ConfChangeType

        request = rpc.MemberPromoteRequest.FromString(body)
        member = self.app.members.get(request.ID)
        if member is None:
            raise errors.MemberNotFound()
        if not member.is_learner:
            raise errors.MemberNotLearner()
        if self.app.strict_reconfig_check:
            reconfig_check.check_promote(self.app.members)
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberPromote"].number,
            int(ConfChangeType.PROMOTE_LEARNER),
            request.ID,
            b"",
        )

    def member_update(self, connection, stream, flags, body):
        """etcd's MemberUpdate: a conf change through the log that changes only the member's
        peer URLs; every member then dials it at the new address."""
        self._leader_only()
        from ..admin.cluster import Url
        from ..errors import ConfigError
        from ..raft.types import ConfChangeType

        request = rpc.MemberUpdateRequest.FromString(body)
        member = self.app.members.get(request.ID)
        if member is None:
            raise errors.MemberNotFound()
        if not request.peerURLs:
            raise errors.InvalidArgument("etcdserver: member peer URLs are not provided")
        try:
            urls = [Url.parse(u, "peerURLs").text for u in request.peerURLs]
        except ConfigError:
            raise errors.InvalidArgument("etcdserver: given member URLs are invalid") from None
        for other in self.app.members.to_rpc():
            if other.ID != request.ID and set(other.peerURLs) & set(urls):
                raise errors.PeerUrlExists()
        attributes = internal.MemberAttributes(
            id=request.ID, peer_urls=urls, is_learner=member.is_learner
        )
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberUpdate"].number,
            int(ConfChangeType.UPDATE_MEMBER),
            request.ID,
            attributes.SerializeToString(),
        )

    def status(self, connection, stream, flags, body):
        rpc.StatusRequest.FromString(body)
        connection.answer(stream, self.app.status())

    def move_leader(self, connection, stream, flags, body):
        request = rpc.MoveLeaderRequest.FromString(body)
        require_leader(self.app)
        if request.targetID not in self.app.members:
            raise errors.BadLeaderTransferee()
        self.app.move_leader(Reply(connection, stream), request.targetID)

    def hash_kv(self, connection, stream, flags, body):
        request = rpc.HashKVRequest.FromString(body)
        value, compact_revision = self.app.store.hash_kv(request.revision)
        response = rpc.HashKVResponse(hash=value, compact_revision=compact_revision)
        connection.answer(stream, response)

    def hash(self, connection, stream, flags, body):
        """etcd's Hash: this member's whole backend, at its current revision."""
        rpc.HashRequest.FromString(body)
        value, revision = self.app.store.hash()
        response = rpc.HashResponse(header=rpc.ResponseHeader(revision=revision), hash=value)
        connection.answer(stream, response)

    def alarm(self, connection, stream, flags, body):
        """GET reads this member's copy of the alarms after a ReadIndex round; ACTIVATE and
        DEACTIVATE go through the log (every member holds the same set)."""
        request = rpc.AlarmRequest.FromString(body)
        if request.action not in rpc.AlarmRequest.AlarmAction.values():
            raise errors.InvalidArgument("etcdserver: unknown alarm action")
        if request.alarm not in rpc.AlarmType.values():
            raise errors.InvalidArgument("etcdserver: unknown alarm type")
        if request.action == rpc.AlarmRequest.GET:  # linearizable, as etcd's (via the log)
            app = self.app
            app.read(
                Reply(connection, stream),
                lambda: rpc.AlarmResponse(alarms=app.alarms.members(request.alarm)),
                linearizable=True,
            )
            return
        self.app.propose(Reply(connection, stream), BY_NAME["Alarm"].number, body)

    def defragment(self, connection, stream, flags, body):
        rpc.DefragmentRequest.FromString(body)
        self.app.defragment()
        connection.answer(stream, rpc.DefragmentResponse())

    def snapshot(self, connection, stream, flags, body):
        if flags & FLAG_END:
            connection.cancel_task(stream)
            connection.end(stream)
            return
        rpc.SnapshotRequest.FromString(body)
        connection.start_task(stream, self._stream_snapshot(connection, stream))

    async def _stream_snapshot(self, connection: ClientConnection, stream: int) -> None:
        """A consistent copy of the store (made off the loop), in chunks, then its SHA-256
        (etcd's format: the database bytes followed by their digest), then the stream end."""
        app = self.app
        os.makedirs(app.snapshot_dir, exist_ok=True)
        # A name of its own: the same client may ask again on the same stream id, and a
        # file of an earlier incarnation may be left over.
        path = os.path.join(app.snapshot_dir, f"backup-{secrets.token_hex(8)}.db")
        copying = asyncio.ensure_future(app.copy_store(path))
        try:
            await asyncio.shield(copying)
        except asyncio.CancelledError:  # the copy runs on: remove its file once it is made
            copying.add_done_callback(lambda _: _remove(path))
            raise
        try:
            size = os.path.getsize(path)
            digest = hashlib.sha256()
            with open(path, "rb") as f:
                remaining = size + digest.digest_size
                while remaining:
                    chunk = f.read(SNAPSHOT_CHUNK_BYTES)
                    digest.update(chunk)
                    if not chunk:
                        chunk = digest.digest()
                    remaining -= len(chunk)
                    response = rpc.SnapshotResponse(
                        header=app.header(), remaining_bytes=remaining, blob=chunk
                    )
                    connection.message(stream, response.SerializeToString())
                    while connection.backlog_bytes() > 4 * SNAPSHOT_CHUNK_BYTES:
                        if connection.closed:
                            return
                        await asyncio.sleep(0.005)
            connection.end(stream)
        finally:
            _remove(path)


def _remove(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
