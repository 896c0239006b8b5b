"""HTTP/1.1 on the client port, as etcd 3.4 serves it there: the JSON gateway (``POST
/v3/...``), ``GET /health``, ``/version`` and ``/metrics``.

h11 parses and frames HTTP; this module only translates. A gateway request becomes the
native request message and goes through ClientServer.dispatch to the same handler a native
frame reaches (auth, validation, proposals, reads, watches, leases are not written again);
the handler answers through this connection's ``reply``/``message``/``end``/``error``,
which turn the response message back into JSON. One request is served at a time per
connection, so pipelined requests are answered in order (h11 holds the next one until the
answer to the current one is out). Streamed calls (watch, keep-alive, snapshot, observe)
answer one ``{"result": ...}`` line per message, each in a chunk of its own. A request
that asks to become a WebSocket carries its call's requests and answers as WebSocket
messages instead (gateway_websocket.py).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import time
from typing import Any

import h11
from google.protobuf.message import Message

from .. import errors
from ..protocol import gateway
from ..protocol.frames import END, FLAG_END, FRAME_OVERHEAD_BYTES, MESSAGE, REPLY
from ..protocol.methods import Method
from .client_connection import MAX_CONNECTIONS, SERVED_WHILE_PAUSED, CallTasks
from .client_port import close_after_last_word
from .gateway_websocket import WebSocketCall, wants_websocket
from .leader_relay import call_leader, raise_if_error
from .metrics import healthy, render
from .tls import common_name
from .watch_stream import WatchStream

log = logging.getLogger("pyraftkv.clients")

# The etcd API version this gateway implements: clients (etcd3gw) pick their paths by it.
ETCD_API_VERSION = "3.4.0"
MAX_HEAD_BYTES = 64 * 1024
# Answered by the leader only: a follower passes them on (etcd's members do the same;
# membership changes are proposed by the leader here, through any member in etcd).
LEADER_CALLS = frozenset(
    (
        "LeaseKeepAlive",
        "LeaseTimeToLive",
        "MemberAdd",
        "MemberRemove",
        "MemberUpdate",
        "MemberPromote",
    )
)
CORS_ALLOW = (
    (b"Access-Control-Allow-Headers", b"accept, content-type, authorization"),
    (b"Access-Control-Allow-Methods", b"POST, GET, OPTIONS, PUT, DELETE"),
)
CORS_ANY = (*CORS_ALLOW, (b"Access-Control-Allow-Origin", b"*"))
MISDIRECTED = (
    b"pyraftkv received the request, but its Host header is not in --host-whitelist.\n\n"
    b"Use TLS on the client port (any host is then served), or add the host name to "
    b"--host-whitelist.\nThis guards against DNS rebinding (CVE-2018-5702).\n"
)
JSON = b"application/json"
TEXT = b"text/plain; charset=utf-8"
# What etcd's gateway adds to a call's successful answer.
CALL_HEADERS = ((b"Grpc-Metadata-Content-Type", b"application/grpc"),)
REASONS = {code: reason.encode() for code, reason in gateway.REASONS.items()}
REASONS[405] = b"Method Not Allowed"
REASONS[421] = b"Misdirected Request"


class HttpConnection(CallTasks, asyncio.Protocol):
    """One HTTP/1.1 client connection on the client port."""

    trusted_relay = False  # HTTP clients never name users for others

    def __init__(self, server: Any) -> None:
        self.server = server
        self.app = server.app
        # A request message may be up to the request limit plus the frame overhead (as a
        # gRPC message to etcd may); its JSON (base64, quoting) up to about twice that.
        self.max_message = server.max_request_bytes + FRAME_OVERHEAD_BYTES
        self.max_body = 2 * self.max_message + MAX_HEAD_BYTES
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._transport: asyncio.Transport | None = None
        self.closed = False
        self.cert_user = ""
        self.user = ""
        self.auth_revision = 0
        self.token_revision = 0  # a JWT token's revision, else 0
        self.watch_streams: dict[int, WatchStream] = {}
        self.tasks: dict[int, asyncio.Task] = {}
        self._stream = 0  # the request being answered (each request gets the next number)
        self._request: h11.Request | None = None
        self._body = bytearray()
        self._route: Method | None = None
        self._streaming = False  # a streamed answer's head is out
        self._busy = False  # a request is being answered
        self._discarding = False  # the rest of a refused body: read and dropped
        self.last_active = time.monotonic()
        self._parked: tuple | None = None  # a request held while the member is paused
        self._cors = CORS_ANY  # the CORS headers of the request in hand (--cors)
        self._tls = False  # whether the connection is TLS (any Host is then served)
        self._ws: WebSocketCall | None = None  # the call, once the connection is a WebSocket
        # The gRPC method of the gateway call in hand and how it ends so far: counted in
        # grpc_server_started/handled_total, as etcd counts its gateway's calls.
        self._counted: Method | None = None
        self._code = errors.OK

    @property
    def transport(self) -> asyncio.Transport | None:
        return self._transport

    @property
    def stream(self) -> int:
        """The number of the request being answered."""
        return self._stream

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._tls = transport.get_extra_info("ssl_object") is not None
        self.cert_user = common_name(transport.get_extra_info("peercert"))
        if len(self.server.connections) >= MAX_CONNECTIONS:
            log.warning("refusing a client connection: %d are open", len(self.server.connections))
            transport.close()
            return
        self.server.connections.add(self)

    @property
    def idle(self) -> bool:
        """Nothing in flight (for --client-idle-timeout): no request being answered, no
        watch, no waiting call."""
        return not (self._busy or self.watch_streams or self.tasks or self._parked)

    def data_received(self, data: bytes) -> None:
        arrived = time.monotonic_ns()
        self.last_active = arrived / 1e9
        if self._ws is not None:
            self._ws.receive(data)
            return
        if self._discarding or self._transport is None or self._transport.is_closing():
            return  # the rest of a refused body, or bytes that came after we hung up
        try:
            self._h11.receive_data(data)
        except RuntimeError:  # bytes after the client's close, or after an error
            return
        proposals = self.app.proposals
        proposals.arrived_ns = arrived  # where a traced write's first stage starts
        try:
            self._next()
        finally:
            proposals.arrived_ns = 0

    def eof_received(self) -> bool:
        if self._ws is not None:
            self._ws.receive(None)
            return False
        if self._discarding or self._transport is None or self._transport.is_closing():
            return False
        self._h11.receive_data(b"")
        self._next()
        return True  # keep writing: a watch may still be answering

    # -- requests -----------------------------------------------------------------------------

    def _next(self) -> None:
        """Take events until more bytes are needed, serving each request once its body is
        read (as etcd's gateway does, a streamed call's requests too). h11 holds a
        pipelined request back (PAUSED) until the answer to the one before is out."""
        while not (self.closed or self._discarding or self._transport.is_closing()):
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                self._bad_request(exc)
                return
            if event is h11.NEED_DATA or event is h11.PAUSED:
                return
            if isinstance(event, h11.Request):
                if event.http_version not in (b"1.0", b"1.1"):
                    self._bad_request(h11.RemoteProtocolError("HTTP Version Not Supported", 505))
                    return
                self._request = event
                self._body.clear()
                self._stream += 1
                self._busy = True
                if _content_length(event) > self.max_body:
                    self._refuse_body()
                    return
                if self._h11.they_are_waiting_for_100_continue:  # curl, for bodies > 1 KiB
                    self._send(
                        h11.InformationalResponse(status_code=100, headers=[], reason=b"Continue")
                    )
            elif isinstance(event, h11.Data):
                if len(self._body) + len(event.data) > self.max_body:
                    self._refuse_body()
                    return
                if self._busy:
                    self._body += event.data
            elif isinstance(event, h11.EndOfMessage):
                if self._busy:
                    self._serve(self._request, bytes(self._body))
                    self._body.clear()
                else:  # answered before its body ended
                    self._cycle()
            elif isinstance(event, h11.ConnectionClosed):
                self._close()
                return

    def _serve(self, request: h11.Request, body: bytes) -> None:
        target = request.target.decode("ascii", "replace")
        path = target.split("?", 1)[0]
        method = request.method
        self._cors = self._cors_headers(request)
        hosts = self.server.host_whitelist
        if hosts is not None and not self._tls and _host(request) not in hosts:
            self._respond(421, MISDIRECTED, TEXT, ((b"X-Content-Type-Options", b"nosniff"),))
        elif path.startswith(("/v3/", gateway.OLD_PREFIX)):
            if wants_websocket(request):
                self._upgrade(request, path)
            else:
                self._gateway(path, method, request, body)
        elif method == b"OPTIONS":
            self._respond(200, b"", None)
        elif path == "/version":
            if self._only_get(method):
                version = {"etcdserver": ETCD_API_VERSION, "etcdcluster": ETCD_API_VERSION}
                self._respond(200, json.dumps(version, separators=(",", ":")).encode(), JSON)
        elif path == "/metrics":
            if self._only_get(method):
                content = b"text/plain; version=0.0.4; charset=utf-8"
                self._respond(200, render(self.app).encode(), content)
        elif path == "/health":
            if self._only_get(method):
                self.app.loop.create_task(self._health(self._stream))
        else:
            self._respond(404, b"404 page not found\n", TEXT)

    def _cors_headers(self, request: h11.Request) -> tuple:
        """Any origin (the default), the request's origin when --cors names it, or none."""
        allowed = self.server.cors
        if allowed is None:
            return CORS_ANY
        origin = _header(request, b"origin")
        if origin in allowed:
            return (*CORS_ALLOW, (b"Access-Control-Allow-Origin", origin.encode()))
        return ()

    def _only_get(self, method: bytes) -> bool:
        if method in (b"GET", b"HEAD"):
            return True
        self._respond(405, b"Method Not Allowed\n", TEXT)
        return False

    async def _health(self, stream: int) -> None:
        ok = await healthy(self.app)
        if stream == self._stream and not self.closed:
            body = b'{"health":"true"}' if ok else b'{"health":"false"}'
            self._respond(200 if ok else 503, body, TEXT)

    def _upgrade(self, request: h11.Request, path: str) -> None:
        """Become a WebSocket carrying the call of ``path`` (any method, as etcd's proxy)."""
        call = self._ws = WebSocketCall(self, gateway.route(path), _token(request))
        self._route = call.route
        trailing, _closed = self._h11.trailing_data
        if not call.start(request, bytes(trailing)):
            self._ws = None
            self._respond(400, b"Bad Request: not a WebSocket handshake\n", TEXT)

    def _gateway(self, path: str, method: bytes, request: h11.Request, body: bytes) -> None:
        if method == b"OPTIONS":  # a browser's CORS preflight
            self._respond(200, b"", None)
            return
        route = gateway.route(path)
        if route is None:
            self._respond(404, b"Not Found\n", TEXT)
            return
        if method != b"POST":
            self._respond(405, b"Method Not Allowed\n", TEXT)
            return
        try:
            # A bidirectional stream's body holds any number of requests, none included.
            bidirectional = route.name in gateway.BIDIRECTIONAL
            messages = gateway.call_requests(body, route, self.max_message, not bidirectional)
        except errors.ApiError as exc:
            self._fail(exc)
            return
        token = _token(request)
        self._route = route
        self._counted, self._code = route, errors.OK
        self.app.grpc_calls.started[route] += 1
        if self.server.paused and route.number not in SERVED_WHILE_PAUSED:
            # The member has too many requests waiting: this one waits for it to resume
            # (keep-alives, watches and status go on), and so does the connection.
            self._parked = (route, messages, token)
            self._transport.pause_reading()
            return
        self.call(route, messages, token)

    def leader_elsewhere(self, route: Method) -> bool:
        """Whether ``route`` is a call the leader answers and another member leads."""
        return route.name in LEADER_CALLS and self.app.leader_id not in (0, self.app.member_id)

    def call(self, route: Method, messages: list[Message], token: str) -> None:
        """Hand the request's messages to the method's handler (or to the leader)."""
        stream, number, dispatch = self._stream, route.number, self.server.dispatch
        messages = messages if route.streaming else messages[:1]
        if messages and self.leader_elsewhere(route):
            bodies = [m.SerializeToString() for m in messages]
            self.start_task(stream, self.relay(stream, route, bodies, token))
            return
        for message in messages:
            dispatch(self, stream, number, 0, message.SerializeToString(), token)
            if stream != self._stream or self.closed:
                return  # answered (an error ends a stream)
        if route.name == "LeaseKeepAlive":
            # The request body is the client's side of the stream: its end ends the call.
            dispatch(self, stream, number, FLAG_END, b"", token)

    async def relay(
        self, stream: int, route: Method, bodies: list[bytes], token: str, end: bool = True
    ) -> None:
        """A lease or membership call the leader answers, passed on to it (leader_relay.py);
        with ``end`` false the call goes on after the leader's answer (a WebSocket's)."""
        url = self.app.members.client_url(self.app.leader_id)
        tls = self.server.leader_tls
        answers = await call_leader(url, route.number, bodies, token, route.streaming, tls)
        if route.name.startswith("Member"):
            await self.app.caught_up()
        for kind, body in answers:
            raise_if_error(kind, body)
            if kind == MESSAGE:
                self.message(stream, body)
            elif kind == REPLY:
                self.reply(stream, body)
            elif kind == END and end:
                self.end(stream)

    # -- answers (the handler table's connection interface) -----------------------------------

    def reply(self, stream: int, body: bytes) -> None:
        if stream == self._stream and self._busy and self._route is not None:
            if self._ws is not None:
                self._ws.send_reply(self._route.response.FromString(body))
                return
            json_body = gateway.to_json(self._route.response.FromString(body))
            self._respond(200, json_body, JSON, CALL_HEADERS)

    def answer(self, stream: int, response: Message) -> None:
        self.reply(stream, self.app.stamp(response).SerializeToString())

    def message(self, stream: int, body: bytes) -> None:
        if stream != self._stream or not self._busy or self._route is None:
            return
        if self._ws is not None:
            self._ws.send_message(self._route.response.FromString(body))
            return
        self._start_stream()
        self._send(h11.Data(data=gateway.stream_result(self._route.response.FromString(body))))

    def end(self, stream: int) -> None:
        if stream != self._stream or not self._busy:
            return
        if self._ws is not None:
            self._ws.close()
            return
        self._start_stream()  # (a stream may end before its first message)
        self._finish()

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if stream != self._stream or not self._busy:
            return
        self._code = error.code
        if self._ws is not None:
            self._ws.fail(error)
            return
        if self._route is None or not self._route.streaming:
            self._fail(error)
            return
        # A streamed call ends with an error line; before its first message the status
        # is the error's (etcd's gateway does the same).
        if not self._streaming:
            self._streaming = True
            status, reason = gateway.status_line(error.code)
            headers = self._headers(JSON)
            self._send(h11.Response(status_code=status, headers=headers, reason=reason))
        self._send(h11.Data(data=gateway.stream_error(error.code, error.message)))
        self._finish()

    def backlog_bytes(self) -> int:
        if self.closed or self._transport is None:
            return 0
        return self._transport.get_write_buffer_size()

    def pause(self, paused: bool) -> None:
        """The member resumed taking requests: the one held (if any) goes now."""
        if paused or self.closed or self._parked is None:
            return
        (route, messages, token), self._parked = self._parked, None
        self._transport.resume_reading()
        self.call(route, messages, token)

    def close_with(self, code: int, message: str) -> None:
        """The member is stopping: answer the request in hand with the error, then close."""
        if self._busy:
            error = errors.ApiError(message)
            error.code = code
            self.error(self._stream, error)
        self._close()

    # -- output -------------------------------------------------------------------------------

    def _headers(self, content_type: bytes | None, extra: tuple = ()) -> list[tuple[bytes, bytes]]:
        headers = [*self._cors, *extra, (b"Date", email.utils.formatdate(usegmt=True).encode())]
        if content_type is not None:
            headers.append((b"Content-Type", content_type))
        return headers

    def _start_stream(self) -> None:
        """The head of a streamed call's successful answer (chunked: no length), once."""
        if not self._streaming:
            self._streaming = True
            headers = self._headers(JSON, CALL_HEADERS)
            self._send(h11.Response(status_code=200, headers=headers, reason=b"OK"))

    def _fail(self, error: errors.ApiError) -> None:
        status, _ = gateway.status_line(error.code)
        self._respond(status, gateway.error_body(error.code, error.message), JSON)

    def _respond(
        self, status: int, body: bytes, content_type: bytes | None, extra: tuple = ()
    ) -> None:
        """A whole answer to the request in hand."""
        headers = self._headers(content_type, extra)
        headers.append((b"Content-Length", str(len(body)).encode()))
        self._send(
            h11.Response(status_code=status, headers=headers, reason=REASONS.get(status, b""))
        )
        if self._request is None or self._request.method != b"HEAD":
            self._send(h11.Data(data=body))
        self._finish()

    def _finish(self) -> None:
        """The answer is complete: take the next request (pipelined ones wait in h11)."""
        self._send(h11.EndOfMessage())
        self._count_end(self._code)
        self._busy = self._streaming = False
        self._route = None
        self._stream += 1  # late answers to the finished request are dropped
        self._cycle()

    def _count_end(self, code: int) -> None:
        if self._counted is not None:
            self.app.grpc_calls.handled[self._counted, code] += 1
            self._counted = None

    def connection_lost(self, exc: Exception | None) -> None:
        self._count_end(errors.CANCELLED)  # a call its client left before its answer
        super().connection_lost(exc)

    def _cycle(self) -> None:
        """After an answer: close if either side asked to, else take the next request once
        this one's body has been read too."""
        ours, theirs = self._h11.our_state, self._h11.their_state
        if ours is h11.MUST_CLOSE or theirs is h11.MUST_CLOSE:
            self._close()
        elif ours is h11.DONE and theirs is h11.DONE:
            self._h11.start_next_cycle()
            self.app.loop.call_soon(self._next)

    def _send(self, event: Any) -> None:
        if self.closed or self._discarding or not self._transport or self._transport.is_closing():
            return
        try:
            data = self._h11.send(event)
        except h11.LocalProtocolError:
            log.exception("gateway answer broke HTTP/1.1; closing the connection")
            self._close()
            return
        if data:
            self._transport.write(data)

    def _refuse_body(self) -> None:
        """A body larger than any request may be: refused without reading it. The answer
        goes out, then the connection ends; what the client still sends is dropped."""
        self._body.clear()
        self._fail(gateway.MessageTooLarge(None, self.max_body))
        self._discarding = True
        if self._transport is not None:
            close_after_last_word(self._transport)

    def _bad_request(self, exc: h11.RemoteProtocolError) -> None:
        """Bytes that are not HTTP/1.1: answer 400 (as Go's server does) unless an answer is
        already under way, then close."""
        log.info("closing an HTTP client connection: %s", exc)
        if self._h11.our_state in (h11.IDLE, h11.SEND_RESPONSE) and not self._streaming:
            status = exc.error_status_hint
            reason = {
                431: b"Request Header Fields Too Large",
                505: b"HTTP Version Not Supported",
            }.get(status, b"Bad Request")
            line = b"%d %s" % (status, reason)
            self._transport.write(
                b"HTTP/1.1 " + line + b"\r\nContent-Type: text/plain; charset=utf-8\r\n"
                b"Connection: close\r\n\r\n" + line
            )
        self._discarding = True
        close_after_last_word(self._transport)

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


def _header(request: h11.Request, name: bytes) -> str:
    """A header's value ('' when absent); h11 gives names in lower case."""
    for key, value in request.headers:
        if key == name:
            return value.decode("latin-1")
    return ""


def _host(request: h11.Request) -> str:
    """The host name the request names, without its port (and an IPv6 address's brackets)."""
    host = _header(request, b"host")
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def _content_length(request: h11.Request) -> int:
    return int(_header(request, b"content-length") or 0)  # h11 has checked it is a number


def _token(request: h11.Request) -> str:
    """The auth token of a request: etcd's gateway takes it from either header."""
    token = ""
    for name, value in request.headers:
        if name in (b"authorization", b"grpc-metadata-token"):
            token = value.decode("latin-1")
    return token
