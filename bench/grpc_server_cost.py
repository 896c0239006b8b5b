"""What one unary gRPC call costs a Python server's CPU: grpc.aio's server (what the gRPC
front ran until it had its own HTTP/2), the h2 library's HTTP/2 state machine on asyncio,
a minimal frame-level HTTP/2 server on asyncio (HPACK decoding by the hpack library,
answers from constant header blocks), and pyraftkv's own (protocol/http2.py, what the
gRPC front runs). Each server answers etcd's ``KV/Put`` with a fixed PutResponse; a
grpc.aio client in this process keeps ``--inflight`` calls going for ``--seconds``.

    pip install h2            # the h2 library: this script only, not a pyraftkv dependency
    python bench/grpc_server_cost.py [--servers grpc,h2,frames,pyraftkv] [--seconds 6] \\
        [--inflight 64]

Prints calls/s and the server process's CPU per call (/proc), the steadier figure on a
shared machine. The frame-level server is a lower bound, not a product: it handles one
HEADERS block per call and no CONTINUATION, trusts the client's flow-control windows and
answers only Put; a complete server adds that bookkeeping and its error paths.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import struct
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

from pyraftkv.proto import rpc_pb2 as rpc  # noqa: E402

RESPONSE = rpc.PutResponse(
    header=rpc.ResponseHeader(cluster_id=1, member_id=2, revision=12345, raft_term=3)
).SerializeToString()
MESSAGE = b"\x00" + len(RESPONSE).to_bytes(4, "big") + RESPONSE  # gRPC length-prefixed
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, WINDOW_UPDATE = 0, 1, 3, 4, 6, 8
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY = 1, 1, 4, 8, 0x20


def frame(kind: int, flags: int, stream: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big") + bytes((kind, flags)) + stream.to_bytes(4, "big") + payload
    )


def literal(name: bytes, value: bytes) -> bytes:
    """An HPACK literal field, not indexed: constant bytes whatever the decoder's table."""
    return b"\x00" + bytes((len(name),)) + name + bytes((len(value),)) + value


RESPONSE_HEADERS = b"\x88" + literal(b"content-type", b"application/grpc")  # :status 200
TRAILERS = literal(b"grpc-status", b"0")


def answer(stream: int) -> bytes:
    return (
        frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS)
        + frame(DATA, 0, stream, MESSAGE)
        + frame(HEADERS, END_HEADERS | END_STREAM, stream, TRAILERS)
    )


class FrameServer(asyncio.Protocol):
    """HTTP/2 read frame by frame: the least per call a server on asyncio can spend."""

    def connection_made(self, transport) -> None:
        from hpack import Decoder

        self.transport = transport
        self.buffer = bytearray()
        self.preface_seen = False
        self.decoder = Decoder()
        self.bodies: dict[int, bytearray] = {}
        self.unacknowledged = 0
        settings = struct.pack(">HI", 4, 1 << 24)  # INITIAL_WINDOW_SIZE
        transport.write(
            frame(SETTINGS, 0, 0, settings) + frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", 1 << 30))
        )

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer
        buffer += data
        if not self.preface_seen:
            if len(buffer) < len(PREFACE):
                return
            if bytes(buffer[: len(PREFACE)]) != PREFACE:
                self.transport.close()
                return
            del buffer[: len(PREFACE)]
            self.preface_seen = True
        out = []
        offset, size = 0, len(buffer)
        while size - offset >= 9:
            length = int.from_bytes(buffer[offset : offset + 3], "big")
            if size - offset < 9 + length:
                break
            kind, flags = buffer[offset + 3], buffer[offset + 4]
            stream = int.from_bytes(buffer[offset + 5 : offset + 9], "big") & 0x7FFFFFFF
            payload = bytes(buffer[offset + 9 : offset + 9 + length])
            offset += 9 + length
            if kind == HEADERS:
                if flags & PADDED:
                    payload = payload[1 : len(payload) - payload[0]]
                if flags & PRIORITY:
                    payload = payload[5:]
                self.decoder.decode(payload, raw=True)
                self.bodies[stream] = bytearray()
            elif kind == DATA:
                self.bodies[stream] += payload
                self.unacknowledged += length
                if flags & END_STREAM:
                    body = self.bodies.pop(stream)
                    rpc.PutRequest.FromString(bytes(body[5:]))
                    out.append(answer(stream))
            elif kind == SETTINGS and not flags & ACK:
                out.append(frame(SETTINGS, ACK, 0, b""))
            elif kind == PING and not flags & ACK:
                out.append(frame(PING, ACK, 0, payload))
            elif kind == RST_STREAM:
                self.bodies.pop(stream, None)
        del buffer[:offset]
        if self.unacknowledged > 1 << 20:
            out.append(frame(WINDOW_UPDATE, 0, 0, struct.pack(">I", self.unacknowledged)))
            self.unacknowledged = 0
        if out:
            self.transport.write(b"".join(out))


class H2Server(asyncio.Protocol):
    """The same answers through the h2 library's connection state machine."""

    def connection_made(self, transport) -> None:
        import h2.config
        import h2.connection

        self.transport = transport
        config = h2.config.H2Configuration(client_side=False, header_encoding=None)
        self.connection = h2.connection.H2Connection(config=config)
        self.connection.initiate_connection()
        self.connection.increment_flow_control_window(1 << 30)
        transport.write(self.connection.data_to_send())
        self.bodies: dict[int, bytearray] = {}

    def data_received(self, data: bytes) -> None:
        import h2.events

        connection = self.connection
        for event in connection.receive_data(data):
            if isinstance(event, h2.events.RequestReceived):
                self.bodies[event.stream_id] = bytearray()
            elif isinstance(event, h2.events.DataReceived):
                self.bodies[event.stream_id] += event.data
                connection.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            elif isinstance(event, h2.events.StreamEnded):
                stream = event.stream_id
                rpc.PutRequest.FromString(bytes(self.bodies.pop(stream)[5:]))
                connection.send_headers(
                    stream, [(b":status", b"200"), (b"content-type", b"application/grpc")]
                )
                connection.send_data(stream, MESSAGE)
                connection.send_headers(stream, [(b"grpc-status", b"0")], end_stream=True)
        out = connection.data_to_send()
        if out:
            self.transport.write(out)


class PyraftkvServer(asyncio.Protocol):
    """The same answers through protocol/http2.py."""

    def connection_made(self, transport) -> None:
        from pyraftkv.protocol.http2 import Http2Server

        self.transport = transport
        self.h2 = Http2Server(1 << 20)
        transport.write(self.h2.data_to_send())

    def data_received(self, data: bytes) -> None:
        from pyraftkv.protocol import http2

        h2 = self.h2
        for event in h2.receive(data):
            if type(event) is http2.Message:
                rpc.PutRequest.FromString(event.body)
            elif type(event) is http2.HalfClosed:
                h2.send_message(event.stream, RESPONSE)
                h2.send_trailers(event.stream)
        self.transport.write(h2.data_to_send())


PROTOCOLS = {"frames": FrameServer, "h2": H2Server, "pyraftkv": PyraftkvServer}


async def serve(kind: str, port: int) -> None:
    if kind == "grpc":
        import grpc

        async def put(body: bytes, context) -> bytes:
            rpc.PutRequest.FromString(body)
            return RESPONSE

        server = grpc.aio.server()
        handler = grpc.unary_unary_rpc_method_handler(put)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler("etcdserverpb.KV", {"Put": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
    else:
        await asyncio.get_running_loop().create_server(PROTOCOLS[kind], "127.0.0.1", port)
    await asyncio.Event().wait()


def cpu_seconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def load(kind: str, port: int, server_pid: int, seconds: float, inflight: int) -> str:
    import grpc

    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        put = channel.unary_unary(
            "/etcdserverpb.KV/Put",
            request_serializer=rpc.PutRequest.SerializeToString,
            response_deserializer=rpc.PutResponse.FromString,
        )
        for _ in range(200):  # connect and warm up
            await put(rpc.PutRequest(key=b"warm", value=b"v" * 128), timeout=10)
        calls = 0
        stop = time.monotonic() + seconds
        cpu_before, began = cpu_seconds(server_pid), time.monotonic()

        async def caller(n: int) -> None:
            nonlocal calls
            request = rpc.PutRequest(key=b"key/%d" % n, value=b"v" * 128)
            while time.monotonic() < stop:
                response = await put(request, timeout=10)
                if response.header.revision != 12345:
                    raise AssertionError("a wrong answer")
                calls += 1

        await asyncio.gather(*(caller(n) for n in range(inflight)))
        elapsed, cpu = time.monotonic() - began, cpu_seconds(server_pid) - cpu_before
    return (
        f"{kind:7} {calls / elapsed:9,.0f} calls/s  server CPU {cpu / calls * 1e6:6.1f} us/call"
        f"  ({100 * cpu / elapsed:.0f} % of a core)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--servers", default="grpc,h2,frames,pyraftkv")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--inflight", type=int, default=64)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)  # KIND PORT, in the child
    args = parser.parse_args()
    from pyraftkv.node.event_loop import run

    if args.serve:
        run(serve(args.serve[0], int(args.serve[1])))
        return 0
    for kind in args.servers.split(","):
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", kind, str(port)])
        try:
            time.sleep(1.5)
            print(run(load(kind, port, server.pid, args.seconds, args.inflight)), flush=True)
        finally:
            server.kill()
            server.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
