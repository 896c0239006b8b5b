"""The revisioned key index (C, csrc/keyindex.c): key -> revision history, in memory.

The MVCC store keeps one KeyIndex: it answers "which revision holds key K as of
revision R" so the record can be fetched from LMDB by revision. Revisions are
(main, sub) pairs: main is the store revision, sub orders writes inside it.
"""

from __future__ import annotations

import errno
from collections.abc import Sequence
from typing import NamedTuple

from pyraftkv._native import ffi, lib

_NULL = ffi.NULL
_RANGE_FIELDS = lib.KI_RANGE_FIELDS
_COMPACT_FIELDS = lib.KI_COMPACT_FIELDS


class KeyState(NamedTuple):
    """A key as seen at some revision: the revision of its last change, its creation,
    its version."""

    mod_main: int
    mod_sub: int
    create_revision: int
    version: int


class RangeItem(NamedTuple):
    """One live key of a range read."""

    key: bytes
    mod_main: int
    mod_sub: int
    create_revision: int
    version: int


class DroppedRevision(NamedTuple):
    """A revision compaction removed from the index; the store deletes its record."""

    main: int
    sub: int
    tombstone: bool


def _check(rc: int, what: str) -> int:
    if rc >= 0:
        return rc
    if rc == -errno.EINVAL:
        raise ValueError(f"{what}: revision is not newer than the key's newest revision")
    if rc == -errno.ERANGE:
        raise ValueError(f"{what}: revision or key length out of range")
    if rc == -errno.ENOMEM:
        raise MemoryError(f"{what}: out of memory")
    raise RuntimeError(f"{what}: key index error {rc}")


class KeyIndex:
    """An ordered in-memory index from key bytes to the key's generations of revisions.

    Not thread-safe: one owner (the apply loop) calls it.
    """

    def __init__(self) -> None:
        out = ffi.new("ki_index **")
        _check(lib.ki_new(out), "ki_new")
        self._handle = ffi.gc(out[0], lib.ki_free)
        # Reused out-parameters keep every hot call to one C call and no allocation.
        self._out = ffi.new("int64_t[4]")
        self._total = ffi.new("int64_t *")
        self._count = ffi.new("int64_t *")
        self._nums = ffi.new("const int64_t **")
        self._keys = ffi.new("const char **")

    def put(self, key: bytes, main: int, sub: int) -> tuple[int, int]:
        """Records a put of key at (main, sub); returns (create_revision, version) after it.

        Raises ValueError when (main, sub) is not newer than the key's newest revision.
        """
        out = self._out
        rc = lib.ki_put(self._handle, key, len(key), main, sub, out)
        if rc:
            _check(rc, "put")
        return out[0], out[1]

    def put_replacing(self, key: bytes, main: int, sub: int) -> tuple[int, int, int, int]:
        """put, also returning the revision it replaced: (create_revision, version,
        prev_mod_main, prev_mod_sub), the last two -1 when the key was not live."""
        out = self._out
        rc = lib.ki_put(self._handle, key, len(key), main, sub, out)
        if rc:
            _check(rc, "put")
        return out[0], out[1], out[2], out[3]

    def tombstone(self, key: bytes, main: int, sub: int) -> bool:
        """Deletes key at (main, sub); False (and nothing changes) when it is not live."""
        rc = lib.ki_tombstone(self._handle, key, len(key), main, sub)
        if rc < 0:
            _check(rc, "tombstone")
        return rc == 0

    def get(self, key: bytes, at_rev: int) -> KeyState | None:
        """The key's state at revision at_rev, or None when it is not live then."""
        out = self._out
        rc = lib.ki_get(self._handle, key, len(key), at_rev, out)
        if rc:
            if rc == lib.KI_NOT_LIVE:
                return None
            _check(rc, "get")
        return KeyState(out[0], out[1], out[2], out[3])

    def _range(self, start: bytes, end: bytes | None, at_rev: int, limit: int) -> int:
        if limit < 0:
            raise ValueError("limit must be >= 0")
        end = end or b""
        rc = lib.ki_range(
            self._handle,
            start,
            len(start),
            end,
            len(end),
            at_rev,
            limit,
            self._total,
            self._count,
            self._nums,
            self._keys,
        )
        _check(rc, "range")
        return self._count[0]

    def range(
        self, start: bytes, end: bytes | None, at_rev: int, limit: int = 0
    ) -> tuple[list[RangeItem], int]:
        """Live keys at at_rev in [start, end) in key order, at most limit (0: all), and
        the total number of live keys in the range. end None or b"" = no upper bound."""
        n = self._range(start, end, at_rev, limit)
        if n == 0:
            return [], self._total[0]
        nums = ffi.unpack(self._nums[0], n * _RANGE_FIELDS)
        blob = ffi.unpack(self._keys[0], nums[-6] + nums[-5])
        items = [
            RangeItem(blob[off : off + ln], mm, ms, cr, ver)
            for off, ln, mm, ms, cr, ver in zip(*[iter(nums)] * _RANGE_FIELDS, strict=True)
        ]
        return items, self._total[0]

    def range_revisions(
        self, start: bytes, end: bytes | None, at_rev: int, limit: int = 0
    ) -> tuple[list[tuple[int, int]], int]:
        """Like range, but only the (mod_main, mod_sub) of each key: what a store needs
        to fetch the records."""
        n = self._range(start, end, at_rev, limit)
        if n == 0:
            return [], self._total[0]
        nums = ffi.unpack(self._nums[0], n * _RANGE_FIELDS)
        revisions = zip(nums[2::_RANGE_FIELDS], nums[3::_RANGE_FIELDS], strict=True)
        return list(revisions), self._total[0]

    def count(self, start: bytes, end: bytes | None, at_rev: int) -> int:
        """Number of live keys at at_rev in [start, end), without listing them."""
        end = end or b""
        rc = lib.ki_count(self._handle, start, len(start), end, len(end), at_rev, self._total)
        _check(rc, "count")
        return self._total[0]

    def compact(self, at_rev: int) -> list[DroppedRevision]:
        """Drops what no read at or after at_rev needs; returns the dropped revisions
        (in key order) so the store can delete their records."""
        rc = lib.ki_compact(self._handle, at_rev, self._count, self._nums)
        _check(rc, "compact")
        nums = ffi.unpack(self._nums[0], self._count[0] * _COMPACT_FIELDS)
        return [
            DroppedRevision(main, sub, bool(tomb))
            for main, sub, tomb in zip(*[iter(nums)] * _COMPACT_FIELDS, strict=True)
        ]

    def restore(
        self,
        key: bytes,
        main: int,
        sub: int,
        create_revision: int,
        version: int,
        tombstone: bool,
    ) -> None:
        """Replays one stored record at start-up (records must come in revision order).

        Raises ValueError when the record does not continue the key's history.
        """
        rc = lib.ki_restore(
            self._handle, key, len(key), main, sub, create_revision, version, tombstone
        )
        if rc:
            if rc == -errno.EINVAL:
                raise ValueError(
                    f"restore: record {main}.{sub} of {key!r} does not continue its history"
                )
            _check(rc, "restore")

    def restore_records(self, keys: Sequence[bytes], values: Sequence[bytes]) -> list[int]:
        """restore for stored records as the MVCC store keeps them in LMDB (revision key,
        serialized KeyValue), in revision order, parsed in C; returns the positions of the
        puts that carry a lease. ValueError names a bad record; the index is then partly
        restored and must be discarded."""
        n = len(keys)
        if len(values) != n:
            raise ValueError("restore_records: as many values as keys are needed")
        key_lens = ffi.new("size_t[]", [len(k) for k in keys])
        val_lens = ffi.new("size_t[]", [len(v) for v in values])
        leased = ffi.new("size_t[]", max(n, 1))
        done = ffi.new("size_t *")
        nleased = ffi.new("size_t *")
        rc = lib.ki_restore_records(
            self._handle,
            n,
            b"".join(keys),
            key_lens,
            b"".join(values),
            val_lens,
            done,
            leased,
            nleased,
        )
        if rc:
            if rc in (-errno.EINVAL, -errno.ERANGE):
                raise ValueError(
                    f"restore: record {keys[done[0]]!r} is malformed or does not continue "
                    f"its key's history"
                )
            _check(rc, "restore")
        return ffi.unpack(leased, nleased[0])

    def stats(self) -> tuple[int, int, int]:
        """(keys, revisions, bytes allocated) held by the index."""
        out = self._out
        lib.ki_stats(self._handle, out, out + 1, out + 2)
        return out[0], out[1], out[2]

    def __len__(self) -> int:
        return self.stats()[0]
