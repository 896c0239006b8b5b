"""Configuration watching: ``AsyncConfigWatcher`` / ``ConfigWatcher``.

The watcher reads the configuration under a key or a prefix once, then keeps ``values``
current and pushes every change to callbacks and iterators, each change once and in
revision order, across reconnects and leader changes (see AsyncMirror).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from .mirror import AsyncMirror, Change
from .requests import Bytesish, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import BlockingIterator, Client

log = logging.getLogger("pyraftkv.client")

ChangeCallback = Callable[[Change], object]
_END = object()


class AsyncConfigWatcher:
    """``async with client.config_watcher("/config/app/", prefix=True) as config:``
    ``config.values`` is always current; ``config.on_change(callback)`` and
    ``async for change in config`` see every change after they start, once and in order."""

    def __init__(self, client: AsyncClient, key: Bytesish, *, prefix: bool = False) -> None:
        self._mirror = AsyncMirror(client, key, prefix=prefix)
        self._callbacks: list[ChangeCallback] = []
        self._queues: list[asyncio.Queue] = []
        self._task: asyncio.Task | None = None

    async def start(self) -> AsyncConfigWatcher:
        """Read the current values and start following changes."""
        await self._mirror.start()
        self._task = asyncio.ensure_future(self._follow())
        return self

    @property
    def values(self) -> dict[bytes, bytes]:
        """Every key and its current value."""
        return {key: kv.value for key, kv in self._mirror.kvs.items()}

    @property
    def revision(self) -> int:
        """The store revision ``values`` reflects."""
        return self._mirror.revision

    def get(self, key: Bytesish, default: bytes | None = None) -> bytes | None:
        kv = self._mirror.kvs.get(to_bytes(key))
        return default if kv is None else kv.value

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(change)`` on the event loop for every later change, in order (an
        exception it raises is logged and the watcher goes on)."""
        self._callbacks.append(callback)

    def changes(self) -> AsyncIterator[Change]:
        """An async iterator over every change from now on: ``values`` read before the
        first change plus the changes give the configuration at each revision."""
        queue: asyncio.Queue = asyncio.Queue()
        self._queues.append(queue)
        return self._drain(queue)

    async def _drain(self, queue: asyncio.Queue) -> AsyncIterator[Change]:
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            if queue in self._queues:
                self._queues.remove(queue)

    def __aiter__(self) -> AsyncIterator[Change]:
        return self.changes()

    async def _follow(self) -> None:
        end: object = _END
        try:
            async for change in self._mirror.changes():
                for callback in list(self._callbacks):
                    try:
                        callback(change)
                    except Exception:
                        log.exception("configuration change callback failed")
                for queue in self._queues:
                    queue.put_nowait(change)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # handed to every iterator
            log.error("configuration watch of %r failed: %s", self._mirror.key, exc)
            end = exc
        finally:
            for queue in self._queues:
                queue.put_nowait(end)
                if end is not _END:
                    queue.put_nowait(_END)

    async def close(self) -> None:
        """Stop following changes; iterators end."""
        await self._mirror.close()
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def __aenter__(self) -> AsyncConfigWatcher:
        return await self.start()

    async def __aexit__(self, *exc_info) -> None:
        await self.close()


class ConfigWatcher:
    """The blocking client's configuration watcher: ``with client.config_watcher(...) as
    config:``. Callbacks run on a thread of their own, never on the client's loop, so a
    slow callback delays only later callbacks."""

    def __init__(self, client: Client, key: Bytesish, *, prefix: bool = False) -> None:
        self._client = client
        self._watcher = AsyncConfigWatcher(client._client, key, prefix=prefix)
        self._threads: list[threading.Thread] = []

    def start(self) -> ConfigWatcher:
        self._client._run(self._watcher.start())
        return self

    @property
    def values(self) -> dict[bytes, bytes]:
        """A copy of every key and its current value."""
        return self._client._call_soon(lambda: self._watcher.values)

    @property
    def revision(self) -> int:
        return self._watcher.revision

    def get(self, key: Bytesish, default: bytes | None = None) -> bytes | None:
        return self._client._call_soon(lambda: self._watcher.get(key, default))

    def changes(self) -> BlockingIterator[Change]:
        """A blocking iterator over every change from now on, once and in order."""
        return self._client._iterate(self._client._call_soon(self._watcher.changes))

    def __iter__(self) -> BlockingIterator[Change]:
        return self.changes()

    def on_change(self, callback: ChangeCallback) -> None:
        """Call ``callback(change)`` for every later change, in order, on a thread of its
        own (an exception it raises is logged and the watcher goes on)."""
        changes = self.changes()

        def run() -> None:
            for change in changes:
                try:
                    callback(change)
                except Exception:
                    log.exception("configuration change callback failed")

        thread = threading.Thread(target=run, name="pyraftkv-config-callback", daemon=True)
        thread.start()
        self._threads.append(thread)

    def close(self) -> None:
        """Stop following changes; iterators and callback threads end."""
        self._client._run(self._watcher.close())
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(5.0)

    def __enter__(self) -> ConfigWatcher:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()
