"""A native-protocol front for a real etcd, so pyraftkvctl can be tested end to end today.

EtcdBridge listens for pyraftkv's native frames and forwards each call to etcd's JSON
gateway (POST /v3/kv/range, /v3/watch, ...), which takes and returns the same etcd v3
messages in their JSON form. pyraftkvctl's whole path (flags, request building, client,
printing) then runs against etcd itself, and its output can be compared with etcdctl's.
HashKV has no gateway route in etcd 3.4 and answers "unknown method".
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
}


def _post(host: str, port: int, path: str, request) -> tuple[int, dict]:
    body = json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True))
    connection = http.client.HTTPConnection(host, port, timeout=10)
    try:
        connection.request("POST", path, body, {"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"{}")
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
        self.watches: dict[int, http.client.HTTPConnection] = {}

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        for connection in self.watches.values():
            _hang_up(connection)

    def send(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def data_received(self, data: bytes) -> None:
        for stream, code, flags, body in self.decoder.feed(data):
            method = BY_NUMBER[code]
            if method.name == "Watch":
                self.watch_frame(stream, flags, body)
            else:
                asyncio.ensure_future(self.unary(stream, method, body))

    async def unary(self, stream: int, method, body: bytes) -> None:
        path = GATEWAY_PATHS.get(method.name)
        if path is None:
            self.send(encode_error(stream, errors.UNIMPLEMENTED, "unknown method"))
            return
        request = method.request.FromString(body)
        status, answer = await asyncio.get_running_loop().run_in_executor(
            None, _post, self.bridge.etcd_host, self.bridge.etcd_port, path, request
        )
        if status != 200:
            self.send(encode_error(stream, answer.get("code", 2), answer.get("message", "")))
            return
        reply = json_format.ParseDict(answer, method.response(), ignore_unknown_fields=True)
        self.send(encode_frame(stream, REPLY, reply.SerializeToString()))

    def watch_frame(self, stream: int, flags: int, body: bytes) -> None:
        if flags & FLAG_END:
            connection = self.watches.pop(stream, None)
            if connection is not None:
                _hang_up(connection)
            return
        request = rpc.WatchRequest.FromString(body)
        connection = http.client.HTTPConnection(self.bridge.etcd_host, self.bridge.etcd_port)
        self.watches[stream] = connection
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=self.pump_watch, args=(loop, connection, stream, request), daemon=True
        ).start()

    def pump_watch(self, loop, connection, stream: int, request) -> None:
        """Forward each {"result": WatchResponse} line of the gateway's stream as a frame."""
        payload = json.dumps(json_format.MessageToDict(request, preserving_proto_field_name=True))
        try:
            connection.request("POST", "/v3/watch", payload)
            response = connection.getresponse()
            for line in response:
                result = json.loads(line).get("result", {})
                reply = json_format.ParseDict(result, rpc.WatchResponse(), True)
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
