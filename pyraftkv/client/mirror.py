"""``AsyncMirror``: a local copy of one key or a prefix, kept current by a watch.

It lists the range at a revision R, then watches from R + 1, so no change is missed
between the listing and the watch. Each change is applied and handed on once, in
revision order, across reconnects and leader changes (the Watcher resumes from the
revision after the last one it delivered). If the cluster compacted history past that
point, the mirror lists the range again and hands on the difference as changes.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import Compacted
from ..proto import kv_pb2
from .connection import ConnectionLost
from .requests import Bytesish, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient, Watcher

RETRY_PAUSE_S = 0.2


@dataclass(frozen=True)
class Change:
    """One change of a mirrored key: ``value`` is None when the key was deleted."""

    key: bytes
    value: bytes | None
    prev_value: bytes | None
    revision: int
    kv: kv_pb2.KeyValue = field(repr=False, compare=False)

    @property
    def deleted(self) -> bool:
        return self.value is None


class AsyncMirror:
    """The key-values of one key (or every key under a prefix), kept current."""

    def __init__(self, client: AsyncClient, key: Bytesish, *, prefix: bool = False) -> None:
        self.key = to_bytes(key)
        if not self.key and not prefix:
            raise ValueError("a key is required (or prefix=True)")
        self.prefix = prefix
        self._client = client
        self.kvs: dict[bytes, kv_pb2.KeyValue] = {}
        # Every change up to this revision has been applied to kvs.
        self.revision = 0
        self._watcher: Watcher | None = None
        self._closed = False

    async def start(self) -> list[kv_pb2.KeyValue]:
        """List the range and start watching after the listing; returns the listing."""
        if self._watcher is not None:
            raise RuntimeError("the mirror is already started")
        return await self._list()

    async def _list(self) -> list[kv_pb2.KeyValue]:
        listing = await self._client.get(self.key, prefix=self.prefix)
        self.kvs = {kv.key: kv for kv in listing.kvs}
        self.revision = listing.header.revision
        await self._watch()
        return list(listing.kvs)

    async def _watch(self) -> None:
        old, self._watcher = self._watcher, None
        if old is not None:
            await old.cancel()
        self._watcher = await self._client.watch(
            self.key,
            prefix=self.prefix,
            start_revision=self.revision + 1,
            prev_kv=True,
            require_leader=True,  # a member cut off from the others would keep it quiet
        )

    async def changes(self) -> AsyncIterator[Change]:
        """Every change after the listing, once and in order, applied as it is handed on;
        ends when the mirror is closed. Only one consumer may iterate."""
        if self._watcher is None:
            raise RuntimeError("start the mirror first")
        while not self._closed:
            try:
                async for events in self._watcher.batches():
                    for event in events:
                        yield self._apply(event)
                if self._closed:
                    return
                await self._watch()  # the server ended the watch: resume after what we have
            except Compacted:
                for change in await self._resync():
                    yield change
            except ConnectionLost:
                # The Watcher gave up reconnecting for a while (no member reachable);
                # keep trying from where it stopped.
                await asyncio.sleep(RETRY_PAUSE_S)

    def _apply(self, event: kv_pb2.Event) -> Change:
        kv = event.kv
        prev = self.kvs.get(kv.key)
        prev_value = prev.value if prev is not None else None
        if event.type == kv_pb2.Event.DELETE:
            self.kvs.pop(kv.key, None)
            value = None
        else:
            self.kvs[kv.key] = kv
            value = kv.value
        self.revision = max(self.revision, kv.mod_revision)
        return Change(kv.key, value, prev_value, kv.mod_revision, kv)

    async def _resync(self) -> list[Change]:
        """History we missed was compacted: list again and report what differs."""
        before = self.kvs
        await self._list()
        changes = []
        for key in sorted(before.keys() | self.kvs.keys()):
            old, new = before.get(key), self.kvs.get(key)
            if new is None:
                gone = kv_pb2.KeyValue(key=key, mod_revision=self.revision)
                changes.append(Change(key, None, old.value, self.revision, gone))
            elif old is None or old.mod_revision != new.mod_revision:
                prev_value = old.value if old is not None else None
                changes.append(Change(key, new.value, prev_value, new.mod_revision, new))
        return changes

    async def close(self) -> None:
        """Stop watching; ``changes`` ends."""
        self._closed = True
        if self._watcher is not None:
            await self._watcher.cancel()
