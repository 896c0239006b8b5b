"""Distributed locks on the member's lock service (etcd's v3lock): ``AsyncLock`` / ``Lock``.

The lock is held by a key ``name/<lease id>``; waiters are served in the order their keys
were created (FIFO). The key lives on a lease: if the holder's process dies, its lease
expires and the next waiter gets the lock. Without a lease of its own the lock grants one
(kept alive while held) and revokes it on release, which deletes the key in the same step.

What the lock guarantees, and what it cannot: at any revision of the store, at most one
key of the lock is first in line, so at most one client is granted the lock at a time *as
the store sees it*. A holder cannot know that it still holds it: a process paused (GC,
SIGSTOP, a swapped-out VM) or cut off for longer than the lease's TTL loses the lease and
the lock, the next waiter gets it, and the old holder, when it runs again, still believes
it holds it (``held`` only turns False once its keep-alive learns the lease is gone).
Jepsen showed exactly this with etcd's locks. So anything the lock protects must check a
fencing token, as etcd's own documentation advises with the key's revision:

- ``fencing_token`` is the create revision of the lock's key. Every later grant of the same
  lock has a larger one (revisions only grow). A resource that remembers the largest token
  it has seen and refuses smaller ones can never be written by a stale holder.
- For data kept in this store, ``guard()`` is the compare that makes a transaction apply
  only while this holder's key still exists with that revision:
  ``client.txn(compare=[lock.guard()], success=[Op.put(...)])``.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

from google.protobuf.message import Message

from ..errors import ApiError, TimedOut
from ..proto import rpc_pb2 as rpc
from ..proto import v3lock_pb2 as lock_pb2
from .connection import ConnectionLost
from .leases import AsyncLease, check_ttl
from .requests import Bytesish, Compare, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import Client

# Seconds a lock's own lease lives after its holder stops renewing it (a dead holder
# blocks the next waiter this long).
DEFAULT_TTL_S = 10
# Lock waits as long as it takes unless the caller gives a timeout.
UNBOUNDED_S = 365 * 24 * 3600.0


async def wait_in_line(
    client: AsyncClient,
    method: str,
    request: Message,
    name: bytes,
    lease_id: int,
    timeout: float | None,
) -> Message:
    """A Lock or Campaign call, which waits for its turn as long as it takes (or
    ``timeout``). The member keeps a timed-out attempt in line while the connection lives;
    so that it cannot be granted to nobody later, its key is deleted, as etcd does when
    such a call is cancelled."""
    try:
        return await client.call(method, request, UNBOUNDED_S if timeout is None else timeout)
    except TimedOut:
        key = name + b"/" + f"{lease_id:x}".encode()  # the key etcd's services use
        with contextlib.suppress(ApiError, ConnectionLost):
            await client.call("DeleteRange", rpc.DeleteRangeRequest(key=key))
        raise


async def lock_call(
    client: AsyncClient, name: bytes, lease_id: int, timeout: float | None
) -> bytes:
    """The raw Lock call: wait for the lock, held by ``lease_id``; returns the lock's key."""
    request = lock_pb2.LockRequest(name=name, lease=lease_id)
    response = await wait_in_line(client, "Lock", request, name, lease_id, timeout)
    return response.key


class LockLost(ApiError):
    """The lock's lease ended before the holder could use the lock."""


class AsyncLock:
    """A distributed lock: ``async with client.lock("name", ttl=10): ...``.

    ``await client.lock(name, lease_id)`` is etcd's raw Lock call (returns the key to pass
    to ``unlock``); ``acquire`` / ``release`` do the same with the lock's own lease.
    """

    def __init__(
        self,
        client: AsyncClient,
        name: Bytesish,
        lease_id: int = 0,
        timeout: float | None = None,
        *,
        ttl: int = DEFAULT_TTL_S,
    ) -> None:
        self.name = to_bytes(name)
        if not self.name:
            raise ValueError("a lock needs a name")
        if lease_id < 0:
            raise ValueError(f"bad lease id {lease_id}")
        self._client = client
        self._lease_id = lease_id
        self.ttl = check_ttl(ttl)
        self.timeout = timeout
        # The key that exists while the lock is held (None when not held).
        self.key: bytes | None = None
        # Its create revision: the fencing token (0 when not held).
        self.fencing_token = 0
        # The lease the lock granted itself (None when the caller gave one).
        self.lease: AsyncLease | None = None

    @property
    def lease_id(self) -> int:
        return self.lease.id if self.lease is not None else self._lease_id

    @property
    def held(self) -> bool:
        """True from acquire to release, unless the lock's own lease was lost meanwhile."""
        return self.key is not None and not (self.lease is not None and self.lease.expired)

    async def acquire(self, timeout: float | None = None) -> bytes:
        """Wait for the lock (FIFO) and return its key; raises TimedOut after ``timeout``."""
        if self.key is not None:
            raise RuntimeError(f"lock {self.name!r} is already held by this object")
        timeout = self.timeout if timeout is None else timeout
        lease_id, own = self._lease_id, None
        if not lease_id:
            own = await AsyncLease(self._client, self.ttl).grant()
            lease_id = own.id
        try:
            key = await lock_call(self._client, self.name, lease_id, timeout)
            found = await self._client.get(key)
            if not found.kvs:  # the lease ran out between the grant and now
                raise LockLost(f"lock {self.name!r} was lost as soon as it was granted")
        except BaseException:
            if own is not None:  # the waiter's key goes with its lease
                await asyncio.shield(own.revoke())
            raise
        self.key, self.fencing_token = key, found.kvs[0].create_revision
        self.lease = own
        return self.key

    def guard(self) -> rpc.Compare:
        """A Txn compare that holds only while this holder still has the lock: its key
        exists with the create revision it was granted with."""
        if self.key is None:
            raise RuntimeError(f"lock {self.name!r} is not held by this object")
        return Compare.create_revision(self.key) == self.fencing_token

    async def release(self) -> None:
        """Give the lock up (revoking its own lease, or deleting its key)."""
        key, lease = self.key, self.lease
        if key is None:
            raise RuntimeError(f"lock {self.name!r} is not held by this object")
        self.key = self.lease = None
        self.fencing_token = 0
        if lease is not None:
            await lease.revoke()  # deletes the key with the lease, in one revision
        else:
            await self._client.unlock(key)

    def __await__(self):
        if not self._lease_id:
            raise TypeError(
                "await client.lock(name, lease_id) needs a lease; "
                "use 'async with client.lock(name, ttl=...)' for a lock with its own"
            )
        return lock_call(self._client, self.name, self._lease_id, self.timeout).__await__()

    async def __aenter__(self) -> AsyncLock:
        await self.acquire()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.release()


class Lock:
    """The blocking client's lock: ``with client.lock("name", ttl=10): ...``, or
    ``key = lock.acquire()`` ... ``lock.release()``."""

    def __init__(self, client: Client, async_lock: AsyncLock) -> None:
        self._client = client
        self._lock = async_lock

    @property
    def name(self) -> bytes:
        return self._lock.name

    @property
    def key(self) -> bytes | None:
        return self._lock.key

    @property
    def lease_id(self) -> int:
        return self._lock.lease_id

    @property
    def held(self) -> bool:
        return self._lock.held

    @property
    def fencing_token(self) -> int:
        """The lock key's create revision (see the module's docstring); 0 when not held."""
        return self._lock.fencing_token

    def guard(self) -> rpc.Compare:
        """A Txn compare that holds only while this holder still has the lock."""
        return self._lock.guard()

    def acquire(self, timeout: float | None = None) -> bytes:
        """Block until the lock is ours (FIFO); returns its key."""
        return self._client._run(self._lock.acquire(timeout))

    def release(self) -> None:
        self._client._run(self._lock.release())

    def __enter__(self) -> Lock:
        self.acquire()
        return self

    def __exit__(self, *exc_info) -> None:
        self.release()
