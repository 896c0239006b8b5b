"""The WAL writer thread of the Raft process: persists Readies in the order taken, turning
everything queued meanwhile into one write and one fdatasync (group commit)."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

log = logging.getLogger("pyraftkv.raft")

# A WAL fdatasync slower than this is logged (users profile fsync latency).
SLOW_FSYNC_S = 0.1


class WalWriter:
    """A thread that persists Readies in order: one write and one fdatasync per group."""

    def __init__(self, wal, loop: asyncio.AbstractEventLoop) -> None:
        self.wal = wal
        self.loop = loop
        self._jobs: deque[tuple[Callable, bool, Callable[[int], None]]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def submit(self, write: Callable, sync: bool, done: Callable[[int], None]) -> None:
        """Run write(wal) on the writer thread, fdatasync if any job in its group needs it,
        then call done(when) on the event loop, ``when`` being the time.monotonic_ns() at
        which the group was durable."""
        with self._cond:
            self._jobs.append((write, sync, done))
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if not self._jobs and self._stopped:
                    return
                jobs, self._jobs = list(self._jobs), deque()
            try:
                for write, _sync, _done in jobs:
                    write(self.wal)
                if any(sync for _w, sync, _d in jobs):
                    seconds = self.wal.sync()
                    if seconds > SLOW_FSYNC_S:
                        log.warning("slow WAL fdatasync: %.1f ms", seconds * 1000)
            except BaseException as exc:  # the WAL is unusable: the process must stop
                self.failed = exc
                self.loop.call_soon_threadsafe(self._fail, exc)
                return
            durable_ns = time.monotonic_ns()
            self.loop.call_soon_threadsafe(
                self._complete, [done for _w, _s, done in jobs], durable_ns
            )

    @staticmethod
    def _complete(callbacks, durable_ns: int) -> None:
        for callback in callbacks:
            callback(durable_ns)

    @staticmethod
    def _fail(exc: BaseException) -> None:
        log.critical("WAL write failed, stopping: %s", exc)
        os._exit(4)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
