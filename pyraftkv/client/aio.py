"""``AsyncClient``: the asyncio client of pyraftkv's native protocol.

Responses are etcd v3's messages (``resp.header.revision``, ``resp.kvs[0].value``, ...).
The client talks to one endpoint at a time and fails over to the next when it cannot
reach it. It retries a call only when doing so cannot apply a write twice: reads are
retried after any connection failure; writes only when the request never left, or the
server refused it before proposing it (no leader, not leader).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import ssl
import time
from collections.abc import AsyncIterator, Iterable, Sequence

from google.protobuf.message import Message

from ..errors import (
    AuthNotEnabled,
    AuthOldRevision,
    InvalidAuthToken,
    NoLeader,
    NotLeader,
    PyraftkvError,
    TimedOut,
)
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from ..proto import v3lock_pb2 as lock_pb2
from ..protocol.methods import BY_NAME
from .config_watch import AsyncConfigWatcher
from .connection import Connection, ConnectionLost, normalize_endpoint
from .discovery import AsyncServiceRegistry
from .election import AsyncElection, observe_leader
from .leases import AsyncLease, KeepAlive, LeaseKeeper
from .locks import DEFAULT_TTL_S, AsyncLock, wait_in_line
from .requests import (
    Bytesish,
    delete_request,
    key_range,
    put_request,
    range_request,
    to_bytes,
    txn_request,
)
from .tls import TLS, client_context
from .watch import ServerWatch, Watcher

# Calls whose repetition cannot change the store.
IDEMPOTENT = frozenset(
    (
        "Range",
        "MemberList",
        "Status",
        "Hash",
        "HashKV",
        "LeaseTimeToLive",
        "LeaseLeases",
        "Leader",
        # One key per (name, lease): asking again finds the key made the first time.
        "Lock",
        "Unlock",
        "Campaign",
        "Resign",
    )
)


_AUTHENTICATE = BY_NAME["Authenticate"].number


class _Expired(Exception):
    """A call's deadline passed before its reply (set on its future by _expire)."""


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(_Expired())


class AsyncClient:
    """An asyncio client for a pyraftkv cluster; use ``async with AsyncClient(...) as c``."""

    def __init__(
        self,
        endpoints: Sequence[str] = ("127.0.0.1:2379",),
        *,
        timeout: float = 10.0,
        connect_timeout: float = 2.0,
        tls: TLS | ssl.SSLContext | bool | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> None:
        if isinstance(endpoints, str):
            endpoints = [endpoints]
        self.endpoints = [normalize_endpoint(e) for e in endpoints]
        if not self.endpoints:
            raise ValueError("at least one endpoint is required")
        self.timeout = timeout
        self.connect_timeout = connect_timeout
        self.tls = tls
        self._ssl = client_context(tls, endpoints)
        self._server_name = tls.server_name if isinstance(tls, TLS) else None
        # With a user, every connection authenticates first and its requests carry the token.
        self.user, self.password = user, password
        self._current = 0
        self._connection: Connection | None = None
        self._connecting: asyncio.Task | None = None
        self._keeper: LeaseKeeper | None = None
        self._watches: dict[object, ServerWatch] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection; pending calls fail with ConnectionLost and leases are no
        longer kept alive (they expire after their TTL)."""
        if self._keeper is not None:
            await self._keeper.close()
            self._keeper = None
        for feed in list(self._watches.values()):
            feed.stop()
        if self._connection is not None:
            self._connection.close()
            self._connection = None

    # -- connection management ----------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The endpoint calls go to now (the next after a failover)."""
        return self.endpoints[self._current]

    async def connection(self) -> Connection:
        """The live connection, opening one (trying every endpoint in turn) if needed."""
        if self._connection is not None and not self._connection.closed:
            return self._connection
        if self._connecting is None:
            self._connecting = asyncio.ensure_future(self._connect())
        try:
            return await asyncio.shield(self._connecting)
        finally:
            if self._connecting is not None and self._connecting.done():
                self._connecting = None

    async def _connect(self) -> Connection:
        errors = []
        for attempt in range(len(self.endpoints)):
            endpoint = self.endpoints[(self._current + attempt) % len(self.endpoints)]
            try:
                connection = await self.open_connection(endpoint)
            except ConnectionLost as exc:
                errors.append(str(exc))
                continue
            self._current = (self._current + attempt) % len(self.endpoints)
            self._connection = connection
            return connection
        raise ConnectionLost("; ".join(errors))

    async def open_connection(self, endpoint: str) -> Connection:
        """A new connection of this client's kind (TLS or not) to host:port; with a user,
        authenticated (a wrong password raises etcd's error)."""
        connection = await Connection.open(
            endpoint, self.connect_timeout, self._ssl, self._server_name
        )
        if self.user:
            try:
                await self._authenticate(connection)
            except BaseException:
                connection.close()
                raise
        return connection

    async def _authenticate(self, connection: Connection) -> None:
        """Get a token for this client's user on ``connection``."""
        connection.token = b""
        request = rpc.AuthenticateRequest(name=self.user, password=self.password or "")
        try:
            reply = await asyncio.wait_for(
                connection.call(_AUTHENTICATE, request.SerializeToString()), self.timeout
            )
        except AuthNotEnabled:
            return  # as etcd's clients: no token needed while auth is off
        connection.token = rpc.AuthenticateResponse.FromString(reply).token.encode()

    def _drop(self, connection: Connection, move_to: str | None = None) -> None:
        """Forget a connection that failed; the next call starts on another endpoint."""
        if self._connection is connection:
            connection.close()
            self._connection = None
            if move_to:
                try:
                    endpoint = normalize_endpoint(move_to)
                except ValueError:
                    endpoint = ""
                if endpoint:
                    # A member named the leader: go there, even if the caller listed only
                    # other members (leader-only calls such as keep-alives need it).
                    if endpoint not in self.endpoints:
                        self.endpoints.append(endpoint)
                    self._current = self.endpoints.index(endpoint)
                    return
            self._current = (self._current + 1) % len(self.endpoints)

    # -- unary calls --------------------------------------------------------------------

    async def call(self, method: str, request: Message, timeout: float | None = None) -> Message:
        """Send one request by method name and return its response message."""
        spec = BY_NAME[method]
        body = request.SerializeToString()
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        idempotent = method in IDEMPOTENT
        backoff = 0.05
        lost: ConnectionLost | None = None  # why the last connection failed, for the error
        refreshed = False
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                if lost is not None:
                    raise ConnectionLost(f"{method}: {lost}")
                raise TimedOut(f"{method}: no answer within the timeout")
            connection = self._connection
            if connection is None or connection.closed:
                try:
                    connection = await asyncio.wait_for(self.connection(), remaining)
                except (ConnectionLost, asyncio.TimeoutError) as exc:
                    lost = exc if isinstance(exc, ConnectionLost) else lost
                    # Nothing was sent: always safe to try again after a pause.
                    if deadline - time.monotonic() <= backoff:
                        raise ConnectionLost(f"{method}: {lost or 'timed out connecting'}") from exc
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
            future = connection.call(spec.number, body)
            # One timer per call rather than asyncio.wait_for, which costs a waiter future
            # and callbacks on every call of the hot path.
            timer = asyncio.get_running_loop().call_later(
                deadline - time.monotonic(), _expire, future
            )
            try:
                reply = await future
            except _Expired:
                raise TimedOut(f"{method}: no answer within the timeout") from None
            except ConnectionLost as exc:
                self._drop(connection)
                if not idempotent:
                    raise
                lost = exc
                if not connection.answered:
                    # Refused at once (TLS, a stopping member): pause as for a failed dial.
                    if deadline - time.monotonic() <= backoff:
                        raise
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                continue
            except NotLeader as exc:
                self._drop(connection, getattr(exc, "leader_url", "") or None)
                continue
            except (InvalidAuthToken, AuthOldRevision):
                if not self.user or refreshed:
                    raise
                # the token expired, or the auth state changed since the request was
                # checked (nothing was applied): a new token, and the call once more
                refreshed = True
                await self._authenticate(connection)
                continue
            except NoLeader:
                if deadline - time.monotonic() <= backoff:
                    raise
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 1.0)
                continue
            finally:
                timer.cancel()
            return spec.response.FromString(reply)

    # -- KV -------------------------------------------------------------------------------

    async def put(self, key: Bytesish, value: Bytesish, **options) -> rpc.PutResponse:
        """Put key=value; options: lease, prev_kv, ignore_value, ignore_lease."""
        return await self.call("Put", put_request(key, value, **options))

    async def get(
        self, key: Bytesish, range_end: Bytesish | None = None, **options
    ) -> rpc.RangeResponse:
        """Range over a key, [key, range_end), a prefix (prefix=True) or from_key=True.

        Options: revision, limit, keys_only, count_only, serializable, sort_order
        (none|ascend|descend), sort_target (key|version|create|mod|value), min/max
        mod/create revision.
        """
        return await self.call("Range", range_request(key, range_end, **options))

    async def delete(
        self, key: Bytesish, range_end: Bytesish | None = None, **options
    ) -> rpc.DeleteRangeResponse:
        """Delete a key, a range, a prefix (prefix=True) or from_key=True; prev_kv=True too."""
        return await self.call("DeleteRange", delete_request(key, range_end, **options))

    async def txn(
        self,
        compare: Iterable[rpc.Compare] = (),
        success: Iterable[rpc.RequestOp] = (),
        failure: Iterable[rpc.RequestOp] = (),
    ) -> rpc.TxnResponse:
        """Atomically: if every compare holds, run success, else failure (see Compare, Op)."""
        return await self.call("Txn", txn_request(compare, success, failure))

    async def compact(self, revision: int, physical: bool = False) -> rpc.CompactionResponse:
        """Drop history before ``revision``."""
        return await self.call(
            "Compact", rpc.CompactionRequest(revision=revision, physical=physical)
        )

    # -- cluster and maintenance ----------------------------------------------------------

    async def member_list(self) -> rpc.MemberListResponse:
        return await self.call("MemberList", rpc.MemberListRequest())

    async def status(self, endpoint: str | None = None) -> rpc.StatusResponse:
        """Status of the member at ``endpoint`` (default: the connected one)."""
        if endpoint is None:
            return await self.call("Status", rpc.StatusRequest())
        async with AsyncClient(
            [endpoint],
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            tls=self._ssl or False,
            user=self.user,
            password=self.password,
        ) as single:
            return await single.call("Status", rpc.StatusRequest())

    async def hash(self) -> rpc.HashResponse:
        """etcd's Hash: the connected member's whole backend, at its current revision."""
        return await self.call("Hash", rpc.HashRequest())

    async def hash_kv(self, revision: int = 0) -> rpc.HashKVResponse:
        return await self.call("HashKV", rpc.HashKVRequest(revision=revision))

    async def alarm_list(self) -> rpc.AlarmResponse:
        """Every alarm raised in the cluster (etcd's Alarm GET)."""
        return await self.call("Alarm", rpc.AlarmRequest(action=rpc.AlarmRequest.GET))

    async def alarm_disarm(self) -> rpc.AlarmResponse:
        """Clear every alarm raised; answers with those it cleared."""
        disarmed = rpc.AlarmResponse()
        for alarm in (await self.alarm_list()).alarms:
            request = rpc.AlarmRequest(
                action=rpc.AlarmRequest.DEACTIVATE, memberID=alarm.memberID, alarm=alarm.alarm
            )
            disarmed.alarms.extend((await self.call("Alarm", request)).alarms)
        return disarmed

    async def defragment(self) -> rpc.DefragmentResponse:
        """Compact the connected member's backend file (it serves nothing else meanwhile)."""
        return await self.call("Defragment", rpc.DefragmentRequest())

    async def move_leader(self, target_id: int) -> rpc.MoveLeaderResponse:
        return await self.call("MoveLeader", rpc.MoveLeaderRequest(targetID=target_id))

    async def snapshot(self, path: str) -> int:
        """Save a consistent copy of the connected member's store (a backup) to ``path``;
        returns its size in bytes. The copy is checked against the SHA-256 the member sends
        after it and lands at ``path`` only whole (written to ``path.part``, fsynced)."""
        connection = await self.connection()
        stream = connection.open_stream(BY_NAME["Snapshot"].number)
        part = f"{path}.part"
        try:
            stream.send(rpc.SnapshotRequest().SerializeToString())
            with open(part, "wb+") as f:
                remaining = None
                while remaining != 0:
                    # The member copies its whole store before the first chunk: wait longer.
                    wait = self.timeout * (10 if remaining is None else 1)
                    body = await asyncio.wait_for(stream.receive(), wait)
                    response = rpc.SnapshotResponse.FromString(body)
                    f.write(response.blob)
                    remaining = response.remaining_bytes
                size = f.tell() - hashlib.sha256().digest_size
                f.seek(0)
                digest, left = hashlib.sha256(), size
                while left > 0:
                    chunk = f.read(min(left, 1 << 20))
                    digest.update(chunk)
                    left -= len(chunk)
                if size < 0 or f.read() != digest.digest():
                    raise PyraftkvError(f"the snapshot from {connection.endpoint} is damaged")
                f.truncate(size)
                os.fsync(f.fileno())
            os.replace(part, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(part)
            raise
        finally:
            stream.close()
        return size

    # -- leases ------------------------------------------------------------------------------

    async def lease_grant(self, ttl: int, lease_id: int = 0) -> rpc.LeaseGrantResponse:
        """Grant a lease of ``ttl`` seconds (the server may raise it to its minimum)."""
        return await self.call("LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl, ID=lease_id))

    async def lease_revoke(self, lease_id: int) -> rpc.LeaseRevokeResponse:
        """Revoke a lease: every key attached to it is deleted."""
        return await self.call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id))

    async def lease_time_to_live(
        self, lease_id: int, keys: bool = False
    ) -> rpc.LeaseTimeToLiveResponse:
        """Remaining TTL (-1 when gone), granted TTL and, with keys=True, the attached keys."""
        return await self.call(
            "LeaseTimeToLive", rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=keys)
        )

    async def lease_leases(self) -> rpc.LeaseLeasesResponse:
        return await self.call("LeaseLeases", rpc.LeaseLeasesRequest())

    async def lease_keep_alive_once(self, lease_id: int) -> rpc.LeaseKeepAliveResponse:
        """One keep-alive; the response's TTL is 0 when the lease no longer exists."""
        keeper = KeepAlive(self, lease_id)
        try:
            return await keeper.once()
        finally:
            keeper.close()

    # -- locks and elections (served by the member: etcd's v3lock and v3election) ---------------

    def lock(
        self,
        name: Bytesish,
        lease_id: int = 0,
        timeout: float | None = None,
        *,
        ttl: int = DEFAULT_TTL_S,
    ) -> AsyncLock:
        """The distributed lock ``name`` (FIFO). ``await client.lock(name, lease_id)`` waits
        for it and returns the key that exists while it is held (pass it to ``unlock``);
        ``async with client.lock(name, ttl=10):`` holds it on a lease of its own for the
        block."""
        return AsyncLock(self, name, lease_id, timeout, ttl=ttl)

    async def unlock(self, key: bytes) -> None:
        await self.call("Unlock", lock_pb2.UnlockRequest(key=key))

    async def campaign(
        self, name: Bytesish, lease_id: int, value: Bytesish, timeout: float | None = None
    ) -> election_pb2.LeaderKey:
        """Wait to become leader of election ``name``; returns the proof of leadership."""
        name = to_bytes(name)
        request = election_pb2.CampaignRequest(name=name, lease=lease_id, value=to_bytes(value))
        response = await wait_in_line(self, "Campaign", request, name, lease_id, timeout)
        return response.leader

    async def proclaim(self, leader: election_pb2.LeaderKey, value: Bytesish) -> None:
        """Publish a new value as the leader (fails with "not leader" once leadership is lost)."""
        await self.call(
            "Proclaim", election_pb2.ProclaimRequest(leader=leader, value=to_bytes(value))
        )

    async def leader(self, name: Bytesish) -> kv_pb2.KeyValue:
        """The current leader's key and value (raises "no leader" when there is none)."""
        response = await self.call("Leader", election_pb2.LeaderRequest(name=to_bytes(name)))
        return response.kv

    async def resign(self, leader: election_pb2.LeaderKey) -> None:
        await self.call("Resign", election_pb2.ResignRequest(leader=leader))

    def observe(self, name: Bytesish) -> AsyncIterator[kv_pb2.KeyValue]:
        """Async iterator over the election's leader key-values: now, then on every change
        (reconnecting to another member when needed)."""
        return observe_leader(self, to_bytes(name))

    def election(self, name: Bytesish) -> AsyncElection:
        """Leader election ``name``: campaign / proclaim / leader / observe / resign."""
        return AsyncElection(self, name)

    def lease(self, ttl: int) -> AsyncLease:
        """``async with client.lease(10) as lease``: a lease kept alive until the block ends,
        then revoked (its keys go with it)."""
        return AsyncLease(self, ttl)

    def _lease_keeper(self) -> LeaseKeeper:
        if self._keeper is None:
            self._keeper = LeaseKeeper(self)
        return self._keeper

    # -- service discovery and configuration ---------------------------------------------------

    def service_registry(self, prefix: Bytesish) -> AsyncServiceRegistry:
        """Instances of a service under ``prefix``: register, list, watch them come and go."""
        return AsyncServiceRegistry(self, prefix)

    def config_watcher(self, key: Bytesish, *, prefix: bool = False) -> AsyncConfigWatcher:
        """``async with client.config_watcher(key)``: current values, then every change."""
        return AsyncConfigWatcher(self, key, prefix=prefix)

    # -- watch ------------------------------------------------------------------------------

    async def watch(
        self,
        key: Bytesish,
        range_end: Bytesish | None = None,
        *,
        prefix: bool = False,
        from_key: bool = False,
        start_revision: int = 0,
        prev_kv: bool = False,
        filters: Sequence[str] = (),
        progress_notify: bool = False,
        require_leader: bool = False,
    ) -> Watcher:
        """Start watching; returns a Watcher (async-iterate it for events, then cancel()).

        ``require_leader`` (etcd's WithRequireLeader): a member that loses its leader ends
        the watch after three election timeouts and the watch moves on to a member that
        has one, from the next revision (when none it can reach has one within the
        client's timeout, the watch ends: ConnectionLost, caused by NoLeader); without it,
        a watch on a member cut off from the others stays there, hearing nothing, until
        the member is back."""
        k, end = key_range(key, range_end, prefix=prefix, from_key=from_key)
        names = {"noput": rpc.WatchCreateRequest.NOPUT, "nodelete": rpc.WatchCreateRequest.NODELETE}
        create = rpc.WatchCreateRequest(
            key=k,
            range_end=end,
            start_revision=start_revision,
            prev_kv=prev_kv,
            filters=[names[f.lower()] for f in filters],
            progress_notify=progress_notify,
        )
        # Watchers "from now" with the same request share one server watch (see .watch).
        shared = (create.SerializeToString(), require_leader)
        key: object = shared if not start_revision else object()
        feed = self._watches.get(key)
        if feed is None:
            feed = self._watches[key] = ServerWatch(
                self, create, lambda: self._unwatch(key, feed), require_leader
            )
        return await feed.join()

    def _unwatch(self, key: object, feed: ServerWatch) -> None:
        if self._watches.get(key) is feed:
            del self._watches[key]


__all__ = ["AsyncClient", "KeepAlive", "Watcher", "to_bytes"]
