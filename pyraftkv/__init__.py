"""pyraftkv: a replicated key-value store with etcd's v3 data model."""

from __future__ import annotations

__version__ = "0.1.0"

# Public names served by pyraftkv.client (imported on first use, see __getattr__).
_CLIENT_NAMES = (
    "AsyncClient",
    "AsyncConfigWatcher",
    "AsyncElection",
    "AsyncLease",
    "AsyncLock",
    "AsyncServiceRegistry",
    "Change",
    "Client",
    "Compare",
    "ConfigWatcher",
    "Election",
    "InstanceEvent",
    "Lease",
    "Lock",
    "Op",
    "ServiceRegistry",
    "TLS",
)
__all__ = [*_CLIENT_NAMES, "__version__"]


def __getattr__(name: str):
    # The clients are imported on first use so that the Raft process and the storage
    # modules do not pay for the client stack when they import pyraftkv.
    if name in _CLIENT_NAMES:
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'pyraftkv' has no attribute {name!r}")
