"""How the MVCC store lays its state out in LMDB.

Sub-database "kv": revision key -> serialized mvccpb.KeyValue. A revision key is 16 bytes,
main and sub as big-endian int64, so LMDB's byte order is revision order; a tombstone's
key carries one more byte, b"t" (etcd's marking), and its record holds only key and
mod_revision. Sub-database "meta": the counters needed to reopen, each an 8-byte
big-endian signed integer, and the application's own metadata under b"app/" (e.g. the
member list), all written in the same LMDB transaction as the records.
"""

from __future__ import annotations

import struct

KV_DB = b"kv"
META_DB = b"meta"

REVISION = struct.Struct(">qq")
COUNTER = struct.Struct(">q")
TOMBSTONE_MARK = b"t"

META_APPLIED_INDEX = b"applied_index"
META_APPLIED_TERM = b"applied_term"
META_REVISION = b"revision"
META_COMPACT_REVISION = b"compact_revision"
META_FORMAT = b"format"
FORMAT_VERSION = 1
APP_META_PREFIX = b"app/"
DATA_FILE = "data.mdb"  # LMDB's file inside the store directory

revision_key = REVISION.pack


def tombstone_key(main: int, sub: int) -> bytes:
    """The LMDB key of a tombstone record at (main, sub)."""
    return REVISION.pack(main, sub) + TOMBSTONE_MARK


def parse_revision_key(key: bytes) -> tuple[int, int, bool]:
    """(main, sub, is_tombstone) of an LMDB record key; ValueError on anything else."""
    if len(key) == 16:
        main, sub = REVISION.unpack(key)
        return main, sub, False
    if len(key) == 17 and key[16:] == TOMBSTONE_MARK:
        main, sub = REVISION.unpack(key[:16])
        return main, sub, True
    raise ValueError(f"not a revision key: {key!r}")
