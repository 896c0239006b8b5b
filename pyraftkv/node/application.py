"""The application process's state machine side: propose, apply, read, and answer.

Life of a write here: a client frame is decoded and validated, given a request id and
added to the batch of this event-loop iteration; at the end of the iteration the batch
goes down the ring to the Raft process as ONE proposal. Committed entries come back up;
each batch of them is applied in one LMDB transaction, the waiting requests are answered
and the watch hub is told of the changes. Every member applies every entry, so whichever
member took the request answers it.

Linearizable reads collect the same way: one ReadIndex request per iteration for every
read that arrived in it; once the member has applied up to the confirmed index, they are
served from the local store.

Nothing here blocks: every step is a callback on the event loop, with no task or future
per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message

from .. import errors
from ..admin.members import MemberList
from ..failpoints import ENABLED as FAILPOINTS
from ..failpoints import hit
from ..mvcc import validation
from ..proto import kv_pb2
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME, METHODS
from ..raft.types import Entry
from . import corrupt_check, reconfig_check
from . import ringproto as rp
from .admin_waiters import AdminWaiters
from .alarms import CORRUPT, NOSPACE, REFUSED_WHEN_CORRUPT, Alarms
from .apply import (
    KV_APPLY,
    LEASE_EXPIRE,
    MEMBER_PUBLISH,
    PUT,
    apply_conf_change,
    apply_member_publish,
    needs_space,
)
from .auth_store import AuthStore
from .grpc_metrics import GrpcCallCounts
from .lessor import Lessor
from .logging_setup import fields
from .proposals import Proposals
from .reads import ReadRounds
from .reply import EventWaiter, LocalCaller, PendingOutput, Reply
from .write_trace import WriteTrace

log = logging.getLogger("pyraftkv.app")

# Responses etcd 3.4 sends without a header (`etcdctl alarm list -w json` prints none).
HEADERLESS = frozenset((rpc.AlarmResponse, rpc.DefragmentResponse))
# etcd's Cluster service answers with a header that has no revision.
NO_REVISION = frozenset(
    (
        rpc.MemberListResponse,
        rpc.MemberAddResponse,
        rpc.MemberRemoveResponse,
        rpc.MemberUpdateResponse,
        rpc.MemberPromoteResponse,
    )
)

# A snapshot is also taken after this many bytes of applied entries, whatever
# --snapshot-count says: a busy leader batches hundreds of writes per entry, and the WAL
# replayed at restart and the log the Raft process holds grow with bytes, not entries.
SNAPSHOT_LOG_BYTES = 64 << 20
# Log bytes applied between two background syncs of the store (see _sync_store).
STORE_SYNC_BYTES = 4 << 20
# The store's size is looked at again after this many bytes of applied entries (reading it
# takes a read transaction and three LMDB stats, about 10 us: a share of a small apply).
QUOTA_CHECK_BYTES = 16 << 10
# A publish of this member's name and client URLs not applied after this long is sent again
# (a proposal lost in a leader change is not refused, only dropped).
PUBLISH_RECHECK_S = 2.0
# An entry whose requests take longer than this to apply is logged and counted, as etcd
# counts a request slower than its 100 ms "expected duration" (etcd_server_slow_apply_total).
SLOW_APPLY_S = 0.1


class Application:
    """Owns the store, the member list, the pending requests and the ring to the Raft process."""

    def __init__(
        self,
        *,
        member_id: int,
        cluster_id: int,
        cluster_token: str,
        name: str,
        client_urls: list[str],
        store: Any,
        members: MemberList,
        send_down: Callable[[bytes], None],
        request_timeout: float,
        snapshot_count: int,
        snapshot_dir: str,
        watch_hub_factory: Callable[[Application], Any],
        lessor: Lessor,
        election_timeout_s: float,
        quota_bytes: int,
        trace_interval_ms: float = 0.0,
    ) -> None:
        self.member_id = member_id
        self.cluster_id = cluster_id
        self.cluster_token = cluster_token
        self.name = name
        self.client_urls = client_urls
        self.store = store
        self.members = members
        self._send_down = send_down
        self.request_timeout = request_timeout
        self.snapshot_count = snapshot_count
        self._log_bytes = 0  # of entries applied since the last snapshot
        self.snapshot_dir = snapshot_dir
        self.loop = asyncio.get_running_loop()
        self.output = PendingOutput(self.loop)  # client connections with replies to write
        self.lessor = lessor
        self.election_timeout_s = election_timeout_s
        self.quota_bytes = quota_bytes
        self.over_quota = store.db_size_in_use() > quota_bytes
        self._unchecked_bytes = 0  # of entries applied since the quota was last checked
        self.alarms = Alarms.load(store)
        self.strict_reconfig_check = True  # --strict-reconfig-check (set by the Node)
        self._alarm_raised_at = 0.0  # when this member last proposed its NOSPACE alarm
        self._wire_store(store)
        lessor.load(store)
        self.auth = AuthStore.load(store)
        # Checks a client request again when it applies while auth is on (set by the auth
        # service): recheck(user, auth_revision, method, body).
        self.recheck: Callable[[str, int, int, bytes], None] | None = None
        self._apply_table: dict[int, Callable] = {
            **KV_APPLY,
            BY_NAME["LeaseGrant"].number: lambda b, body: (
                lessor.grant(b, rpc.LeaseGrantRequest.FromString(body)),
                None,
            ),
            BY_NAME["LeaseRevoke"].number: lambda b, body: lessor.revoke(
                b, rpc.LeaseRevokeRequest.FromString(body).ID
            ),
            LEASE_EXPIRE: self._apply_expire,
            BY_NAME["Alarm"].number: lambda b, body: self.alarms.apply(b, body),
        }

        # What the Raft process last told us (its first status says it started).
        self.raft_started = asyncio.Event()
        self.leader_id = 0
        # peer -> when a Raft message last came from it (reconfig_check's reachability)
        self.peer_heard: dict[int, float] = {}
        self.term = 0
        self.commit_index = 0
        self.role = 0
        self.is_learner = False
        self.applied_index = store.applied_index
        # The index of the entry being applied (an apply may name things after it).
        self.applying_index = 0
        # when_applied callbacks: (index, order, deadline, callback) by index.
        self._index_waiters: list[tuple[int, int, float, Callable[[bool], None]]] = []
        self._index_waiter_order = itertools.count()
        self.applied_term = store.applied_term
        self.last_snapshot_index = self.applied_index
        self._snapshot_files = 0  # snapshot files made for peers (names them uniquely)
        self._store_syncing = False  # an LMDB sync is running off the loop
        self._unsynced_bytes = 0  # of entries applied since the last LMDB sync started
        # For metrics: leaders seen (changes to a known leader), the Raft process's WAL.
        self.leader_changes = 0
        # Entries slower than SLOW_APPLY_S to apply; heartbeats the Raft process sent late.
        self.slow_applies = 0
        self.heartbeats_late = 0
        # Since when this member has known no leader (None while it knows one).
        self.leaderless_since: float | None = time.monotonic()
        # The Raft process, for its figures on /metrics (None: it runs in this process).
        self.raft_pid: int | None = None
        # client requests served, by method number (ClientServer.dispatch; /metrics)
        self.requests_served = [0] * (max(m.number for m in METHODS) + 1)
        self.grpc_calls = GrpcCallCounts()
        self.wal_sync_latency = rp.SyncLatency(0, 0.0, ())

        self.proposals = Proposals(member_id, send_down, request_timeout, trace_interval_ms)
        # Entries applied that another member proposed (writes its clients sent there);
        # cpu_pairing.py reads and resets it.
        self.foreign_applied = 0
        self.trace = WriteTrace()
        self.reads = ReadRounds(send_down, self._answer, request_timeout)
        self.proposals.also_waiting = lambda: self.reads.waiting
        self.admin = AdminWaiters(self, send_down, self.proposals.new_id)
        self._flush_scheduled = False
        self._up_handlers = self._up_handler_table()
        self._published = False  # a publish proposal is in flight or applied
        self._publish_confirmed = False  # the members list shows what we published
        self._published_at = 0.0
        self._catch_up_scheduled = False
        self._lease_counter = 0
        self.watch_hub = watch_hub_factory(self)

    @property
    def pending_writes(self) -> int:
        """Writes proposed (or batched to propose) and not yet applied."""
        return len(self.proposals.pending)

    # -- headers ---------------------------------------------------------------------------

    def header(self, revision: int | None = None) -> rpc.ResponseHeader:
        """A response header for this member at ``revision`` (default: the current one)."""
        return rpc.ResponseHeader(
            cluster_id=self.cluster_id,
            member_id=self.member_id,
            revision=self.store.revision if revision is None else revision,
            raft_term=self.term,
        )

    def stamp(self, response: Message) -> Message:
        """Fill in the response header's cluster, member, term (and revision if unset);
        as etcd's, Alarm and Defragment answers carry no header and the Cluster service's
        no revision."""
        if type(response) in HEADERLESS:
            return response
        header = response.header
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.term
        if not header.revision and type(response) not in NO_REVISION:
            header.revision = self.store.revision
        return response

    # -- proposing -------------------------------------------------------------------------

    def add_apply(self, method: int, apply: Callable) -> None:
        """Apply committed requests of ``method`` with ``apply(batch, body)``, which returns
        (response, events)."""
        self._apply_table[method] = apply

    def propose(
        self,
        reply: Reply | None,
        method: int,
        body: bytes,
        user: str = "",
        auth_revision: int = 0,
    ) -> None:
        """Queue a write for the next proposal batch; ``reply`` gets the result once applied.
        ``user`` and ``auth_revision``: whom a client's request was accepted for and the
        auth revision it was checked at (apply checks again; both unset for the member's
        own writes).
        Raises NoSpace for a write that adds data while this member's store is over its
        quota (and raises the alarm, as etcd does). Raised alarms (NOSPACE, CORRUPT) refuse it
        at apply, in log order: a write sent after a disarm returned is never refused by a
        member that has not applied the disarm yet."""
        if self.over_quota and needs_space(method, body):
            self._raise_nospace()
            raise errors.NoSpace()
        self.proposals.add(reply, method, body, user, auth_revision)
        self._schedule_flush()

    def read(self, reply: Reply, serve: Callable[[], Message], linearizable: bool) -> None:
        """Answer a read now (serializable) or after a ReadIndex round (linearizable)."""
        if not linearizable:
            self._answer(reply, serve)
            return
        if self.reads.add(reply, serve):
            self._schedule_flush()
        self.proposals.pause_if_full()

    async def caught_up(self) -> None:
        """Return once this member has applied what was committed when called (a ReadIndex
        round, as a linearizable read waits for): a follower that passed a membership
        change on to the leader waits for it, so that its own member list shows the change
        when it answers, as the proposing member's does in etcd. Best effort: without a
        leader to confirm the round it returns all the same."""
        done = self.loop.create_future()
        self.read(Reply(LocalCaller(done, lambda _body: None), 0), rpc.MemberListResponse, True)
        with contextlib.suppress(errors.ApiError):
            await done

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self.proposals.flush()
        self.reads.start_round()

    # -- requests the member makes itself -------------------------------------------------------

    async def local_write(
        self, method: str, request: Message, caller: tuple[str, int] | None = None
    ) -> Message:
        """Propose a write as if a client had sent it; its response once applied. With
        ``caller`` (user, JWT revision or 0) for a client's call the member carries out,
        it is checked at apply as that client's own write: at its JWT token's revision,
        else at the current one. Refused now, as a client's would be, when a request
        the member built from a client's fields is invalid (an Unlock of an empty key): a
        leader refuses a forwarded batch that holds one."""
        if method == "Txn":
            self.store.check_txn(request)
        elif method == "DeleteRange":
            validation.check_delete(request)
        spec = BY_NAME[method]
        future = self.loop.create_future()
        user, revision = caller if caller is not None else ("", 0)
        self.propose(
            Reply(LocalCaller(future, spec.response.FromString), 0),
            spec.number,
            request.SerializeToString(),
            user,
            0 if caller is None else revision or self.auth.revision,
        )
        return await future

    async def local_read(self, request: rpc.RangeRequest) -> rpc.RangeResponse:
        """A linearizable Range, as if a client had sent it."""
        future = self.loop.create_future()
        reply = Reply(LocalCaller(future, rpc.RangeResponse.FromString), 0)
        self.read(reply, lambda: self.store.range(request), True)
        return await future

    async def wait_for_event(
        self, key: bytes, range_end: bytes, after_revision: int, deletes_only: bool = False
    ) -> kv_pb2.Event:
        """The first event in [key, range_end) after ``after_revision`` (history included)."""
        from .watch_hub import Watcher

        future = self.loop.create_future()
        create = rpc.WatchCreateRequest(key=key, range_end=range_end)
        watcher = Watcher(0, EventWaiter(future, deletes_only), create, after_revision + 1)
        self.watch_hub.add(watcher)
        self.schedule_catch_up()
        try:
            return await future
        finally:
            self.watch_hub.remove(watcher)

    def on_pause(self, listener: Callable[[bool], None]) -> None:
        """Call listener(True) when clients must stop sending, listener(False) to resume."""
        self.proposals.on_pause(listener)

    # -- messages from the Raft process ------------------------------------------------------

    def on_ring_messages(self, messages: list[bytes]) -> None:
        """Handle a batch of messages popped from the up ring, in order."""
        handlers = self._up_handlers
        for message in messages:
            handler = handlers.get(message[0])
            if handler is None:
                raise rp.RingProtocolError(
                    f"unknown message kind {message[0]} from the Raft process"
                )
            handler(message)
        self.reads.serve_applied(self.applied_index)
        if self.proposals.paused:
            self.proposals.resume_if_drained()

    def _up_handler_table(self) -> dict[int, Callable[[bytes], None]]:
        """What each ring message from the Raft process does (one entry per kind)."""

        def refused(message: bytes) -> None:
            reason, ident = rp.unpack(message, rp.REFUSED_FMT)
            self._on_refused(reason, ident, rp.tail(message, rp.REFUSED_FMT))

        def trace(message: bytes) -> None:
            index, forwarded, *readings = rp.unpack(message, rp.TRACE_FMT)
            self.trace.arrived(index, readings, bool(forwarded))

        def sync_latency(message: bytes) -> None:
            self.wal_sync_latency = rp.decode_sync_latency(message)

        def peer_rtt(message: bytes) -> None:
            for peer, seconds in rp.decode_peer_rtt(message):
                self.trace.observe_rtt(peer, seconds)

        def heartbeats_late(message: bytes) -> None:
            (count,) = rp.unpack(message, rp.U64)
            self.heartbeats_late += count

        def peers_heard(message: bytes) -> None:
            now = time.monotonic()
            for peer in rp.decode_peers_heard(message):
                self.peer_heard[peer] = now

        def hash_kv_wanted(message: bytes) -> None:  # a peer's corruption check
            (query,) = rp.unpack(message, rp.U64)
            answer = corrupt_check.answer_peer(self, rp.tail(message, rp.U64))
            self._send_down(rp.pack(rp.HASH_KV_ANSWER, rp.U64, query, tail=answer))

        def install(message: bytes) -> None:
            index, term = rp.unpack(message, rp.U64x2)
            self._install_snapshot(index, term, rp.tail(message, rp.U64x2).decode())

        return {
            rp.COMMITTED: lambda m: self._apply(rp.decode_entries(m)),
            rp.READ_STATE: lambda m: self.reads.confirmed(
                *rp.unpack(m, rp.U64x2), self.applied_index
            ),
            rp.STATUS: lambda m: self._on_status(*rp.unpack(m, rp.STATUS_FMT)),
            rp.REFUSED: refused,
            rp.CONF_CHANGE_APPLIED: lambda m: self.admin.conf_change_done(
                *rp.unpack(m, rp.CONF_APPLIED)
            ),
            rp.MOVE_LEADER_DONE: lambda m: self.admin.move_leader_done(*rp.unpack(m, rp.MOVE_DONE)),
            rp.TRACE: trace,
            rp.WAL_SYNC_LATENCY: sync_latency,
            rp.PEER_RTT: peer_rtt,
            rp.PEERS_HEARD: peers_heard,
            rp.HEARTBEATS_LATE: heartbeats_late,
            rp.SNAPSHOT_WANTED: lambda _m: self.loop.create_task(self._make_snapshot_file()),
            rp.INSTALL_SNAPSHOT: install,
            rp.HASH_KV_WANTED: hash_kv_wanted,
        }

    def _on_status(self, leader: int, term: int, commit: int, role: int, flags: int) -> None:
        if leader != self.leader_id:
            if leader:
                self.leader_changes += 1
                log.info("leader is %x (term %d)", leader, term)
            else:
                log.info("no leader (term %d)", term)
        leading = leader == self.member_id
        if leading and not self.lessor.primary:
            self.lessor.promote(self.election_timeout_s)
        elif not leading and self.lessor.primary:
            self.lessor.demote()
        if term != self.term:
            self._published = False  # a new leader may have dropped an uncommitted publish
        if leader != self.leader_id:
            self.leaderless_since = None if leader else time.monotonic()
        self.leader_id, self.term, self.commit_index, self.role = leader, term, commit, role
        self.is_learner = bool(flags & 1)
        self.raft_started.set()
        self.publish_if_due()

    def publish_if_due(self) -> None:
        """Publish our attributes until the members list shows them: now if none is in
        flight, again after PUBLISH_RECHECK_S if a proposal was lost without a refusal.
        Called on every status and from the node's tick (statuses stop when nothing changes)."""
        if (
            self.leader_id
            and not self._publish_confirmed
            and (not self._published or time.monotonic() - self._published_at > PUBLISH_RECHECK_S)
        ):
            self._publish_attributes()

    def _publish_attributes(self) -> None:
        """Tell the cluster (through the log) our name and client URLs, as etcd does."""
        me = self.members.get(self.member_id)
        if me is not None and me.name == self.name and list(me.client_urls) == self.client_urls:
            self._published = self._publish_confirmed = True
            return
        attributes = internal.MemberAttributes(
            id=self.member_id, name=self.name, client_urls=self.client_urls
        )
        self.propose(None, MEMBER_PUBLISH, attributes.SerializeToString())
        self._published = True  # re-checked on a status after PUBLISH_RECHECK_S
        self._published_at = time.monotonic()

    def _on_refused(self, reason: int, ident: int, data: bytes) -> None:
        error: errors.ApiError
        if reason == rp.NOT_LEADER and self.leader_id:
            error = errors.NotLeader()
            leader_url = self.members.client_url(self.leader_id)
        else:
            error, leader_url = errors.NoLeader(), ""
        if ident:  # a read round
            self.reads.refuse(ident, error, leader_url)
            return
        if not data:
            return
        try:
            batch = internal.RequestBatch.FromString(data)
        except DecodeError:
            return
        for request in batch.requests:
            if (
                request.member == self.member_id
                and not self.proposals.fail(request.id, error, leader_url)
                and request.method == MEMBER_PUBLISH
            ):
                self._published = False

    def _answer(self, reply: Reply, serve: Callable[[], Message]) -> None:
        try:
            response = serve()
        except errors.ApiError as exc:
            reply.fail(exc)
            return
        reply.answer(self.stamp(response).SerializeToString())

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, entries: list[Entry]) -> None:
        """Apply committed entries in one store transaction, then answer and notify."""
        entries = [e for e in entries if e.index > self.applied_index]
        if not entries:
            return
        if entries[0].index != self.applied_index + 1:
            raise RuntimeError(
                f"committed entries jump from applied {self.applied_index} to {entries[0].index}"
            )
        answers: list[tuple[Reply, Message | errors.ApiError]] = []
        events: list = []
        last = entries[-1]
        traced = self.trace.open
        done: list[tuple[int, int]] = []  # traced entries applied: (index, writes)
        with self.store.write_batch(last.index, last.term) as batch:
            for entry in entries:
                if FAILPOINTS and entry is not entries[0]:
                    hit("appApplyMidBatch")
                if entry.type == 0:
                    if entry.data:
                        self.applying_index = entry.index
                        started = time.perf_counter()
                        if FAILPOINTS:
                            hit("appBeforeApplyEntry")
                        writes = self._apply_requests(
                            batch, entry.index, entry.data, answers, events
                        )
                        took = time.perf_counter() - started
                        if took > SLOW_APPLY_S:
                            self._slow_apply(entry.index, writes, took)
                        if traced and entry.index in traced:
                            done.append((entry.index, writes))
                else:
                    apply_conf_change(batch, self.members, entry)
            # The answers leave before the store's transaction commits, off the writers'
            # path: the entries are committed and in this member's WAL, so a crash before
            # the commit applies them again, to the same results; and nothing on this loop
            # reads the store before the commit below.
            for reply, result in answers:
                if isinstance(result, errors.ApiError):
                    reply.fail(result)
                else:
                    reply.answer(self.stamp(result).SerializeToString())
            taken = self.trace.applied(done) if done else None
            self.output.write()
            if taken:
                self.trace.replied(taken)
            if FAILPOINTS:
                hit("appBeforeBackendCommit")
            commit_started = time.perf_counter()
        self.trace.backend_commit.observe(time.perf_counter() - commit_started)
        self.applied_index, self.applied_term = last.index, last.term
        applied_bytes = sum(len(entry.data) for entry in entries)
        self._unchecked_bytes += applied_bytes
        if self.over_quota or self._unchecked_bytes >= QUOTA_CHECK_BYTES:
            self._check_quota()
        if events:
            self.watch_hub.notify(events, self.store.revision)
        if self.watch_hub.has_unsynced:
            self.schedule_catch_up()
        self.proposals.resume_if_drained()
        if self._index_waiters:
            self._wake_index_waiters()
        self._log_bytes += applied_bytes
        self._unsynced_bytes += applied_bytes
        if (
            self.applied_index - self.last_snapshot_index >= self.snapshot_count
            or self._log_bytes >= SNAPSHOT_LOG_BYTES
        ):
            self._save_snapshot()
        elif self._unsynced_bytes >= STORE_SYNC_BYTES:
            self._sync_store()

    def _slow_apply(self, index: int, requests: int, took: float) -> None:
        """Log and count an entry that took over SLOW_APPLY_S to apply (etcd's "apply request
        took too long"): a store that large, a machine that busy, or a stalled process."""
        self.slow_applies += 1
        log.warning(
            "apply request took too long: entry %d (%d requests) took %.1f ms, expected %.0f ms",
            index,
            requests,
            took * 1000,
            SLOW_APPLY_S * 1000,
            extra=fields(
                index=index,
                requests=requests,
                took=f"{took * 1000:.3f}ms",
                expected_duration=f"{SLOW_APPLY_S * 1000:.0f}ms",
            ),
        )

    def _raise_nospace(self) -> None:
        """Propose this member's NOSPACE alarm if it is over its quota and has none raised
        (at most once a second while the proposal is on its way)."""
        if not self.over_quota or self.alarms.has_for(self.member_id, NOSPACE):
            return
        now = time.monotonic()
        if now - self._alarm_raised_at < 1.0:
            return
        self._alarm_raised_at = now
        log.warning(
            "raising the NOSPACE alarm: the store uses %d bytes, over --quota-backend-bytes %d",
            self.store.db_size_in_use(),
            self.quota_bytes,
        )
        request = rpc.AlarmRequest(
            action=rpc.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=NOSPACE
        )
        self.proposals.add(None, BY_NAME["Alarm"].number, request.SerializeToString(), "")
        self._schedule_flush()

    def _check_quota(self) -> None:
        """Follow the store's size against the quota; crossing it raises NOSPACE (which only
        `alarm disarm` clears: dropping below the quota does not)."""
        self._unchecked_bytes = 0
        over = self.store.db_size_in_use() > self.quota_bytes
        if over != self.over_quota:
            self.over_quota = over
            if over:
                self._raise_nospace()
            else:
                log.info(
                    "the store is back under its quota (the NOSPACE alarm stays until disarmed)"
                )

    def _apply_requests(
        self, batch: Any, index: int, data: bytes, answers: list, events: list
    ) -> int:
        """Apply one entry's requests; how many there were."""
        me = self.member_id
        pending = self.proposals.pending
        table = self._apply_table
        on_events = self.lessor.on_events
        requests = internal.RequestBatch.FromString(data).requests
        if requests and requests[0].member != me:
            self.foreign_applied += 1
        nospace = self.alarms.has(NOSPACE)
        corrupt = self.alarms.has(CORRUPT)
        auth, recheck = self.auth, self.recheck
        lone_put, told = None, 0
        if len(requests) == 1 and not (nospace or corrupt or auth.enabled):
            lone_put, told = self._answer_lone_put(batch, index, requests[0])
        for request in requests:
            apply = table.get(request.method)
            try:
                if nospace and needs_space(request.method, request.body):
                    raise errors.NoSpace()
                if corrupt and request.method in REFUSED_WHEN_CORRUPT:
                    raise errors.CorruptCluster()
                if auth.enabled and recheck is not None:
                    recheck(request.user, request.auth_revision, request.method, request.body)
                if lone_put is not None:
                    result, new_events = batch.put(lone_put)
                elif apply is None:
                    result, new_events = self._apply_internal(batch, request), None
                else:
                    result, new_events = apply(batch, request.body)
                if new_events:
                    events.extend(new_events)
                    on_events(new_events)
            except errors.ApiError as exc:
                result = exc
            if told:
                _check_told(index, told, result)
            if request.member == me:
                waiting = pending.pop(request.id, None)
                if waiting is not None and result is not None:
                    answers.append((waiting[0], result))
        return len(requests)

    def _answer_lone_put(
        self, batch: Any, index: int, request: internal.InternalRequest
    ) -> tuple[rpc.PutRequest | None, int]:
        """An entry of one put that cannot fail (batch.put_cannot_fail) is answered before
        it is applied if this member's client waits for it: its answer says only that it
        made the next revision. One writer's turnaround then runs beside the apply instead
        of after it (a busy loop gains nothing: its entries hold many requests). Nothing on
        this loop reads the store before the apply ends. Returns the put, decoded (None if the
        request is no put), and the revision told (0 if none)."""
        if request.method != PUT:
            return None, 0
        put = rpc.PutRequest.FromString(request.body)
        pending = self.proposals.pending
        if request.member != self.member_id or request.id not in pending:
            return put, 0
        if not batch.put_cannot_fail(put):
            return put, 0
        waiting = pending.pop(request.id)
        revision = self.store.revision + 1
        waiting[0].answer(rpc.PutResponse(header=self.header(revision)).SerializeToString())
        traced = self.trace.applied([(index, 1)]) if self.trace.open else None
        self.output.write()
        if traced:
            self.trace.replied(traced)
        if FAILPOINTS:
            hit("appAnsweredBeforeApply")
        return put, revision

    def _apply_expire(self, batch: Any, body: bytes):
        """A lease the leader found expired: revoked unless it is already gone."""
        try:
            return self.lessor.revoke(batch, rpc.LeaseRevokeRequest.FromString(body).ID)
        except errors.LeaseNotFound:
            return None, None

    def _apply_internal(self, batch: Any, request: internal.InternalRequest) -> None:
        if request.method == MEMBER_PUBLISH:
            apply_member_publish(batch, self.members, request.body)
            return None
        raise RuntimeError(f"unknown method {request.method} in a committed entry")

    def schedule_catch_up(self) -> None:
        """Feed lagging watchers from history, one chunk per loop iteration, until synced."""
        if not self._catch_up_scheduled:
            self._catch_up_scheduled = True
            self.loop.call_soon(self._catch_up)

    def _catch_up(self) -> None:
        self._catch_up_scheduled = False
        if self.watch_hub.catch_up():
            self._catch_up_scheduled = True
            self.loop.call_later(0.005, self._catch_up)

    # -- membership requests ------------------------------------------------------------------

    def change_membership(
        self, reply: Reply, method: int, change_type: int, node_id: int, context: bytes
    ) -> None:
        """Send a conf change down; answered when it applies (or is refused)."""
        self.admin.change_membership(reply, method, change_type, node_id, context)

    def reachable(self) -> set[int] | None:
        """The members this one heard from lately (itself included), while it leads; None
        on a follower (whose Raft process refuses membership changes anyway)."""
        if self.leader_id != self.member_id:
            return None
        since = time.monotonic() - reconfig_check.HEALTH_INTERVAL_S
        return {self.member_id} | {p for p, t in self.peer_heard.items() if t >= since}

    def move_leader(self, reply: Reply, target: int) -> None:
        self.admin.move_leader(reply, target)

    async def graceful_stop(self, transfer_wait_s: float, drain_wait_s: float) -> None:
        """Hand leadership over (if leading) and let requests in flight finish."""
        voters = [m for m in self.members.ids() if not self.members.get(m).is_learner]
        if self.leader_id == self.member_id and len(voters) > 1:
            log.info("transferring leadership before stopping")
            self._send_down(rp.pack(rp.MOVE_LEADER, rp.U64x2, 0, 0))
            deadline = time.monotonic() + transfer_wait_s
            while self.leader_id == self.member_id and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        self._flush()
        deadline = time.monotonic() + drain_wait_s
        while (self.proposals.pending or self.reads) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def expire_leases(self) -> None:
        """On the leader: propose a revoke for every lease past its deadline."""
        for lease_id in self.lessor.expired(retry_s=self.election_timeout_s * 3):
            self.propose(
                None, LEASE_EXPIRE, rpc.LeaseRevokeRequest(ID=lease_id).SerializeToString()
            )

    def new_lease_id(self) -> int:
        """A lease id for a grant that did not choose one: the member's id in the high bits,
        then milliseconds and a counter (etcd's scheme), positive as an int64."""
        now_ms = int(time.time() * 1000)
        self._lease_counter = max(self._lease_counter + 1, now_ms << 8)
        return ((self.member_id & 0x7FFF) << 48 | (self._lease_counter & (1 << 48) - 1)) or 1

    def when_applied(self, index: int, callback: Callable[[bool], None]) -> None:
        """``callback(True)`` once this member applied ``index`` (now if it has), or
        ``callback(False)`` after the request timeout."""
        if index <= self.applied_index:
            callback(True)
            return
        deadline = time.monotonic() + self.request_timeout
        waiter = (index, next(self._index_waiter_order), deadline, callback)
        heapq.heappush(self._index_waiters, waiter)

    def _wake_index_waiters(self) -> None:
        waiters = self._index_waiters
        while waiters and waiters[0][0] <= self.applied_index:
            heapq.heappop(waiters)[3](True)

    # -- timeouts ----------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Fail requests, read rounds and admin waits older than the request timeout."""
        self.proposals.expire(now)
        self.reads.expire(now)
        self.admin.expire(now)
        if self._index_waiters:
            late = [w for w in self._index_waiters if w[2] <= now]
            if late:
                self._index_waiters = [w for w in self._index_waiters if w[2] > now]
                heapq.heapify(self._index_waiters)
                for waiter in late:
                    waiter[3](False)

    # -- snapshots -----------------------------------------------------------------------------

    def _save_snapshot(self) -> None:
        """Make the store durable up to the applied index so the WAL below it can go."""
        index, term = self.applied_index, self.applied_term

        def saved() -> None:
            if index > self.last_snapshot_index:  # (not below a snapshot installed since)
                self.last_snapshot_index = index
                self._send_down(rp.pack(rp.SNAPSHOT_SAVED, rp.U64x2, index, term))
                log.info("snapshot saved at index %d", index)

        if self._sync_store(saved):
            self._log_bytes = 0

    def _sync_store(self, then: Callable[[], None] | None = None) -> bool:
        """Run LMDB's sync off the loop, one at a time (False: one is running), and
        ``then()`` on the loop once it is done, unless the store was replaced meanwhile.
        After tens of MB of writes a sync takes hundreds of milliseconds, and the WAL's
        fdatasyncs wait behind it on the disk: applies go on beside it, and the store is
        synced every STORE_SYNC_BYTES of log so that no sync has much to write."""
        if self._store_syncing:
            return False
        self._store_syncing = True
        self._unsynced_bytes = 0
        store, index = self.store, self.applied_index
        synced = self.loop.run_in_executor(None, store.reserve_sync())

        def done(future: asyncio.Future) -> None:
            self._store_syncing = False
            if future.cancelled():
                return
            error = future.exception()
            if error is not None:
                raise error  # the loop's handler stops the member
            if then is None:
                log.debug("store synced in the background up to index %d", index)
            elif store is self.store:
                then()

        synced.add_done_callback(done)
        return True

    async def _make_snapshot_file(self) -> None:
        """A consistent copy of the store for a lagging follower (made off the loop)."""
        os.makedirs(self.snapshot_dir, exist_ok=True)
        # Unique: a file made at the same applied index may still be on its way to a peer
        # (or left by an earlier incarnation that stopped mid-send).
        self._snapshot_files += 1
        name = f"send-{self.applied_index:016x}-{os.getpid():x}-{self._snapshot_files:x}.db"
        path = os.path.join(self.snapshot_dir, name)
        index = await self.copy_store(path)
        term = self.store.term_of_snapshot(path)
        self._send_down(rp.pack(rp.SNAPSHOT_READY, rp.U64x2, index, term, tail=path.encode()))

    async def copy_store(self, path: str) -> int:
        """A consistent copy of the store into path, made off the loop; returns the applied
        index it holds. Replacing the store (snapshot install, defragment) waits for it."""
        return await self.loop.run_in_executor(None, _copy, self.store.reserve_copy(), path)

    def _wire_store(self, store: Any) -> None:
        """The store's seams to the lease layer and the watchers."""
        store.lease_exists = self.lessor.exists
        store.events_need_prev = lambda: self.watch_hub.prev_kv_synced > 0

    def _install_snapshot(self, index: int, term: int, path: str) -> None:
        """Replace the state machine with a received snapshot."""
        self.store = self.store.replace_with(path)
        self.members = MemberList.decode(self.store.get_meta(b"members") or b"")
        self._wire_store(self.store)
        self.lessor.load(self.store)
        self.auth = AuthStore.load(self.store)
        self.alarms = Alarms.load(self.store)
        self.applied_index, self.applied_term = self.store.applied_index, self.store.applied_term
        self.last_snapshot_index = self.applied_index
        self._log_bytes = 0
        self._check_quota()
        self.watch_hub.store_replaced(self.store)
        self.schedule_catch_up()
        self._send_down(rp.pack(rp.MEMBERS, tail=self.members.encode()))
        if FAILPOINTS:
            hit("appAfterSnapshotInstall")
        self._send_down(rp.pack(rp.SNAPSHOT_INSTALLED, rp.U64, self.applied_index))
        log.info("installed snapshot at index %d (term %d)", index, term)
        self.reads.serve_applied(self.applied_index)
        self._wake_index_waiters()

    def defragment(self) -> tuple[int, int]:
        """Rewrite the store as a compacted copy swapped in under the running member (etcd's
        Defragment: this member serves nothing else meanwhile, so no write is lost or
        applied to the old file). Returns the file's size before and after."""
        before = self.store.db_size()
        started = time.monotonic()
        self.store = self.store.defragmented()
        self._wire_store(self.store)
        self.watch_hub.store_replaced(self.store)
        self.schedule_catch_up()
        after = self.store.db_size()
        log.info(
            "defragmented the backend: %d bytes before, %d after, in %.3f s",
            before,
            after,
            time.monotonic() - started,
            extra=fields(size_before=before, size_after=after),
        )
        self._check_quota()
        return before, after

    # -- status ------------------------------------------------------------------------------

    def status(self) -> rpc.StatusResponse:
        from .. import __version__

        size = self.store.db_size()
        return rpc.StatusResponse(
            version=__version__,
            dbSize=size,
            leader=self.leader_id,
            raftIndex=self.commit_index,
            raftTerm=self.term,
            raftAppliedIndex=self.applied_index,
            dbSizeInUse=self.store.db_size_in_use(),
            isLearner=self.is_learner,
            write_stages=self.trace.status(),
        )


def _check_told(index: int, told: int, result: Message | errors.ApiError | None) -> None:
    """A put answered before its apply (Application._answer_lone_put) must have made the
    revision its client was told; anything else is a broken invariant, never an answer."""
    revision = result.header.revision if isinstance(result, rpc.PutResponse) else None
    if revision != told:
        raise RuntimeError(
            f"a put of entry {index} was answered with revision {told} before its apply, "
            f"which gave {result!r}"
        )


def _copy(copy: Callable[[str], int], path: str) -> int:
    if FAILPOINTS:
        hit("appBeforeStoreCopy")
    return copy(path)
