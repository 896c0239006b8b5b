"""Defragmenting a stopped member's store offline (``pyraftkvctl defrag --data-dir``, as
etcdctl 3.4's): its LMDB file is rewritten as a compacted copy, with the member's data dir
lock held so that the member cannot start meanwhile. A running member holds that lock, so
it is refused (a running member is defragmented through its endpoint instead)."""

from __future__ import annotations

import os

import lmdb

from ..errors import ConfigError
from ..mvcc import MVCCStore
from ..mvcc.records import DATA_FILE
from ..wal import take_flock
from .datadir import LOCK_FILE, DataDir


def defragment(data_dir: str) -> tuple[int, int]:
    """Compact the store of the member whose data dir this is; (bytes before, after).
    ConfigError if it is not a pyraftkv data dir, has a newer on-disk format, or its
    member is running."""
    directory = DataDir(data_dir)
    if not directory.exists() or not os.path.exists(os.path.join(directory.db, DATA_FILE)):
        raise ConfigError(f"{data_dir!r} is not a pyraftkv data dir (no member store in it)")
    directory.format()  # refuses a format this pyraftkv cannot read
    try:
        lock = take_flock(os.path.join(directory.member, LOCK_FILE))
    except BlockingIOError as exc:
        raise ConfigError(
            f"data dir {data_dir!r} is in use by a running member ({exc}); to defragment "
            "a running member, omit --data-dir"
        ) from None
    try:
        store = MVCCStore(directory.db)
        before = store.db_size()
        store = store.defragmented()
        after = store.db_size()
        store.close()
    except (OSError, lmdb.Error, RuntimeError) as exc:
        raise ConfigError(f"cannot defragment the store in {directory.db!r}: {exc}") from None
    finally:
        os.close(lock)
    return before, after
