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

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable

from google.protobuf.message import DecodeError, Message

from .. import errors
from ..mvcc import validation
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from ..protocol.frames import (
    END,
    FLAG_END,
    FLAG_TOKEN,
    FLAG_USER,
    FRAME_OVERHEAD_BYTES,
    MESSAGE,
    REPLY,
    FrameDecoder,
    ProtocolError,
    encode_error,
    encode_frame,
    split_token,
)
from ..protocol.methods import BY_NAME, BY_NUMBER
from .application import Application
from .auth_service import AuthService
from .concurrency import Concurrency
from .lessor import MAX_TTL_S, TooLargeTTL
from .reply import Reply
from .tls import common_name
from .watch_hub import Watcher

# A backup (Snapshot call) travels in messages of this many bytes of the database.
SNAPSHOT_CHUNK_BYTES = 1 << 20

log = logging.getLogger("pyraftkv.clients")


class ClientConnection(asyncio.Protocol):
    """One client's connection."""

    def __init__(self, server: ClientServer) -> None:
        self.server = server
        self.app = server.app
        self._decoder = FrameDecoder(server.max_request_bytes + FRAME_OVERHEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self.closed = False
        self.watch_streams: dict[int, WatchStream] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        # CN of the client certificate the TLS layer verified ('' without one): the user
        # name of this connection's requests under --client-cert-auth.
        self.cert_user = ""
        # The user the request being handled runs as ('' with auth off).
        self.user = ""
        # A local relay (the gRPC front end) may name the user of each request it forwards
        # (FLAG_USER); whoever accepts the relay's connection marks it trusted.
        self.trusted_relay = False

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.cert_user = common_name(transport.get_extra_info("peercert"))
        self.server.connections.add(self)
        if self.server.paused:
            transport.pause_reading()  # type: ignore[attr-defined]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        for stream in self.watch_streams.values():
            stream.close()
        self.watch_streams.clear()
        for task in list(self.tasks.values()):
            task.cancel()
        for closer in list(self.server.on_connection_lost):
            closer(self)

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self.abort(str(exc))
            return
        server = self.server
        handlers = server.handlers
        auth = server.app.auth
        for stream, method, flags, body in frames:
            if stream == 0:
                self.abort("stream id 0 is reserved")
                return
            handler = handlers.get(method)
            if handler is None:
                self.error(stream, errors.UnknownMethod(f"unknown method {method}"))
                continue
            try:
                if flags & (FLAG_TOKEN | FLAG_USER) or auth.enabled:
                    token, relayed = "", None
                    try:
                        if flags & FLAG_USER:
                            relayed, body = split_token(body)
                        if flags & FLAG_TOKEN:
                            token, body = split_token(body)
                    except ProtocolError as exc:
                        self.abort(str(exc))
                        return
                    if relayed is not None and not self.trusted_relay:
                        raise errors.PermissionDenied(
                            "etcdserver: permission denied (a user field from a connection "
                            "that is not a trusted relay)"
                        )
                    self.user = server.auth.admit(self, method, token, body, relayed)
                else:
                    self.user = ""
                handler(self, stream, flags, body)
            except DecodeError:
                name = BY_NUMBER[method].name if method in BY_NUMBER else method
                self.error(
                    stream, errors.InvalidArgument(f"etcdserver: malformed {name} request message")
                )
            except errors.ApiError as exc:
                self.error(stream, exc, getattr(exc, "leader_url", ""))

    def start_task(self, stream: int, coroutine) -> None:
        """Run a call that may wait (a lock, a campaign) and answer when it finishes; it is
        cancelled if the connection goes."""
        task = self.app.loop.create_task(coroutine)
        self.tasks[stream] = task

        def done(task) -> None:
            self.tasks.pop(stream, None)
            if task.cancelled():
                return
            error = task.exception()
            if error is None:
                result = task.result()
                if result is not None:  # None: the call streamed its own answer
                    self.answer(stream, result)
            elif isinstance(error, errors.ApiError):
                self.error(stream, error, getattr(error, "leader_url", ""))
            else:
                raise error  # a bug: let the loop's handler stop the member

        task.add_done_callback(done)

    def cancel_task(self, stream: int) -> None:
        task = self.tasks.pop(stream, None)
        if task is not None:
            task.cancel()

    def pause(self, paused: bool) -> None:
        if self._transport is not None and not self.closed:
            if paused:
                self._transport.pause_reading()
            else:
                self._transport.resume_reading()

    # -- output ------------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._out:
            self.app.loop.call_soon(self._flush)
        self._out.append(data)
        self._out_bytes += len(data)

    def _flush(self) -> None:
        # A transport can close (peer reset) before connection_lost runs: check both.
        if self._out and not self.closed and not self._transport.is_closing():
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_bytes = 0

    def reply(self, stream: int, body: bytes) -> None:
        self._queue(encode_frame(stream, REPLY, body))

    def answer(self, stream: int, response: Message) -> None:
        """Reply with a response message, its header filled in for this member."""
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        self._queue(encode_frame(stream, MESSAGE, body))

    def end(self, stream: int) -> None:
        self._queue(encode_frame(stream, END))

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        self._queue(encode_error(stream, error.code, error.message, leader_url))

    def backlog_bytes(self) -> int:
        if self.closed or self._transport is None:
            return 0
        return self._out_bytes + self._transport.get_write_buffer_size()

    def abort(self, reason: str) -> None:
        """Close a connection whose bytes broke the protocol, telling the client why."""
        log.warning("closing client connection: %s", reason)
        self.close_with(errors.INVALID_ARGUMENT, f"protocol error: {reason}")

    def close_with(self, code: int, message: str) -> None:
        """Close the connection after an error on stream 0 (the connection itself)."""
        self._queue(encode_error(0, code, message))
        self._flush()
        self.closed = True
        if self._transport is not None:
            self._transport.close()


class WatchStream:
    """The watchers a client created on one Watch stream (etcd's watch stream)."""

    def __init__(self, connection: ClientConnection, stream: int) -> None:
        self.connection = connection
        self.stream = stream
        self.watchers: dict[int, Watcher] = {}
        self._next_watch_id = 0

    # WatchSink
    def send_message(self, body: bytes) -> None:
        self.connection.message(self.stream, body)

    def backlog_bytes(self) -> int:
        return self.connection.backlog_bytes()

    def handle(self, request: rpc.WatchRequest) -> None:
        app = self.connection.app
        hub = app.watch_hub
        which = request.WhichOneof("request_union")
        if which == "create_request":
            create = request.create_request
            try:
                self.connection.server.auth.check_watch(self.connection.user, create)
            except errors.ApiError as exc:  # as etcd: a created-and-canceled answer
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=-1,
                        created=True,
                        canceled=True,
                        cancel_reason=errors.grpc_text(exc),
                    ).SerializeToString()
                )
                return
            watch_id = create.watch_id
            if watch_id == 0:
                while self._next_watch_id in self.watchers:
                    self._next_watch_id += 1
                watch_id = self._next_watch_id
                self._next_watch_id += 1
            elif watch_id in self.watchers:
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=watch_id,
                        created=True,
                        canceled=True,
                        cancel_reason="etcdserver: watch ID already in use",
                    ).SerializeToString()
                )
                return
            start = create.start_revision or app.store.revision + 1
            watcher = Watcher(watch_id, self, create, start)
            self.watchers[watch_id] = watcher
            self.send_message(
                rpc.WatchResponse(
                    header=app.header(), watch_id=watch_id, created=True
                ).SerializeToString()
            )
            hub.add(watcher)
            app.schedule_catch_up()
        elif which == "cancel_request":
            watcher = self.watchers.pop(request.cancel_request.watch_id, None)
            if watcher is not None:
                hub.remove(watcher)
                self.send_message(
                    rpc.WatchResponse(
                        header=app.header(),
                        watch_id=watcher.watch_id,
                        canceled=True,
                    ).SerializeToString()
                )
        elif which == "progress_request" and all(w.synced for w in self.watchers.values()):
            # etcd answers a progress request with watch id -1 for the whole stream.
            self.send_message(
                rpc.WatchResponse(header=app.header(), watch_id=-1).SerializeToString()
            )

    def close(self) -> None:
        hub = self.connection.app.watch_hub
        for watcher in self.watchers.values():
            hub.remove(watcher)
        self.watchers.clear()


class ClientServer:
    """Every client connection of this member and the handler of each method."""

    def __init__(self, app: Application, max_request_bytes: int, auth: AuthService) -> None:
        self.app = app
        self.auth = auth
        self.max_request_bytes = max_request_bytes
        self.connections: set[ClientConnection] = set()
        self.on_connection_lost: list[Callable[[ClientConnection], None]] = []
        self.paused = False
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
            ("MemberList", self._member_list),
            ("MemberAdd", self._member_add),
            ("MemberRemove", self._member_remove),
            ("MemberPromote", self._member_promote),
            ("MemberUpdate", self._member_update),
            ("Status", self._status),
            ("HashKV", self._hash_kv),
            ("LeaseGrant", self._lease_grant),
            ("LeaseRevoke", self._lease_revoke),
            ("LeaseKeepAlive", self._lease_keep_alive),
            ("LeaseTimeToLive", self._lease_time_to_live),
            ("LeaseLeases", self._lease_leases),
            ("Observe", self._observe),
            ("MoveLeader", self._move_leader),
            ("Snapshot", self._snapshot),
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
            connection.start_task(stream, call(request))

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

    def register(self, name: str, handler: Callable[[ClientConnection, int, int, bytes], None]):
        """Route a method (by name) to ``handler(connection, stream, flags, body)``."""
        self.handlers[BY_NAME[name].number] = handler

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

        def serve() -> Message:
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
            propose(Reply(connection, stream), number, body, connection.user)

        return handler

    def _snapshot(self, connection, stream, flags, body):
        if flags & FLAG_END:
            connection.cancel_task(stream)
            return
        rpc.SnapshotRequest.FromString(body)
        connection.start_task(stream, self._stream_snapshot(connection, stream))

    async def _stream_snapshot(self, connection: ClientConnection, stream: int) -> None:
        """A consistent copy of the store (made off the loop), in chunks, then its SHA-256
        (etcd's format: the database bytes followed by their digest), then the stream end."""
        app = self.app
        os.makedirs(app.snapshot_dir, exist_ok=True)
        path = os.path.join(app.snapshot_dir, f"backup-{stream:x}-{id(connection):x}.db")
        await app.loop.run_in_executor(None, app.store.snapshot_to, path)
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
            os.unlink(path)

    def _hash_kv(self, connection, stream, flags, body):
        request = rpc.HashKVRequest.FromString(body)
        value, compact_revision = self.app.store.hash_kv(request.revision)
        response = rpc.HashKVResponse(hash=value, compact_revision=compact_revision)
        connection.answer(stream, response)

    # -- leases ------------------------------------------------------------------------------

    def _require_leader(self) -> None:
        """Lease deadlines live on the leader: elsewhere, point the client at it."""
        app = self.app
        if app.leader_id != app.member_id:
            if not app.leader_id:
                raise errors.NoLeader()
            error = errors.NotLeader()
            error.leader_url = app.members.client_url(app.leader_id)
            raise error

    def _lease_grant(self, connection, stream, flags, body):
        request = rpc.LeaseGrantRequest.FromString(body)
        if request.TTL > MAX_TTL_S:
            raise TooLargeTTL()
        if request.ID < 0:
            raise errors.InvalidArgument("etcdserver: lease ID must not be negative")
        if request.ID == 0:
            request.ID = self.app.new_lease_id()
            body = request.SerializeToString()
        self.app.propose(Reply(connection, stream), BY_NAME["LeaseGrant"].number, body)

    def _lease_revoke(self, connection, stream, flags, body):
        rpc.LeaseRevokeRequest.FromString(body)
        self.app.propose(Reply(connection, stream), BY_NAME["LeaseRevoke"].number, body)

    def _lease_keep_alive(self, connection, stream, flags, body):
        if flags & FLAG_END:
            connection.end(stream)
            return
        request = rpc.LeaseKeepAliveRequest.FromString(body)
        self._require_leader()
        ttl = self.app.lessor.renew(request.ID)
        response = rpc.LeaseKeepAliveResponse(ID=request.ID, TTL=ttl)
        connection.message(stream, self.app.stamp(response).SerializeToString())

    def _lease_time_to_live(self, connection, stream, flags, body):
        request = rpc.LeaseTimeToLiveRequest.FromString(body)
        self._require_leader()
        lessor = self.app.lessor
        lease = lessor.leases.get(request.ID)
        response = rpc.LeaseTimeToLiveResponse(ID=request.ID, TTL=lessor.remaining(request.ID))
        if lease is not None:
            response.grantedTTL = lease.ttl
            if request.keys:
                response.keys.extend(sorted(lease.keys))
        connection.answer(stream, response)

    def _lease_leases(self, connection, stream, flags, body):
        rpc.LeaseLeasesRequest.FromString(body)
        response = rpc.LeaseLeasesResponse(
            leases=[rpc.LeaseStatus(ID=i) for i in sorted(self.app.lessor.leases)]
        )
        connection.answer(stream, response)

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
            watch_stream = connection.watch_streams[stream] = WatchStream(connection, stream)
        watch_stream.handle(rpc.WatchRequest.FromString(body))

    # -- cluster and maintenance ---------------------------------------------------------------

    def _member_list(self, connection, stream, flags, body):
        rpc.MemberListRequest.FromString(body)
        response = rpc.MemberListResponse(members=self.app.members.to_rpc())
        connection.answer(stream, response)

    def _member_add(self, connection, stream, flags, body):
        from ..admin.cluster import Url, member_id
        from ..raft.types import ConfChangeType

        request = rpc.MemberAddRequest.FromString(body)
        if not request.peerURLs:
            raise errors.InvalidArgument("etcdserver: member peer URLs are not provided")
        urls = [Url.parse(u, "peerURLs").text for u in request.peerURLs]
        for member in self.app.members.to_rpc():
            if set(member.peerURLs) & set(urls):
                raise errors.InvalidArgument("etcdserver: peerURL exists")
        # The id the new member computes for itself from its flags (etcd derives it the same way).
        new_id = member_id(urls, self.app.cluster_token)
        attributes = internal.MemberAttributes(
            id=new_id, peer_urls=urls, is_learner=request.isLearner
        )
        change = ConfChangeType.ADD_LEARNER if request.isLearner else ConfChangeType.ADD_VOTER
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberAdd"].number,
            int(change),
            new_id,
            attributes.SerializeToString(),
        )

    def _member_remove(self, connection, stream, flags, body):
        from ..raft.types import ConfChangeType

        request = rpc.MemberRemoveRequest.FromString(body)
        if request.ID not in self.app.members:
            raise errors.ApiError("etcdserver: member not found")
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberRemove"].number,
            int(ConfChangeType.REMOVE_MEMBER),
            request.ID,
            b"",
        )

    def _member_promote(self, connection, stream, flags, body):
        from ..raft.types import ConfChangeType

        request = rpc.MemberPromoteRequest.FromString(body)
        member = self.app.members.get(request.ID)
        if member is None:
            raise errors.ApiError("etcdserver: member not found")
        if not member.is_learner:
            raise errors.ApiError("etcdserver: can only promote a learner member")
        self.app.change_membership(
            Reply(connection, stream),
            BY_NAME["MemberPromote"].number,
            int(ConfChangeType.PROMOTE_LEARNER),
            request.ID,
            b"",
        )

    def _member_update(self, connection, stream, flags, body):
        raise errors.ApiError("etcdserver: member update is not supported by pyraftkv yet")

    def _status(self, connection, stream, flags, body):
        rpc.StatusRequest.FromString(body)
        connection.answer(stream, self.app.status())

    def _move_leader(self, connection, stream, flags, body):
        request = rpc.MoveLeaderRequest.FromString(body)
        self._require_leader()
        if request.targetID not in self.app.members:
            raise errors.ApiError("etcdserver: bad leader transferee")
        self.app.move_leader(Reply(connection, stream), request.targetID)
