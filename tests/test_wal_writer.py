"""The Raft process's WAL writer on a real WAL: a quiet log is written on the event loop,
what the loop queued (for peers and the application) leaves before that write, and what
the durable callbacks queued (a follower's acknowledgement) right after them."""

from __future__ import annotations

import asyncio
import time

from pyraftkv.node.wal_writer import WalWriter
from pyraftkv.wal import WriteAheadLog


def test_a_quiet_log_is_written_on_the_loop_after_what_the_loop_queued(tmp_path):
    async def scenario() -> list:
        order: list = []
        wal = WriteAheadLog.create(tmp_path / "wal", b"meta")
        writer = WalWriter(
            wal,
            asyncio.get_running_loop(),
            lambda sync: order.append(f"queued out, sync {sync}"),
            lambda: order.append("acknowledgements out"),
        )
        try:
            for index, sync in ((1, False), (2, True)):

                def write(log, index=index) -> None:
                    order.append(f"write {index}")
                    log.append([(1, index, 0, b"x")], (1, 0, index))

                writer.submit(write, sync, lambda _ns, index=index: order.append(f"done {index}"))
            return order
        finally:
            writer.stop()
            wal.close()

    # Both ran on the loop (done before submit returned), each after the queued messages
    # left: a leader's appends and the committed entries do not wait for the local disk.
    assert asyncio.run(scenario()) == [
        "queued out, sync False", "write 1", "done 1", "acknowledgements out",
        "queued out, sync True", "write 2", "done 2", "acknowledgements out",
    ]  # fmt: skip
    wal, recovery = WriteAheadLog.open(tmp_path / "wal")
    wal.close()
    assert [entry[1] for entry in recovery.entries] == [1, 2]  # both written


def test_a_busy_disk_sends_a_write_to_the_thread_unless_nothing_else_waits(tmp_path):
    """When the disk was idle for less than the last fdatasync took, a write that must sync
    goes to the writer thread (the loop stays free for what comes meanwhile), unless the
    Raft process says nothing else waits (one writer at a time): then the loop writes it."""

    async def scenario() -> list:
        wal = WriteAheadLog.create(tmp_path / "wal", b"meta")
        writer = WalWriter(wal, asyncio.get_running_loop())
        ran_here = []
        try:
            for index, alone in ((1, False), (2, True)):
                writer._last_sync_ns = 10**12  # the last fdatasync "took" 1,000 s
                writer._idle_since_ns = time.monotonic_ns()
                done = asyncio.get_running_loop().create_future()

                def write(log, index=index) -> None:
                    log.append([(1, index, 0, b"x")], (1, 0, index))

                writer.submit(write, True, done.set_result, alone)
                ran_here.append(done.done())
                await asyncio.wait_for(done, 10)
            return ran_here
        finally:
            writer.stop()
            wal.close()

    assert asyncio.run(scenario()) == [False, True]
