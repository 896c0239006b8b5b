"""What lock and elect stand on: a lease kept alive while the command runs (etcd's
concurrency session), and SIGINT / SIGTERM turned into a request to stop cleanly.

etcdctl's lock and elect unlock or resign when told to stop and exit 0; a stop that comes
while they still wait for their turn ends them with "context canceled".
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from typing import TypeVar

from ..client.aio import AsyncClient, KeepAlive
from ..client.connection import ConnectionLost
from ..errors import ApiError
from ..proto import rpc_pb2 as rpc
from .errors import EXIT_ERROR, CtlError

T = TypeVar("T")
# etcd's default session TTL (concurrency.NewSession), used by elect.
DEFAULT_SESSION_TTL_S = 60
# A lock or campaign waits for its turn as long as it takes.
FOREVER_S = 365 * 24 * 3600.0
# The shortest pause between keep-alives etcd's client makes (it checks every 500 ms).
KEEP_ALIVE_TICK_S = 0.5
# After a failed keep-alive, the next try.
RETRY_PAUSE_S = 0.5


def keep_alive_pause(ttl: int) -> float:
    """Seconds from one keep-alive to the next: a third of the TTL, as etcd's client."""
    return max(ttl / 3, KEEP_ALIVE_TICK_S)


async def renewals(
    client: AsyncClient, lease_id: int, first_wait_s: float, *, renew_now: bool = True
) -> AsyncIterator[rpc.LeaseKeepAliveResponse]:
    """Keep a lease alive, yielding each renewal; end once the cluster says the lease is
    gone, or when no renewal got through for its whole TTL (``first_wait_s`` before the
    first one). Failures in between are retried, as etcd's client does."""
    keeper = KeepAlive(client, lease_id)
    deadline = time.monotonic() + first_wait_s
    pause = 0.0 if renew_now else keep_alive_pause(int(first_wait_s))
    try:
        while True:
            await asyncio.sleep(min(pause, max(0.0, deadline - time.monotonic())))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                response = await asyncio.wait_for(keeper.once(), remaining)
            except (ApiError, ConnectionLost, asyncio.TimeoutError):
                keeper.close()  # the next try starts on a fresh stream
                pause = RETRY_PAUSE_S
                continue
            if response.TTL <= 0:
                return
            yield response
            deadline = time.monotonic() + response.TTL
            pause = keep_alive_pause(response.TTL)
    finally:
        keeper.close()


class Session:
    """A lease granted for the command and renewed until ``close()``; ``expired`` is set
    once the cluster says it is gone, or no renewal got through for a whole TTL."""

    def __init__(self, client: AsyncClient, lease_id: int, ttl: int) -> None:
        self.client = client
        self.lease_id = lease_id
        self.ttl = ttl
        self.expired = asyncio.Event()
        self._task = asyncio.ensure_future(self._keep_alive())

    @classmethod
    async def open(cls, client: AsyncClient, ttl: int) -> Session:
        """Grant a lease of ``ttl`` seconds (etcd's default when ttl <= 0) and keep it alive."""
        granted = await client.call(
            "LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl if ttl > 0 else DEFAULT_SESSION_TTL_S)
        )
        return cls(client, granted.ID, granted.TTL)

    async def _keep_alive(self) -> None:
        try:
            async for _ in renewals(self.client, self.lease_id, self.ttl, renew_now=False):
                pass
        finally:
            self.expired.set()

    async def close(self) -> None:
        """Stop renewing and revoke the lease, so nothing held with it outlives the command."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        with contextlib.suppress(ApiError, ConnectionLost):
            await self.client.call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=self.lease_id))


@contextlib.contextmanager
def stop_signals() -> Iterator[asyncio.Event]:
    """While inside, SIGINT and SIGTERM set the event instead of ending the program.

    (Only in the main thread: when pyraftkvctl runs inside another program's thread,
    signals are that program's business.)
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(number, stop.set)
        except (RuntimeError, ValueError):
            continue
        installed.append(number)
    try:
        yield stop
    finally:
        for number in installed:
            loop.remove_signal_handler(number)


async def unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T:
    """The result of ``work``; if a stop comes first, cancel it and fail as etcdctl does."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((task, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
    if not task.done():
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        raise CtlError("context canceled", EXIT_ERROR)
    return task.result()


async def first_of(*events: asyncio.Event) -> asyncio.Event:
    """Wait until one of ``events`` is set; return it (the first in order if several)."""
    waiters = [asyncio.ensure_future(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()
    return next(event for event in events if event.is_set())
