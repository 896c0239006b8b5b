"""The WAL writer of the Raft process: persists Readies in the order taken, turning
everything queued meanwhile into one write and one fdatasync (group commit).

Under load a thread does the writing, so the event loop keeps taking proposals and
acknowledgements while an fdatasync runs. When the log is quiet, handing a Ready to that
thread and hearing back costs two thread wake-ups, each as long as a loopback hop on a
busy machine, so a Ready is then written on the event loop itself: always when it needs
no fdatasync (one small pwrite), and with its fdatasync when the disk has been idle for
at least as long as the last fdatasync took (the disk less than half busy, where blocking
the loop for one fdatasync holds up nothing that waited), or when the Raft process says
nothing else waits (``alone``: one writer at a time, whose next write only comes after
this one is answered, however slow the disk). What the loop queued for peers and
the application goes out before that write: a leader's appends and the committed entries
need not wait for the local disk. Once a group is durable and its callbacks have run,
``after_durable`` runs once: what they queued (a follower's acknowledgement) goes out then,
not after the rest of the loop's work.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

from ..failpoints import ENABLED as FAILPOINTS
from ..failpoints import hit

log = logging.getLogger("pyraftkv.raft")

# A WAL fdatasync slower than this is logged (users profile fsync latency).
SLOW_FSYNC_S = 0.1


class WalWriter:
    """A thread that persists Readies in order: one write and one fdatasync per group."""

    def __init__(
        self,
        wal,
        loop: asyncio.AbstractEventLoop,
        before_blocking: Callable[[bool], None] = lambda sync: None,
        after_durable: Callable[[], None] = lambda: None,
    ) -> None:
        """``before_blocking(sync)`` runs before a WAL write on the event loop (to send
        what the loop has queued first); ``after_durable`` after each group's callbacks."""
        self.wal = wal
        self.loop = loop
        self._before_blocking = before_blocking
        self._after_durable = after_durable
        self._jobs: deque[tuple[Callable, bool, Callable[[int], None]]] = deque()
        self._cond = threading.Condition()
        self._stopped = False
        self._busy = False  # the thread is writing a group
        self._idle_since_ns = 0  # when the last fdatasync ended
        self._last_sync_ns = 0  # how long it took
        self.failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="wal-writer", daemon=True)
        self._thread.start()

    def submit(
        self, write: Callable, sync: bool, done: Callable[[int], None], alone: bool = False
    ) -> None:
        """Run write(wal) on the writer thread, fdatasync if any job in its group needs it,
        then call done(when) on the event loop, ``when`` being the time.monotonic_ns() at
        which the group was durable. When the log is quiet (see the module's docstring;
        ``alone``: nothing else waits for the disk), the job runs here, on the event loop,
        and done is called before this returns."""
        with self._cond:
            quiet = not self._jobs and not self._busy
            if not quiet:
                self._jobs.append((write, sync, done))
                self._cond.notify()
                return
        if sync:
            now = time.monotonic_ns()
            if not alone and now - self._idle_since_ns < self._last_sync_ns:
                with self._cond:
                    self._jobs.append((write, sync, done))
                    self._cond.notify()
                return
        try:
            self._before_blocking(sync)
            if FAILPOINTS:
                hit("raftBeforeWalAppend")
            write(self.wal)
            if FAILPOINTS:
                hit("raftAfterWalAppend")
            if sync:
                self._sync()
        except BaseException as exc:  # the WAL is unusable: the process must stop
            self.failed = exc
            self._fail(exc)
        done(time.monotonic_ns())
        self._after_durable()

    def _sync(self) -> None:
        if FAILPOINTS:
            hit("raftBeforeFsync")
        seconds = self.wal.sync()
        if FAILPOINTS:
            hit("raftAfterFsync")
        if seconds > SLOW_FSYNC_S:
            log.warning("slow WAL fdatasync: %.1f ms", seconds * 1000)
        self._idle_since_ns = time.monotonic_ns()
        self._last_sync_ns = int(seconds * 1e9)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._jobs and not self._stopped:
                    self._cond.wait()
                if not self._jobs and self._stopped:
                    return
                jobs, self._jobs = list(self._jobs), deque()
                self._busy = True
            try:
                if FAILPOINTS:
                    hit("raftBeforeWalAppend")
                for write, _sync, _done in jobs:
                    write(self.wal)
                if FAILPOINTS:
                    hit("raftAfterWalAppend")
                if any(sync for _w, sync, _d in jobs):
                    self._sync()
            except BaseException as exc:  # the WAL is unusable: the process must stop
                self.failed = exc
                self.loop.call_soon_threadsafe(self._fail, exc)
                return
            with self._cond:
                self._busy = False
            durable_ns = time.monotonic_ns()
            self.loop.call_soon_threadsafe(
                self._complete, [done for _w, _s, done in jobs], durable_ns
            )

    def _complete(self, callbacks, durable_ns: int) -> None:
        for callback in callbacks:
            callback(durable_ns)
        self._after_durable()

    @staticmethod
    def _fail(exc: BaseException) -> None:
        log.critical("WAL write failed, stopping: %s", exc)
        os._exit(4)

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join()
