"""A JSON gateway call over a WebSocket, as etcd 3.4's gateway takes one on any of its
paths (browsers cannot stream a request body, so this is how a web page watches).

The upgrade request names the call by its path (any method). Each message the client
sends (text or binary) is one request of the call in JSON; each answer goes back as one
text message: a unary call's response (then the server closes), each ``{"result": ...}``
of a streamed one, or the error body. A request that is not the method's JSON gets the
error and the connection closes, as etcd's does. wsproto frames the WebSocket (RFC 6455)
the way h11 frames HTTP: this module only routes messages.

With auth on, a browser (which cannot set headers on a WebSocket) passes its token as
etcd's proxy takes it: as the subprotocols ``Bearer, <token>`` (answered with ``Bearer``)
or in a cookie named ``token``; other clients may use the gateway's headers. (etcd 3.4
hands such a token on with a ``Bearer`` prefix and refuses it as invalid; here it works.)
"""

from __future__ import annotations

import asyncio
import contextlib
import http.cookies
import logging
from typing import Any

import h11
from google.protobuf.message import Message
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    Request,
    TextMessage,
)
from wsproto.frame_protocol import CloseReason
from wsproto.utilities import LocalProtocolError, RemoteProtocolError

from .. import errors
from ..protocol import gateway
from ..protocol.frames import FLAG_END
from ..protocol.methods import Method
from .client_port import close_after_last_word

log = logging.getLogger("pyraftkv.clients")


def wants_websocket(request: h11.Request) -> bool:
    """Whether an HTTP request asks to become a WebSocket (as Go's gorilla checks it)."""
    connection = upgrade = b""
    for name, value in request.headers:
        if name == b"connection":
            connection += value.lower() + b","
        elif name == b"upgrade":
            upgrade = value.lower()
    return b"upgrade" in connection and upgrade == b"websocket"


class WebSocketCall:
    """One gateway call on an upgraded connection. ``connection`` is the HttpConnection
    (its handler-table interface answers through ``send_*`` here)."""

    def __init__(self, connection: Any, route: Method | None, token: str) -> None:
        self.connection = connection
        self.route = route
        self.token = token
        self._ws = WSConnection(ConnectionType.SERVER)
        self._parts: list[str | bytes] = []  # the fragments of a message in hand
        self._size = 0
        self._requests = 0
        self._ended = False  # the client's side of the call has ended
        self._relaying: asyncio.Task | None = None
        self._closing = False  # our close frame is out

    def start(self, request: h11.Request, trailing: bytes) -> bool:
        """Answer the upgrade (False: not a valid handshake, nothing sent) and take the
        bytes that came after it."""
        try:
            self._ws.initiate_upgrade_connection(request.headers, request.target)
            upgrade = next((e for e in self._ws.events() if isinstance(e, Request)), None)
        except RemoteProtocolError:
            return False
        if upgrade is None:
            return False
        bearer = upgrade.subprotocols[:1] == ["Bearer"]
        self.token = _browser_token(upgrade.subprotocols, request.headers) or self.token
        self._send(AcceptConnection(subprotocol="Bearer" if bearer else None))
        if self.route is None:  # an unknown path: its 404 text, as etcd's proxy relays it
            self._text(b"Not Found")
            self.close()
            return True
        if trailing:
            self.receive(trailing)
        return True

    # -- from the client ------------------------------------------------------------------------

    def receive(self, data: bytes | None) -> None:
        """Bytes from the client (None at its end of file)."""
        try:
            self._ws.receive_data(data)
            for event in self._ws.events():
                if self._closing and not isinstance(event, CloseConnection):
                    continue  # what the client sent before it saw our close
                if isinstance(event, (TextMessage, BytesMessage)):
                    self._fragment(event.data, event.message_finished)
                elif isinstance(event, Ping):
                    self._send(event.response())
                elif isinstance(event, CloseConnection):
                    self._client_ended()
                    self._send(event.response())  # (not when our close was first)
                    self._close_transport()
                    return
                if self.connection.closed:
                    return
        except RemoteProtocolError as exc:
            log.info("closing a WebSocket gateway connection: %s", exc)
            hint = exc.event_hint
            if isinstance(hint, CloseConnection):
                self._send(hint)
            self._close_transport()
        if data is None:
            self._client_ended()
            self._close_transport()

    def _fragment(self, data: str | bytes, finished: bool) -> None:
        self._size += len(data)
        if self._size > self.connection.max_body:
            self.fail(gateway.MessageTooLarge(None, self.connection.max_body), unary=True)
            return
        self._parts.append(data)
        if not finished:
            return
        parts, self._parts, self._size = self._parts, [], 0
        first = parts[0]
        body = "".join(parts).encode() if isinstance(first, str) else b"".join(parts)
        self._take(body)

    def _take(self, body: bytes) -> None:
        """One request of the call."""
        route = self.route
        assert route is not None
        self._requests += 1
        if self._ended or (self._requests > 1 and route.name not in gateway.BIDIRECTIONAL):
            return  # a call that takes one request: the rest are not read (as etcd's)
        try:
            message = gateway.call_requests(body, route, self.connection.max_message, True)[0]
        except errors.ApiError as exc:
            self.fail(exc, unary=True)
            return
        connection = self.connection
        if route.name == "LeaseKeepAlive" and connection.leader_elsewhere(route):
            self._relay_in_turn(message)
        elif route.name in gateway.BIDIRECTIONAL:
            connection.server.dispatch(
                connection,
                connection.stream,
                route.number,
                0,
                message.SerializeToString(),
                self.token,
            )
        else:
            connection.call(route, [message], self.token)

    def _relay_in_turn(self, message: Message) -> None:
        """A keep-alive a follower passes on to the leader, one after another (in order)."""
        connection, previous = self.connection, self._relaying
        body = message.SerializeToString()

        async def relay() -> None:
            if previous is not None:
                with contextlib.suppress(Exception):
                    await previous
            await connection.relay(connection.stream, self.route, [body], self.token, end=False)

        connection.start_task(connection.stream, relay())
        self._relaying = connection.tasks.get(connection.stream)

    def _client_ended(self) -> None:
        """The client closed its side: a keep-alive call ends with it (watches end when the
        connection does)."""
        if self._ended:
            return
        self._ended = True
        connection, route = self.connection, self.route
        if (
            route is not None
            and route.name == "LeaseKeepAlive"
            and not connection.closed
            and not connection.leader_elsewhere(route)
        ):
            connection.server.dispatch(
                connection, connection.stream, route.number, FLAG_END, b"", self.token
            )

    # -- to the client --------------------------------------------------------------------------

    def send_reply(self, response: Message) -> None:
        """A unary call's answer: its JSON, then the end of the call."""
        self._text(gateway.to_json(response))
        self.close()

    def send_message(self, response: Message) -> None:
        self._text(gateway.stream_result(response).rstrip(b"\n"))

    def fail(self, error: errors.ApiError, unary: bool = False) -> None:
        """The call failed: the error as the HTTP gateway's body would carry it, then the
        end. ``unary``: in the form of a refused request (a request that is not JSON)."""
        if unary or self.route is None or not self.route.streaming:
            self._text(gateway.error_body(error.code, error.message))
        else:
            self._text(gateway.stream_error(error.code, error.message).rstrip(b"\n"))
        self.close()

    def close(self) -> None:
        """End the call: a normal close frame, the end of our side of the TCP stream, and
        the connection once the client closes too (its close frame, its end of file, or
        LINGER_S), so that its answering close frame does not meet a reset."""
        if self._closing:
            return
        self._closing = True
        self._send(CloseConnection(code=CloseReason.NORMAL_CLOSURE))
        transport = self.connection.transport
        if transport is not None:
            close_after_last_word(transport)

    def _text(self, data: bytes) -> None:
        self._send(TextMessage(data=data.decode()))

    def _send(self, event: Event) -> None:
        """Send ``event`` unless the WebSocket's state no longer allows it (an answer that
        comes after either side's close frame is dropped)."""
        transport = self.connection.transport
        if transport is None or transport.is_closing():
            return
        try:
            data = self._ws.send(event)
        except LocalProtocolError:
            return
        if data:
            transport.write(data)

    def _close_transport(self) -> None:
        transport = self.connection.transport
        if transport is not None and not transport.is_closing():
            transport.close()


def _browser_token(subprotocols: list[str], headers: list[tuple[bytes, bytes]]) -> str:
    """The token a browser passes: subprotocols ``Bearer, <token>``, else a ``token``
    cookie ('' when neither)."""
    if len(subprotocols) > 1 and subprotocols[0] == "Bearer":
        return subprotocols[1]
    for name, value in headers:
        if name == b"cookie":
            cookie = http.cookies.SimpleCookie()
            with contextlib.suppress(http.cookies.CookieError):
                cookie.load(value.decode("latin-1"))
            if "token" in cookie:
                return cookie["token"].value
    return ""
