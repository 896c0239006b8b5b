"""One client connection of the native protocol: frames in, handlers called, replies out
(everything written in one event-loop iteration leaves in one send), calls that wait run
as tasks of the connection, and a frame that breaks the protocol closes it."""

from __future__ import annotations

import asyncio
import logging
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
    MESSAGE,
    REPLY,
    FrameDecoder,
    ProtocolError,
    encode_error,
    encode_frame,
    split_token,
)
from ..protocol.methods import METHODS
from .tls import common_name
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

STREAMING = frozenset(m.number for m in METHODS if m.streaming)


class CallTasks:
    """Calls that wait (a lock, a campaign, a bcrypt hash) run as tasks of the connection
    that made them, answered through its ``answer`` and ``error``."""

    app: Any
    tasks: dict[int, asyncio.Task]

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
            server.dispatch(self, stream, method, flags, body, token, relayed)

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
        if self.streams.move(stream, st.REPLY) is not None:
            self._queue(encode_frame(stream, REPLY, body))

    def answer(self, stream: int, response: Message) -> None:
        """Reply with a response message, its header filled in for this member."""
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        if self.streams.move(stream, st.MESSAGE) is not None:
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
        self._flush()
        self.closed = True
        if self._transport is not None:
            self._transport.close()
