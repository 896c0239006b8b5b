"""Leases kept alive by the client: ``AsyncLease`` / ``Lease`` and the ``LeaseKeeper``.

Keep-alives are served by the leader, where lease deadlines live. One keeper per client
renews every lease of that client over a single LeaseKeepAlive stream (as etcd's client
does): each lease is renewed a third of its TTL after its last renewal, so a lost
keep-alive or a leader change leaves two thirds of the TTL to get through. A follower
answers "not leader" with the leader's URL and the keeper reopens the stream there.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from ..errors import ApiError, LeaseNotFound, NoLeader, NotLeader, TimedOut
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from .connection import Connection, ConnectionLost, Stream, normalize_endpoint

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import Client

log = logging.getLogger("pyraftkv.client")

KEEP_ALIVE = BY_NAME["LeaseKeepAlive"].number
# Keep-alives due within this much of each other leave together (renewing a little early
# costs nothing; waking once per lease would).
SLACK_S = 0.05
# A stream that leaves a keep-alive unanswered this long is given up for another endpoint.
REPLY_TIMEOUT_S = 1.0
RETRY_PAUSE_S = 0.05


def check_ttl(ttl: int) -> int:
    """A TTL must be a positive whole number of seconds."""
    if isinstance(ttl, bool) or not isinstance(ttl, int) or ttl <= 0:
        raise ValueError(f"lease TTL must be a positive number of seconds, not {ttl!r}")
    return ttl


def _endpoint_or_none(url: str) -> str | None:
    try:
        return normalize_endpoint(url) if url else None
    except ValueError:
        return None


class KeepAlive:
    """A keep-alive stream for one lease, for single keep-alives (``lease keep-alive --once``).

    A follower answers "not leader" with the leader's URL and the stream is reopened there.
    """

    def __init__(self, client: AsyncClient, lease_id: int) -> None:
        self._client = client
        self.lease_id = lease_id
        self._stream: Stream | None = None
        self._connection: Connection | None = None
        self._body = rpc.LeaseKeepAliveRequest(ID=lease_id).SerializeToString()

    async def once(self, timeout: float | None = None) -> rpc.LeaseKeepAliveResponse:
        """Send one keep-alive and return its response (failing over as needed)."""
        deadline = time.monotonic() + (self._client.timeout if timeout is None else timeout)
        while True:
            try:
                if self._stream is None:
                    self._connection = await self._client.connection()
                    self._stream = self._connection.open_stream(KEEP_ALIVE)
                self._stream.send(self._body)
                reply = await asyncio.wait_for(
                    self._stream.receive(), max(0.01, deadline - time.monotonic())
                )
                return rpc.LeaseKeepAliveResponse.FromString(reply)
            except (ConnectionLost, NotLeader, NoLeader, asyncio.TimeoutError) as exc:
                self._stream = None
                if isinstance(exc, (ConnectionLost, NotLeader)) and self._connection is not None:
                    self._client._drop(self._connection, getattr(exc, "leader_url", "") or None)
                if time.monotonic() >= deadline:
                    if isinstance(exc, asyncio.TimeoutError):
                        raise TimedOut("LeaseKeepAlive: no answer within the timeout") from None
                    raise
                await asyncio.sleep(RETRY_PAUSE_S)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None


class LeaseKeeper:
    """Renews every kept-alive lease of one AsyncClient over one LeaseKeepAlive stream."""

    def __init__(self, client: AsyncClient) -> None:
        self._client = client
        self._leases: dict[int, AsyncLease] = {}
        # (when, lease id); an entry is live only while it equals the lease's _due_at.
        self._due: list[tuple[float, int]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    def add(self, lease: AsyncLease) -> None:
        """Start renewing ``lease`` (a third of its TTL from now)."""
        self._leases[lease.id] = lease
        self._schedule(lease, time.monotonic() + lease.ttl / 3)
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def discard(self, lease: AsyncLease) -> None:
        """Stop renewing ``lease``; the stream closes when no lease is left."""
        if self._leases.get(lease.id) is lease:
            del self._leases[lease.id]
        lease._due_at = None
        self._wake.set()

    async def close(self) -> None:
        self._leases.clear()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def _schedule(self, lease: AsyncLease, when: float) -> None:
        lease._due_at = when
        heapq.heappush(self._due, (when, lease.id))
        self._wake.set()  # the sender may be asleep until a later time

    async def _run(self) -> None:
        # The keeper has a connection of its own, to the leader: following a "not leader"
        # pointer must not cut the client's other calls and watches, which any member serves.
        leader_hint: str | None = None
        turn = 0
        while self._leases:
            connection: Connection | None = None
            in_flight: deque[tuple[float, int]] = deque()
            try:
                connection = await self._connect(leader_hint, turn)
                await self._serve(connection.open_stream(KEEP_ALIVE), in_flight)
            except NotLeader as exc:
                self._failed(in_flight, exc)
                leader_hint = _endpoint_or_none(getattr(exc, "leader_url", ""))
                if leader_hint is None:
                    await asyncio.sleep(RETRY_PAUSE_S)
            except (ConnectionLost, TimedOut) as exc:
                self._failed(in_flight, exc)
                leader_hint, turn = None, turn + 1
                await asyncio.sleep(RETRY_PAUSE_S)
            except ApiError as exc:  # no leader yet, or the member is stopping
                self._failed(in_flight, exc)
                await asyncio.sleep(RETRY_PAUSE_S)
            finally:
                if connection is not None:
                    connection.close()

    async def _connect(self, leader_hint: str | None, turn: int) -> Connection:
        """A connection to the member named as leader, else to the first endpoint (from
        the client's current one, moved on by ``turn``) that answers."""
        endpoints = self._client.endpoints
        start = (self._client._current + turn) % len(endpoints)
        candidates = endpoints[start:] + endpoints[:start]
        if leader_hint is not None:
            candidates = [leader_hint] + [e for e in candidates if e != leader_hint]
        errors = []
        for endpoint in candidates:
            try:
                return await self._client.open_connection(endpoint)
            except ConnectionLost as exc:
                errors.append(str(exc))
        raise ConnectionLost("; ".join(errors))

    def _failed(self, in_flight: deque[tuple[float, int]], error: BaseException) -> None:
        """Keep-alives left unanswered by a broken stream go out again on the next one."""
        now = time.monotonic()
        for _sent, lease_id in in_flight:
            lease = self._leases.get(lease_id)
            if lease is not None and lease._due_at is None:
                lease.lost = error
                self._schedule(lease, now)

    async def _serve(self, stream: Stream, in_flight: deque[tuple[float, int]]) -> None:
        """Send keep-alives as they fall due and take their answers, until the stream fails
        (raising its error) or no lease is left."""
        reader = asyncio.ensure_future(self._read(stream, in_flight))
        try:
            while self._leases:
                if reader.done():
                    reader.result()  # raises the stream's error
                now = time.monotonic()
                self._send_due(stream, in_flight, now + SLACK_S)
                if in_flight and now - in_flight[0][0] > REPLY_TIMEOUT_S:
                    raise TimedOut("LeaseKeepAlive: no answer within the timeout")
                wait = REPLY_TIMEOUT_S
                if self._due:
                    wait = min(wait, max(0.0, self._due[0][0] - now))
                self._wake.clear()
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait)
        finally:
            reader.cancel()
            stream.close()
            with contextlib.suppress(asyncio.CancelledError, ApiError, ConnectionLost):
                await reader

    def _send_due(self, stream: Stream, in_flight: deque, until: float) -> None:
        due, leases = self._due, self._leases
        now = time.monotonic()
        while due and due[0][0] <= until:
            when, lease_id = heapq.heappop(due)
            lease = leases.get(lease_id)
            if lease is None or lease._due_at != when:
                continue  # revoked, or rescheduled since
            lease._due_at = None
            stream.send(rpc.LeaseKeepAliveRequest(ID=lease_id).SerializeToString())
            in_flight.append((now, lease_id))

    async def _read(self, stream: Stream, in_flight: deque[tuple[float, int]]) -> None:
        try:
            while True:
                reply = rpc.LeaseKeepAliveResponse.FromString(await stream.receive())
                if not in_flight or in_flight[0][1] != reply.ID:
                    raise ConnectionLost("LeaseKeepAlive: an answer out of order")
                sent_at, lease_id = in_flight.popleft()
                lease = self._leases.get(lease_id)
                if lease is None:
                    continue
                if reply.TTL <= 0:
                    del self._leases[lease_id]
                    lease._gone()
                else:
                    lease.lost = None
                    self._schedule(lease, sent_at + reply.TTL / 3)
        finally:
            self._wake.set()


class AsyncLease:
    """A lease kept alive in the background until it is revoked (its keys go with it).

    ``async with client.lease(10) as lease: await client.put(k, v, lease=lease.id)``, or
    ``await lease.grant()`` ... ``await lease.revoke()``. ``expired`` turns True (and
    ``wait_expired`` returns) if the cluster lets the lease go anyway, e.g. after the
    client could not reach it for a whole TTL.
    """

    def __init__(self, client: AsyncClient, ttl: int, lease_id: int = 0) -> None:
        self._client = client
        self.requested_ttl = check_ttl(ttl)
        self.id = lease_id
        self.ttl = 0
        # The last keep-alive failure (None once one succeeds again).
        self.lost: BaseException | None = None
        self.expired = False
        self._expired_event: asyncio.Event | None = None
        self._due_at: float | None = None

    async def grant(self) -> AsyncLease:
        """Grant the lease and start keeping it alive."""
        if self.ttl:
            raise RuntimeError(f"lease {self.id:x} was already granted")
        granted = await self._client.lease_grant(self.requested_ttl, self.id)
        self.id, self.ttl = granted.ID, granted.TTL
        self._client._lease_keeper().add(self)
        return self

    async def revoke(self) -> None:
        """Stop keeping the lease alive and revoke it (its keys are deleted); a lease that
        is already gone, or a cluster that cannot be reached, is not an error here: an
        unreachable lease expires by itself."""
        self._client._lease_keeper().discard(self)
        if self.ttl and not self.expired:
            self.expired = True
            with contextlib.suppress(ApiError, ConnectionLost):
                await self._client.lease_revoke(self.id)
            self._set_expired()

    async def time_to_live(self, keys: bool = False) -> rpc.LeaseTimeToLiveResponse:
        """The lease's remaining TTL as the leader sees it (-1 once gone)."""
        return await self._client.lease_time_to_live(self.id, keys)

    async def wait_expired(self) -> None:
        """Return once the lease is gone (revoked, or expired on the cluster)."""
        if not self.expired:
            await self._event().wait()

    def _event(self) -> asyncio.Event:
        if self._expired_event is None:
            self._expired_event = asyncio.Event()
            if self.expired:
                self._expired_event.set()
        return self._expired_event

    def _gone(self) -> None:
        """The cluster no longer has the lease."""
        log.warning("lease %x expired on the cluster", self.id)
        self.lost = LeaseNotFound(f"etcdserver: requested lease not found ({self.id:x} expired)")
        self.expired = True
        self._set_expired()

    def _set_expired(self) -> None:
        if self._expired_event is not None:
            self._expired_event.set()

    async def __aenter__(self) -> AsyncLease:
        return await self.grant()

    async def __aexit__(self, *exc_info) -> None:
        await self.revoke()


class Lease:
    """The blocking client's kept-alive lease: ``with client.lease(10) as lease: ...``.

    Keep-alives run on the client's event-loop thread, so they go on while the caller's
    thread blocks or computes.
    """

    def __init__(self, client: Client, ttl: int, lease_id: int = 0) -> None:
        self._client = client
        self._lease = AsyncLease(client._client, ttl, lease_id)

    @property
    def id(self) -> int:
        return self._lease.id

    @property
    def ttl(self) -> int:
        """The TTL the cluster granted (it may raise a short one to its minimum)."""
        return self._lease.ttl

    @property
    def expired(self) -> bool:
        return self._lease.expired

    @property
    def lost(self) -> BaseException | None:
        """The last keep-alive failure, None while keep-alives get through."""
        return self._lease.lost

    def grant(self) -> Lease:
        """Grant the lease and start keeping it alive."""
        self._client._run(self._lease.grant())
        return self

    def revoke(self) -> None:
        """Stop the keep-alives and revoke the lease (its keys are deleted)."""
        self._client._run(self._lease.revoke())

    def time_to_live(self, keys: bool = False) -> rpc.LeaseTimeToLiveResponse:
        return self._client._run(self._lease.time_to_live(keys))

    def wait_expired(self, timeout: float | None = None) -> bool:
        """Block until the lease is gone or ``timeout`` passes; True if it is gone."""
        waiting = asyncio.wait_for(self._lease.wait_expired(), timeout)
        with contextlib.suppress(asyncio.TimeoutError):
            self._client._run(waiting)
        return self._lease.expired

    def __enter__(self) -> Lease:
        return self.grant()

    def __exit__(self, *exc_info) -> None:
        self.revoke()
