"""Python clients of pyraftkv: ``Client`` (blocking) and ``AsyncClient`` (asyncio), and
the coordination helpers built on them: kept-alive leases, locks, elections, a service
registry and a configuration watcher."""

from .aio import AsyncClient, Watcher
from .config_watch import AsyncConfigWatcher, ConfigWatcher
from .connection import ConnectionLost
from .discovery import (
    AsyncInstanceWatch,
    AsyncRegistration,
    AsyncServiceRegistry,
    InstanceEvent,
    InstanceWatch,
    Registration,
    ServiceRegistry,
)
from .election import AsyncElection, Election
from .leases import AsyncLease, Lease
from .locks import AsyncLock, Lock
from .mirror import AsyncMirror, Change
from .requests import Compare, Op
from .sync import BlockingIterator, Client, WatchIterator
from .tls import TLS

__all__ = [
    "TLS",
    "AsyncClient",
    "AsyncConfigWatcher",
    "AsyncElection",
    "AsyncInstanceWatch",
    "AsyncLease",
    "AsyncLock",
    "AsyncMirror",
    "AsyncRegistration",
    "AsyncServiceRegistry",
    "BlockingIterator",
    "Change",
    "Client",
    "Compare",
    "ConfigWatcher",
    "ConnectionLost",
    "Election",
    "InstanceEvent",
    "InstanceWatch",
    "Lease",
    "Lock",
    "Op",
    "Registration",
    "ServiceRegistry",
    "WatchIterator",
    "Watcher",
]
