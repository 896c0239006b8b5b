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
import logging
import os
import random
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from google.protobuf.message import DecodeError, Message

from .. import errors
from ..proto import kv_pb2
from ..proto import raft_internal_pb2 as internal
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from . import ringproto as rp
from .auth_store import AuthStore
from .lessor import Lessor
from .members import MemberList

log = logging.getLogger("pyraftkv.app")

# Internal methods carried in the log next to client requests (never sent by clients).
MEMBER_PUBLISH = 100
LEASE_EXPIRE = 101
AUTH_TOKEN = 102  # a simple auth token handed out (AuthTokenGrant)

# A proposal batch is cut at about this size, so one entry stays a sensible WAL record.
MAX_BATCH_BYTES = 1 << 20
# Requests waiting for their entry to apply; above this, client connections stop being
# read until it drains (a bound on memory and on latency).
MAX_PENDING = 50_000

# Writes that take space: refused with NoSpace while the store is over its quota (reads,
# deletes, compaction and revokes still go through, so space can be won back).
_PUT = BY_NAME["Put"].number
_TXN = BY_NAME["Txn"].number
_LEASE_GRANT = BY_NAME["LeaseGrant"].number


def needs_space(method: int, body: bytes) -> bool:
    """Whether a client write adds data: a Put, a LeaseGrant, a Txn with a Put anywhere."""
    if method in (_PUT, _LEASE_GRANT):
        return True
    return method == _TXN and _txn_puts(rpc.TxnRequest.FromString(body))


def _txn_puts(txn: rpc.TxnRequest) -> bool:
    return any(
        op.HasField("request_put") or (op.HasField("request_txn") and _txn_puts(op.request_txn))
        for op in (*txn.success, *txn.failure)
    )


class Reply:
    """Where an answer goes: one client stream on one connection."""

    __slots__ = ("connection", "stream")

    def __init__(self, connection: Any, stream: int) -> None:
        self.connection = connection
        self.stream = stream


class LocalCaller:
    """Stands in for a client connection when the member itself makes a request (the lock
    and election services): the answer resolves a future instead of leaving on a socket."""

    closed = False

    def __init__(self, future: asyncio.Future, parse: Callable[[bytes], Message]) -> None:
        self._future = future
        self._parse = parse

    def reply(self, stream: int, body: bytes) -> None:
        if not self._future.done():
            self._future.set_result(self._parse(body))

    def error(self, stream: int, error: errors.ApiError, leader_url: str = "") -> None:
        if not self._future.done():
            self._future.set_exception(error)


class EventWaiter:
    """A watch sink that resolves a future with the first event it is sent."""

    def __init__(self, future: asyncio.Future, deletes_only: bool) -> None:
        self._future = future
        self._deletes_only = deletes_only

    def send_message(self, body: bytes) -> None:
        if self._future.done():
            return
        response = rpc.WatchResponse.FromString(body)
        if response.canceled:
            self._future.set_exception(errors.Compacted())
            return
        for event in response.events:
            if not self._deletes_only or event.type == kv_pb2.Event.DELETE:
                self._future.set_result(event)
                return

    def backlog_bytes(self) -> int:
        return 0


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
        self.snapshot_dir = snapshot_dir
        self.loop = asyncio.get_running_loop()
        self.lessor = lessor
        self.election_timeout_s = election_timeout_s
        self.quota_bytes = quota_bytes
        self.over_quota = store.db_size_in_use() > quota_bytes
        store.lease_exists = lessor.exists
        lessor.load(store)
        self.auth = AuthStore.load(store)
        # Checks a request taken for a user again when it applies (set by the auth service).
        self.recheck: Callable[[str, int, bytes], None] | None = None
        self._apply_table: dict[int, Callable] = {
            **APPLY,
            BY_NAME["LeaseGrant"].number: lambda b, body: (
                lessor.grant(b, rpc.LeaseGrantRequest.FromString(body)),
                None,
            ),
            BY_NAME["LeaseRevoke"].number: lambda b, body: lessor.revoke(
                b, rpc.LeaseRevokeRequest.FromString(body).ID
            ),
            LEASE_EXPIRE: self._apply_expire,
        }

        # What the Raft process last told us.
        self.leader_id = 0
        self.term = 0
        self.commit_index = 0
        self.role = 0
        self.is_learner = False
        self.applied_index = store.applied_index
        self.applied_term = store.applied_term
        self.last_snapshot_index = self.applied_index
        # For metrics: leaders seen (changes to a known leader), the Raft process's WAL.
        self.leader_changes = 0
        self.wal_sync_latency = rp.SyncLatency(0, 0.0, ())

        # Request ids: a random boot nonce in the high bits, so an entry proposed before a
        # restart can never complete a request of this boot.
        self._next_id = random.getrandbits(23) << 40
        self._pending: dict[int, tuple[Reply, int]] = {}  # id -> (reply, method)
        self._deadlines: deque[tuple[float, int]] = deque()
        self._batch = internal.RequestBatch()
        self._batch_bytes = 0
        self._reads: list[tuple[Reply, Callable[[], Message]]] = []
        self._read_rounds: dict[int, list[tuple[Reply, Callable[[], Message]]]] = {}
        self._read_deadlines: deque[tuple[float, int]] = deque()
        self._reads_ready: deque[tuple[int, list]] = deque()  # (read index, reads) by index
        self._next_read_context = 1
        self._flush_scheduled = False
        self._pause_listeners: list[Callable[[bool], None]] = []
        self._paused = False
        self._conf_waiters: dict[int, tuple[Reply, int]] = {}
        self._move_waiters: dict[int, Reply] = {}
        self._published = False
        self._catch_up_scheduled = False
        self._lease_counter = 0
        self.watch_hub = watch_hub_factory(self)

    @property
    def pending_writes(self) -> int:
        """Writes proposed (or batched to propose) and not yet applied."""
        return len(self._pending)

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
        """Fill in the response header's cluster, member, term (and revision if unset)."""
        header = response.header
        header.cluster_id = self.cluster_id
        header.member_id = self.member_id
        header.raft_term = self.term
        if not header.revision:
            header.revision = self.store.revision
        return response

    # -- proposing -------------------------------------------------------------------------

    def add_apply(self, method: int, apply: Callable) -> None:
        """Apply committed requests of ``method`` with ``apply(batch, body)``, which returns
        (response, events)."""
        self._apply_table[method] = apply

    def propose(self, reply: Reply | None, method: int, body: bytes, user: str = "") -> None:
        """Queue a write for the next proposal batch; ``reply`` gets the result once applied.
        ``user``: with auth on, whom it was accepted for (apply checks again).
        Raises NoSpace for a write that adds data while the store is over its quota."""
        if self.over_quota and needs_space(method, body):
            raise errors.NoSpace()
        request_id = self._next_id
        self._next_id += 1
        if reply is not None:
            self._pending[request_id] = (reply, method)
            self._deadlines.append((time.monotonic() + self.request_timeout, request_id))
            if len(self._pending) > MAX_PENDING and not self._paused:
                self._set_paused(True)
        self._batch.requests.add(
            member=self.member_id, id=request_id, method=method, body=body, user=user
        )
        self._batch_bytes += len(body) + 24
        if self._batch_bytes >= MAX_BATCH_BYTES:
            self._flush_proposals()
        self._schedule_flush()

    def read(self, reply: Reply, serve: Callable[[], Message], linearizable: bool) -> None:
        """Answer a read now (serializable) or after a ReadIndex round (linearizable)."""
        if not linearizable:
            self._answer(reply, serve)
            return
        self._reads.append((reply, serve))
        self._schedule_flush()

    def _schedule_flush(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        self._flush_proposals()
        if self._reads:
            context = self._next_read_context
            self._next_read_context += 1
            self._read_rounds[context] = self._reads
            self._read_deadlines.append((time.monotonic() + self.request_timeout, context))
            self._reads = []
            self._send_down(rp.pack(rp.READ_INDEX, rp.U64, context))

    def _flush_proposals(self) -> None:
        if self._batch.requests:
            data = self._batch.SerializeToString()
            self._batch = internal.RequestBatch()
            self._batch_bytes = 0
            self._send_down(bytes((rp.PROPOSE,)) + data)

    # -- requests the member makes itself -------------------------------------------------------

    async def local_write(self, method: str, request: Message) -> Message:
        """Propose a write as if a client had sent it; its response once applied."""
        spec = BY_NAME[method]
        future = self.loop.create_future()
        self.propose(
            Reply(LocalCaller(future, spec.response.FromString), 0),
            spec.number,
            request.SerializeToString(),
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

    # -- flow control -----------------------------------------------------------------------

    def on_pause(self, listener: Callable[[bool], None]) -> None:
        """Call listener(True) when clients must stop sending, listener(False) to resume."""
        self._pause_listeners.append(listener)

    def _set_paused(self, paused: bool) -> None:
        self._paused = paused
        for listener in self._pause_listeners:
            listener(paused)

    # -- messages from the Raft process ------------------------------------------------------

    def on_ring_messages(self, messages: list[bytes]) -> None:
        """Handle a batch of messages popped from the up ring, in order."""
        for message in messages:
            kind = message[0]
            if kind == rp.COMMITTED:
                self._apply(rp.decode_entries(message))
            elif kind == rp.READ_STATE:
                index, context = rp.unpack(message, rp.U64x2)
                self._on_read_state(index, context)
            elif kind == rp.STATUS:
                self._on_status(*rp.unpack(message, rp.STATUS_FMT))
            elif kind == rp.REFUSED:
                reason, ident = rp.unpack(message, rp.REFUSED_FMT)
                self._on_refused(reason, ident, rp.tail(message, rp.REFUSED_FMT))
            elif kind == rp.CONF_CHANGE_APPLIED:
                self._on_conf_change_applied(*rp.unpack(message, rp.CONF_APPLIED))
            elif kind == rp.MOVE_LEADER_DONE:
                request_id, ok = rp.unpack(message, rp.MOVE_DONE)
                self._on_move_leader_done(request_id, bool(ok))
            elif kind == rp.WAL_SYNC_LATENCY:
                self.wal_sync_latency = rp.decode_sync_latency(message)
            elif kind == rp.SNAPSHOT_WANTED:
                self.loop.create_task(self._make_snapshot_file())
            elif kind == rp.INSTALL_SNAPSHOT:
                index, term = rp.unpack(message, rp.U64x2)
                self._install_snapshot(index, term, rp.tail(message, rp.U64x2).decode())
            else:
                raise rp.RingProtocolError(f"unknown message kind {kind} from the Raft process")
        self._serve_ready_reads()

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
        self.leader_id, self.term, self.commit_index, self.role = leader, term, commit, role
        self.is_learner = bool(flags & 1)
        if leader and not self._published:
            self._publish_attributes()

    def _publish_attributes(self) -> None:
        """Tell the cluster (through the log) our name and client URLs, as etcd does."""
        me = self.members.get(self.member_id)
        if me is not None and me.name == self.name and list(me.client_urls) == self.client_urls:
            self._published = True
            return
        attributes = internal.MemberAttributes(
            id=self.member_id, name=self.name, client_urls=self.client_urls
        )
        self.propose(None, MEMBER_PUBLISH, attributes.SerializeToString())
        self._published = True  # re-checked on the next status if it did not apply

    def _on_refused(self, reason: int, ident: int, data: bytes) -> None:
        error: errors.ApiError
        if reason == rp.NOT_LEADER and self.leader_id:
            error = errors.NotLeader()
            leader_url = self.members.client_url(self.leader_id)
        else:
            error, leader_url = errors.NoLeader(), ""
        if ident:  # a read round
            for reply, _serve in self._read_rounds.pop(ident, ()):
                reply.connection.error(reply.stream, error, leader_url)
            return
        if not data:
            return
        try:
            batch = internal.RequestBatch.FromString(data)
        except DecodeError:
            return
        for request in batch.requests:
            if request.member == self.member_id:
                waiting = self._pending.pop(request.id, None)
                if waiting is not None:
                    waiting[0].connection.error(waiting[0].stream, error, leader_url)
                elif request.method == MEMBER_PUBLISH:
                    self._published = False

    # -- reads ---------------------------------------------------------------------------------

    def _on_read_state(self, index: int, context: int) -> None:
        reads = self._read_rounds.pop(context, None)
        if reads is None:
            return
        if index <= self.applied_index:
            for reply, serve in reads:
                self._answer(reply, serve)
        else:
            self._reads_ready.append((index, reads))

    def _serve_ready_reads(self) -> None:
        ready = self._reads_ready
        while ready and ready[0][0] <= self.applied_index:
            for reply, serve in ready.popleft()[1]:
                self._answer(reply, serve)
        if ready and len(ready) > 1:
            # Rounds can confirm out of order; keep the queue sorted by index.
            ordered = sorted(ready, key=lambda item: item[0])
            ready.clear()
            ready.extend(ordered)

    def _answer(self, reply: Reply, serve: Callable[[], Message]) -> None:
        try:
            response = serve()
        except errors.ApiError as exc:
            reply.connection.error(reply.stream, exc)
            return
        reply.connection.reply(reply.stream, self.stamp(response).SerializeToString())

    # -- applying ------------------------------------------------------------------------------

    def _apply(self, entries: list[rp.Entry]) -> None:
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
        with self.store.write_batch(last.index, last.term) as batch:
            for entry in entries:
                if entry.type == 0:
                    if entry.data:
                        self._apply_requests(batch, entry.data, answers, events)
                else:
                    self._apply_conf_change(batch, entry)
        self.applied_index, self.applied_term = last.index, last.term
        self._check_quota()
        for reply, result in answers:
            if isinstance(result, errors.ApiError):
                reply.connection.error(reply.stream, result)
            else:
                reply.connection.reply(reply.stream, self.stamp(result).SerializeToString())
        if events:
            self.watch_hub.notify(events, self.store.revision)
        if self.watch_hub.has_unsynced:
            self.schedule_catch_up()
        if self._paused and len(self._pending) < MAX_PENDING // 2:
            self._set_paused(False)
        if self.applied_index - self.last_snapshot_index >= self.snapshot_count:
            self._save_snapshot()

    def _check_quota(self) -> None:
        over = self.store.db_size_in_use() > self.quota_bytes
        if over != self.over_quota:
            self.over_quota = over
            if over:
                log.warning(
                    "the store is over its quota (--quota-backend-bytes %d): writes that add "
                    "data are refused until compaction frees space",
                    self.quota_bytes,
                )
            else:
                log.info("the store is back under its quota; writes are accepted again")

    def _apply_requests(self, batch: Any, data: bytes, answers: list, events: list) -> None:
        me = self.member_id
        pending = self._pending
        table = self._apply_table
        on_events = self.lessor.on_events
        for request in internal.RequestBatch.FromString(data).requests:
            apply = table.get(request.method)
            try:
                if request.user and self.recheck is not None:
                    self.recheck(request.user, request.method, request.body)
                if apply is None:
                    result = self._apply_internal(batch, request)
                else:
                    result, new_events = apply(batch, request.body)
                    if new_events:
                        events.extend(new_events)
                        on_events(new_events)
            except errors.ApiError as exc:
                result = exc
            if request.member == me:
                waiting = pending.pop(request.id, None)
                if waiting is not None and result is not None:
                    answers.append((waiting[0], result))

    def _apply_expire(self, batch: Any, body: bytes):
        """A lease the leader found expired: revoked unless it is already gone."""
        try:
            return self.lessor.revoke(batch, rpc.LeaseRevokeRequest.FromString(body).ID)
        except errors.LeaseNotFound:
            return None, None

    def _apply_internal(self, batch: Any, request: internal.InternalRequest) -> None:
        if request.method == MEMBER_PUBLISH:
            self.members.publish(internal.MemberAttributes.FromString(request.body))
            batch.put_meta(b"members", self.members.encode())
            return None
        raise RuntimeError(f"unknown method {request.method} in a committed entry")

    def _apply_conf_change(self, batch: Any, entry: rp.Entry) -> None:
        from ..raft.codec import decode_conf_change
        from ..raft.types import ConfChangeType

        change = decode_conf_change(entry.data)
        if change.type in (ConfChangeType.ADD_VOTER, ConfChangeType.ADD_LEARNER):
            attributes = internal.MemberAttributes.FromString(change.context)
            attributes.id = change.node_id
            attributes.is_learner = change.type == ConfChangeType.ADD_LEARNER
            self.members.add(attributes)
        elif change.type == ConfChangeType.PROMOTE_LEARNER:
            self.members.promote(change.node_id)
        else:
            self.members.remove(change.node_id)
        batch.put_meta(b"members", self.members.encode())
        log.info(
            "membership changed at index %d: %s %x", entry.index, change.type.name, change.node_id
        )

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
        request_id = self._next_id
        self._next_id += 1
        self._conf_waiters[request_id] = (reply, method, node_id)
        self._send_down(
            rp.pack(rp.CONF_CHANGE, rp.CONF, change_type, node_id, request_id, tail=context)
        )

    def _on_conf_change_applied(self, index: int, request_id: int, ok: int) -> None:
        waiting = self._conf_waiters.pop(request_id, None)
        if waiting is None:
            return
        reply, method, node_id = waiting
        if ok == rp.CONF_NOT_LEADER:
            error = errors.NotLeader()
            reply.connection.error(reply.stream, error, self.members.client_url(self.leader_id))
            return
        if ok != rp.CONF_APPLIED_OK:
            reply.connection.error(
                reply.stream,
                errors.ApiError(
                    "etcdserver: membership change refused (another change is in progress, "
                    "or the member does not exist)"
                ),
            )
            return
        members = self.members.to_rpc()
        response = BY_NUMBER_RESPONSE[method](members=members)
        if method == BY_NAME["MemberAdd"].number:
            response.member.CopyFrom(next((m for m in members if node_id == m.ID), rpc.Member()))
        reply.connection.reply(reply.stream, self.stamp(response).SerializeToString())

    def move_leader(self, reply: Reply, target: int) -> None:
        request_id = self._next_id
        self._next_id += 1
        self._move_waiters[request_id] = reply
        self._send_down(rp.pack(rp.MOVE_LEADER, rp.U64x2, target, request_id))

    def _on_move_leader_done(self, request_id: int, ok: bool) -> None:
        reply = self._move_waiters.pop(request_id, None)
        if reply is None:
            return
        if ok:
            response = rpc.MoveLeaderResponse()
            reply.connection.reply(reply.stream, self.stamp(response).SerializeToString())
        else:
            reply.connection.error(
                reply.stream,
                errors.ApiError(
                    "etcdserver: leadership transfer failed (target is not a voting member, "
                    "or it did not catch up in time)"
                ),
            )

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
        while (self._pending or self._read_rounds) and time.monotonic() < deadline:
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

    # -- timeouts ----------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Fail requests and read rounds older than the request timeout."""
        while self._deadlines and self._deadlines[0][0] <= now:
            _, request_id = self._deadlines.popleft()
            waiting = self._pending.pop(request_id, None)
            if waiting is not None:
                waiting[0].connection.error(waiting[0].stream, errors.TimedOut())
        while self._read_deadlines and self._read_deadlines[0][0] <= now:
            _, context = self._read_deadlines.popleft()
            for reply, _serve in self._read_rounds.pop(context, ()):
                reply.connection.error(reply.stream, errors.TimedOut())
        if self._paused and len(self._pending) < MAX_PENDING // 2:
            self._set_paused(False)

    # -- snapshots -----------------------------------------------------------------------------

    def _save_snapshot(self) -> None:
        """Make the store durable up to the applied index so the WAL below it can go."""
        self.store.sync()
        self.last_snapshot_index = self.applied_index
        self._send_down(rp.pack(rp.SNAPSHOT_SAVED, rp.U64x2, self.applied_index, self.applied_term))
        log.info("snapshot saved at index %d", self.applied_index)

    async def _make_snapshot_file(self) -> None:
        """A consistent copy of the store for a lagging follower (made off the loop)."""
        os.makedirs(self.snapshot_dir, exist_ok=True)
        path = os.path.join(self.snapshot_dir, f"send-{self.applied_index:016x}.db")
        index = await self.loop.run_in_executor(None, self.store.snapshot_to, path)
        term = self.store.term_of_snapshot(path)
        self._send_down(rp.pack(rp.SNAPSHOT_READY, rp.U64x2, index, term, tail=path.encode()))

    def _install_snapshot(self, index: int, term: int, path: str) -> None:
        """Replace the state machine with a received snapshot."""
        self.store = self.store.replace_with(path)
        self.members = MemberList.decode(self.store.get_meta(b"members") or b"")
        self.store.lease_exists = self.lessor.exists
        self.lessor.load(self.store)
        self.auth = AuthStore.load(self.store)
        self.applied_index, self.applied_term = self.store.applied_index, self.store.applied_term
        self.last_snapshot_index = self.applied_index
        self._check_quota()
        self.watch_hub.store_replaced(self.store)
        self.schedule_catch_up()
        self._send_down(rp.pack(rp.MEMBERS, tail=self.members.encode()))
        self._send_down(rp.pack(rp.SNAPSHOT_INSTALLED, rp.U64, self.applied_index))
        log.info("installed snapshot at index %d (term %d)", index, term)
        self._serve_ready_reads()

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
        )


def _apply_put(batch: Any, body: bytes):
    return batch.put(rpc.PutRequest.FromString(body))


def _apply_delete(batch: Any, body: bytes):
    return batch.delete_range(rpc.DeleteRangeRequest.FromString(body))


def _apply_txn(batch: Any, body: bytes):
    return batch.txn(rpc.TxnRequest.FromString(body))


def _apply_compact(batch: Any, body: bytes):
    return batch.compact(rpc.CompactionRequest.FromString(body)), None


APPLY: dict[int, Callable] = {
    BY_NAME["Put"].number: _apply_put,
    BY_NAME["DeleteRange"].number: _apply_delete,
    BY_NAME["Txn"].number: _apply_txn,
    BY_NAME["Compact"].number: _apply_compact,
}

BY_NUMBER_RESPONSE = {
    BY_NAME[name].number: BY_NAME[name].response
    for name in ("MemberAdd", "MemberRemove", "MemberPromote", "MemberUpdate")
}
