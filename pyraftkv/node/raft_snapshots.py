"""Snapshots as the Raft process moves them: compacting the log once the application's
state is durable, asking the application for a snapshot file when a follower needs one and
sending it, and receiving one from the leader."""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING

from ..admin.cluster import Url
from ..raft import codec
from ..raft.types import Message, MessageType, SnapshotMeta
from ..wal import delete_segments
from . import ringproto as rp
from .logging_setup import fields
from .peer_faults import LinkCut
from .raft_bootstrap import RaftProcessError
from .snapshot_transfer import receive_snapshot, send_snapshot

if TYPE_CHECKING:
    from .raft_process import RaftProcess

log = logging.getLogger("pyraftkv.raft")

# Entries kept in memory below a snapshot so slightly lagging followers catch up from the
# log instead of needing a whole snapshot (etcd keeps 5000 too), and at most this many bytes
# of them: a busy leader's entries batch hundreds of writes each.
CATCH_UP_ENTRIES = 5000
CATCH_UP_BYTES = 16 << 20


def _deleted(future: Future) -> None:
    """A failed deletion leaves old segments behind (a restart reads them, and the next
    snapshot releases them again): worth a warning, not a stop."""
    if error := future.exception():
        log.warning("could not delete released WAL segments: %s", error)


class SnapshotShipper:
    """Snapshot files to and from peers, and log compaction after a snapshot is saved."""

    def __init__(self, process: RaftProcess) -> None:
        self.p = process
        self._received_snapshots: dict[int, str] = {}  # index -> received file
        self._snapshots_in_flight: dict[int, tuple[bytes, float]] = {}  # peer -> (message, t)
        self._sending: set[int] = set()  # peers a snapshot file is on its way to
        # Released WAL segments are deleted here, one batch after another, off the loop.
        self._deleter = ThreadPoolExecutor(1, thread_name_prefix="wal-release")

    def take_received(self, index: int) -> str:
        """The file received for the snapshot at ``index`` ("" if none), now the caller's."""
        return self._received_snapshots.pop(index, "")

    def on_saved(self, index: int, term: int) -> None:
        """The application's state is durable up to index: compact the log and the WAL."""
        core = self.p.core
        if index < core.log.snapshot.index:
            return  # a snapshot received from the leader meanwhile already covers it
        meta = SnapshotMeta(index, term, core.membership_at(index))
        keep = min(CATCH_UP_ENTRIES, self.p.cfg.snapshot_count // 2)
        keep_from = core.log.keep_tail(index, keep, CATCH_UP_BYTES)
        if keep_from > core.log.snapshot.index:
            core.compact(keep_from)

        def write(wal) -> None:
            wal.append_snapshot(index, term, codec.encode_snapshot_meta(meta))
            if released := wal.detach_before(index):
                self._deleter.submit(delete_segments, released).add_done_callback(_deleted)

        self.p.writer.submit(write, True, lambda _durable_ns: None)
        log.info(
            "snapshot at index %d: log compacted, WAL released below it",
            index,
            extra=fields(index=index, term=term),
        )

    def start_send(self, message: Message) -> None:
        peer = message.to
        if peer in self._snapshots_in_flight:
            return
        self._snapshots_in_flight[peer] = (codec.encode_message(message), time.monotonic())
        log.info("member %x needs a snapshot; asking the application for one", peer)
        self.p.push_up(rp.pack(rp.SNAPSHOT_WANTED, rp.U64, peer))

    def on_ready(self, index: int, term: int, tail: bytes) -> None:
        """The application made a snapshot file: send it to every peer waiting for one."""
        path = tail.decode()
        waiting = [peer for peer in self._snapshots_in_flight if peer not in self._sending]
        if not waiting:
            os.unlink(path)
            return
        try:
            membership = self.p.core.membership_at(index)
        except ValueError:
            # The log was compacted past the file's index while it was made: its membership
            # is no longer known here. Ask for a newer file (the applied index is never
            # below the log's start).
            log.info("snapshot file at index %d is older than the log; making another", index)
            os.unlink(path)
            self.p.push_up(rp.pack(rp.SNAPSHOT_WANTED, rp.U64, waiting[0]))
            return
        meta = SnapshotMeta(index, term, membership)
        self._sending.update(waiting)
        remaining = [len(waiting)]

        def finished() -> None:
            remaining[0] -= 1
            if remaining[0] == 0 and os.path.exists(path):
                os.unlink(path)

        for peer in waiting:
            message = Message(MessageType.SNAP, peer, self.p.id, self.p.core.term, snapshot=meta)
            self.p.loop.create_task(self._send(peer, message, path, finished))

    async def _send(self, peer: int, message: Message, path: str, finished) -> None:
        ok = False
        try:
            url = Url.parse(self.p.peer_urls[peer][0], "peer URL")
            size = await send_snapshot(
                url.host,
                url.port,
                ssl=self.p.peer_ssl if url.tls else None,
                cluster_id=self.p.cluster_id,
                sender=self.p.id,
                receiver=peer,
                message=codec.encode_message(message),
                path=path,
            )
            ok = True
            log.info(
                "snapshot at index %d sent to member %x (%d bytes compressed)",
                message.snapshot.index,
                peer,
                size,
            )
        except Exception as exc:  # any failure: the core retries later
            log.warning("sending a snapshot to member %x failed: %s", peer, exc)
        finally:
            self._snapshots_in_flight.pop(peer, None)
            self._sending.discard(peer)
            finished()
        self.p.core.report_snapshot(peer, ok)
        self.p.schedule()

    async def on_connection(self, sender: int, reader, writer) -> None:
        async def stored(message_bytes: bytes, path: str) -> None:
            message = codec.decode_message(message_bytes)
            if message.type != MessageType.SNAP or message.snapshot is None:
                raise RaftProcessError("snapshot channel carried a non-snapshot message")
            self._received_snapshots[message.snapshot.index] = path
            self.p.core.step(message)
            self.p.schedule()

        try:
            await receive_snapshot(
                reader,
                writer,
                self.p.cfg.snap_dir,
                stored,
                max_bytes=self.p.cfg.max_snapshot_bytes,
                sender=sender,
            )
        except LinkCut as exc:  # (tests only) nothing gets through, no answer either
            log.warning("receiving a snapshot from member %x failed: %s", sender, exc)
