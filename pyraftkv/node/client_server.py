"""The native-protocol server of the application process: connections and request routing.

Each connection decodes frames (protocol/frames.py), parses the request message, checks
it, and hands it to the Application: writes are proposed, reads served or queued for a
ReadIndex round, watches registered with the watch hub. Replies written during one
event-loop iteration leave in one send per connection.

A frame that breaks the framing rules (or is larger than the request limit allows) closes
that connection with an error on stream 0; every other connection keeps being served. A
request whose message does not parse, or that fails validation, gets an error reply and
changes nothing.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message

from .. import errors
from ..mvcc import validation
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from ..protocol.frames import (
    FLAG_END,
    FLAG_LEADER,
)
from ..protocol.methods import BY_NAME, BY_NUMBER
from .application import Application
from .auth_service import AuthService, TokenAhead
from .client_connection import ClientConnection
from .cluster_calls import ClusterCalls
from .concurrency import Concurrency
from .lease_calls import LeaseCalls
from .reply import Reply
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

# A stream whose client requires a leader ends "no leader" once its member has known none
# for this many election timeouts (etcd checks once per election timeout and ends them
# after three such checks).
LEADERLESS_TIMEOUTS = 3


class ClientServer:
    """Every client connection of this member and the handler of each method."""

    def __init__(self, app: Application, max_request_bytes: int, auth: AuthService) -> None:
        self.app = app
        self.auth = auth
        self.max_request_bytes = max_request_bytes
        self.connections: set[ClientConnection] = set()
        self.on_connection_lost: list[Callable[[ClientConnection], None]] = []
        # Open streams whose client requires a leader (gRPC's hasleader metadata, a native
        # Watch's FLAG_LEADER); each has end_without_leader().
        self.leader_bound: set[Any] = set()
        self.paused = False
        # How this member dials another's https client URL (leader_relay.py); None: no TLS.
        self.leader_tls: ssl.SSLContext | None = None
        # HTTP requests: origins given CORS headers, Host names served (None: any).
        self.cors: frozenset[str] | None = None
        self.host_whitelist: frozenset[str] | None = None
        self.handlers: dict[int, Callable[[ClientConnection, int, int, bytes], None]] = {}
        app.on_pause(self._pause_all)
        writes = (
            ("Put", lambda b: validation.check_put(rpc.PutRequest.FromString(b))),
            (
                "DeleteRange",
                lambda b: validation.check_delete(rpc.DeleteRangeRequest.FromString(b)),
            ),
            ("Txn", lambda b: self.app.store.check_txn(rpc.TxnRequest.FromString(b))),
            (
                "Compact",
                lambda b: self.app.store.check_compact(rpc.CompactionRequest.FromString(b)),
            ),
        )
        for name, check in writes:
            self.register(name, self._proposer(name, check))
        self._register_service_calls()
        auth.register(self)
        for name, handler in (
            ("Range", self._range),
            ("Watch", self._watch),
            ("Observe", self._observe),
            *LeaseCalls(app).handlers().items(),
            *ClusterCalls(app).handlers().items(),
        ):
            self.register(name, handler)

    def _register_service_calls(self) -> None:
        """Lock and election calls may wait long: each runs as a task of its connection."""
        service = Concurrency(self.app)
        for name, call in (
            ("Lock", service.lock),
            ("Unlock", service.unlock),
            ("Campaign", service.campaign),
            ("Proclaim", service.proclaim),
            ("Leader", service.leader),
            ("Resign", service.resign),
        ):
            self.register(name, self._task_handler(BY_NAME[name].request, call))
        self.concurrency = service

    def _task_handler(self, parse_type, call) -> Callable:
        def handler(connection: ClientConnection, stream: int, flags: int, body: bytes) -> None:
            request = parse_type.FromString(body)
            caller = (connection.user, connection.token_revision)
            connection.start_task(stream, call(request, caller))

        return handler

    def _observe(self, connection, stream, flags, body):
        if flags & FLAG_END:
            connection.cancel_task(stream)
            connection.end(stream)
            return
        request = election_pb2.LeaderRequest.FromString(body)

        def send(response) -> None:
            self.app.stamp(response)
            connection.message(stream, response.SerializeToString())

        connection.start_task(stream, self.concurrency.observe(request, send))

    def dispatch(
        self,
        connection: Any,
        stream: int,
        method: int,
        flags: int,
        body: bytes,
        token: str = "",
        relayed: str | None = None,
    ) -> None:
        """Run one request of any protocol: auth decides its user (from ``token``, a relay's
        ``relayed`` user, or the connection's certificate), then its method's handler; an
        error fails that request only."""
        handler = self.handlers.get(method)
        if handler is None:
            connection.error(stream, errors.UnknownMethod(f"unknown method {method}"))
            return
        self.app.requests_served[method] += 1
        try:
            auth = self.app.auth
            if token or relayed is not None or auth.enabled:
                if relayed is not None and not connection.trusted_relay:
                    raise errors.PermissionDenied(
                        "etcdserver: permission denied (a user field from a connection "
                        "that is not a trusted relay)"
                    )
                user, revision, pinned = self.auth.admit(connection, method, token, body, relayed)
                connection.user, connection.auth_revision = user, revision
                connection.token_revision = pinned
            else:
                # no user: applied after auth is turned on, a write of it is refused
                connection.user, connection.auth_revision = "", auth.revision
                connection.token_revision = 0
            handler(connection, stream, flags, body)
        except DecodeError:
            name = BY_NUMBER[method].name if method in BY_NUMBER else method
            connection.error(
                stream, errors.InvalidArgument(f"etcdserver: malformed {name} request message")
            )
        except errors.ApiError as exc:
            connection.error(stream, exc, getattr(exc, "leader_url", ""))
        except TokenAhead as exc:

            def again(applied: bool) -> None:
                if connection.closed:
                    return
                if applied:
                    self.dispatch(connection, stream, method, flags, body, token, relayed)
                else:
                    connection.error(stream, errors.InvalidAuthToken())

            self.app.when_applied(exc.index, again)

    def register(self, name: str, handler: Callable[[ClientConnection, int, int, bytes], None]):
        """Route a method (by name) to ``handler(connection, stream, flags, body)``."""
        self.handlers[BY_NAME[name].number] = handler

    def close_idle(self, now: float, timeout: float) -> None:
        """Close connections that held nothing in flight and sent nothing for ``timeout``."""
        for connection in [c for c in self.connections if c.idle]:
            if now - connection.last_active > timeout:
                connection.close_with(errors.UNAVAILABLE, "etcdserver: idle connection closed")

    def _pause_all(self, paused: bool) -> None:
        self.paused = paused
        for connection in self.connections:
            connection.pause(paused)

    def check_size(self, body: bytes) -> None:
        if len(body) > self.max_request_bytes:
            raise errors.RequestTooLarge()

    # -- KV ------------------------------------------------------------------------------------

    def _range(self, connection: ClientConnection, stream: int, flags: int, body: bytes) -> None:
        request = rpc.RangeRequest.FromString(body)
        validation.check_range(request)
        app = self.app
        user, checked_at = connection.user, connection.auth_revision
        pinned, check_again = connection.token_revision, self.auth.check_read_again

        def serve() -> Message:
            if app.auth.revision != checked_at:  # auth changed while the read waited
                check_again(user, pinned, body)
            return app.store.range(request)  # the store object changes on a snapshot install

        self.app.read(Reply(connection, stream), serve, not request.serializable)

    def _proposer(self, method: str, check: Callable[[bytes], object]) -> Callable:
        """A handler that checks a write request and proposes it as it came (no re-encode)."""
        number = BY_NAME[method].number
        max_bytes = self.max_request_bytes
        propose = self.app.propose

        def handler(connection: ClientConnection, stream: int, flags: int, body: bytes) -> None:
            if len(body) > max_bytes:
                raise errors.RequestTooLarge()
            check(body)
            propose(
                Reply(connection, stream), number, body, connection.user, connection.auth_revision
            )

        return handler

    # -- watch ---------------------------------------------------------------------------------

    def _watch(self, connection: ClientConnection, stream: int, flags: int, body: bytes) -> None:
        watch_stream = connection.watch_streams.get(stream)
        if flags & FLAG_END:
            if watch_stream is not None:
                watch_stream.close()
                del connection.watch_streams[stream]
            connection.end(stream)
            return
        if watch_stream is None:
            if flags & FLAG_LEADER and not self.app.leader_id:
                connection.error(stream, errors.NoLeader())
                return
            watch_stream = connection.watch_streams[stream] = WatchStream(connection, stream)
            if flags & FLAG_LEADER:
                self.leader_bound.add(watch_stream)
        watch_stream.handle(rpc.WatchRequest.FromString(body))

    def end_leaderless_streams(self, now: float) -> None:
        """End the streams whose client requires a leader with "no leader" once this member
        has known none for LEADERLESS_TIMEOUTS election timeouts: their clients move to a
        member that has one, where a watch left here would hear nothing (etcd's rule)."""
        app = self.app
        since = app.leaderless_since
        if (
            self.leader_bound
            and since is not None
            and now - since > LEADERLESS_TIMEOUTS * app.election_timeout_s
        ):
            for stream in list(self.leader_bound):
                stream.end_without_leader()
