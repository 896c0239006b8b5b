"""Service discovery: ``AsyncServiceRegistry`` / ``ServiceRegistry``.

Each instance of a service is a key ``prefix + name`` whose value says how to reach it
(an address, say), put on a lease its process keeps alive: when the process dies, the
lease expires and the instance vanishes by itself. Watching the registry gives the
instances listed at one revision, then every arrival and departure after it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .leases import AsyncLease, check_ttl
from .mirror import AsyncMirror, Change
from .requests import Bytesish, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import BlockingIterator, Client

# Seconds an instance stays listed after its process stops renewing its lease.
DEFAULT_TTL_S = 10

JOINED, UPDATED, LEFT = "joined", "updated", "left"


@dataclass(frozen=True)
class InstanceEvent:
    """An instance joined, changed its value, or left (``value``: its last value)."""

    kind: str
    name: str
    value: bytes
    revision: int


def _name(prefix: bytes, key: bytes) -> str:
    return key[len(prefix) :].decode("utf-8", "backslashreplace")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ValueError(f"an instance needs a non-empty name, not {name!r}")
    return name


class AsyncRegistration:
    """One registered instance; ``deregister()`` (or leaving ``async with``) removes it."""

    def __init__(self, client: AsyncClient, key: bytes, name: str, value: bytes, ttl: int):
        self._client = client
        self.key = key
        self.name = name
        self.value = value
        self.lease = AsyncLease(client, ttl)

    async def _register(self) -> AsyncRegistration:
        await self.lease.grant()
        try:
            await self._client.put(self.key, self.value, lease=self.lease.id)
        except BaseException:
            await self.lease.revoke()
            raise
        return self

    async def update(self, value: Bytesish) -> None:
        """Publish a new value for this instance (watchers see ``updated``)."""
        self.value = to_bytes(value)
        await self._client.put(self.key, self.value, lease=self.lease.id)

    async def deregister(self) -> None:
        """Remove the instance now (its lease is revoked)."""
        await self.lease.revoke()

    async def __aenter__(self) -> AsyncRegistration:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.deregister()


class AsyncInstanceWatch:
    """Async iterator of InstanceEvent: first one ``joined`` per instance listed, then
    every arrival, update and departure, once and in order. ``instances`` follows along."""

    def __init__(self, client: AsyncClient, prefix: bytes) -> None:
        self._prefix = prefix
        self._mirror = AsyncMirror(client, prefix, prefix=True)
        self.instances: dict[str, bytes] = {}
        self._events: AsyncIterator[InstanceEvent] | None = None

    async def start(self) -> AsyncInstanceWatch:
        listing = await self._mirror.start()
        self._events = self._follow(listing, self._mirror.revision)
        return self

    async def _follow(self, listing, revision: int) -> AsyncIterator[InstanceEvent]:
        for kv in listing:
            yield self._seen(InstanceEvent(JOINED, _name(self._prefix, kv.key), kv.value, revision))
        async for change in self._mirror.changes():
            yield self._seen(self._event(change))

    def _event(self, change: Change) -> InstanceEvent:
        name = _name(self._prefix, change.key)
        if change.deleted:
            return InstanceEvent(LEFT, name, change.prev_value or b"", change.revision)
        kind = JOINED if change.prev_value is None else UPDATED
        return InstanceEvent(kind, name, change.value, change.revision)

    def _seen(self, event: InstanceEvent) -> InstanceEvent:
        if event.kind == LEFT:
            self.instances.pop(event.name, None)
        else:
            self.instances[event.name] = event.value
        return event

    def __aiter__(self) -> AsyncIterator[InstanceEvent]:
        if self._events is None:
            raise RuntimeError("start the watch first")
        return self._events

    async def close(self) -> None:
        await self._mirror.close()


class AsyncServiceRegistry:
    """The instances of one service, under ``prefix`` (e.g. ``"/services/api/"``)."""

    def __init__(self, client: AsyncClient, prefix: Bytesish) -> None:
        self.prefix = to_bytes(prefix)
        if not self.prefix:
            raise ValueError("a service registry needs a key prefix")
        self._client = client

    async def register(
        self, name: str, value: Bytesish, *, ttl: int = DEFAULT_TTL_S
    ) -> AsyncRegistration:
        """Register instance ``name`` with ``value`` on a lease of ``ttl`` seconds kept
        alive by this client; it vanishes ``ttl`` seconds after this process dies."""
        key = self.prefix + _check_name(name).encode()
        registration = AsyncRegistration(self._client, key, name, to_bytes(value), check_ttl(ttl))
        return await registration._register()

    async def instances(self) -> dict[str, bytes]:
        """The live instances: name -> value."""
        got = await self._client.get(self.prefix, prefix=True)
        return {_name(self.prefix, kv.key): kv.value for kv in got.kvs}

    async def watch(self) -> AsyncInstanceWatch:
        """Instances as they come and go, starting with the ones registered now."""
        return await AsyncInstanceWatch(self._client, self.prefix).start()


class Registration:
    """The blocking client's registered instance (a context manager that deregisters)."""

    def __init__(self, client: Client, registration: AsyncRegistration) -> None:
        self._client = client
        self._registration = registration

    @property
    def name(self) -> str:
        return self._registration.name

    @property
    def key(self) -> bytes:
        return self._registration.key

    @property
    def lease(self) -> AsyncLease:
        return self._registration.lease

    def update(self, value: Bytesish) -> None:
        self._client._run(self._registration.update(value))

    def deregister(self) -> None:
        self._client._run(self._registration.deregister())

    def __enter__(self) -> Registration:
        return self

    def __exit__(self, *exc_info) -> None:
        self.deregister()


class InstanceWatch:
    """Blocking iterator of InstanceEvent (see AsyncInstanceWatch); ``close()`` ends it."""

    def __init__(self, client: Client, watch: AsyncInstanceWatch) -> None:
        self._client = client
        self._watch = watch
        self._events: BlockingIterator[InstanceEvent] = client._iterate(aiter(watch))
        self.instances: dict[str, bytes] = {}

    def __iter__(self) -> Iterator[InstanceEvent]:
        return self

    def __next__(self) -> InstanceEvent:
        return self.get()

    def get(self, timeout: float | None = None) -> InstanceEvent:
        """The next event; raises queue.Empty after ``timeout`` seconds without one."""
        event = self._events.get(timeout)
        if event.kind == LEFT:
            self.instances.pop(event.name, None)
        else:
            self.instances[event.name] = event.value
        return event

    def close(self) -> None:
        self._client._run(self._watch.close())
        self._events.close()


class ServiceRegistry:
    """The blocking client's service registry (see AsyncServiceRegistry)."""

    def __init__(self, client: Client, prefix: Bytesish) -> None:
        self._client = client
        self._registry = AsyncServiceRegistry(client._client, prefix)

    @property
    def prefix(self) -> bytes:
        return self._registry.prefix

    def register(self, name: str, value: Bytesish, *, ttl: int = DEFAULT_TTL_S) -> Registration:
        """Register instance ``name`` with ``value`` on a kept-alive lease of ``ttl`` s."""
        return Registration(
            self._client, self._client._run(self._registry.register(name, value, ttl=ttl))
        )

    def instances(self) -> dict[str, bytes]:
        return self._client._run(self._registry.instances())

    def watch(self) -> InstanceWatch:
        """Instances as they come and go, starting with the ones registered now."""
        return InstanceWatch(self._client, self._client._run(self._registry.watch()))
