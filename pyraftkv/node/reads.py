"""Linearizable reads by ReadIndex rounds: every read that arrives in one event-loop
iteration joins one round; the Raft process confirms the round's index with a quorum, and
the reads are served from the local store once it has applied up to that index.

Round contexts start from a random boot nonce, so a confirmation that belonged to a round
of an earlier incarnation of this process can never release a read of this one. A round
not confirmed within RETRY_S is asked for again under the same context (a follower's
request to the leader is dropped while its peer link is down, and Raft does not resend
it); either answer confirms it, since both were asked after its reads arrived.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from google.protobuf.message import Message

from .. import errors
from . import ringproto as rp
from .reply import Reply

ReadRound = list[tuple[Reply, Callable[[], Message]]]
RETRY_S = 0.5


class ReadRounds:
    """Reads waiting for a round to start, for its confirmation, or for the apply."""

    def __init__(
        self,
        send_down: Callable[[bytes], None],
        answer: Callable[[Reply, Callable[[], Message]], None],
        request_timeout: float,
    ) -> None:
        self._send_down = send_down
        self._answer = answer
        self._request_timeout = request_timeout
        self._joining: ReadRound = []
        self._rounds: dict[int, ReadRound] = {}  # context -> reads, while unconfirmed
        self._deadlines: deque[tuple[float, int]] = deque()
        self._retries: deque[tuple[float, int]] = deque()  # (when to ask again, context)
        self._confirmed: deque[tuple[int, ReadRound]] = deque()  # (read index, reads) by index
        self.waiting = 0  # reads not yet answered (they count toward the pending limit)
        self._next_context = random.getrandbits(23) << 40 | 1

    def __bool__(self) -> bool:
        """Whether any read is still waiting for its confirmation."""
        return bool(self._rounds or self._joining)

    def add(self, reply: Reply, serve: Callable[[], Message]) -> bool:
        """Queue a read for the next round; True if it is the first of that round."""
        self._joining.append((reply, serve))
        self.waiting += 1
        return len(self._joining) == 1

    def start_round(self) -> None:
        """Send the reads that joined since the last round down as one ReadIndex request."""
        if not self._joining:
            return
        context = self._next_context
        self._next_context += 1
        self._rounds[context] = self._joining
        now = time.monotonic()
        self._deadlines.append((now + self._request_timeout, context))
        self._retries.append((now + RETRY_S, context))
        self._joining = []
        self._send_down(rp.pack(rp.READ_INDEX, rp.U64, context))

    def confirmed(self, index: int, context: int, applied_index: int) -> None:
        """The Raft process confirmed round ``context`` at ``index``."""
        reads = self._rounds.pop(context, None)
        if reads is None:
            return
        if index <= applied_index:
            self.waiting -= len(reads)
            for reply, serve in reads:
                self._answer(reply, serve)
            return
        confirmed = self._confirmed
        confirmed.append((index, reads))
        if len(confirmed) > 1 and confirmed[-2][0] > index:
            # Rounds can confirm out of order; keep the queue sorted by index.
            ordered = sorted(confirmed, key=lambda item: item[0])
            confirmed.clear()
            confirmed.extend(ordered)

    def serve_applied(self, applied_index: int) -> None:
        """Serve every confirmed round the apply has reached."""
        confirmed = self._confirmed
        while confirmed and confirmed[0][0] <= applied_index:
            reads = confirmed.popleft()[1]
            self.waiting -= len(reads)
            for reply, serve in reads:
                self._answer(reply, serve)

    def refuse(self, context: int, error: errors.ApiError, leader_url: str) -> None:
        """No leader could confirm round ``context``: fail its reads so clients retry."""
        reads = self._rounds.pop(context, ())
        self.waiting -= len(reads)
        for reply, _serve in reads:
            reply.fail(error, leader_url)

    def expire(self, now: float) -> None:
        """Ask again for rounds unconfirmed after RETRY_S; fail those not confirmed within
        the request timeout."""
        retries, due = self._retries, []
        while retries and retries[0][0] <= now:
            due.append(retries.popleft()[1])
        for context in due:
            if context in self._rounds:
                retries.append((now + RETRY_S, context))
                self._send_down(rp.pack(rp.READ_INDEX, rp.U64, context))
        while self._deadlines and self._deadlines[0][0] <= now:
            _, context = self._deadlines.popleft()
            reads = self._rounds.pop(context, ())
            self.waiting -= len(reads)
            for reply, _serve in reads:
                reply.fail(errors.TimedOut())
