"""Proposing writes: request ids, the batch of one event-loop iteration sent down as one
proposal, the requests waiting for their entry to apply, their deadlines, and the
backpressure that stops reading clients while too many wait.

Request ids carry a random boot nonce in their high bits, so an entry proposed before a
restart can never complete a request of this boot.
"""

from __future__ import annotations

import random
import time
from collections import deque
from collections.abc import Callable

from .. import errors
from ..proto import raft_internal_pb2 as internal
from . import ringproto as rp
from .reply import Reply

# A proposal batch is cut at about this size, so one entry stays a sensible WAL record.
MAX_BATCH_BYTES = 1 << 20
# Requests waiting for their entry to apply; above this, client connections stop being
# read until it drains (a bound on memory and on latency).
MAX_PENDING = 50_000


class Proposals:
    """The writes this member proposed and has not yet seen applied."""

    def __init__(
        self,
        member_id: int,
        send_down: Callable[[bytes], None],
        request_timeout: float,
        trace_interval_ms: float = 0.0,
    ) -> None:
        self.member_id = member_id
        self._send_down = send_down
        self._request_timeout = request_timeout
        self._next_id = random.getrandbits(23) << 40
        self.pending: dict[int, tuple[Reply, int]] = {}  # id -> (reply, method)
        self._deadlines: deque[tuple[float, int]] = deque()
        self.failed = 0  # requests failed here: refused by Raft or timed out (/metrics)
        self._batch = internal.RequestBatch()
        self._batch_bytes = 0
        self._batch_replies = 0  # requests in the batch that wait for a reply
        # Batches of clients' writes sent, and those sent while a reply of an earlier one
        # was still awaited (concurrent writers), since take_overlap (cpu_pairing.py).
        self._flushed = 0
        self._overlapping = 0
        self._pause_listeners: list[Callable[[bool], None]] = []
        self.paused = False
        # Other requests waiting that count toward MAX_PENDING (linearizable reads).
        self.also_waiting: Callable[[], int] = lambda: 0
        # The stage trace (write_trace.py): at most one traced batch per interval; off at 0.
        self._trace_interval_ns = int(trace_interval_ms * 1e6) if trace_interval_ms > 0 else 0
        self._trace_next_ns = 0
        self._batch_started_ns = 0  # when the batch's first write arrived (if traced)
        # When the client read (or gRPC call) carrying the writes being handled now arrived;
        # set by the client connections around their handling, 0 outside it (a write of
        # the member's own, or one handled later, is stamped when it joins a batch).
        self.arrived_ns = 0

    def new_id(self) -> int:
        """A request id unique to this member and boot."""
        request_id = self._next_id
        self._next_id += 1
        return request_id

    def add(
        self, reply: Reply | None, method: int, body: bytes, user: str, auth_revision: int = 0
    ) -> None:
        """Batch a write; ``reply`` (if any) waits for its result."""
        request_id = self.new_id()
        if reply is not None:
            self._batch_replies += 1
            self.pending[request_id] = (reply, method)
            self._deadlines.append((time.monotonic() + self._request_timeout, request_id))
            self.pause_if_full()
        if self._trace_interval_ns and not self._batch.requests:
            self._batch_started_ns = self.arrived_ns or time.monotonic_ns()
        self._batch.requests.add(
            member=self.member_id,
            id=request_id,
            method=method,
            body=body,
            user=user,
            auth_revision=auth_revision,
        )
        self._batch_bytes += len(body) + 24
        if self._batch_bytes >= MAX_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send the batch down as one proposal."""
        if self._batch.requests:
            data = self._batch.SerializeToString()
            self._batch = internal.RequestBatch()
            self._batch_bytes = 0
            if self._batch_replies:  # a client's write, not only the member's own
                self._flushed += 1
                self._overlapping += len(self.pending) > self._batch_replies
                self._batch_replies = 0
            started, self._batch_started_ns = self._batch_started_ns, 0
            if started:
                now = time.monotonic_ns()
                if now >= self._trace_next_ns:
                    self._trace_next_ns = now + self._trace_interval_ns
                    self._send_down(rp.pack(rp.PROPOSE_TRACED, rp.TRACED, started, now, tail=data))
                    return
            self._send_down(bytes((rp.PROPOSE,)) + data)

    def take_overlap(self) -> tuple[int, float]:
        """Batches of clients' writes sent since the last call, and the share of them sent
        while an earlier one's reply was still awaited (0 with one writer at a time)."""
        flushed, overlapping = self._flushed, self._overlapping
        self._flushed = self._overlapping = 0
        return flushed, overlapping / flushed if flushed else 0.0

    def fail(self, request_id: int, error: errors.ApiError, leader_url: str = "") -> bool:
        """Fail the waiting request ``request_id`` with ``error`` and count it; False if it
        no longer waits."""
        waiting = self.pending.pop(request_id, None)
        if waiting is None:
            return False
        self.failed += 1
        waiting[0].fail(error, leader_url)
        return True

    def expire(self, now: float) -> None:
        """Fail requests older than the request timeout."""
        while self._deadlines and self._deadlines[0][0] <= now:
            self.fail(self._deadlines.popleft()[1], errors.TimedOut())
        self.resume_if_drained()

    # -- backpressure ------------------------------------------------------------------------

    def on_pause(self, listener: Callable[[bool], None]) -> None:
        """Call listener(True) when clients must stop sending, listener(False) to resume."""
        self._pause_listeners.append(listener)

    def pause_if_full(self) -> None:
        if not self.paused and len(self.pending) + self.also_waiting() > MAX_PENDING:
            self._set_paused(True)

    def resume_if_drained(self) -> None:
        if self.paused and len(self.pending) + self.also_waiting() < MAX_PENDING // 2:
            self._set_paused(False)

    def _set_paused(self, paused: bool) -> None:
        self.paused = paused
        for listener in self._pause_listeners:
            listener(paused)
