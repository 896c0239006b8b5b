"""One native-protocol connection from a client: pipelined, multiplexed calls and streams.

Calls are written without waiting for earlier replies; replies are matched to callers by
stream id. Writes made in the same event-loop iteration leave in one send.
"""

from __future__ import annotations

import asyncio
from collections import deque
from ssl import SSLContext

from ..errors import ApiError, PyraftkvError, error_from_wire
from ..protocol.frames import (
    DEFAULT_MAX_REPLY_FRAME_BYTES,
    ERROR,
    FLAG_END,
    FLAG_TOKEN,
    MESSAGE,
    REPLY,
    REPLY_KINDS,
    FrameDecoder,
    ProtocolError,
    decode_error,
    encode_frame,
    with_token,
)
from ..protocol.streams import AWAITING_REPLY, IDLE, OPEN, REPLY_KIND_MOVES, TRANSITIONS


def normalize_endpoint(endpoint: str) -> str:
    """Accept host:port or http://host:port (an IPv6 host in brackets, [::1]:2379); return
    host:port."""
    for scheme in ("http://", "https://"):
        if endpoint.startswith(scheme):
            endpoint = endpoint[len(scheme) :]
    endpoint = endpoint.rstrip("/")
    split_endpoint(endpoint)
    return endpoint


def split_endpoint(endpoint: str) -> tuple[str, int]:
    """(host, port) of host:port; an IPv6 host comes without its brackets."""
    host, sep, port = endpoint.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"endpoint {endpoint!r}: an IPv6 address goes in brackets, [::1]:2379")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"endpoint {endpoint!r} is not host:port")
    return host, int(port)


class ConnectionLost(PyraftkvError):
    """The connection closed (or never opened) before the reply came."""


def api_error(body: bytes) -> ApiError:
    """The error an ERROR frame's body carries (with the leader's URL when it names one)."""
    code, message, leader_url = decode_error(body)
    error = error_from_wire(code, message)
    error.leader_url = leader_url
    return error


class Stream:
    """The client side of a streaming call: send requests, await replies in order."""

    __slots__ = ("id", "_connection", "_method", "_replies", "_waiter", "_closed")

    def __init__(self, connection: Connection, stream_id: int, method: int) -> None:
        self.id = stream_id
        self._connection = connection
        self._method = method
        self._replies: deque[bytes | BaseException] = deque()
        self._waiter: asyncio.Future | None = None
        self._closed = False

    def send(self, body: bytes, flags: int = 0) -> None:
        """Send one more request message on this stream."""
        if self._closed:
            raise ConnectionLost("stream is closed")
        self._connection._write(self._connection.frame(self.id, self._method, body, flags))

    def close(self) -> None:
        """Tell the server we are done; it ends the stream."""
        if not self._closed:
            self._closed = True
            self._connection._streams.pop(self.id, None)
            if not self._connection.closed:
                self._connection._write(
                    self._connection.frame(self.id, self._method, b"", FLAG_END)
                )
            self._push(ConnectionLost("stream closed by the client"))

    async def receive(self) -> bytes:
        """The next reply message; raises the server's error or ConnectionLost at the end."""
        while not self._replies:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        item = self._replies.popleft()
        if isinstance(item, BaseException):
            self._replies.appendleft(item)  # every later receive raises it too
            raise item
        return item

    def _push(self, item: bytes | BaseException) -> None:
        self._replies.append(item)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


class Connection(asyncio.Protocol):
    """An open connection to one server endpoint."""

    def __init__(self, endpoint: str, max_reply_bytes: int = DEFAULT_MAX_REPLY_FRAME_BYTES):
        self.endpoint = endpoint
        self._decoder = FrameDecoder(max_reply_bytes, REPLY_KINDS)
        self._calls: dict[int, asyncio.Future] = {}
        self._streams: dict[int, Stream] = {}
        self._next_id = 1
        self._transport: asyncio.Transport | None = None
        self._outgoing: list[bytes] = []
        self._lost: BaseException | None = None
        self._loop = asyncio.get_running_loop()
        self._tls = False
        # The auth token every request on this connection carries (b"": none).
        self.token = b""
        self.answered = False  # any bytes from the server yet

    @classmethod
    async def open(
        cls,
        endpoint: str,
        timeout: float,
        ssl: SSLContext | None = None,
        server_name: str | None = None,
    ) -> Connection:
        """Connect to host:port within ``timeout`` seconds (TLS with ``ssl``)."""
        host, port = split_endpoint(endpoint)
        loop = asyncio.get_running_loop()
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    lambda: cls(endpoint),
                    host,
                    port,
                    ssl=ssl,
                    server_hostname=(server_name or host) if ssl else None,
                ),
                timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            raise ConnectionLost(f"cannot connect to {endpoint}: {exc or 'timed out'}") from exc
        connection._tls = ssl is not None
        return connection

    @property
    def closed(self) -> bool:
        return self._lost is not None

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._fail_all(ConnectionLost(f"connection to {self.endpoint} closed"))

    # -- calls --------------------------------------------------------------------------

    def call(self, method: int, body: bytes) -> asyncio.Future:
        """Send one unary request; the future gets the reply body or the error."""
        future = self._loop.create_future()
        if self._lost is not None:
            future.set_exception(self._lost)
            return future
        stream_id = self._next_id
        self._next_id += 1
        self._calls[stream_id] = future
        self._write(self.frame(stream_id, method, body))
        return future

    def open_stream(self, method: int) -> Stream:
        """Start a streaming call; send its first request with ``Stream.send``."""
        if self._lost is not None:
            raise self._lost
        stream = Stream(self, self._next_id, method)
        self._next_id += 1
        self._streams[stream.id] = stream
        return stream

    def frame(self, stream_id: int, method: int, body: bytes, flags: int = 0) -> bytes:
        """A request frame, carrying this connection's token when it has one."""
        if self.token:
            return encode_frame(stream_id, method, with_token(self.token, body), flags | FLAG_TOKEN)
        return encode_frame(stream_id, method, body, flags)

    def _write(self, data: bytes) -> None:
        if not self._outgoing:
            self._loop.call_soon(self._flush)
        self._outgoing.append(data)

    def _flush(self) -> None:
        if self._transport is not None and self._outgoing and self._lost is None:
            self._transport.write(b"".join(self._outgoing))
        self._outgoing.clear()

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.answered = True
        try:
            frames = self._decoder.feed(data)
        except ProtocolError as exc:
            self._fail_all(ConnectionLost(f"bad reply from {self.endpoint}: {exc}"))
            self._transport.close()
            return
        calls, streams = self._calls, self._streams
        for stream_id, kind, _flags, body in frames:
            if stream_id == 0 and kind in (REPLY, ERROR):
                # The server is closing this connection (stopping, or it found our bytes
                # malformed): everything on it is lost, failover may follow.
                reason = api_error(body).message if kind == ERROR else "no reason given"
                self._fail_all(ConnectionLost(f"{self.endpoint} closed the connection: {reason}"))
                self._transport.close()
                return
            state = AWAITING_REPLY if stream_id in calls else OPEN if stream_id in streams else IDLE
            if state is IDLE:
                continue  # a reply to something we already gave up on
            move = REPLY_KIND_MOVES[kind]  # the decoder lets only reply kinds through
            if TRANSITIONS.get((state, move)) is None:
                self._stream_failed(stream_id, f"{move.name} frame")
            elif state is AWAITING_REPLY:
                future = calls.pop(stream_id)
                if not future.done():
                    if kind == REPLY:
                        future.set_result(body)
                    else:
                        future.set_exception(api_error(body))
            elif kind == MESSAGE:
                streams[stream_id]._push(body)
            else:
                stream = streams.pop(stream_id)
                stream._closed = True
                stream._push(api_error(body) if kind == ERROR else ConnectionLost("stream ended"))

    def _stream_failed(self, stream_id: int, what: str) -> None:
        """The server broke the stream rules on one stream: fail that call alone."""
        error = ConnectionLost(
            f"protocol error from {self.endpoint}: a {what} on stream {stream_id}"
        )
        future = self._calls.pop(stream_id, None)
        if future is not None and not future.done():
            future.set_exception(error)
        stream = self._streams.pop(stream_id, None)
        if stream is not None:
            stream._closed = True
            stream._push(error)

    def connection_lost(self, exc: Exception | None) -> None:
        reason = str(exc) if exc else "closed"
        if (exc is None or isinstance(exc, ConnectionResetError)) and not self.answered:
            # A TLS listener drops plaintext, or a client without the certificate it
            # requires, without a word (a reset when our request was still unread).
            reason = (
                "closed before answering (does the member require a client certificate "
                "signed by its CA? give tls=TLS(cert_file=..., key_file=...))"
                if self._tls
                else "closed before answering (a TLS port? connect with https:// or tls=)"
            )
        self._fail_all(ConnectionLost(f"connection to {self.endpoint} lost: {reason}"))

    def _fail_all(self, error: BaseException) -> None:
        if self._lost is None:
            self._lost = error
        calls, self._calls = self._calls, {}
        for future in calls.values():
            if not future.done():
                future.set_exception(error)
        streams, self._streams = self._streams, {}
        for stream in streams.values():
            stream._closed = True
            stream._push(error)
