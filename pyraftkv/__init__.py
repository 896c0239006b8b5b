"""pyraftkv: a replicated key-value store with etcd's v3 data model."""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "Compare", "Op", "__version__"]


def __getattr__(name: str):
    # The clients are imported on first use so that the Raft process and the storage
    # modules do not pay for the client stack when they import pyraftkv.
    if name in ("AsyncClient", "Client", "Compare", "Op"):
        from . import client

        return getattr(client, name)
    raise AttributeError(f"module 'pyraftkv' has no attribute {name!r}")
