"""The Lease service's calls on the native protocol: grants and revokes go through the log;
keep-alives and time-to-live are answered by the leader, which holds the deadlines."""

from __future__ import annotations

from .. import errors
from ..proto import rpc_pb2 as rpc
from ..protocol.frames import FLAG_END
from ..protocol.methods import BY_NAME
from .lessor import MAX_TTL_S, TooLargeTTL
from .reply import Reply


def require_leader(app) -> None:
    """Lease deadlines (and leader moves) live on the leader: elsewhere, point the client
    at it."""
    if app.leader_id != app.member_id:
        if not app.leader_id:
            raise errors.NoLeader()
        error = errors.NotLeader()
        error.leader_url = app.members.client_url(app.leader_id)
        raise error


class LeaseCalls:
    """Handlers of LeaseGrant, LeaseRevoke, LeaseKeepAlive, LeaseTimeToLive, LeaseLeases."""

    def __init__(self, app) -> None:
        self.app = app

    def handlers(self) -> dict:
        return {
            "LeaseGrant": self.grant,
            "LeaseRevoke": self.revoke,
            "LeaseKeepAlive": self.keep_alive,
            "LeaseTimeToLive": self.time_to_live,
            "LeaseLeases": self.leases,
        }

    def grant(self, connection, stream, flags, body):
        request = rpc.LeaseGrantRequest.FromString(body)
        if request.TTL > MAX_TTL_S:
            raise TooLargeTTL()
        if request.ID < 0:
            raise errors.InvalidArgument("etcdserver: lease ID must not be negative")
        if request.ID == 0:
            request.ID = self.app.new_lease_id()
            body = request.SerializeToString()
        self.app.propose(
            Reply(connection, stream),
            BY_NAME["LeaseGrant"].number,
            body,
            connection.user,
            connection.auth_revision,
        )

    def revoke(self, connection, stream, flags, body):
        rpc.LeaseRevokeRequest.FromString(body)
        self.app.propose(
            Reply(connection, stream),
            BY_NAME["LeaseRevoke"].number,
            body,
            connection.user,
            connection.auth_revision,
        )

    def keep_alive(self, connection, stream, flags, body):
        if flags & FLAG_END:
            connection.end(stream)
            return
        request = rpc.LeaseKeepAliveRequest.FromString(body)
        require_leader(self.app)
        ttl = self.app.lessor.renew(request.ID)
        response = rpc.LeaseKeepAliveResponse(ID=request.ID, TTL=ttl)
        connection.message(stream, self.app.stamp(response).SerializeToString())

    def time_to_live(self, connection, stream, flags, body):
        request = rpc.LeaseTimeToLiveRequest.FromString(body)
        require_leader(self.app)
        lessor = self.app.lessor
        lease = lessor.leases.get(request.ID)
        response = rpc.LeaseTimeToLiveResponse(ID=request.ID, TTL=lessor.remaining(request.ID))
        if lease is not None:
            response.grantedTTL = lease.ttl
            if request.keys:
                response.keys.extend(sorted(lease.keys))
        connection.answer(stream, response)

    def leases(self, connection, stream, flags, body):
        rpc.LeaseLeasesRequest.FromString(body)
        response = rpc.LeaseLeasesResponse(
            leases=[rpc.LeaseStatus(ID=i) for i in sorted(self.app.lessor.leases)]
        )
        connection.answer(stream, response)
