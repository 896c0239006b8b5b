"""etcd's key range rules: what a (key, range_end) pair of a request means.

range_end empty: the single key. range_end "\\0": every key >= key. Otherwise the
half-open interval [key, range_end); a prefix is [prefix, prefix_end(prefix)).
"""

from __future__ import annotations

from typing import NamedTuple

FROM_KEY = b"\x00"


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


def prefix_end(prefix: bytes) -> bytes:
    """The range_end that selects every key starting with prefix (etcd's GetPrefixRangeEnd):
    the prefix with its last byte below 0xff incremented, or "\\0" (all keys) when there is
    none."""
    stripped = prefix.rstrip(b"\xff")
    if not stripped:
        return FROM_KEY
    return stripped[:-1] + bytes([stripped[-1] + 1])
