"""etcd's v3 gRPC API on the client port.

A connection that opens with the HTTP/2 preface is served here, on the application's
event loop: HTTP/2 by protocol/http2.py, each call becoming the native request body that
goes through ClientServer.dispatch to the handler a native frame reaches (auth,
validation, proposals, reads, watches and leases are not written again); the handler
answers through the call's ``reply``/``message``/``end``/``error``. Messages stay encoded
end to end. A general gRPC server (grpc.aio) cost a call eight times the CPU
(bench/grpc_server_cost.py), which held gRPC clients to half of etcd's throughput.

TLS ends at the client port, below this: a call's certificate user is the connection's.
The gRPC metadata ``token`` is the auth token, as etcd's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from google.protobuf.message import Message

from .. import errors
from ..protocol import http2
from ..protocol.frames import FLAG_END, FRAME_OVERHEAD_BYTES, MESSAGE, REPLY
from ..protocol.gateway import BIDIRECTIONAL
from ..protocol.methods import METHODS, Method
from .client_connection import CallTasks
from .client_port import close_after_last_word
from .http_gateway import LEADER_CALLS
from .leader_relay import call_leader, raise_if_error
from .tls import common_name
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

STREAM = 1  # each gRPC call is one stream of its own "connection"
# Answers a connection holds that its client does not take (its socket's buffer plus what
# HTTP/2 flow control holds back): past this the connection is closed.
MAX_UNREAD_BYTES = 64 << 20
# grpc.health.v1 HealthCheckResponse{status: SERVING} and {status: SERVICE_UNKNOWN},
# encoded (field 1, varint). etcd 3.4 registers the empty service name only, SERVING.
HEALTH_SERVING = b"\x08\x01"
HEALTH_SERVICE_UNKNOWN = b"\x08\x03"
# Metadata a client sends (etcd's clientv3.WithRequireLeader) for calls that must fail
# rather than wait on a member without a leader.
REQUIRE_LEADER = ("hasleader", "true")
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
SERVICES = frozenset(m.grpc_name.rsplit("/", 1)[0] for m in METHODS) | {"/grpc.health.v1.Health"}


class MessageTooLarge(errors.ApiError):
    """A request message over the gRPC receive limit, in grpc-go's words (etcd's answer)."""

    code = errors.RESOURCE_EXHAUSTED

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"grpc: received message larger than max ({size} vs. {limit})")


class GrpcCall(CallTasks):
    """One gRPC call, standing in for a native connection with one stream: what the handler
    answers goes out on the call's HTTP/2 stream."""

    trusted_relay = False  # gRPC clients never name users for others

    def __init__(self, connection: GrpcConnection, stream: int, method: Method, token: str):
        self.connection = connection
        self.stream = stream
        self.method = method
        self.token = token
        self.server = connection.server
        self.app = connection.app
        self.cert_user = connection.cert_user
        self.user = ""
        self.auth_revision = 0
        self.token_revision = 0  # a JWT token's revision, else 0
        self.closed = False
        self.watch_streams: dict[int, WatchStream] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.body: bytes | None = None  # a unary call's request
        self.relayed: asyncio.Task | None = None  # a keep-alive stream's relay, in order
        self.app.grpc_calls.started[method] += 1

    def reply(self, stream: int, body: bytes) -> None:
        """The call's answer: its one message, then the end."""
        if not self.closed:
            self.connection.h2.send_message(self.stream, body)
            self.end(stream)

    def answer(self, stream: int, response: Message) -> None:
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        if not self.closed:
            self.connection.h2.send_message(self.stream, body)
            self.connection.wrote()

    def end(self, stream: int) -> None:
        if not self.closed:
            self.connection.h2.send_trailers(self.stream)
            self._ended(errors.OK)

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if not self.closed:
            self.connection.h2.send_trailers(self.stream, error.code, error.message)
            self._ended(error.code)

    def end_without_leader(self) -> None:
        """End the call "no leader" (its client asked for a leader: REQUIRE_LEADER)."""
        self.error(STREAM, errors.NoLeader())

    def backlog_bytes(self) -> int:
        """What the call's connection sent that its client has not taken (the watch hub's
        measure of a slow watcher, as a native connection's)."""
        return self.connection.buffered()

    def _ended(self, code: int) -> None:
        self.connection.wrote()
        self.connection.calls.pop(self.stream, None)
        self.close(code)

    def close(self, code: int = errors.CANCELLED) -> None:
        """The call ended (answered, cancelled or its client went): drop what it holds."""
        if self.closed:
            return
        self.closed = True
        self.app.grpc_calls.handled[self.method, code] += 1
        self.server.leader_bound.discard(self)
        for watch in self.watch_streams.values():
            watch.close()
        self.watch_streams.clear()
        for task in list(self.tasks.values()):
            task.cancel()
        if self.relayed is not None:
            self.relayed.cancel()
        for closer in list(self.server.on_connection_lost):
            closer(self)


class GrpcConnection(asyncio.Protocol):
    """One client connection speaking gRPC (HTTP/2 with the preface already read by the
    client port, which hands it over with those bytes)."""

    def __init__(self, front: GrpcFront) -> None:
        self.front = front
        self.server = front.server
        self.app = front.server.app
        self.h2 = http2.Http2Server(front.limit)
        self.calls: dict[int, GrpcCall] = {}
        self.transport: asyncio.Transport | None = None
        self.cert_user = ""
        self._queued = False
        self._arrived = 0  # when the bytes being handled were read
        self._ended = False  # this side's GOAWAY is out: nothing more is read or written

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.cert_user = common_name(transport.get_extra_info("peercert"))
        self.write_out()  # this side's SETTINGS

    def data_received(self, data: bytes) -> None:
        if self._ended:
            return
        self._arrived = time.monotonic_ns()  # where a traced write's first stage starts
        try:
            events = self.h2.receive(data)
        except http2.ConnectionError2 as exc:
            self._close(exc.code, str(exc))
            return
        for event in events:
            if type(event) is http2.Message:
                self._message(event.stream, event.body)
            elif type(event) is http2.Request:
                self._request(event)
            elif type(event) is http2.HalfClosed:
                self._half_closed(event.stream)
            elif type(event) is http2.Reset:
                call = self.calls.pop(event.stream, None)
                if call is not None:
                    call.close()
            elif type(event) is http2.TooLarge:
                call = self.calls.get(event.stream)
                if call is not None:
                    call.error(STREAM, MessageTooLarge(event.size, self.front.limit))
        self.write_out()

    def wrote(self) -> None:
        """Answers were queued: they leave with the loop's next output callback."""
        if not self._queued:
            self._queued = True
            self.app.output.add(self)

    def write_out(self) -> None:
        self._queued = False
        transport = self.transport
        if transport is None or self._ended or transport.is_closing():
            return
        data = self.h2.data_to_send()
        if data:
            transport.write(data)
        if self.buffered() > MAX_UNREAD_BYTES:
            self._close(http2.ENHANCE_YOUR_CALM, "the client does not read its answers")

    def buffered(self) -> int:
        transport = self.transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        return held + self.h2.pending_bytes

    def _close(self, code: int, reason: str) -> None:
        log.info("closing a gRPC connection: %s", reason)
        transport = self.transport
        if transport is not None and not self._ended and not transport.is_closing():
            self._ended = True
            transport.write(self.h2.goaway(code, reason))
            close_after_last_word(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        calls, self.calls = self.calls, {}
        for call in calls.values():
            call.close()

    # Backpressure: a client not reading its socket stops this side reading its requests.
    def pause_writing(self) -> None:
        if self.transport is not None and not self._ended:
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.transport is not None:
            self.transport.resume_reading()

    # -- calls ------------------------------------------------------------------------------

    def _request(self, request: http2.Request) -> None:
        stream, path = request.stream, request.path
        method = self.front.by_path.get(path)
        if method is None:
            if path in (HEALTH_CHECK, HEALTH_WATCH):
                self.calls[stream] = _HealthCall(self, stream, path)  # type: ignore[assignment]
                return
            service = path.rsplit("/", 1)[0]
            if service in SERVICES:
                message = f"unknown method {path.rsplit('/', 1)[1]} for service {service[1:]}"
            else:
                message = f"unknown service {service[1:]}"
            self.h2.send_trailers(stream, errors.UNIMPLEMENTED, message)
            return
        require_leader = request.metadata.get(REQUIRE_LEADER[0]) == REQUIRE_LEADER[1]
        if require_leader and not self.app.leader_id:
            error = errors.NoLeader()
            self.h2.send_trailers(stream, error.code, error.message)
            return
        call = GrpcCall(self, stream, method, request.metadata.get("token", ""))
        self.calls[stream] = call
        if require_leader and method.streaming:
            self.server.leader_bound.add(call)

    def _message(self, stream: int, body: bytes) -> None:
        call = self.calls.get(stream)
        if call is None:
            return
        if type(call) is _HealthCall:
            call.body = body  # type: ignore[attr-defined]
            return
        method = call.method
        if not method.streaming:
            call.body = body
            return
        url = self.front.leader_url(method)
        if url is not None:  # a keep-alive stream on a follower: each request relayed
            previous = call.relayed
            call.relayed = self.app.loop.create_task(self._relay_one(call, url, body, previous))
            return
        self.server.dispatch(call, STREAM, method.number, 0, body, call.token)

    def _half_closed(self, stream: int) -> None:
        call = self.calls.get(stream)
        if call is None:
            return
        if type(call) is _HealthCall:
            call.run()  # type: ignore[attr-defined]
            return
        method = call.method
        if method.streaming:
            if method.name == "Watch":
                return  # as etcd's: its watches go on until the client cancels the call
            if method.name in BIDIRECTIONAL and call.relayed is None:
                self.server.dispatch(call, STREAM, method.number, FLAG_END, b"", call.token)
            elif call.relayed is not None:
                call.relayed.add_done_callback(lambda _t: call.end(STREAM))
            return
        body = call.body if call.body is not None else b""
        url = self.front.leader_url(method)
        if url is not None:
            call.tasks[STREAM] = self.app.loop.create_task(self._relay_unary(call, url, body))
            return
        proposals = self.app.proposals
        proposals.arrived_ns = self._arrived
        try:
            self.server.dispatch(call, STREAM, method.number, 0, body, call.token)
        finally:
            proposals.arrived_ns = 0

    async def _relay_unary(self, call: GrpcCall, url: str, body: bytes) -> None:
        """A call only the leader answers, on a follower: passed on, its answer returned."""
        try:
            answers = await self.front.relay(url, call.method, body, call.token)
            if call.method.name.startswith("Member"):
                await self.app.caught_up()
        except errors.ApiError as error:
            call.error(STREAM, error)
            return
        call.reply(STREAM, answers[-1] if answers else b"")

    async def _relay_one(self, call: GrpcCall, url: str, body: bytes, previous) -> None:
        if previous is not None:
            await asyncio.wait([previous])
        try:
            for answer in await self.front.relay(url, call.method, body, call.token):
                call.message(STREAM, answer)
        except errors.ApiError as error:
            call.error(STREAM, error)


class _HealthCall:
    """grpc.health.v1: ``Check`` answers SERVING for the empty service name (the only one
    etcd registers) and NOT_FOUND "unknown service" for another, as grpc-go's health server
    in etcd; ``Watch`` sends the status once and stays open until the client cancels."""

    def __init__(self, connection: GrpcConnection, stream: int, path: str) -> None:
        self.connection = connection
        self.stream = stream
        self.path = path
        self.body = b""

    def run(self) -> None:
        h2 = self.connection.h2
        known = _known_service(self.body)
        if self.path == HEALTH_WATCH:
            h2.send_message(self.stream, HEALTH_SERVING if known else HEALTH_SERVICE_UNKNOWN)
        elif known:
            h2.send_message(self.stream, HEALTH_SERVING)
            h2.send_trailers(self.stream)
            self.connection.calls.pop(self.stream, None)
        else:
            h2.send_trailers(self.stream, errors.NOT_FOUND, "unknown service")
            self.connection.calls.pop(self.stream, None)
        self.connection.wrote()

    def close(self) -> None:
        pass


def _known_service(body: bytes) -> bool:
    """Whether a HealthCheckRequest names the empty service (the only one etcd serves)."""
    try:
        return health_service(body) == ""
    except ValueError:
        return False


def health_service(body: bytes) -> str:
    """The ``service`` (field 1, string) of an encoded HealthCheckRequest."""
    service = ""
    i = 0
    while i < len(body):
        key, i = _varint(body, i)
        wire = key & 7
        if wire == 0:
            _, i = _varint(body, i)
        elif wire == 2:
            length, i = _varint(body, i)
            if i + length > len(body):
                raise ValueError("truncated")
            if key >> 3 == 1:
                service = body[i : i + length].decode()
            i += length
        elif wire in (1, 5):
            i += 8 if wire == 1 else 4
        else:
            raise ValueError("bad wire type")
    if i != len(body):
        raise ValueError("truncated")
    return service


def _varint(body: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if i >= len(body) or shift > 63:
            raise ValueError("bad varint")
        byte = body[i]
        value |= (byte & 0x7F) << shift
        i += 1
        shift += 7
        if not byte & 0x80:
            return value, i


class GrpcFront:
    """What every gRPC connection of the member shares: the method table, the message
    limit, and the relay of calls only the leader answers."""

    def __init__(self, server: Any) -> None:
        self.server = server
        # largest request message, as etcd's gRPC max receive size
        self.limit = server.max_request_bytes + FRAME_OVERHEAD_BYTES
        self.by_path = {method.grpc_name: method for method in METHODS}

    def connection(self) -> GrpcConnection:
        return GrpcConnection(self)

    def leader_url(self, method: Method) -> str | None:
        """The leader's client URL when ``method`` is answered by the leader only and this
        member is a follower (etcd's members pass these on as well)."""
        app = self.server.app
        if method.name in LEADER_CALLS and app.leader_id not in (0, app.member_id):
            return app.members.client_url(app.leader_id)
        return None

    async def relay(self, url: str, method: Method, body: bytes, token: str) -> list[bytes]:
        """One request passed on to the leader (leader_relay.py): its answer bodies."""
        answers = []
        tls = self.server.leader_tls
        for kind, answer in await call_leader(
            url, method.number, [body], token, method.streaming, tls
        ):
            raise_if_error(kind, answer)
            if kind in (MESSAGE, REPLY):
                answers.append(answer)
        return answers
