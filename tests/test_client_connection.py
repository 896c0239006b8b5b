"""One native connection's flow control, driven directly with a fake transport: requests
held in order while the member is paused (keep-alives and watches still served), reading
stopped when too much is held or the client does not read its replies, replies too large
for a frame failed cleanly, and the connection limit."""

from __future__ import annotations

import asyncio
import time

import pytest

from pyraftkv import errors
from pyraftkv.node import client_connection as cc
from pyraftkv.node.grpc_metrics import GrpcCallCounts
from pyraftkv.node.proposals import Proposals
from pyraftkv.node.reply import PendingOutput
from pyraftkv.proto import rpc_pb2 as rpc
from pyraftkv.protocol.frames import ERROR, FrameDecoder, decode_error, encode_frame
from pyraftkv.protocol.methods import BY_NAME

PUT = BY_NAME["Put"].number
KEEPALIVE = BY_NAME["LeaseKeepAlive"].number


class Transport:
    def __init__(self) -> None:
        self.reading = True
        self.written = b""
        self.closed = False
        self.ended = False  # this side's end of stream sent

    def get_extra_info(self, name):
        return None

    def set_write_buffer_limits(self, high=None):
        self.high = high

    def pause_reading(self):
        self.reading = False

    def resume_reading(self):
        self.reading = True

    def write(self, data):
        self.written += data

    def is_closing(self):
        return self.closed

    def close(self):
        self.closed = True

    def abort(self):
        self.closed = True

    def can_write_eof(self):
        return True

    def write_eof(self):
        self.ended = True

    def get_write_buffer_size(self):
        return 0

    def frames(self):
        return FrameDecoder(1 << 31, frozenset(range(4))).feed(self.written)


class App:
    def __init__(self, loop) -> None:
        self.loop = loop
        self.proposals = Proposals(1, lambda message: None, 5.0)
        self.output = PendingOutput(loop)
        self.grpc_calls = GrpcCallCounts()


class Server:
    def __init__(self, loop) -> None:
        self.app = App(loop)
        self.max_request_bytes = 1 << 20
        self.connections = set()
        self.on_connection_lost = []
        self.paused = False
        self.dispatched: list[tuple[int, int]] = []
        self.arrivals: list[int] = []  # proposals.arrived_ns as each frame was dispatched
        self.cors = self.host_whitelist = None  # (the HTTP side's: anything goes)

    def dispatch(self, connection, stream, method, flags, body, token="", relayed=None):
        self.dispatched.append((stream, method))
        self.arrivals.append(self.app.proposals.arrived_ns)


def connection(loop) -> tuple[cc.ClientConnection, Server, Transport]:
    server, transport = Server(loop), Transport()
    conn = cc.ClientConnection(server)
    conn.connection_made(transport)
    return conn, server, transport


def put(stream: int, size: int = 10) -> bytes:
    return encode_frame(
        stream, PUT, rpc.PutRequest(key=b"k", value=b"v" * size).SerializeToString()
    )


def run(test):
    async def main():
        await test(asyncio.get_running_loop())

    asyncio.run(main())


def test_paused_member_holds_writes_in_order_and_serves_keep_alives():
    async def test(loop):
        conn, server, transport = connection(loop)
        server.paused = True
        conn.pause(True)
        conn.data_received(put(1) + encode_frame(3, KEEPALIVE, b"") + put(5))
        assert server.dispatched == [(3, KEEPALIVE)]  # the keep-alive went through at once
        assert transport.reading and not conn.idle
        server.paused = False
        conn.pause(False)
        assert server.dispatched == [(3, KEEPALIVE), (1, PUT), (5, PUT)]

    run(test)


def test_frames_of_one_read_are_dispatched_stamped_with_its_arrival():
    """The stage trace starts when the read arrived: every frame of it is handled with
    that reading, and nothing handled outside a read carries one."""

    async def test(loop):
        conn, server, _ = connection(loop)
        before = time.monotonic_ns()
        conn.data_received(put(1) + put(3))
        after = time.monotonic_ns()
        conn.data_received(put(5))
        first, second, third = server.arrivals
        assert before <= first == second <= after < third
        assert server.app.proposals.arrived_ns == 0
        server.paused = True
        conn.pause(True)
        conn.data_received(put(7))  # held, then handled when the member resumes
        server.paused = False
        conn.pause(False)
        assert server.arrivals[-1] == 0

    run(test)


def test_too_much_held_or_unread_stops_reading_until_it_drains(monkeypatch):
    monkeypatch.setattr(cc, "MAX_PARKED_BYTES", 1000)

    async def test(loop):
        conn, server, transport = connection(loop)
        server.paused = True
        conn.data_received(b"".join(put(i, 300) for i in range(1, 5)))
        assert not transport.reading
        server.paused = False
        conn.pause(False)
        assert transport.reading and len(server.dispatched) == 4
        conn.pause_writing()  # the client stopped reading its replies
        assert not transport.reading
        conn.resume_writing()
        assert transport.reading

    run(test)


def test_a_reply_too_large_for_a_frame_fails_that_call(monkeypatch):
    monkeypatch.setattr(cc, "MAX_REPLY_BYTES", 100)

    async def test(loop):
        conn, server, transport = connection(loop)
        conn.data_received(put(7))
        conn.reply(7, b"x" * 101)
        server.app.output.write()
        (frame,) = transport.frames()
        assert (frame.stream, frame.code) == (7, ERROR)
        code, message, _ = decode_error(frame.body)
        assert code == errors.RESOURCE_EXHAUSTED and "larger than the 100 bytes" in message

    run(test)


@pytest.mark.parametrize("open_already", [0, 1])
def test_connections_past_the_limit_are_closed_with_a_reason(monkeypatch, open_already):
    monkeypatch.setattr(cc, "MAX_CONNECTIONS", 1)

    async def test(loop):
        server = Server(loop)
        server.connections = {object() for _ in range(open_already)}
        transport = Transport()
        cc.ClientConnection(server).connection_made(transport)
        if open_already:
            assert transport.ended
            (frame,) = transport.frames()
            assert decode_error(frame.body)[1] == "etcdserver: too many connections"
        else:
            assert not transport.ended and len(server.connections) == 1

    run(test)


def test_a_connection_that_never_says_which_protocol_is_closed(monkeypatch):
    from pyraftkv.node import client_port

    monkeypatch.setattr(client_port, "SILENT_TIMEOUT_S", 0.05)

    async def test(loop):
        silent, talking = Transport(), Transport()
        client_port.ClientPort({}).connection_made(silent)
        port = client_port.ClientPort({})
        port.connection_made(talking)
        port.data_received(b"GET / HTTP/1.1\r\n")  # decided (and closed: nothing serves it)
        talking.closed = False
        await asyncio.sleep(0.2)
        assert silent.closed and not talking.closed

    run(test)


def test_a_task_ending_leaves_a_later_one_on_its_stream_tracked():
    # A follower relays a WebSocket client's keep-alives one after another, each a task on
    # the same stream: the first one ending must not untrack the one still running (the
    # connection would look idle, and closing it would not cancel that one).
    async def test(loop):
        conn, _server, _transport = connection(loop)
        first_may_end, second_may_end = asyncio.Event(), asyncio.Event()

        async def relay(may_end: asyncio.Event) -> None:
            await may_end.wait()

        conn.start_task(7, relay(first_may_end))
        conn.start_task(7, relay(second_may_end))
        second = conn.tasks[7]
        first_may_end.set()
        for _ in range(3):
            await asyncio.sleep(0)
        assert conn.tasks == {7: second} and not conn.idle
        conn.connection_lost(None)
        await asyncio.sleep(0)
        assert second.cancelled()

    run(test)


def test_replies_queued_in_one_turn_leave_in_one_send_per_connection():
    """PendingOutput: every connection with replies queued is written once, by one
    callback, or at once when asked (as an apply does)."""

    async def test(loop):
        (a, server, ta), (b, _, tb) = connection(loop), connection(loop)
        b.app = a.app = server.app
        for stream in (1, 3):
            a.data_received(put(stream))
            a.reply(stream, b"r")
        b.data_received(put(5))
        b.reply(5, b"r")
        assert ta.written == tb.written == b""
        await asyncio.sleep(0)  # the one callback
        assert len(ta.frames()) == 2 and len(tb.frames()) == 1
        a.data_received(put(7))
        a.reply(7, b"now")
        server.app.output.write()  # what an apply does: no wait for the callback
        assert len(ta.frames()) == 3

    run(test)
