"""etcd's key range rules: what a (key, range_end) pair of a request means.

range_end empty: the single key. range_end "\\0": every key >= key. Otherwise the
half-open interval [key, range_end); a prefix is [prefix, prefix_end(prefix)).
"""

from __future__ import annotations

from typing import NamedTuple

from ..keys import FROM_KEY, prefix_end

__all__ = ["FROM_KEY", "KeyRange", "key_range", "prefix_end"]


class KeyRange(NamedTuple):
    """A resolved request range: [start, end) with end None meaning unbounded; single
    when the request named one key."""

    start: bytes
    end: bytes | None
    single: bool

    def __contains__(self, key: object) -> bool:
        if self.single:
            return key == self.start
        assert isinstance(key, bytes)
        return self.start <= key and (self.end is None or key < self.end)


def key_range(key: bytes, range_end: bytes) -> KeyRange:
    """Resolves a request's key and range_end by etcd's rules."""
    if not range_end:
        return KeyRange(key, key, True)
    if range_end == FROM_KEY:
        return KeyRange(key, None, False)
    return KeyRange(key, range_end, False)
