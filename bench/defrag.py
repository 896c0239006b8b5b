"""How long `defrag` blocks a member, at a sizeable store.

Builds an MVCC store of --keys keys (--value-bytes values), overwrites every key once, and
compacts the old revisions away (half the pages become free), then times what a member's
Defragment call does while it serves nothing else: the compacting copy of the LMDB file
(mdb_env_copy2 with MDB_CP_COMPACT) and reopening the store on it (which rebuilds the key
index). Prints the file sizes before and after.

    PYTHONPATH=. python bench/defrag.py --keys 1000000
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from pyraftkv.mvcc.store import MVCCStore
from pyraftkv.proto import rpc_pb2 as rpc


def fill(store: MVCCStore, keys: int, value: bytes, index: int) -> int:
    for start in range(0, keys, 10_000):
        index += 1
        with store.write_batch(index) as batch:
            for i in range(start, min(keys, start + 10_000)):
                batch.put(rpc.PutRequest(key=b"key/%09d" % i, value=value))
    return index


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--value-bytes", type=int, default=256)
    args = parser.parse_args()
    value = os.urandom(args.value_bytes)
    with tempfile.TemporaryDirectory(dir=os.environ.get("TMPDIR")) as root:
        store = MVCCStore(os.path.join(root, "member"), map_size=64 << 30)
        started = time.monotonic()
        index = fill(store, args.keys, value, 0)
        index = fill(store, args.keys, value, index)
        with store.write_batch(index + 1) as batch:
            batch.compact(rpc.CompactionRequest(revision=store.revision, physical=True))
        store.sync()
        loaded = time.monotonic() - started
        before, in_use = store.db_size(), store.db_size_in_use()
        started = time.monotonic()
        copy = os.path.join(store.path, "defrag.tmp")
        store.snapshot_to(copy)
        copied = time.monotonic() - started
        store = store.replace_with(copy)
        total = time.monotonic() - started
        after = store.db_size()
        assert store.keys_in_index() == args.keys
        store.close()
    print(f"keys {args.keys:,}, values {args.value_bytes} B (loaded in {loaded:.1f} s)")
    print(
        f"file before {before / 1e6:.1f} MB ({in_use / 1e6:.1f} MB in use),",
        f"after {after / 1e6:.1f} MB",
    )
    print(
        f"defrag blocked the member {total:.2f} s: compacting copy {copied:.2f} s, "
        f"reopen + index rebuild {total - copied:.2f} s"
    )


if __name__ == "__main__":
    main()
