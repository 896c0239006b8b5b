"""The Raft process of a member: the Raft core, its WAL, the peer transport, snapshots.

A thin asyncio shell around the pure RaftCore (pyraftkv/raft). Inputs: ticks from a
timer, messages from peers, and requests from the application process (shm ring).
Output: every Ready the core produces, handled by the persistence rule in raft/ready.py:

- ``messages`` go to the peers at once (a leader sends its appends while its own fsync
  runs; the core counts the leader only once that fsync is done);
- snapshot, entries and hard state go to the WAL writer thread, which turns everything
  queued into ONE write and ONE fdatasync (group commit across Readies);
- after that fsync, ``persisted_messages`` (votes, acknowledgements) leave and the Ready
  is advanced, in the order the Readies were taken;
- committed entries, read states and leadership changes go up the ring to the
  application process as soon as the Ready is taken.

With ``--single-process`` the same class runs on the application process's event loop
(raft_side.py), linked by a LocalLink instead of the rings.

Client writes arriving at a follower are forwarded here, at the shell, to the leader's
Raft process (the core itself only accepts proposals on the leader); a refusal travels
back so the client learns of it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import signal
import sys
import time
from collections import deque
from collections.abc import Callable

from ..admin.cluster import Url
from ..errors import PyraftkvError
from ..failpoints import ENABLED as FAILPOINTS
from ..failpoints import hit
from ..proto import raft_internal_pb2 as internal
from ..raft import codec
from ..raft.core import RaftCore
from ..raft.errors import NoLeaderError, NotLeaderError, ProposalRefused
from ..raft.ready import Ready
from ..raft.types import (
    Entry,
    EntryType,
    HardState,
    Message,
    MessageType,
    Role,
    SnapshotMeta,
)
from ..wal import WriteAheadLog
from . import event_loop
from . import ringproto as rp
from .logging_setup import fields, setup_logging
from .peer_transport import HASH_FAILED, PeerProtocolError, PeerTransport
from .process_entry import crash_on_error, die_with_parent, stop_now
from .proposal_check import batch_problem
from .raft_bootstrap import RaftProcessConfig, RaftProcessError, open_core
from .raft_membership import MembershipChanges
from .raft_snapshots import SnapshotShipper
from .raft_trace import RaftTrace
from .ring_link import LocalLink, RingLink
from .tls import TlsSettings
from .wal_writer import WalWriter
from .write_trace import SENT

log = logging.getLogger("pyraftkv.raft")

# How often the fdatasync histogram goes to the application process (for /metrics).
LATENCY_REPORT_S = 1.0
# How long a peer's HashKV query waits for the application process to answer.
HASH_ANSWER_TIMEOUT_S = 10.0
# Committed entries travel up the ring in messages of about this size at most.
MAX_COMMITTED_MESSAGE_BYTES = 4 << 20
# Peer frame kinds (first byte of every frame on the messages channel).
FRAME_RAFT = 1
FRAME_FORWARD = 2  # a follower forwards a proposal payload to the leader
FRAME_REFUSED = 3  # the leader could not take a forwarded proposal: u8 reason + payload
# A proposal for a leader whose link is still connecting waits this many ticks for it (about
# a second at the default heartbeat), then is refused as "no leader"; at most this many wait.
FORWARD_WAIT_TICKS = 10
MAX_WAITING_FORWARDS = 1024
# A leader tells the followers a new commit index with its next append, or after this long
# without one (the core's lazy_commit): a writer's next put, or a busy cluster's next
# batch, carries it for free, and followers apply at most about twice this late. A write a
# follower forwarded is told at once: that follower's client waits for it to apply there.
# (The environment may set it, for tests that tell the two paths apart.)
COMMIT_NOTICE_S = float(os.environ.get("PYRAFTKV_COMMIT_NOTICE_S", "0.005"))
# After this many Readies in a row whose new entries were the only uncommitted ones (one
# writer at a time), the WAL is written on the loop however busy the disk: the thread's
# hand-overs cost that writer more than a blocked loop costs anyone (bench/README.md, "One
# writer, the systems taking turns"). Concurrent writers break the run at once.
ONE_WRITER_READIES = 8


def write_ready(
    wal: WriteAheadLog,
    snapshot: SnapshotMeta | None,
    truncate_from: int,
    entries: list[Entry],
    hard_state: HardState | None,
) -> None:
    """Write what a Ready makes durable. A snapshot replaces the whole log up to its index:
    entries the WAL holds past it (a longer, conflicting tail the core dropped) go too, so
    the next append continues right after the snapshot."""
    if snapshot is not None:
        wal.append_snapshot(snapshot.index, snapshot.term, codec.encode_snapshot_meta(snapshot))
        if wal.last_index > snapshot.index:
            wal.truncate_from(snapshot.index + 1)
    if truncate_from:
        wal.truncate_from(truncate_from)
    wal.append(entries, tuple(hard_state) if hard_state is not None else None)


def next_tick_at(due: float, now: float, interval: float) -> float:
    """When the tick after the one due at ``due`` is due, ``now`` being when that one ran:
    an interval later, or an interval from now if the process stalled (stopped, swapped
    out) past it. Missed ticks are dropped, as etcd's ticker drops them: a burst of
    them would time the election out before the leader's messages waiting in the socket
    are read, and the member would campaign."""
    return due + interval if now - due <= interval else now + interval


class RaftProcess:
    """Everything the Raft process does, driven by its event loop."""

    def __init__(
        self,
        cfg: RaftProcessConfig,
        core: RaftCore,
        wal,
        link: RingLink | LocalLink,
        last_written: int,
    ) -> None:
        self.cfg = cfg
        self.id = cfg.member_id
        self.cluster_id = cfg.cluster_id
        self.core = core
        self.wal = wal
        self.loop = asyncio.get_running_loop()
        self._down_handlers = self._down_handler_table()
        self.link = link
        link.on_messages = self._on_down_messages
        tls = TlsSettings.from_json(cfg.peer_tls)
        self.peer_ssl = tls.client_context()
        self.transport = PeerTransport(
            server_ssl=tls.server_context() if tls.has_cert else None,
            client_ssl=self.peer_ssl,
            allowed_cn=tls.allowed_cn,
            member_id=self.id,
            cluster_id=self.cluster_id,
            on_message=self._on_peer_frame,
            on_frames_done=self._process_scheduled_ready,
            on_unreachable=self._on_unreachable,
            on_snapshot_connection=lambda *args: self.snapshots.on_connection(*args),
            members=lambda: sorted(self.core.membership.members()),
            is_peer=self._is_peer,
            on_hash_kv=self._on_hash_kv,
        )
        self.writer = WalWriter(wal, self.loop, self._before_blocking, self.transport.flush)
        self._up_batch: list[bytes] | None = None  # messages up, while taking Readies
        self.peer_urls: dict[int, list[str]] = {}
        self.membership = MembershipChanges(self)
        self.snapshots = SnapshotShipper(self)
        self._last_written = last_written  # last entry index handed to the WAL writer
        self._scheduled: asyncio.Handle | None = None
        self._alone_readies = 0  # Readies in a row whose entries came after all committed
        self._told_durable = 0  # the last entry a follower was told is durable here
        self._told: dict[int, int] = {}  # follower -> the last entry it was told is durable
        self._awaiting_install: tuple[Ready, str] | None = None
        self._held: list[Ready] = []  # Readies waiting for a snapshot install to finish
        self._in_flight: deque[list] = deque()  # [Ready, durable] in the order taken
        self._reads_outstanding: set[int] = set()
        self.leader = 0
        self._role = Role.FOLLOWER
        self._stopping = False
        self.stopped = asyncio.Event()
        self._parent = cfg.parent_pid  # 0: this is the application process
        self._reported_syncs = 0  # fdatasyncs already reported up
        self._pushed_status: tuple = ()  # what the application was last told (STATUS)
        self.trace = RaftTrace()
        # peers heard from this tick, each reported up once (--strict-reconfig-check's
        # rule on reachable voters)
        self._heard: set[int] = set()
        self._hash_queries: dict[int, asyncio.Future] = {}  # a peer's HashKV, by query id
        self._next_hash_query = 0
        # Proposals waiting for the link to the leader: (ticks waited, payload).
        self._waiting_forwards: list[tuple[int, bytes]] = []
        self._commit_notice: asyncio.TimerHandle | None = None
        self._commit_notice_armed_at = 0  # core.commit_broadcast when the notice was armed
        # Proposals followers forwarded here, until they are committed: (log index, follower).
        self._forwarded: deque[tuple[int, int]] = deque()

    # -- start and stop -------------------------------------------------------------------

    async def start(self) -> None:
        for member, urls in self.cfg.initial_cluster.items():
            self.set_peer(member, list(urls))
        listen = [Url.parse(text, "--listen-peer-urls") for text in self.cfg.listen_peer_urls]
        try:
            await self.transport.listen([(u.host, u.port, u.tls) for u in listen])
        except OSError as exc:
            raise RaftProcessError(
                f"cannot listen for peers on {self.cfg.listen_peer_urls}: {exc.strerror or exc}"
            ) from exc
        self.link.start()
        if self.core.membership.voters == {self.id}:
            # A single voter needs nobody's vote: campaign now instead of after a timeout.
            for _ in range(2 * self.cfg.election_ticks):
                if self.core.leader_id == self.id:
                    break
                self.core.tick()
                self._process_ready()
        elif self.cfg.initial_election_tick_advance:
            self.loop.create_task(self._advance_election_ticks())
        interval = self.cfg.heartbeat_interval_ms / 1000
        self.loop.create_task(self._ticker(interval))
        self._push_status()
        self.schedule()
        log.info(
            "raft member %x started: term %d, commit %d, last index %d",
            self.id,
            self.core.term,
            self.core.commit_index,
            self.core.log.last_index,
            extra=fields(
                local_member_id=f"{self.id:x}",
                term=self.core.term,
                commit_index=self.core.commit_index,
                last_index=self.core.log.last_index,
            ),
        )

    async def _advance_election_ticks(self) -> None:
        """--initial-election-tick-advance, as etcd's: once a peer is connected (within
        5 s), skip all but two ticks of the first election timeout. Members restarting
        together then elect a leader about an election timeout sooner; one rejoining a
        live cluster still has two ticks to hear its leader, and pre-vote keeps an early
        campaign from disturbing anyone."""
        peers = self.core.membership.voters - {self.id}
        for _ in range(100):
            await asyncio.sleep(0.05)
            if self.core.leader_id:
                return
            if any(self.transport.is_connected(peer) for peer in peers):
                for _ in range(self.cfg.election_ticks - 2):
                    self.core.tick()
                self._process_ready()
                log.info("advanced %d election ticks", max(0, self.cfg.election_ticks - 2))
                return

    async def _ticker(self, interval: float) -> None:
        next_at = last_tick = time.monotonic()
        next_latency_report = next_at
        while not self._stopping:
            next_at = next_tick_at(next_at, time.monotonic(), interval)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            now = time.monotonic()
            if now - last_tick > 2 * interval and self.core.role == Role.LEADER:
                self._heartbeats_late(now - last_tick, interval)
            last_tick = now
            self.core.tick()
            self._heard.clear()
            self._retry_forwards()
            if next_at >= next_latency_report:
                self._report_sync_latency()
                if samples := self.trace.take_rtt():
                    self.push_up(rp.encode_peer_rtt(samples))
                next_latency_report = next_at + LATENCY_REPORT_S
            self.membership.tick()
            if self._parent and os.getppid() != self._parent:  # the application is gone
                log.error("the application process died; stopping")
                self.stop()
            self.schedule()

    def _heartbeats_late(self, gap: float, interval: float) -> None:
        """A leader's tick (its heartbeats) came ``gap`` after the last one, over twice the
        heartbeat interval: followers heard nothing for that long, and one more such gap could
        time their election out. Logged with etcd's words and counted (one per peer, as etcd's
        etcd_server_heartbeat_send_failures_total): the loop was blocked or starved of CPU."""
        peers = sorted(self.core.membership.members() - {self.id})
        if not peers:
            return
        log.warning(
            "leader failed to send out heartbeat on time; took too long, leader is overloaded "
            "likely from slow disk (to %s, heartbeat interval %.0f ms, expected within "
            "%.0f ms, exceeded by %.0f ms)",
            ", ".join(f"{p:x}" for p in peers),
            interval * 1000,
            2 * interval * 1000,
            (gap - 2 * interval) * 1000,
            extra=fields(
                to=[f"{p:x}" for p in peers],
                heartbeat_interval=f"{interval * 1000:.0f}ms",
                expected_duration=f"{2 * interval * 1000:.0f}ms",
                exceeded_duration=f"{(gap - 2 * interval) * 1000:.3f}ms",
            ),
        )
        self.push_up(rp.pack(rp.HEARTBEATS_LATE, rp.U64, len(peers)))

    def stop(self) -> None:
        if self._stopping:
            return
        self._stopping = True
        self.loop.create_task(self._stop())

    async def _stop(self) -> None:
        await self.transport.close()
        self.link.close()
        await self.loop.run_in_executor(None, self.writer.stop)
        self.wal.close()
        self.stopped.set()

    # -- peers ------------------------------------------------------------------------------

    def set_peer(self, member: int, urls: list[str]) -> None:
        if member == self.id or not urls:
            return
        parsed = [Url.parse(u, "peer URL") for u in urls]
        self.peer_urls[member] = urls
        self.transport.set_peer(member, [(u.host, u.port, u.tls) for u in parsed])

    def _is_peer(self, member: int) -> bool:
        """Whether ``member`` may talk to this one: in the membership (appended entries
        count), or a peer this member was told of (the initial cluster, a member added)."""
        return member in self.core.membership.members() or member in self.peer_urls

    def _on_unreachable(self, peer: int) -> None:
        self.core.report_unreachable(peer)

    def _on_peer_frame(self, sender: int, frame: bytes) -> None:
        """One frame from member ``sender`` (the transport checked it is a member). A frame
        that breaks the protocol raises PeerProtocolError: the transport closes that
        connection, and the Raft core never sees it."""
        if len(frame) < 2:
            raise PeerProtocolError(f"a peer frame of {len(frame)} bytes")
        kind = frame[0]
        if kind == FRAME_RAFT:
            try:
                message = codec.decode_message(frame[1:])
                for entry in message.entries:
                    if entry.type == EntryType.CONF_CHANGE:
                        codec.decode_conf_change(entry.data)
            except codec.CodecError as exc:
                raise PeerProtocolError(f"a malformed raft message: {exc}") from exc
            if message.sender != sender:
                raise PeerProtocolError(f"member {sender:x} sent a message from {message.sender:x}")
            if message.to != self.id:
                return
            if sender not in self._heard:  # reported at once, at most once a tick
                self._heard.add(sender)
                self.push_up(rp.encode_peers_heard({sender}))
            if message.type == MessageType.SNAP:
                return  # snapshots only arrive on the snapshot channel, with their data
            if message.type == MessageType.HEARTBEAT_RESP:
                self.trace.heartbeat_answered(message.sender)
            self.core.step(message)
            if self.trace.open:
                self.trace.check_quorum(self.core.commit_index)
        elif kind == FRAME_FORWARD and len(frame) > 9:
            origin = int.from_bytes(frame[1:9], "big")
            if origin != sender:
                raise PeerProtocolError(f"member {sender:x} forwarded for {origin:x}")
            problem = batch_problem(frame[9:])
            if problem:
                raise PeerProtocolError(f"member {sender:x} forwarded a bad proposal: {problem}")
            if index := self._propose(frame[9:], sender):
                self._forwarded.append((index, sender))
                self.core.send_first_to(sender)
        elif kind == FRAME_REFUSED:
            self.push_up(rp.pack(rp.REFUSED, rp.REFUSED_FMT, frame[1], 0, tail=frame[2:]))
        else:
            raise PeerProtocolError(f"a peer frame of unknown kind {kind}")
        self.schedule()

    def _send_frames(self, messages: list[Message]) -> None:
        by_peer: dict[int, list[bytes]] = {}
        for message in messages:
            if message.type == MessageType.SNAP:
                self.snapshots.start_send(message)
                continue
            if message.type == MessageType.HEARTBEAT:
                self.trace.heartbeat_sent(message.to)
            by_peer.setdefault(message.to, []).append(
                bytes((FRAME_RAFT,)) + codec.encode_message(message)
            )
        for peer, frames in by_peer.items():
            self.transport.send(peer, frames)
        if FAILPOINTS and by_peer:
            hit("raftAfterSend")

    # -- proposals from the application -------------------------------------------------

    def _propose(self, data: bytes, origin: int, waited: int = 0) -> int:
        """Propose on the leader (the entry's index), forward from a follower, refuse
        without a leader (0 for both). ``waited``: ticks spent waiting for a link."""
        core = self.core
        try:
            return core.propose([data])
        except NotLeaderError as exc:
            leader = exc.leader_id
            reason = rp.NOT_LEADER
        except NoLeaderError:
            leader, reason = 0, rp.NO_LEADER
        except ProposalRefused:
            leader, reason = 0, rp.DROPPED
        if origin == self.id and leader and leader != self.id:
            frame = bytes((FRAME_FORWARD,)) + self.id.to_bytes(8, "big") + data
            if self.transport.send(leader, [frame]):
                return 0
            # Not sent: the link to the leader is still connecting (just after an election),
            # so try again next tick; past the wait, refuse it so the client tries again
            # rather than waiting out its timeout for a lost proposal.
            if waited < FORWARD_WAIT_TICKS and len(self._waiting_forwards) < MAX_WAITING_FORWARDS:
                self._waiting_forwards.append((waited, data))
                return 0
            reason = rp.NO_LEADER
        if origin == self.id:
            self.push_up(rp.pack(rp.REFUSED, rp.REFUSED_FMT, reason, 0, tail=data))
        else:
            self.transport.send(origin, [bytes((FRAME_REFUSED, reason)) + data])
        return 0

    def _retry_forwards(self) -> None:
        """Send the proposals waiting for the leader's link again (to whoever leads now)."""
        waiting, self._waiting_forwards = self._waiting_forwards, []
        for waited, data in waiting:
            self._propose(data, self.id, waited + 1)

    def _on_down_messages(self, messages: list[bytes]) -> None:
        handlers = self._down_handlers
        for message in messages:
            handler = handlers.get(message[0])
            if handler is None:
                raise rp.RingProtocolError(
                    f"unknown message kind {message[0]} from the application"
                )
            handler(message)
        self._process_ready()  # now, not next iteration: proposals leave at once

    def _down_handler_table(self) -> dict[int, Callable[[bytes], None]]:
        """What each ring message from the application does (one entry per kind)."""

        def read_index(message: bytes) -> None:
            (context,) = rp.unpack(message, rp.U64)
            try:
                self.core.read_index(context.to_bytes(8, "big"))
                self._reads_outstanding.add(context)
            except ProposalRefused:
                self.push_up(rp.pack(rp.REFUSED, rp.REFUSED_FMT, rp.NO_LEADER, context))

        def members(message: bytes) -> None:
            listed = internal.MemberAttributesList.FromString(rp.tail(message, None))
            for member in listed.members:
                self.set_peer(member.id, list(member.peer_urls))

        def stop(_message: bytes) -> None:
            log.info("stopping on request")
            self.stop()

        def propose_traced(message: bytes) -> None:
            popped = time.monotonic_ns()
            received, batched = rp.unpack(message, rp.TRACED)
            data = rp.tail(message, rp.TRACED)
            index = self._propose(data, self.id)
            if index:
                self.trace.proposed(index, received, batched, popped)
            elif self.leader and self.leader != self.id:
                self.trace.forwarded(data, received, batched, popped)

        return {
            rp.PROPOSE: lambda m: self._propose(m[1:], self.id),
            rp.PROPOSE_TRACED: propose_traced,
            rp.READ_INDEX: read_index,
            rp.CONF_CHANGE: lambda m: self.membership.request(m),
            rp.MOVE_LEADER: lambda m: self.membership.move_leader(*rp.unpack(m, rp.U64x2)),
            rp.SNAPSHOT_SAVED: lambda m: self.snapshots.on_saved(*rp.unpack(m, rp.U64x2)),
            rp.SNAPSHOT_READY: lambda m: self.snapshots.on_ready(
                *rp.unpack(m, rp.U64x2), rp.tail(m, rp.U64x2)
            ),
            rp.SNAPSHOT_INSTALLED: lambda _m: self._on_snapshot_installed(),
            rp.MEMBERS: members,
            rp.STOP: stop,
            rp.HASH_KV_ANSWER: self._on_hash_kv_answer,
        }

    async def _on_hash_kv(self, request: bytes) -> bytes:
        """A peer's HashKV request (its corruption check): answered by the application
        process, which holds the store."""
        self._next_hash_query += 1
        query = self._next_hash_query
        answer = self.loop.create_future()
        self._hash_queries[query] = answer
        try:
            self.push_up(rp.pack(rp.HASH_KV_WANTED, rp.U64, query, tail=request))
            return await asyncio.wait_for(answer, HASH_ANSWER_TIMEOUT_S)
        except asyncio.TimeoutError:
            return HASH_FAILED + b"the application process did not answer in time"
        finally:
            self._hash_queries.pop(query, None)

    def _on_hash_kv_answer(self, message: bytes) -> None:
        (query,) = rp.unpack(message, rp.U64)
        answer = self._hash_queries.get(query)
        if answer is not None and not answer.done():
            answer.set_result(rp.tail(message, rp.U64))

    def _on_snapshot_installed(self) -> None:
        if self._awaiting_install is None:
            return
        ready, _path = self._awaiting_install
        self._awaiting_install = None
        if FAILPOINTS:
            hit("raftBeforeSnapshotMarker")
        self._persist(ready)
        held, self._held = self._held, []
        for later in held:
            self._handle_ready(later)

    # -- the Ready loop -----------------------------------------------------------------------

    def schedule(self) -> None:
        if self._scheduled is None:
            self._scheduled = self.loop.call_soon(self._process_ready)

    def _process_scheduled_ready(self) -> None:
        """After a read of peer frames: what they made ready goes out now, not after the
        loop's other callbacks."""
        if self._scheduled is not None:
            self._process_ready()

    def _process_ready(self) -> None:
        if self._scheduled is not None:
            self._scheduled.cancel()
            self._scheduled = None
        core = self.core
        # What the Readies send up goes as one ring push: the application wakes once.
        self._up_batch = []
        try:
            while core.has_ready():
                ready = core.ready()
                if self._awaiting_install is not None:
                    self._held.append(ready)
                else:
                    self._handle_ready(ready)
        finally:
            self._flush_up()
        if self._forwarded and self._forwarded[0][0] <= core.commit_index:
            for origin in self._origins_to_tell():  # its client waits: tell it now
                core.send_commit_to(origin)
            if core.has_ready():
                self.schedule()
                return
        if core.commit_unsent and self._commit_notice is None:
            self._arm_commit_notice()

    def _origins_to_tell(self) -> set[int]:
        """The followers that forwarded writes now committed and do not know it: not those
        told this log held them durably (they committed by themselves)."""
        forwarded, commit, told = self._forwarded, self.core.commit_index, self._told
        origins = set()
        while forwarded and forwarded[0][0] <= commit:
            index, origin = forwarded.popleft()
            if told.get(origin, 0) < index:
                origins.add(origin)
        return origins

    def _arm_commit_notice(self) -> None:
        self._commit_notice_armed_at = self.core.commit_broadcast
        self._commit_notice = self.loop.call_later(COMMIT_NOTICE_S, self._send_commit_notice)

    def _send_commit_notice(self) -> None:
        """The commit index waited COMMIT_NOTICE_S for an append to carry it. If one has
        carried an older one meanwhile, writes are still flowing: wait once more. Lazy
        followers get what they lack now either way."""
        self._commit_notice = None
        if not self.core.commit_unsent:
            return
        if not self.core.lazy_behind and self.core.commit_broadcast != self._commit_notice_armed_at:
            self._arm_commit_notice()
            return
        self.core.send_commit()
        self.schedule()

    def _handle_ready(self, ready: Ready) -> None:
        if ready.soft_state is not None:
            self._on_soft_state(ready.soft_state)
        if ready.messages:
            self._send_frames(ready.messages)
        if ready.entries:
            if self.trace.forwarding:
                self.trace.came_back(ready.entries)
            if self.trace.open:
                self.trace.stamp(ready.entries, SENT)
        if ready.snapshot is not None:
            path = self.snapshots.take_received(ready.snapshot.index)
            self.push_up(
                rp.pack(
                    rp.INSTALL_SNAPSHOT,
                    rp.U64x2,
                    ready.snapshot.index,
                    ready.snapshot.term,
                    tail=path.encode(),
                )
            )
            self._awaiting_install = (ready, path)
            self._push_committed(ready)
            return
        self._push_committed(ready)
        self._persist(ready)

    def _push_committed(self, ready: Ready) -> None:
        if ready.committed_entries:
            entries = ready.committed_entries
            if self.trace.open:
                for message in self.trace.committed(entries[0].index, entries[-1].index):
                    self.push_up(message)
            # Several ring messages when there is a lot: each stays far below the ring's size.
            chunk: list[Entry] = []
            size = 0
            for entry in entries:
                chunk.append(entry)
                size += len(entry.data)
                if size >= MAX_COMMITTED_MESSAGE_BYTES:
                    self.push_up(rp.encode_entries(chunk))
                    chunk, size = [], 0
            if chunk:
                self.push_up(rp.encode_entries(chunk))
            for entry in entries:
                if entry.type == EntryType.CONF_CHANGE:
                    self.membership.on_committed(entry)
        for read_state in ready.read_states:
            context = int.from_bytes(read_state.context, "big")
            self._reads_outstanding.discard(context)
            self.push_up(rp.pack(rp.READ_STATE, rp.U64x2, read_state.index, context))
        self._push_status()

    def _persist(self, ready: Ready) -> None:
        snapshot, entries, hard_state = ready.snapshot, ready.entries, ready.hard_state
        slot = [ready, False]  # [ready, durable]; advanced strictly in the order taken
        self._in_flight.append(slot)
        if snapshot is None and not entries and hard_state is None:
            slot[1] = True
            self._advance_durable()
            return
        truncate_from = 0
        if entries and entries[0].index <= self._last_written:
            truncate_from = entries[0].index
        if entries:
            self.membership.on_appended(entries, truncate_from)
            self._last_written = entries[-1].index
        elif snapshot is not None:
            self._last_written = snapshot.index
        traced = self.trace.within(entries[0].index, entries[-1].index) if entries else None

        def write(wal) -> None:
            write_ready(wal, snapshot, truncate_from, entries, hard_state)
            if traced:
                RaftTrace.written(traced)

        def durable(synced_ns: int) -> None:
            if traced:
                RaftTrace.synced(traced, synced_ns)
            slot[1] = True
            self._advance_durable()

        if entries:  # nothing before these entries is uncommitted: one writer at a time
            # (or after all a follower was told durable: its writer moved on before the commit)
            alone = max(self.core.commit_index, self._told_durable) >= entries[0].index - 1
            self._alone_readies = self._alone_readies + 1 if alone else 0
        self.writer.submit(
            write, ready.must_sync, durable, self._alone_readies >= ONE_WRITER_READIES
        )

    def _advance_durable(self) -> None:
        """Send the persisted messages of, and advance, every durable Ready at the front."""
        in_flight = self._in_flight
        durable = 0  # the last entry these Readies made durable
        while in_flight and in_flight[0][1]:
            ready = in_flight.popleft()[0]
            if ready.persisted_messages:
                self._send_frames(ready.persisted_messages)
            self.core.advance(ready)
            if ready.entries:
                durable = ready.entries[-1].index
        if durable and self._forwarded and self._alone_readies >= ONE_WRITER_READIES:
            # One writer through a follower: with this leader it may make a majority, and
            # then it commits as soon as its own fdatasync ends (RaftCore.send_durable_to).
            for origin in {origin for _index, origin in self._forwarded}:
                if self.core.send_durable_to(origin):
                    self._told[origin] = self._told_durable = durable
        if self.trace.open:
            self.trace.check_quorum(self.core.commit_index)
        self.schedule()

    def _on_soft_state(self, soft) -> None:
        if soft.leader_id != self.leader:
            if soft.leader_id == self.id:
                log.info(
                    "elected leader at term %d",
                    soft.term,
                    extra=fields(local_member_id=f"{self.id:x}", term=soft.term),
                )
            elif soft.leader_id:
                log.info(
                    "leader changed to %x at term %d",
                    soft.leader_id,
                    soft.term,
                    extra=fields(leader=f"{soft.leader_id:x}", term=soft.term),
                )
            else:
                log.info("lost the leader at term %d", soft.term)
            # Reads the old leader had not confirmed are never answered: fail them now
            # so their clients retry at once.
            for context in self._reads_outstanding:
                self.push_up(rp.pack(rp.REFUSED, rp.REFUSED_FMT, rp.NO_LEADER, context))
            self._reads_outstanding.clear()
            self._forwarded.clear()
            self._told.clear()
        self.leader, self._role = soft.leader_id, soft.role

    def _report_sync_latency(self) -> None:
        """Tell the application process the fdatasync histogram (for its metrics), if it grew."""
        latency = self.wal.sync_latency.snapshot()
        if latency.count != self._reported_syncs:
            self._reported_syncs = latency.count
            self.push_up(
                rp.encode_sync_latency(
                    rp.SyncLatency(latency.count, latency.sum_seconds, latency.buckets)
                )
            )

    def _push_status(self) -> None:
        """Tell the application the leader, term, commit index, role and learner flag,
        when any of them changed since it was last told."""
        core = self.core
        status = (
            core.leader_id,
            core.term,
            core.commit_index,
            int(core.role),
            1 if self.id in core.membership.learners else 0,
        )
        if status != self._pushed_status:
            self._pushed_status = status
            self.push_up(rp.pack(rp.STATUS, rp.STATUS_FMT, *status))

    # -- the up ring -------------------------------------------------------------------------

    def push_up(self, message: bytes) -> None:
        if self._up_batch is not None:
            self._up_batch.append(message)
        else:
            self.link.send(message)

    def _flush_up(self) -> None:
        batch, self._up_batch = self._up_batch, None
        if batch:
            self.link.send_many(batch)

    def _before_blocking(self, sync: bool) -> None:
        """Before a WAL write on the loop: what this iteration queued goes out first; what
        it queued for the application too, unless this member follows and the write waits
        for an fdatasync: its acknowledgement, on a writer's path, is sent first then, and
        the committed entries go up after it (a follower's apply is on no writer's path)."""
        self.transport.flush()
        if self._up_batch and not (sync and self.leader != self.id):
            self.link.send_many(self._up_batch)
            self._up_batch = []


async def amain(cfg: RaftProcessConfig) -> int:
    from ..ring import ShmRing

    down = ShmRing.attach(cfg.down_fds, "consumer")
    up = ShmRing.attach(cfg.up_fds, "producer")
    loop = asyncio.get_running_loop()
    link = RingLink(
        up,
        down,
        loop,
        None,
        lambda exc: stop_now(log, f"the application process stopped reading: {exc}"),
        on_malformed=lambda what: stop_now(log, f"from the application process: {what}"),
    )
    core, wal, last = open_core(cfg, random.Random())
    process = RaftProcess(cfg, core, wal, link, last)
    loop.set_exception_handler(crash_on_error(log, "the Raft process"))
    loop.add_signal_handler(signal.SIGTERM, process.stop)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the application decides
    await process.start()
    await process.stopped.wait()
    up.close()
    down.close()
    return 0


def main() -> int:
    cfg = RaftProcessConfig.from_json(os.environ["PYRAFTKV_RAFT_CONFIG"])
    die_with_parent(cfg.parent_pid)
    setup_logging(cfg.log_level, "raft", cfg.logger, cfg.log_outputs)
    try:
        return event_loop.run(amain(cfg))
    except (RaftProcessError, PyraftkvError) as exc:
        log.critical("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
