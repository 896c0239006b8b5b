"""A native-protocol front for a real etcd, so pyraftkvctl can be tested end to end today.

EtcdBridge listens for pyraftkv's native frames and forwards each call to etcd's JSON
gateway (POST /v3/kv/range, /v3/watch, ...), which takes and returns the same etcd v3
messages in their JSON form. pyraftkvctl's whole path (flags, request building, client,
printing) then runs against etcd itself, and its output can be compared with etcdctl's.
Streams: a watch or an election observation is one streaming POST; each keep-alive on a
LeaseKeepAlive stream is a POST of its own. HashKV has no gateway route in etcd 3.4 and
answers "unknown method".
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import socket
import threading

from google.protobuf import json_format

from pyraftkv import errors
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.frames import (
    END,
    FLAG_END,
    MESSAGE,
    REPLY,
    FrameDecoder,
    encode_error,
    encode_frame,
)
from pyraftkv.protocol.methods import BY_NUMBER, METHOD_NUMBERS

GATEWAY_PATHS = {
    "Range": "/v3/kv/range",
    "Put": "/v3/kv/put",
    "DeleteRange": "/v3/kv/deleterange",
    "Txn": "/v3/kv/txn",
    "Compact": "/v3/kv/compaction",
    "MemberList": "/v3/cluster/member/list",
    "MemberAdd": "/v3/cluster/member/add",
    "MemberRemove": "/v3/cluster/member/remove",
    "MemberUpdate": "/v3/cluster/member/update",
    "MemberPromote": "/v3/cluster/member/promote",
    "Status": "/v3/maintenance/status",
    "MoveLeader": "/v3/maintenance/transfer-leadership",
    "LeaseGrant": "/v3/lease/grant",
    "LeaseRevoke": "/v3/lease/revoke",
    "LeaseTimeToLive": "/v3/lease/timetolive",
    "LeaseLeases": "/v3/lease/leases",
    "Lock": "/v3/lock/lock",
    "Unlock": "/v3/lock/unlock",
    "Campaign": "/v3/election/campaign",
    "Proclaim": "/v3/election/proclaim",
    "Leader": "/v3/election/leader",
    "Resign": "/v3/election/resign",
}
# Server streams: the first message opens one streaming POST whose results are forwarded.
STREAM_PATHS = {"Watch": "/v3/watch", "Observe": "/v3/election/observe"}
KEEP_ALIVE_PATH = "/v3/lease/keepalive"
# Calls that wait for their turn (a lock, a campaign) as long as it takes.
WAITING = frozenset(("Lock", "Campaign"))


def _json_body(request) -> str:
    return json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True))


def _post(connection: http.client.HTTPConnection, path: str, request) -> tuple[int, dict]:
    """POST one request; the status and the first JSON object of the answer."""
    try:
        connection.request("POST", path, _json_body(request), {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.readline() or b"{}")
    finally:
        connection.close()


def _hang_up(connection: http.client.HTTPConnection) -> None:
    """End a watch's HTTP stream from another thread: shutting the socket down wakes the
    thread blocked reading it (closing the reader instead would wait for that thread)."""
    if connection.sock is not None:
        with contextlib.suppress(OSError):
            connection.sock.shutdown(socket.SHUT_RDWR)


class _BridgeConnection(asyncio.Protocol):
    def __init__(self, bridge: EtcdBridge) -> None:
        self.bridge = bridge
        self.decoder = FrameDecoder(4 << 20, METHOD_NUMBERS)
        self.transport: asyncio.Transport | None = None
        self.streams: dict[int, http.client.HTTPConnection] = {}
        self.in_flight: set[http.client.HTTPConnection] = set()

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        for connection in [*self.streams.values(), *self.in_flight]:
            _hang_up(connection)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def http(self, timeout: float | None = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection(
            self.bridge.etcd_host, self.bridge.etcd_port, timeout=timeout
        )

    def data_received(self, data: bytes) -> None:
        for stream, code, flags, body in self.decoder.feed(data):
            method = BY_NUMBER[code]
            if method.name in STREAM_PATHS:
                self.stream_frame(stream, method, flags, body)
            elif method.name == "LeaseKeepAlive":
                if not flags & FLAG_END:
                    asyncio.ensure_future(self.keep_alive(stream, body))
            else:
                asyncio.ensure_future(self.unary(stream, method, body))

    async def forward(self, path: str, request, timeout: float | None = 10):
        """POST in a worker thread; hung up if our client goes away first."""
        connection = self.http(timeout)
        self.in_flight.add(connection)
        try:
            return await asyncio.get_running_loop().run_in_executor(
                None, _post, connection, path, request
            )
        finally:
            self.in_flight.discard(connection)

    async def unary(self, stream: int, method, body: bytes) -> None:
        path = GATEWAY_PATHS.get(method.name)
        if path is None:
            self.send(encode_error(stream, errors.UNIMPLEMENTED, "unknown method"))
            return
        request = method.request.FromString(body)
        timeout = None if method.name in WAITING else 10
        try:
            status, answer = await self.forward(path, request, timeout)
        except (OSError, ValueError, http.client.HTTPException):
            return  # hung up: our client is gone
        if status != 200:
            self.send(encode_error(stream, answer.get("code", 2), answer.get("message", "")))
            return
        reply = json_format.ParseDict(answer, method.response(), ignore_unknown_fields=True)
        self.send(encode_frame(stream, REPLY, reply.SerializeToString()))

    async def keep_alive(self, stream: int, body: bytes) -> None:
        """One keep-alive of a LeaseKeepAlive stream, as a POST of its own."""
        request = rpc.LeaseKeepAliveRequest.FromString(body)
        try:
            _, answer = await self.forward(KEEP_ALIVE_PATH, request)
        except (OSError, ValueError, http.client.HTTPException):
            return
        reply = json_format.ParseDict(answer.get("result", {}), rpc.LeaseKeepAliveResponse(), True)
        self.send(encode_frame(stream, MESSAGE, reply.SerializeToString()))

    def stream_frame(self, stream: int, method, flags: int, body: bytes) -> None:
        if flags & FLAG_END:
            connection = self.streams.pop(stream, None)
            if connection is not None:
                _hang_up(connection)
            return
        connection = self.http(timeout=None)
        self.streams[stream] = connection
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self.pump,
            args=(loop, connection, stream, method, method.request.FromString(body)),
            daemon=True,
        ).start()

    def pump(self, loop, connection, stream: int, method, request) -> None:
        """Forward each {"result": ...} line of the gateway's stream as a frame."""
        try:
            connection.request("POST", STREAM_PATHS[method.name], _json_body(request))
            response = connection.getresponse()
            for line in response:
                result = json.loads(line).get("result", {})
                reply = json_format.ParseDict(result, method.response(), True)
                frame = encode_frame(stream, MESSAGE, reply.SerializeToString())
                loop.call_soon_threadsafe(self.send, frame)
        except (OSError, ValueError, http.client.HTTPException, AttributeError):
            pass  # hung up by the client (FLAG_END) or by etcd
        finally:
            connection.close()
        loop.call_soon_threadsafe(self.send, encode_frame(stream, END))


class EtcdBridge:
    """Serves pyraftkv's native protocol on 127.0.0.1 by forwarding to one etcd member.

    Runs its own event loop on a thread, so synchronous tests (and pyraftkvctl's own
    asyncio.run) can use it; ``endpoint`` is the host:port to give pyraftkvctl.
    """

    def __init__(self, etcd_host: str, etcd_port: int) -> None:
        self.etcd_host, self.etcd_port = etcd_host, etcd_port
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            self._loop.create_server(lambda: _BridgeConnection(self), "127.0.0.1", 0), self._loop
        ).result()
        self.port = self._server.sockets[0].getsockname()[1]
        self.endpoint = f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self._loop.call_soon_threadsafe(self._server.close)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
