"""``Client``: the blocking client. It runs an AsyncClient on a private event-loop thread,
and makes its KV calls on the calling thread when it can (direct.py)."""

from __future__ import annotations

import asyncio
import concurrent.futures
import queue
import ssl
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from google.protobuf.message import Message

from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from .aio import IDEMPOTENT, AsyncClient, Watcher
from .config_watch import ConfigWatcher
from .direct import DirectPath
from .discovery import ServiceRegistry
from .election import Election
from .leases import Lease
from .locks import DEFAULT_TTL_S, Lock
from .requests import Bytesish, delete_request, put_request, range_request, txn_request
from .tls import TLS

T = TypeVar("T")


def _new_event_loop() -> asyncio.AbstractEventLoop:
    """The client thread's loop: uvloop where installed (cheaper per I/O event), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Client:
    """A blocking client for a pyraftkv cluster; ``with Client([...]) as c: c.put("k", "v")``.

    Methods mirror AsyncClient's and return the same etcd v3 response messages.
    """

    def __init__(
        self,
        endpoints: Sequence[str] = ("127.0.0.1:2379",),
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        tls: TLS | ssl.SSLContext | bool | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        self._loop = _new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pyraftkv-client", daemon=True
        )
        self._thread.start()
        self.timeout = timeout

        async def make() -> AsyncClient:
            return AsyncClient(
                endpoints,
                timeout=timeout,
                connect_timeout=connect_timeout,
                tls=tls,
                user=user,
                password=password,
            )

        self._client: AsyncClient = self._run(make())
        self._direct = DirectPath(
            self._client._ssl, self._client._server_name, connect_timeout, user, password
        )

    def _call(self, method: str, request: Message) -> Message:
        """A unary call: on this thread while no other thread holds the direct path (see
        direct.py), else, and whenever that path cannot finish it, on the loop thread."""
        direct = self._direct
        if direct.lock.acquire(blocking=False):
            try:
                reply = direct.call(
                    self._client.endpoint, method, request, self.timeout, method in IDEMPOTENT
                )
            finally:
                direct.lock.release()
            if reply is not None:
                return reply
        return self._run(self._client.call(method, request))

    def _run(self, coroutine):
        """Run ``coroutine`` on the loop thread and wait for its result. The loop releases a
        lock when the task ends: a call costs about half of what run_coroutine_threadsafe's
        chained futures did (bench/client_handover.py)."""
        if self._loop.is_closed():
            coroutine.close()
            raise RuntimeError("the client is closed")
        ended = threading.Lock()
        ended.acquire()
        started: list[asyncio.Task] = []

        def start() -> None:
            task = self._loop.create_task(coroutine)
            task.add_done_callback(lambda _task: ended.release())
            started.append(task)

        self._loop.call_soon_threadsafe(start)
        try:
            ended.acquire()
        except BaseException:  # e.g. KeyboardInterrupt while waiting: stop the call too
            self._loop.call_soon_threadsafe(lambda: started[0].cancel())
            raise
        task = started[0]
        if task.cancelled():  # the client was closed under the call
            raise concurrent.futures.CancelledError()
        return task.result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        if self._loop.is_closed():
            return
        self._direct.shut()
        with self._direct.lock:
            self._direct.close()
        self._run(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()

    async def _shutdown(self) -> None:
        await self._client.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    @property
    def endpoints(self) -> list[str]:
        return self._client.endpoints

    def put(self, key: Bytesish, value: Bytesish, **options) -> rpc.PutResponse:
        return self._call("Put", put_request(key, value, **options))

    def get(self, key: Bytesish, range_end: Bytesish | None = None, **options) -> rpc.RangeResponse:
        return self._call("Range", range_request(key, range_end, **options))

    def delete(
        self, key: Bytesish, range_end: Bytesish | None = None, **options
    ) -> rpc.DeleteRangeResponse:
        return self._call("DeleteRange", delete_request(key, range_end, **options))

    def txn(
        self,
        compare: Iterable[rpc.Compare] = (),
        success: Iterable[rpc.RequestOp] = (),
        failure: Iterable[rpc.RequestOp] = (),
    ) -> rpc.TxnResponse:
        return self._call("Txn", txn_request(compare, success, failure))

    def compact(self, revision: int, physical: bool = False) -> rpc.CompactionResponse:
        return self._run(self._client.compact(revision, physical))

    def member_list(self) -> rpc.MemberListResponse:
        return self._run(self._client.member_list())

    def status(self, endpoint: str | None = None) -> rpc.StatusResponse:
        return self._run(self._client.status(endpoint))

    def hash(self) -> rpc.HashResponse:
        return self._run(self._client.hash())

    def hash_kv(self, revision: int = 0) -> rpc.HashKVResponse:
        return self._run(self._client.hash_kv(revision))

    def alarm_list(self) -> rpc.AlarmResponse:
        return self._run(self._client.alarm_list())

    def alarm_disarm(self) -> rpc.AlarmResponse:
        return self._run(self._client.alarm_disarm())

    def defragment(self) -> rpc.DefragmentResponse:
        return self._run(self._client.defragment())

    def move_leader(self, target_id: int) -> rpc.MoveLeaderResponse:
        return self._run(self._client.move_leader(target_id))

    def call(self, method: str, request, timeout: float | None = None):
        """Send any native-protocol method by name (see pyraftkv.protocol.methods)."""
        return self._run(self._client.call(method, request, timeout))

    def watch(self, key: Bytesish, range_end: Bytesish | None = None, **options) -> WatchIterator:
        """Start a watch; iterate the result for events; ``.cancel()`` ends it."""
        watcher = self._run(self._client.watch(key, range_end, **options))
        return WatchIterator(self, watcher)

    # -- leases ------------------------------------------------------------------------------

    def snapshot(self, path: str) -> int:
        """Save a consistent copy of the connected member's store to ``path`` (a backup);
        returns its size. ``pyraftkvctl snapshot restore`` makes new members from it."""
        return self._run(self._client.snapshot(path))

    def lease_grant(self, ttl: int, lease_id: int = 0) -> rpc.LeaseGrantResponse:
        """Grant a lease of ``ttl`` seconds (the server may raise it to its minimum)."""
        return self._run(self._client.lease_grant(ttl, lease_id))

    def lease_revoke(self, lease_id: int) -> rpc.LeaseRevokeResponse:
        """Revoke a lease: every key attached to it is deleted."""
        return self._run(self._client.lease_revoke(lease_id))

    def lease_time_to_live(self, lease_id: int, keys: bool = False) -> rpc.LeaseTimeToLiveResponse:
        """Remaining TTL (-1 when gone), granted TTL and, with keys=True, the attached keys."""
        return self._run(self._client.lease_time_to_live(lease_id, keys))

    def lease_leases(self) -> rpc.LeaseLeasesResponse:
        return self._run(self._client.lease_leases())

    def lease_keep_alive_once(self, lease_id: int) -> rpc.LeaseKeepAliveResponse:
        """One keep-alive; the response's TTL is 0 when the lease no longer exists."""
        return self._run(self._client.lease_keep_alive_once(lease_id))

    def lease(self, ttl: int) -> Lease:
        """``with client.lease(10) as lease``: a lease kept alive (on the client's thread)
        until the block ends, then revoked (its keys go with it)."""
        return Lease(self, ttl)

    # -- locks and elections -------------------------------------------------------------------

    def lock(
        self,
        name: Bytesish,
        lease_id: int = 0,
        timeout: float | None = None,
        *,
        ttl: int = DEFAULT_TTL_S,
    ) -> Lock:
        """The distributed lock ``name`` (FIFO): ``with client.lock(name, ttl=10):`` holds it
        on a lease of its own for the block; ``client.lock(name, lease_id).acquire()`` waits
        for it with your lease and returns the key to pass to ``unlock``."""
        return Lock(self, self._client.lock(name, lease_id, timeout, ttl=ttl))

    def unlock(self, key: bytes) -> None:
        self._run(self._client.unlock(key))

    def campaign(
        self, name: Bytesish, lease_id: int, value: Bytesish, timeout: float | None = None
    ) -> election_pb2.LeaderKey:
        """Wait to become leader of election ``name``; returns the proof of leadership."""
        return self._run(self._client.campaign(name, lease_id, value, timeout))

    def proclaim(self, leader: election_pb2.LeaderKey, value: Bytesish) -> None:
        self._run(self._client.proclaim(leader, value))

    def leader(self, name: Bytesish) -> kv_pb2.KeyValue:
        """The current leader's key and value (raises ElectionNoLeader when there is none)."""
        return self._run(self._client.leader(name))

    def resign(self, leader: election_pb2.LeaderKey) -> None:
        self._run(self._client.resign(leader))

    def observe(self, name: Bytesish) -> BlockingIterator[kv_pb2.KeyValue]:
        """Blocking iterator over the election's leader key-values: now, then on changes."""
        return self._iterate(self._client.observe(name))

    def election(self, name: Bytesish) -> Election:
        """Leader election ``name``: campaign / proclaim / leader / observe / resign."""
        return Election(self, self._client.election(name))

    # -- service discovery and configuration ---------------------------------------------------

    def service_registry(self, prefix: Bytesish) -> ServiceRegistry:
        """Instances of a service under ``prefix``: register, list, watch them come and go."""
        return ServiceRegistry(self, prefix)

    def config_watcher(self, key: Bytesish, *, prefix: bool = False) -> ConfigWatcher:
        """``with client.config_watcher(key, prefix=True) as config``: current values, then
        every change (iterate it, or ``config.on_change(callback)``)."""
        return ConfigWatcher(self, key, prefix=prefix)

    # -- running on the loop thread ------------------------------------------------------------

    def _call_soon(self, function: Callable[[], T]) -> T:
        """Run a plain function on the loop thread (where the async objects live)."""

        async def call() -> T:
            return function()

        return self._run(call())

    def _iterate(self, items: AsyncIterator[T]) -> BlockingIterator[T]:
        return BlockingIterator(self, _one_by_one(items))


class BlockingIterator(Generic[T]):
    """Blocking iterator over an async iterator that runs on a Client's loop thread.

    Items are forwarded as they come; ``get(timeout)`` waits for one with a bound;
    ``close()`` stops the async side (and iteration ends after what already arrived).
    """

    _DONE = object()

    def __init__(
        self,
        client: Client,
        batches: AsyncIterator[list[T]],
        stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self._client = client
        self._stop = stop
        self._items: queue.Queue = queue.Queue()
        self._pump = asyncio.run_coroutine_threadsafe(self._forward(batches), client._loop)

    async def _forward(self, batches: AsyncIterator[list[T]]) -> None:
        try:
            async for batch in batches:
                for item in batch:
                    self._items.put(item)
        except asyncio.CancelledError:
            pass
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._items.put(exc)
        finally:
            self._items.put(self._DONE)
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                await aclose()

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        return self.get()

    def get(self, timeout: float | None = None) -> T:
        """The next item; raises queue.Empty after ``timeout`` seconds without one."""
        item = self._items.get(timeout=timeout)
        if item is self._DONE:
            self._items.put(item)
            raise StopIteration
        if isinstance(item, BaseException):
            self._items.put(self._DONE)
            raise item
        return item

    def close(self) -> None:
        """End the iteration; items already received are still delivered."""
        if self._client._loop.is_closed():
            return
        if self._stop is not None:
            self._client._run(self._stop())
        self._pump.cancel()


async def _one_by_one(items: AsyncIterator[T]) -> AsyncIterator[list[T]]:
    try:
        async for item in items:
            yield [item]
    finally:
        aclose = getattr(items, "aclose", None)
        if aclose is not None:
            await aclose()


class WatchIterator(BlockingIterator[kv_pb2.Event]):
    """Blocking iterator over a watch's events (mvccpb.Event), each once, in order."""

    def __init__(self, client: Client, watcher: Watcher) -> None:
        super().__init__(client, watcher.batches(), watcher.cancel)
        self._watcher = watcher

    @property
    def watch_id(self) -> int:
        return self._watcher.watch_id

    def cancel(self) -> None:
        """End the watch; iteration stops after the events already received."""
        self.close()
