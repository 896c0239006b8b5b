"""etcd's v3 gRPC API on the client port.

grpcio (its C core) speaks HTTP/2; it cannot adopt a socket Python already accepted, so
the client port (client_port.py) splices each connection that opens with the HTTP/2
preface to a grpc.aio server of this application process listening on a loopback port
(``H2Splice``). Every call becomes the native request body and goes through
ClientServer.dispatch to the handler a native frame reaches (auth, validation, proposals,
reads, watches and leases are not written again); the handler answers through the call's
``reply``/``message``/``end``/``error``. Messages stay encoded end to end: grpcio hands
over the request bytes and sends the response bytes as the handler made them.

TLS ends at the client port, below the splice: the splice remembers the verified
certificate's CN under the loopback port it dials from, and a call finds it again by its
peer address. The gRPC metadata ``token`` is the auth token, as etcd's.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from google.protobuf.message import Message

from .. import errors
from ..protocol.frames import FLAG_END, FRAME_OVERHEAD_BYTES, MESSAGE, REPLY
from ..protocol.methods import METHODS, Method
from .client_connection import CallTasks
from .http_gateway import LEADER_CALLS
from .leader_relay import call_leader, raise_if_error
from .tls import common_name
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

# etcd's two client-and-server streams; its other streamed calls stream answers only.
BIDI = frozenset(("Watch", "LeaseKeepAlive"))
STREAM = 1  # each gRPC call is one stream of its own "connection"
# Bytes a spliced connection buffers toward one side before it stops reading the other.
SPLICE_HIGH_WATER = 4 << 20
# Messages a streamed call queues for a client that does not read them (then it ends).
MAX_QUEUED_MESSAGES = 10_000


class MessageTooLarge(errors.ApiError):
    """A request message over the gRPC receive limit, in grpc-go's words (etcd's answer)."""

    code = errors.RESOURCE_EXHAUSTED

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"grpc: received message larger than max ({size} vs. {limit})")


class GrpcCall(CallTasks):
    """One gRPC call, standing in for a native connection with one stream: the handler's
    answers land in ``queue`` (a response body, an ApiError, or None for the end)."""

    trusted_relay = False  # gRPC clients never name users for others

    def __init__(self, server: Any, cert_user: str) -> None:
        self.server = server
        self.app = server.app
        self.cert_user = cert_user
        self.user = ""
        self.auth_revision = 0
        self.token_revision = 0  # a JWT token's revision, else 0
        self.closed = False
        self.watch_streams: dict[int, WatchStream] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self.queue: asyncio.Queue = asyncio.Queue()

    def reply(self, stream: int, body: bytes) -> None:
        if not self.closed:
            self.queue.put_nowait(body)
            self.queue.put_nowait(None)

    def answer(self, stream: int, response: Message) -> None:
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        if self.closed:
            return
        if self.queue.qsize() > MAX_QUEUED_MESSAGES:
            self.error(stream, errors.ApiError("etcdserver: the client does not read its stream"))
            return
        self.queue.put_nowait(body)

    def end(self, stream: int) -> None:
        if not self.closed:
            self.queue.put_nowait(None)

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if not self.closed:
            self.queue.put_nowait(error)

    def backlog_bytes(self) -> int:
        return 0

    def close(self) -> None:
        """The call ended (answered, cancelled or its client went): drop what it holds."""
        self.closed = True
        for watch in self.watch_streams.values():
            watch.close()
        self.watch_streams.clear()
        for task in list(self.tasks.values()):
            task.cancel()
        for closer in list(self.server.on_connection_lost):
            closer(self)


class UnaryCall(GrpcCall):
    """A call with one answer: the first thing the handler sends (a response body or an
    ApiError) settles ``answer_future``; no queue, as the call never streams."""

    def __init__(self, server: Any, cert_user: str) -> None:
        self.server = server
        self.app = server.app
        self.cert_user = cert_user
        self.user = ""
        self.auth_revision = 0
        self.closed = False
        self.watch_streams = {}
        self.tasks = {}
        self.answer_future: asyncio.Future = server.app.loop.create_future()

    def reply(self, stream: int, body: bytes | errors.ApiError | None) -> None:
        if not self.answer_future.done():
            self.answer_future.set_result(body)

    message = reply

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        self.reply(stream, error)

    def end(self, stream: int) -> None:
        self.reply(stream, None)


async def _abort(context: grpc.aio.ServicerContext, error: errors.ApiError) -> None:
    await context.abort(_STATUS.get(error.code, grpc.StatusCode.UNKNOWN), error.message)


_STATUS = {code.value[0]: code for code in grpc.StatusCode}


# grpc.health.v1 HealthCheckResponse{status: SERVING} and {status: SERVICE_UNKNOWN},
# encoded (field 1, varint). etcd 3.4 registers the empty service name only, SERVING.
HEALTH_SERVING = b"\x08\x01"
HEALTH_SERVICE_UNKNOWN = b"\x08\x03"
# grpcio refuses a message this many times over the limit itself (its own wording); up to
# that the call answers etcd's (grpc-go's) wording, so memory per call stays bounded.
GRPCIO_LIMIT_FACTOR = 4


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


async def _health_check(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
    """The standard gRPC health check (load balancers, probes): as grpc-go's health
    server in etcd, NOT_FOUND "unknown service" for a name other than the empty one."""
    if not _known_service(body):
        await context.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
    return HEALTH_SERVING


async def _health_watch(body: bytes, context: grpc.aio.ServicerContext):
    """The streamed health check: the status once, then the stream stays open until the
    client cancels it (the status of a running member does not change)."""
    yield HEALTH_SERVING if _known_service(body) else HEALTH_SERVICE_UNKNOWN
    await asyncio.Event().wait()  # ends when grpcio cancels the call


class GrpcFront:
    """The grpc.aio server behind the client port and the CN of each spliced connection."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.port = 0
        self.limit = 0  # largest request message, as etcd's gRPC max receive size
        self.cert_users: dict[int, str] = {}  # splice's loopback port -> client cert CN
        self._grpc: grpc.aio.Server | None = None

    async def start(self) -> None:
        self.limit = self.server.max_request_bytes + FRAME_OVERHEAD_BYTES
        self._grpc = grpc.aio.server(
            options=(
                ("grpc.max_receive_message_length", self.limit * GRPCIO_LIMIT_FACTOR),
                ("grpc.max_send_message_length", 2**31 - 1),
                ("grpc.so_reuseport", 0),
            )
        )
        handlers: dict[str, grpc.RpcMethodHandler] = {}
        for method in METHODS:
            service, name = method.grpc_name[1:].split("/")
            if method.streaming:
                handler = grpc.stream_stream_rpc_method_handler(self._streamed(method))
            else:
                handler = grpc.unary_unary_rpc_method_handler(self._unary(method))
            handlers.setdefault(service, {})[name] = handler  # type: ignore[index]
        for service, methods in handlers.items():
            self._grpc.add_generic_rpc_handlers(
                (grpc.method_handlers_generic_handler(service, methods),)  # type: ignore[arg-type]
            )
        self._grpc.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(
                    "grpc.health.v1.Health",
                    {
                        "Check": grpc.unary_unary_rpc_method_handler(_health_check),
                        "Watch": grpc.unary_stream_rpc_method_handler(_health_watch),
                    },
                ),
            )
        )
        self.port = self._grpc.add_insecure_port("127.0.0.1:0")
        await self._grpc.start()

    async def stop(self) -> None:
        if self._grpc is not None:
            await self._grpc.stop(0.5)

    def _call(
        self, context: grpc.aio.ServicerContext, kind: type[GrpcCall] = GrpcCall
    ) -> tuple[GrpcCall, str]:
        cert_user = ""
        if self.cert_users:  # only connections with a verified certificate are listed
            peer = context.peer()  # "ipv4:127.0.0.1:PORT"
            port = int(peer.rsplit(":", 1)[1]) if peer.startswith("ipv4:") else -1
            cert_user = self.cert_users.get(port, "")
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "token":
                token = value if isinstance(value, str) else value.decode()
        return kind(self.server, cert_user), token

    async def _check_size(self, body: bytes, context: grpc.aio.ServicerContext) -> None:
        """A request over the limit answers grpc-go's wording, as etcd's members do."""
        if len(body) > self.limit:
            await _abort(context, MessageTooLarge(len(body), self.limit))

    def _leader_url(self, method: Method) -> str | None:
        """The leader's client URL when ``method`` is answered by the leader only and this
        member is a follower (etcd's members pass these on as well)."""
        app = self.server.app
        if method.name in LEADER_CALLS and app.leader_id not in (0, app.member_id):
            return app.members.client_url(app.leader_id)
        return None

    async def _relay(self, url: str, method: Method, body: bytes, token: str) -> list[bytes]:
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

    def _unary(self, method: Method):
        number = method.number

        async def call(body: bytes, context: grpc.aio.ServicerContext) -> bytes:
            arrived = time.monotonic_ns()
            if len(body) > self.limit:  # no coroutine per call for the common case
                await self._check_size(body, context)
            connection, token = self._call(context, UnaryCall)
            url = self._leader_url(method)
            try:
                if url is not None:
                    answer = (await self._relay(url, method, body, token))[-1]
                    if method.name.startswith("Member"):
                        await self.server.app.caught_up()
                else:
                    proposals = self.server.app.proposals
                    proposals.arrived_ns = arrived  # where a traced write's first stage starts
                    try:
                        self.server.dispatch(connection, STREAM, number, 0, body, token)
                    finally:
                        proposals.arrived_ns = 0
                    answer = await connection.answer_future  # type: ignore[attr-defined]
            except errors.ApiError as error:  # the leader's answer to a relayed call
                answer = error
            finally:
                connection.close()
            if isinstance(answer, errors.ApiError):
                await _abort(context, answer)
            return answer

        return call

    def _streamed(self, method: Method):
        number = method.number
        bidi = method.name in BIDI

        async def call(requests, context: grpc.aio.ServicerContext):
            connection, token = self._call(context)
            dispatch = self.server.dispatch
            url = self._leader_url(method)
            if url is not None:  # a keep-alive stream on a follower: each request relayed
                try:
                    async for body in requests:
                        await self._check_size(body, context)
                        for answer in await self._relay(url, method, body, token):
                            yield answer
                except errors.ApiError as error:
                    await _abort(context, error)
                return

            async def read() -> None:
                async for body in requests:
                    if len(body) > self.limit:
                        connection.error(STREAM, MessageTooLarge(len(body), self.limit))
                        return
                    dispatch(connection, STREAM, number, 0, body, token)
                if bidi:  # a server-streamed call's client always half-closes at once
                    dispatch(connection, STREAM, number, FLAG_END, b"", token)

            reader = asyncio.get_running_loop().create_task(read())
            try:
                while True:
                    answer = await connection.queue.get()
                    if answer is None:
                        return
                    if isinstance(answer, errors.ApiError):
                        await _abort(context, answer)
                    yield answer
            finally:
                reader.cancel()
                connection.close()

        return call


class H2Splice(asyncio.Protocol):
    """A client connection speaking HTTP/2, passed byte for byte to the gRPC server."""

    def __init__(self, front: GrpcFront) -> None:
        self._front = front
        self._client: asyncio.Transport | None = None
        self._upstream: asyncio.Transport | None = None
        self._pending: list[bytes] = []
        self._port = -1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._client = transport  # type: ignore[assignment]
        self._cert_user = common_name(transport.get_extra_info("peercert"))
        transport.set_write_buffer_limits(high=SPLICE_HIGH_WATER)  # type: ignore[attr-defined]
        asyncio.get_running_loop().create_task(self._dial())

    async def _dial(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport, _ = await loop.create_connection(
                lambda: _Upstream(self), "127.0.0.1", self._front.port
            )
        except OSError as exc:
            log.warning("gRPC server unreachable: %s", exc)
            if self._client is not None:
                self._client.close()
            return
        if self._client is None or self._client.is_closing():
            transport.close()
            return
        self._port = transport.get_extra_info("sockname")[1]
        if self._cert_user:
            self._front.cert_users[self._port] = self._cert_user
        transport.set_write_buffer_limits(high=SPLICE_HIGH_WATER)  # type: ignore[attr-defined]
        self._upstream = transport  # type: ignore[assignment]
        if self._pending:
            transport.write(b"".join(self._pending))
            self._pending.clear()

    def data_received(self, data: bytes) -> None:
        if self._upstream is None:
            self._pending.append(data)
        else:
            self._upstream.write(data)

    def eof_received(self) -> bool:
        if self._upstream is not None and self._upstream.can_write_eof():
            self._upstream.write_eof()
        return True

    # Backpressure: the client not reading stops reading the gRPC server, and back.
    def pause_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.pause_reading()

    def resume_writing(self) -> None:
        if self._upstream is not None:
            self._upstream.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self._front.cert_users.pop(self._port, None)
        self._client = None
        if self._upstream is not None:
            self._upstream.close()


class _Upstream(asyncio.Protocol):
    """The splice's side toward the gRPC server."""

    def __init__(self, splice: H2Splice) -> None:
        self._splice = splice

    def data_received(self, data: bytes) -> None:
        client = self._splice._client
        if client is not None:
            client.write(data)

    def pause_writing(self) -> None:
        if self._splice._client is not None:
            self._splice._client.pause_reading()

    def resume_writing(self) -> None:
        if self._splice._client is not None:
            self._splice._client.resume_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        client = self._splice._client
        if client is not None:
            client.close()
