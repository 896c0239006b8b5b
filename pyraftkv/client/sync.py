"""``Client``: the blocking client. It runs an AsyncClient on a private event-loop thread."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterable, Iterator, Sequence

from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from .aio import AsyncClient, Watcher
from .requests import Bytesish


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
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pyraftkv-client", daemon=True
        )
        self._thread.start()
        self.timeout = timeout

        async def make() -> AsyncClient:
            return AsyncClient(endpoints, timeout=timeout, connect_timeout=connect_timeout)

        self._client: AsyncClient = self._run(make())

    def _run(self, coroutine, timeout: float | None = None):
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(None if timeout is None else timeout)
        except BaseException:
            future.cancel()
            raise

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        if self._loop.is_closed():
            return
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
        return self._run(self._client.put(key, value, **options))

    def get(self, key: Bytesish, range_end: Bytesish | None = None, **options) -> rpc.RangeResponse:
        return self._run(self._client.get(key, range_end, **options))

    def delete(
        self, key: Bytesish, range_end: Bytesish | None = None, **options
    ) -> rpc.DeleteRangeResponse:
        return self._run(self._client.delete(key, range_end, **options))

    def txn(
        self,
        compare: Iterable[rpc.Compare] = (),
        success: Iterable[rpc.RequestOp] = (),
        failure: Iterable[rpc.RequestOp] = (),
    ) -> rpc.TxnResponse:
        return self._run(self._client.txn(list(compare), list(success), list(failure)))

    def compact(self, revision: int, physical: bool = False) -> rpc.CompactionResponse:
        return self._run(self._client.compact(revision, physical))

    def member_list(self) -> rpc.MemberListResponse:
        return self._run(self._client.member_list())

    def status(self, endpoint: str | None = None) -> rpc.StatusResponse:
        return self._run(self._client.status(endpoint))

    def hash_kv(self, revision: int = 0) -> rpc.HashKVResponse:
        return self._run(self._client.hash_kv(revision))

    def move_leader(self, target_id: int) -> rpc.MoveLeaderResponse:
        return self._run(self._client.move_leader(target_id))

    def call(self, method: str, request, timeout: float | None = None):
        """Send any native-protocol method by name (see pyraftkv.protocol.methods)."""
        return self._run(self._client.call(method, request, timeout))

    def watch(self, key: Bytesish, range_end: Bytesish | None = None, **options) -> WatchIterator:
        """Start a watch; iterate the result for events; ``.cancel()`` ends it."""
        watcher = self._run(self._client.watch(key, range_end, **options))
        return WatchIterator(self, watcher)


class WatchIterator:
    """Blocking iterator over a watch's events (mvccpb.Event), each once, in order."""

    _DONE = object()

    def __init__(self, client: Client, watcher: Watcher) -> None:
        self._client = client
        self._watcher = watcher
        self._events: queue.Queue = queue.Queue()
        self._pump = asyncio.run_coroutine_threadsafe(self._forward(), client._loop)

    async def _forward(self) -> None:
        try:
            async for events in self._watcher.batches():
                for event in events:
                    self._events.put(event)
        except BaseException as exc:  # handed to the consuming thread, which raises it
            self._events.put(exc)
        finally:
            self._events.put(self._DONE)

    @property
    def watch_id(self) -> int:
        return self._watcher.watch_id

    def __iter__(self) -> Iterator[kv_pb2.Event]:
        return self

    def __next__(self) -> kv_pb2.Event:
        return self.get()

    def get(self, timeout: float | None = None) -> kv_pb2.Event:
        """The next event; raises queue.Empty after ``timeout`` seconds without one."""
        item = self._events.get(timeout=timeout)
        if item is self._DONE:
            self._events.put(item)
            raise StopIteration
        if isinstance(item, BaseException):
            self._events.put(self._DONE)
            raise item
        return item

    def cancel(self) -> None:
        """End the watch; iteration stops after the events already received."""
        if not self._client._loop.is_closed():
            self._client._run(self._watcher.cancel())
