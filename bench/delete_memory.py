"""What one large DeleteRange holds at once: the store's malloc'd memory and its time.

Fills an MVCCStore (no member: the store alone) with ``--keys`` keys of 256 bytes and
1 KiB values, as ``etcdctl check perf`` writes them, then deletes them in one request and
prints the heap in use (glibc's mallinfo2) while its events are alive, after they are
dropped, and how long the delete took. ``--prev`` makes the events carry the previous
versions (as when a synced watcher asked for prev_kv).

    python bench/delete_memory.py [--keys 100000] [--prev]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from pyraftkv.mvcc.store import MVCCStore  # noqa: E402
from pyraftkv.proto import rpc_pb2  # noqa: E402


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena", "ordblks", "smblks", "hblks", "hblkhd",
            "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost",
        )
    ]  # fmt: skip


_libc = ctypes.CDLL("libc.so.6")
_libc.mallinfo2.restype = _MallInfo2


def heap_in_use_mb() -> float:
    """Bytes malloc has handed out and not taken back (heap and mmap'd chunks), in MB."""
    info = _libc.mallinfo2()
    return (info.uordblks + info.hblkhd) / 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--prev", action="store_true", help="events carry prev_kv")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pyraftkv-delete-") as root:
        store = MVCCStore(root)
        store.events_need_prev = lambda: args.prev
        value = bytes(1024)
        for start in range(0, args.keys, 1000):
            with store.write_batch(start // 1000 + 1) as batch:
                for i in range(start, min(start + 1000, args.keys)):
                    key = b"/perf/" + i.to_bytes(8, "big") + bytes(242)
                    batch.put(rpc_pb2.PutRequest(key=key, value=value))
        gc.collect()
        base = heap_in_use_mb()
        began = time.perf_counter()
        with store.write_batch(args.keys // 1000 + 2) as batch:
            request = rpc_pb2.DeleteRangeRequest(key=b"/perf/", range_end=b"/perf0")
            response, events = batch.delete_range(request)
            took = time.perf_counter() - began
            held = heap_in_use_mb() - base
            del events
            gc.collect()
            after = heap_in_use_mb() - base
        store.close()
    print(
        f"deleted {response.deleted} keys in {took:.3f} s; heap in use +{held:.0f} MB with "
        f"the events alive, +{after:.0f} MB after they are dropped "
        f"(events: {held - after:.0f} MB, {1e6 * (held - after) / response.deleted:.0f} B per key)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
