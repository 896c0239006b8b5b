"""One client connection of the native protocol: frames in, handlers called, replies out
(everything written in one event-loop iteration leaves in one send), calls that wait run
as tasks of the connection, and a frame that breaks the protocol closes it."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import Any

from google.protobuf.message import Message

from .. import errors
from ..failpoints import ENABLED as FAILPOINTS
from ..failpoints import hit
from ..protocol import streams as st
from ..protocol.frames import (
    END,
    FLAG_END,
    FLAG_TOKEN,
    FLAG_USER,
    FRAME_OVERHEAD_BYTES,
    HEADER_BYTES,
    MESSAGE,
    REPLY,
    FrameDecoder,
    ProtocolError,
    encode_error,
    encode_frame,
    split_token,
)
from ..protocol.methods import BY_NAME, METHODS
from .client_port import close_after_last_word
from .tls import common_name
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

STREAMING = frozenset(m.number for m in METHODS if m.streaming)

# While the member has too many requests waiting (Application pauses the clients), these
# are still served at once: none waits on the log, and keep-alives must not let leases
# expire because of other clients' load. Every other request waits, in order, per connection.
SERVED_WHILE_PAUSED = frozenset(
    BY_NAME[name].number
    for name in (
        "LeaseKeepAlive", "LeaseTimeToLive", "LeaseLeases", "Watch", "Observe", "Leader",
        "Status", "Hash", "HashKV", "MemberList", "AuthStatus",
    )
)  # fmt: skip
# Requests a paused connection may hold before it stops being read.
MAX_PARKED_BYTES = 4 << 20
# Replies queued to a client that does not read them: past this, its requests stop being
# read until the client catches up (asyncio's write-buffer high-water mark).
MAX_UNREAD_REPLY_BYTES = 16 << 20
# A frame's body cannot pass what its u32 length field holds; clients accept 1 GiB by
# default (protocol/frames.py), so a reply larger than that fails instead.
MAX_REPLY_BYTES = (1 << 30) - HEADER_BYTES
# Native connections a member keeps at once; more are closed with an error at once.
MAX_CONNECTIONS = 20_000


class CallTasks:
    """What the native and HTTP connections share: calls that wait (a lock, a campaign, a
    bcrypt hash) run as tasks of the connection that made them, answered through its
    ``answer`` and ``error``, and what ends when the connection goes."""

    app: Any
    server: Any
    closed: bool
    tasks: dict[int, asyncio.Task]
    watch_streams: dict

    def connection_lost(self, exc: Exception | None) -> None:
        """The connection is gone: its watches end, its waiting calls are cancelled."""
        self.closed = True
        self.server.connections.discard(self)
        for stream in self.watch_streams.values():
            stream.close()
        self.watch_streams.clear()
        for task in list(self.tasks.values()):
            task.cancel()
        for closer in list(self.server.on_connection_lost):
            closer(self)

    def start_task(self, stream: int, coroutine) -> None:
        """Run a call that may wait (a lock, a campaign) and answer when it finishes; it is
        cancelled if the connection goes."""
        task = self.app.loop.create_task(coroutine)
        self.tasks[stream] = task

        def done(task) -> None:
            if self.tasks.get(stream) is task:  # a later task on the stream stays tracked
                del self.tasks[stream]
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


class ClientConnection(CallTasks, asyncio.Protocol):
    """One client's connection."""

    def __init__(self, server) -> None:
        self.server = server
        self.app = server.app
        self._decoder = FrameDecoder(server.max_request_bytes + FRAME_OVERHEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self._out: list[bytes] = []
        self._out_bytes = 0
        self.closed = False
        self.streams = st.Streams()
        self.watch_streams: dict[int, WatchStream] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        # CN of the client certificate the TLS layer verified ('' without one): the user
        # name of this connection's requests under --client-cert-auth.
        self.cert_user = ""
        # The user the request being handled runs as ('' with auth off) and the auth
        # revision it was checked at.
        self.user = ""
        self.auth_revision = 0
        self.token_revision = 0  # a JWT token's revision, else 0
        # A local relay (the gRPC front end) may name the user of each request it forwards
        # (FLAG_USER); whoever accepts the relay's connection marks it trusted.
        self.trusted_relay = False
        self._parked: deque[tuple] = deque()  # requests held while the member is paused
        self._parked_bytes = 0
        self._output_full = False  # the client is not reading its replies
        self.last_active = time.monotonic()

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self.cert_user = common_name(transport.get_extra_info("peercert"))
        if len(self.server.connections) >= MAX_CONNECTIONS:
            log.warning("refusing a client connection: %d are open", len(self.server.connections))
            self.close_with(errors.RESOURCE_EXHAUSTED, "etcdserver: too many connections")
            return
        self.server.connections.add(self)
        transport.set_write_buffer_limits(high=MAX_UNREAD_REPLY_BYTES)  # type: ignore[attr-defined]

    def pause_writing(self) -> None:
        self._output_full = True
        self._update_reading()

    def resume_writing(self) -> None:
        self._output_full = False
        self._update_reading()

    def _update_reading(self) -> None:
        """Read while the client reads its replies and what waits for the member is small."""
        if self._transport is None or self.closed:
            return
        if self._output_full or self._parked_bytes > MAX_PARKED_BYTES:
            self._transport.pause_reading()
        else:
            self._transport.resume_reading()

    @property
    def idle(self) -> bool:
        """Nothing in flight: no stream open, no call waiting, no watch, no keep-alive."""
        return not (len(self.streams) or self.tasks or self.watch_streams or self._parked)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return  # sent before the client read this side's last word
        arrived = time.monotonic_ns()
        self.last_active = arrived / 1e9
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self.abort(str(exc))
            return
        proposals = self.app.proposals
        proposals.arrived_ns = arrived  # where a traced write's first stage starts
        try:
            self._handle_frames(frames)
        finally:
            proposals.arrived_ns = 0

    def _handle_frames(self, frames) -> None:
        server = self.server
        streams = self.streams
        for stream, method, flags, body in frames:
            if stream == 0:
                self.abort("stream id 0 is reserved")
                return
            move = st.request_move(method in STREAMING, bool(flags & FLAG_END))
            before = streams.move(stream, move)
            if before is None:
                self._illegal(stream, move)
                continue
            if move is st.CLIENT_END and before is not st.OPEN:
                self.cancel_task(stream)  # a unary call given up on, or nothing left to end
                continue
            token, relayed = "", None
            if flags & (FLAG_TOKEN | FLAG_USER):
                try:
                    if flags & FLAG_USER:
                        relayed, body = split_token(body)
                    if flags & FLAG_TOKEN:
                        token, body = split_token(body)
                except ProtocolError as exc:
                    self.abort(str(exc))
                    return
            if (server.paused or self._parked) and method not in SERVED_WHILE_PAUSED:
                self._parked.append((stream, method, flags, body, token, relayed))
                self._parked_bytes += len(body)
                if self._parked_bytes > MAX_PARKED_BYTES:
                    self._update_reading()
                continue
            server.dispatch(self, stream, method, flags, body, token, relayed)

    def pause(self, paused: bool) -> None:
        """The member has too many requests waiting (or no longer): requests that would
        add to them are held, per connection in order, until it resumes."""
        if paused or self.closed:
            return
        parked = self._parked
        while parked and not self.server.paused:
            request = parked.popleft()
            self._parked_bytes -= len(request[3])
            self.server.dispatch(self, *request)
        self._update_reading()

    # -- output ------------------------------------------------------------------------------

    def _queue(self, data: bytes) -> None:
        if self.closed:
            return
        if not self._out:
            self.app.output.add(self)
        self._out.append(data)
        self._out_bytes += len(data)

    def write_out(self) -> None:
        # A transport can close (peer reset) before connection_lost runs: check both.
        if self._out and not self.closed and not self._transport.is_closing():
            if FAILPOINTS:
                hit("appBeforeReply")
            self._transport.write(b"".join(self._out))
        self._out.clear()
        self._out_bytes = 0

    def _illegal(self, stream: int, move: st.Move) -> None:
        """A request the stream's state does not allow: an error on that stream only."""
        state = self.streams.state(stream).name
        log.debug("stream %d: %s while %s", stream, move.name, state)
        error = errors.InvalidArgument(f"protocol error: {move.name} on a stream that is {state}")
        self._queue(encode_error(stream, error.code, error.message, ""))

    # Every frame out moves its stream by the table; one the table forbids (an answer to a
    # call the client gave up on, a message after the stream ended) is not sent.

    def reply(self, stream: int, body: bytes) -> None:
        if len(body) > MAX_REPLY_BYTES:
            self.error(stream, _too_large(len(body)))
        elif self.streams.move(stream, st.REPLY) is not None:
            self._queue(encode_frame(stream, REPLY, body))

    def answer(self, stream: int, response: Message) -> None:
        """Reply with a response message, its header filled in for this member."""
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        if len(body) > MAX_REPLY_BYTES:
            self.error(stream, _too_large(len(body)))
        elif self.streams.move(stream, st.MESSAGE) is not None:
            self._queue(encode_frame(stream, MESSAGE, body))

    def end(self, stream: int) -> None:
        if self.streams.move(stream, st.END) is not None:
            self._queue(encode_frame(stream, END))

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if self.streams.move(stream, st.ERROR) is not None:
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
        self.write_out()
        self.closed = True
        if self._transport is not None:
            close_after_last_word(self._transport)


def _too_large(size: int) -> errors.ApiError:
    return errors.ResponseTooLarge(
        f"etcdserver: the response ({size} bytes) is larger than the {MAX_REPLY_BYTES} bytes a "
        "reply may carry; ask for less (limit, keys_only, a smaller range)"
    )
