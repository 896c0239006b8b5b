"""One side of the link between a member's application and its Raft side: push into the
outgoing shared memory ring, pop from the incoming one (``RingLink``, two processes), or
hand the messages over on one event loop (``LocalLink``, ``--single-process``).

Both processes use RingLink. A push that does not fit waits in a backlog that drains as
the other process reads. The backlog is bounded: a process that stopped reading its ring for
that long is stuck, and since neither side may drop a message (a committed entry, a
proposal, a read), the link reports the overflow and the member stops with a clear message
rather than grow without limit.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable

from google.protobuf.message import DecodeError

from .ringproto import RingProtocolError

# Bytes waiting in a backlog before the link gives up on the other process.
BACKLOG_LIMIT_BYTES = 512 << 20
# Messages taken from the incoming ring per C call.
POP_BATCH = 4096


class RingBacklogFull(Exception):
    """The other process has not read its ring for BACKLOG_LIMIT_BYTES of messages."""


class RingLink:
    """Sends into ``out_ring`` and delivers batches popped from ``in_ring`` to
    ``on_messages`` on the event loop (set later by a side that is made after its link)."""

    def __init__(
        self,
        out_ring,
        in_ring,
        loop: asyncio.AbstractEventLoop,
        on_messages: Callable[[list[bytes]], None] | None,
        on_overflow: Callable[[RingBacklogFull], None],
        backlog_limit: int = BACKLOG_LIMIT_BYTES,
        on_malformed: Callable[[str], None] | None = None,
    ) -> None:
        self.out_ring, self.in_ring = out_ring, in_ring
        self.loop = loop
        self.on_messages = on_messages
        self._on_overflow = on_overflow
        self._backlog: list[bytes] = []
        self._backlog_bytes = 0
        self._backlog_limit = backlog_limit
        self._overflowed = False
        # A malformed message from the other process is a broken invariant (a bug on one
        # side, never outside input): the process stops, saying which message it was.
        self._on_malformed = on_malformed
        self.received_messages = 0
        self.received_bytes = 0

    def start(self) -> None:
        """Deliver what is waiting and every later arrival. Popping until empty arms the
        ring's wake-up (ring.py's contract)."""
        self.loop.add_reader(self.in_ring.readable_fd(), self.receive)
        self.receive()

    @property
    def backlog_bytes(self) -> int:
        return self._backlog_bytes

    def send(self, message: bytes) -> None:
        """Push ``message``, or queue it (in order) until the ring has room."""
        if not self._backlog and self.out_ring.push(message):
            return
        if not self._backlog:
            self.loop.add_reader(self.out_ring.writable_fd(), self._drain_backlog)
        self._backlog.append(message)
        self._backlog_bytes += len(message)
        if self._backlog_bytes > self._backlog_limit and not self._overflowed:
            self._overflowed = True
            self._on_overflow(
                RingBacklogFull(
                    f"the other process has not read its ring for {self._backlog_bytes} bytes "
                    f"of messages ({len(self._backlog)} waiting)"
                )
            )

    def send_many(self, messages: list[bytes]) -> None:
        """Push ``messages`` in order with one ring push (one wake-up of the reader)."""
        pushed = 0 if self._backlog else self.out_ring.push_batch(messages)
        for message in messages[pushed:]:
            self.send(message)

    def _drain_backlog(self) -> None:
        pushed = self.out_ring.push_batch(self._backlog)
        self._backlog_bytes -= sum(map(len, self._backlog[:pushed]))
        del self._backlog[:pushed]
        assert (self._backlog_bytes == 0) == (not self._backlog), self._backlog_bytes
        if not self._backlog:
            self.loop.remove_reader(self.out_ring.writable_fd())

    def receive(self) -> None:
        """Deliver everything in the incoming ring, in batches."""
        while messages := self.in_ring.pop_batch(POP_BATCH):
            try:
                self.on_messages(messages)
            except (RingProtocolError, DecodeError, struct.error) as exc:
                if self._on_malformed is None:
                    raise
                self._on_malformed(
                    f"malformed ring message ({exc}) in a batch of {len(messages)} starting "
                    f"after message {self.received_messages} (byte offset "
                    f"{self.received_bytes} of the ring's stream)"
                )
                return
            self.received_messages += len(messages)
            self.received_bytes += sum(map(len, messages))

    def close(self) -> None:
        self.loop.remove_reader(self.in_ring.readable_fd())
        if self._backlog:
            self.loop.remove_reader(self.out_ring.writable_fd())


class LocalLink:
    """RingLink's interface for a member whose two sides share one process and one event
    loop: what one side sends, the other receives, in order and in one batch, from a loop
    callback soon after (never inside the sender's call, so neither side is re-entered).

    The messages are the ring's bytes all the same, so both sides run unchanged. A side
    can only send while the loop runs its callbacks, and the other side's batch is taken on
    the same loop right after: an inbox holds at most what one side sent in between.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.on_messages: Callable[[list[bytes]], None] | None = None
        self.peer: LocalLink | None = None
        self._inbox: list[bytes] = []
        self._started = False
        self._closed = False
        self._delivery: asyncio.Handle | None = None

    @classmethod
    def pair(cls, loop: asyncio.AbstractEventLoop) -> tuple[LocalLink, LocalLink]:
        a, b = cls(loop), cls(loop)
        a.peer, b.peer = b, a
        return a, b

    def start(self) -> None:
        """Deliver what was sent before the start, and every later arrival."""
        self._started = True
        self._arm()

    def send(self, message: bytes) -> None:
        if not self.peer._closed:
            self.peer._inbox.append(message)
            self.peer._arm()

    def send_many(self, messages: list[bytes]) -> None:
        if not self.peer._closed:
            self.peer._inbox.extend(messages)
            self.peer._arm()

    def _arm(self) -> None:
        if self._started and self._delivery is None and self._inbox:
            self._delivery = self.loop.call_soon(self._deliver)

    def _deliver(self) -> None:
        self._delivery = None
        messages, self._inbox = self._inbox, []
        self.on_messages(messages)

    def close(self) -> None:
        """Stop delivering; what is sent here from now on is dropped (this side is gone,
        as a closed ring's reader)."""
        self._started, self._closed = False, True
        self._inbox.clear()
        if self._delivery is not None:
            self._delivery.cancel()
            self._delivery = None
