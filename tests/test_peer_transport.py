"""Peer links on loopback: what send reports while a link is still connecting, and a sender
waiting out its reconnect backoff dialling at once when the peer connects to it."""

from __future__ import annotations

import asyncio

from pyraftkv.node import peer_transport
from pyraftkv.node.peer_transport import PeerTransport

from .e2e.harness import free_ports

CLUSTER = 0xC1


def transport(member_id: int, received: list) -> PeerTransport:
    return PeerTransport(
        member_id=member_id,
        cluster_id=CLUSTER,
        on_message=lambda sender, frame: received.append((sender, frame)),
        on_unreachable=lambda peer: None,
    )


async def until(condition, timeout: float) -> bool:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.01)
    return True


def test_send_reports_frames_dropped_while_the_link_connects():
    """A follower forwarding a proposal learns it was not sent, so it can refuse it at once."""

    async def scenario():
        (port_b,) = free_ports(1)
        got_b: list = []
        a = transport(1, [])
        a.set_peer(2, [("127.0.0.1", port_b, False)])
        try:
            await asyncio.sleep(0.05)
            assert a.send(2, [b"lost"]) is False  # nobody listens there yet
            assert a.send(3, [b"lost"]) is False  # not a peer at all
            b = transport(2, got_b)
            await b.listen([("127.0.0.1", port_b, False)])
            try:
                assert await until(lambda: a.is_connected(2), 5.0)
                assert a.send(2, [b"hello"]) is True
                assert await until(lambda: got_b, 5.0)
                assert got_b == [(1, b"hello")]
            finally:
                await b.close()
        finally:
            await a.close()

    asyncio.run(scenario())


def test_a_peer_connecting_in_cuts_the_backoff_short(monkeypatch):
    """With a backoff far longer than the test, member 1 reaches member 2 only because
    member 2's own connection to it wakes its sender."""
    monkeypatch.setattr(peer_transport, "BACKOFF_FIRST_S", 60.0)
    monkeypatch.setattr(peer_transport, "BACKOFF_MAX_S", 60.0)

    async def scenario():
        port_a, port_b = free_ports(2)
        a = transport(1, [])
        await a.listen([("127.0.0.1", port_a, False)])
        a.set_peer(2, [("127.0.0.1", port_b, False)])
        b = transport(2, [])
        try:
            await asyncio.sleep(0.2)  # a's first dial failed: it now waits 60 s
            assert not a.is_connected(2)
            await b.listen([("127.0.0.1", port_b, False)])
            b.set_peer(1, [("127.0.0.1", port_a, False)])
            assert await until(lambda: b.is_connected(1), 5.0)
            assert await until(lambda: a.is_connected(2), 5.0)
        finally:
            await a.close()
            await b.close()

    asyncio.run(scenario())


def test_frames_arrive_whole_in_order_and_each_read_ends_with_frames_done():
    """Frames cut at any byte reach on_message whole; after each read on_frames_done runs
    (the Raft process takes its Ready then); a frame over the limit closes only that
    connection."""

    async def scenario():
        (port,) = free_ports(1)
        events: list = []
        b = PeerTransport(
            member_id=2,
            cluster_id=CLUSTER,
            on_message=lambda sender, frame: events.append((sender, frame)),
            on_frames_done=lambda: events.append("done"),
            on_unreachable=lambda peer: None,
            is_peer=lambda peer: peer == 1,
        )
        await b.listen([("127.0.0.1", port, False)])
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                peer_transport.encode_handshake(peer_transport.CHANNEL_MESSAGES, CLUSTER, 1, 2)
            )
            assert await reader.readexactly(1) == peer_transport.ACCEPT
            frames = [b"one", b"two" * 100, b"three"]
            wire = b"".join(peer_transport.FRAME.pack(len(f)) + f for f in frames)
            for i in range(0, len(wire), 7):  # cut mid-header and mid-frame
                writer.write(wire[i : i + 7])
                await writer.drain()
                await asyncio.sleep(0.002)
            assert await until(lambda: len([e for e in events if e != "done"]) == 3, 5.0)
            assert [e for e in events if e != "done"] == [(1, f) for f in frames]
            assert events[-1] == "done"
            writer.write(peer_transport.FRAME.pack(peer_transport.MAX_FRAME_BYTES + 1))
            assert await asyncio.wait_for(reader.read(), 5.0) == b""  # closed by b
            writer.close()
            # b goes on: a new connection is accepted and served
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                peer_transport.encode_handshake(peer_transport.CHANNEL_MESSAGES, CLUSTER, 1, 2)
            )
            assert await reader.readexactly(1) == peer_transport.ACCEPT
            writer.write(peer_transport.FRAME.pack(4) + b"more")
            assert await until(lambda: (1, b"more") in events, 5.0)
            writer.close()
        finally:
            await b.close()

    asyncio.run(scenario())
