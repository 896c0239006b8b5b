"""The links between a member's two sides. The ring link both processes use: order kept
through a backlog while the other side is slow, delivery on the event loop, and a bounded
backlog that reports a stuck reader. The local link of a --single-process member: order,
one batch per pass of the loop, never re-entrant."""

from __future__ import annotations

import asyncio

from pyraftkv.node.ring_link import LocalLink, RingBacklogFull, RingLink
from pyraftkv.ring import ShmRing


def link_pair(capacity: int, limit: int, received: list[bytes], overflows: list[Exception]):
    """Two links over one pair of real rings, as the two processes hold them."""
    loop = asyncio.get_running_loop()
    a_to_b = ShmRing.create(capacity, role="producer")
    b_to_a = ShmRing.create(capacity, role="consumer")
    b_in = ShmRing.attach(a_to_b.fds, "consumer")
    b_out = ShmRing.attach(b_to_a.fds, "producer")
    a = RingLink(a_to_b, b_to_a, loop, lambda m: None, overflows.append, limit)
    b = RingLink(b_out, b_in, loop, received.extend, overflows.append, limit)
    return a, b, (a_to_b, b_to_a, b_in, b_out)


def test_backlog_keeps_order_and_drains_when_the_reader_starts() -> None:
    async def run() -> None:
        received: list[bytes] = []
        overflows: list[Exception] = []
        a, b, rings = link_pair(8192, 1 << 20, received, overflows)
        a.start()
        sent = [i.to_bytes(4, "big") * 100 for i in range(200)]  # 80 KB through an 8 KB ring
        for message in sent:
            a.send(message)
        assert a.backlog_bytes > 0  # the reader has not started: most of it waits
        b.start()
        for _ in range(500):
            if len(received) == len(sent):
                break
            await asyncio.sleep(0.01)
        assert received == sent
        assert a.backlog_bytes == 0 and overflows == []
        a.close()
        b.close()
        for ring in rings:
            ring.close()

    asyncio.run(run())


def test_a_reader_that_stops_reading_is_reported_once() -> None:
    async def run() -> None:
        overflows: list[Exception] = []
        a, b, rings = link_pair(8192, 64 << 10, [], overflows)
        for _ in range(300):  # 300 KB, nobody reading
            a.send(b"x" * 1000)
        assert len(overflows) == 1 and isinstance(overflows[0], RingBacklogFull)
        assert "has not read its ring" in str(overflows[0])
        a.close()
        b.close()
        for ring in rings:
            ring.close()

    asyncio.run(run())


def test_send_many_keeps_order_with_sends_and_through_the_backlog() -> None:
    async def run() -> None:
        received: list[bytes] = []
        overflows: list[Exception] = []
        a, b, rings = link_pair(8192, 1 << 20, received, overflows)
        a.start()
        sent = [i.to_bytes(4, "big") * 50 for i in range(300)]  # 60 KB through an 8 KB ring
        a.send(sent[0])
        a.send_many(sent[1:100])  # part fits, the rest waits in the backlog
        assert a.backlog_bytes > 0
        a.send_many(sent[100:299])  # behind the backlog, never before it
        a.send(sent[299])
        b.start()
        for _ in range(500):
            if len(received) == len(sent):
                break
            await asyncio.sleep(0.01)
        assert received == sent
        assert a.backlog_bytes == 0 and overflows == []
        a.close()
        b.close()
        for ring in rings:
            ring.close()

    asyncio.run(run())


CHILD = """
import asyncio, logging, sys
from pyraftkv.node import ringproto as rp
from pyraftkv.node.process_entry import stop_now
from pyraftkv.node.ring_link import RingLink
from pyraftkv.ring import ShmRing

log = logging.getLogger("child")

async def main():
    ring = ShmRing.attach(tuple(int(fd) for fd in sys.argv[1:4]), "consumer")
    back = ShmRing.create(8192, role="producer")

    def apply(messages):
        for message in messages:
            entries = rp.decode_entries(message)
            print("applied", [e.index for e in entries], flush=True)

    link = RingLink(back, ring, asyncio.get_running_loop(), apply, lambda e: None,
                    on_malformed=lambda what: stop_now(log, "from the parent: " + what))
    link.start()
    print("ready", flush=True)
    await asyncio.sleep(30)

logging.basicConfig(stream=sys.stderr)
asyncio.run(main())
"""


def test_a_malformed_ring_message_stops_the_process_naming_it() -> None:
    """Real processes: the good message is applied, the malformed one never is, and the
    receiving process exits at once with the message's kind and offset."""
    import subprocess
    import sys

    from pyraftkv.node import ringproto as rp
    from pyraftkv.raft.types import Entry, EntryType

    with ShmRing.create(8192, role="producer") as ring:
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, *map(str, ring.fds)],
            pass_fds=ring.fds,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        good = rp.encode_entries([Entry(1, 1, EntryType.NORMAL, b"ok")])
        bad = rp.encode_entries([Entry(1, 2, EntryType.NORMAL, b"cut short")])[:-3]
        assert ring.push(good)
        assert child.stdout.readline().strip() == "applied [1]"
        assert ring.push(bad)
        out, err = child.communicate(timeout=20)
    assert child.returncode == 70
    assert "applied" not in out
    assert "malformed ring message (truncated entry data in COMMITTED)" in err
    assert f"after message 1 (byte offset {len(good)}" in err


def test_local_link_delivers_in_order_one_batch_per_loop_pass_never_reentrant() -> None:
    """--single-process: what one side sends reaches the other in order, all that was sent
    in one pass of the loop as one batch, from a later callback (not inside send)."""

    async def run() -> None:
        app, raft = LocalLink.pair(asyncio.get_running_loop())
        batches: list[list[bytes]] = []
        inside_send = False

        def on_raft_messages(messages: list[bytes]) -> None:
            assert not inside_send
            batches.append(messages)
            if messages == [b"ping"]:
                raft.send(b"pong")  # answered from the delivery, delivered later too

        answers: list[list[bytes]] = []
        raft.on_messages = on_raft_messages
        app.on_messages = answers.append
        app.send(b"before start")  # waits for the receiver's start
        raft.start()
        app.start()
        inside_send = True
        app.send(b"a")
        app.send_many([b"b", b"c"])
        inside_send = False
        assert batches == []
        await asyncio.sleep(0)
        assert batches == [[b"before start", b"a", b"b", b"c"]]
        app.send(b"ping")
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert batches[-1] == [b"ping"] and answers == [[b"pong"]]
        raft.close()
        app.send(b"after close")
        await asyncio.sleep(0)
        assert batches[-1] == [b"ping"] and raft._inbox == []  # dropped, not kept

    asyncio.run(run())
