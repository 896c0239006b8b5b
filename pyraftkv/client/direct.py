"""The blocking ``Client``'s direct path: a unary call made on the calling thread over a
plain blocking socket, one request frame out and one reply frame back.

Handing a call to the client's event-loop thread and back costs two thread wake-ups and
several more system calls per call (half the client's CPU per call, a tenth of a
sequential writer's latency; bench/client_handover.py). The direct path serves the common
case, a call that succeeds on the member the client talks to, and hands anything else to
the loop's ``AsyncClient.call``, which knows failover, retries and re-authentication: a
refusal made before anything was proposed (no leader, not the leader, an expired token) is
asked again there, and so is an idempotent call whose connection failed. A non-idempotent
call whose request may have left raises ConnectionLost as AsyncClient.call does. One
thread at a time uses the direct connection; a call made meanwhile from another thread
takes the loop's path.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import threading
import time

from google.protobuf.message import Message

from ..errors import (
    AuthNotEnabled,
    AuthOldRevision,
    InvalidAuthToken,
    NoLeader,
    NotLeader,
    TimedOut,
)
from ..proto import rpc_pb2 as rpc
from ..protocol.frames import (
    DEFAULT_MAX_REPLY_FRAME_BYTES,
    ERROR,
    FLAG_TOKEN,
    REPLY,
    REPLY_KINDS,
    FrameDecoder,
    ProtocolError,
    encode_frame,
    with_token,
)
from ..protocol.methods import BY_NAME
from .connection import ConnectionLost, api_error, split_endpoint

# Refusals given before anything was proposed: the loop's path retries them properly.
_ASK_THE_LOOP = (NotLeader, NoLeader, InvalidAuthToken, AuthOldRevision)
_AUTHENTICATE = BY_NAME["Authenticate"].number
_RECEIVE_BYTES = 1 << 16


class _Lost(Exception):
    """The direct connection broke after the request may have left."""


class DirectPath:
    """One blocking connection to the member the client's loop side talks to."""

    def __init__(
        self,
        ssl_context: ssl.SSLContext | None,
        server_name: str | None,
        connect_timeout: float,
        user: str | None,
        password: str | None,
    ) -> None:
        self._ssl = ssl_context
        self._server_name = server_name
        self._connect_timeout = connect_timeout
        self._user, self._password = user, password
        self.lock = threading.Lock()
        self._sock: socket.socket | None = None
        self._poll: select.poll | None = None
        self._endpoint = ""
        self._decoder = FrameDecoder(DEFAULT_MAX_REPLY_FRAME_BYTES, REPLY_KINDS)
        self._token = b""
        self._next_id = 1
        self._shut = False  # the client closed: every call takes the loop's path (and fails)

    def call(
        self, endpoint: str, method: str, request: Message, timeout: float, idempotent: bool
    ) -> Message | None:
        """The reply to ``request`` sent to ``endpoint``, or None: make the call on the
        loop's path instead (nothing was applied, or the call may be repeated). Hold
        ``lock`` while calling."""
        if self._shut:
            return None
        try:
            if self._sock is not None and (endpoint != self._endpoint or self._closed_by_peer()):
                self.close()
            if self._sock is None:
                self._open(endpoint, timeout)
        except (OSError, _Lost):  # a dial, TLS or authentication failure
            self.close()
            return None  # the request was not sent: the loop's path dials (and fails over)
        except BaseException:  # a wrong password (raised as the loop's path would)
            self.close()
            raise
        spec = BY_NAME[method]
        try:
            kind, body = self._round_trip(spec.number, request.SerializeToString(), timeout)
        except TimeoutError:
            self.close()  # a late reply must not meet the next call
            raise TimedOut(f"{method}: no answer within the timeout") from None
        except _Lost as lost:
            self.close()
            if not idempotent:
                raise ConnectionLost(f"{method}: {lost}") from None
            return None
        except BaseException:  # interrupted mid-call: the connection's state is unknown
            self.close()
            raise
        if kind == REPLY:
            return spec.response.FromString(body)
        error = api_error(body)
        if isinstance(error, _ASK_THE_LOOP):
            if isinstance(error, InvalidAuthToken | AuthOldRevision):
                self.close()  # a new token on the next connection
            return None
        raise error

    def shut(self) -> None:
        """The client is closing: end a call in progress on another thread (its blocking
        read returns) and make no more. Needs no lock; ``close`` then releases the socket."""
        self._shut = True
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Drop the connection (the next call opens another). Hold ``lock``."""
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        self._sock = self._poll = None
        self._decoder = FrameDecoder(DEFAULT_MAX_REPLY_FRAME_BYTES, REPLY_KINDS)
        self._token = b""

    # -- the connection -------------------------------------------------------------------

    def _open(self, endpoint: str, timeout: float) -> None:
        host, port = split_endpoint(endpoint)
        sock = socket.create_connection((host, port), min(timeout, self._connect_timeout))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._ssl is not None:
            try:
                sock = self._ssl.wrap_socket(sock, server_hostname=self._server_name or host)
            except BaseException:
                sock.close()
                raise
        self._sock, self._endpoint = sock, endpoint
        self._poll = select.poll()
        self._poll.register(sock, select.POLLIN)
        if self._user:
            request = rpc.AuthenticateRequest(name=self._user, password=self._password or "")
            kind, body = self._round_trip(_AUTHENTICATE, request.SerializeToString(), timeout)
            if kind == REPLY:
                self._token = rpc.AuthenticateResponse.FromString(body).token.encode()
            elif not isinstance(error := api_error(body), AuthNotEnabled):
                raise error  # a wrong password, as the loop's path would say

    def _closed_by_peer(self) -> bool:
        """Whether the idle connection has something to read: the server closing it (end
        of stream, or its last frame saying why). TLS records that carry no data (session
        tickets) are read and do not count."""
        if not self._poll.poll(0):
            return False
        self._sock.setblocking(False)
        try:
            self._sock.recv(_RECEIVE_BYTES)
        except (ssl.SSLWantReadError, BlockingIOError):
            return False
        except OSError:
            pass
        return True

    def _round_trip(self, method: int, body: bytes, timeout: float) -> tuple[int, bytes]:
        """Send one request frame; (reply kind, body) of the frame answering it."""
        stream_id = self._next_id
        self._next_id += 1
        if self._token:
            frame = encode_frame(stream_id, method, with_token(self._token, body), FLAG_TOKEN)
        else:
            frame = encode_frame(stream_id, method, body)
        sock = self._sock
        deadline = time.monotonic() + timeout
        if sock.gettimeout() != timeout:  # setting it costs a system call each time
            sock.settimeout(timeout)
        try:
            sock.sendall(frame)
        except TimeoutError:
            raise
        except OSError as exc:
            raise _Lost(f"connection to {self._endpoint} lost: {exc}") from None
        while True:
            try:
                data = sock.recv(_RECEIVE_BYTES)
            except TimeoutError:
                raise
            except OSError as exc:
                raise _Lost(f"connection to {self._endpoint} lost: {exc}") from None
            if not data:
                raise _Lost(f"connection to {self._endpoint} closed")
            try:
                frames = self._decoder.feed(data)
            except ProtocolError as exc:
                raise _Lost(f"bad reply from {self._endpoint}: {exc}") from None
            for reply_id, kind, _flags, reply in frames:
                if reply_id == stream_id and kind in (REPLY, ERROR):
                    return kind, reply
                if reply_id in (0, stream_id):  # the server closing, or a stream's frame
                    raise _Lost(f"{self._endpoint} closed the connection or broke the protocol")
            if time.monotonic() > deadline:  # bytes trickling in, never the reply
                raise TimeoutError
