"""Key-range rules shared by the clients, pyraftkvctl and the server (kept free of the store
and the C engine so every side may import it)."""

from __future__ import annotations

FROM_KEY = b"\0"
"""The range_end meaning "every key from the start key on" (etcd's --from-key)."""


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with prefix (etcd's GetPrefixRangeEnd):
    the prefix with its last byte below 0xff incremented, or "\\0" (all keys) when there is
    none."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return FROM_KEY
    return stripped[:-1] + bytes([stripped[-1] + 1])
