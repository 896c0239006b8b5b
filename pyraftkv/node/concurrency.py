"""The lock and election services (etcd's v3lock and v3election), run by the member itself.

Both stand on keys under ``name + "/"``, one per contender, created with the contender's
lease: holders are ordered by the keys' create revisions, so the lock is granted (and
leadership passes) in FIFO order, and a contender whose process dies loses its key when
its lease expires. A waiter watches only the key just before its own, so a release wakes
one waiter, not all of them.

The member writes and reads those keys for the caller, as etcd's services do through a
client carrying the caller's token: with auth on, each write is checked at apply as the
caller's own, and each read while waiting is checked again, so a permission revoked
while a call waits ends it.
"""

from __future__ import annotations

import contextlib

from .. import errors
from ..errors import ElectionNoLeader, ElectionNotLeader, SessionExpired
from ..mvcc import prefix_end
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election
from ..proto import v3lock_pb2 as lock
from .auth_store import READ

# Whom a call runs for: (user, the auth revision its JWT token was signed at, or 0 when
# it is checked at the member's current revision); None for the member's own writes.
Caller = tuple[str, int]

CREATE = rpc.Compare.CREATE
MOD = rpc.Compare.MOD
EQUAL = rpc.Compare.EQUAL


def contender_key(name: bytes, lease: int) -> bytes:
    return name + b"/" + f"{lease:x}".encode()


def _first_by_create(prefix: bytes, max_create_revision: int = 0) -> rpc.RangeRequest:
    """The oldest key under prefix (or, with a bound, the newest one created before it)."""
    if max_create_revision:
        return rpc.RangeRequest(
            key=prefix,
            range_end=prefix_end(prefix),
            limit=1,
            sort_target=rpc.RangeRequest.CREATE,
            sort_order=rpc.RangeRequest.DESCEND,
            max_create_revision=max_create_revision,
        )
    return rpc.RangeRequest(
        key=prefix,
        range_end=prefix_end(prefix),
        limit=1,
        sort_target=rpc.RangeRequest.CREATE,
        sort_order=rpc.RangeRequest.ASCEND,
    )


def _leader_of(request) -> election.LeaderKey:
    """A Proclaim's or Resign's leader key; etcd's words when there is none."""
    if not request.HasField("leader"):
        raise errors.InvalidArgument('"leader" field must be provided')
    return request.leader


class Concurrency:
    """Lock and election requests, answered once they can be (they may wait long)."""

    def __init__(self, app) -> None:
        self.app = app

    def _may_read(self, caller: Caller | None, key: bytes, range_end: bytes = b"") -> None:
        """With auth on, whether the caller may still read what the call waits on (a JWT
        token signed before an auth change may not, as in etcd)."""
        auth = self.app.auth
        if caller is not None and auth.enabled:
            user, pinned = caller
            if user and pinned and pinned < auth.revision:
                raise errors.AuthOldRevision()
            auth.check(user, key, range_end, READ)

    async def _enter(
        self, name: bytes, lease: int, value: bytes, caller: Caller | None
    ) -> tuple[bytes, int, int]:
        """Create our contender key, or take over the one an earlier attempt with the same
        lease made (a client that lost its connection asks again, maybe on another
        member): putting it again keeps its create revision, so its place in line, and
        marks it as ours. Returns (key, its create revision, the revision we wrote it at)."""
        key = contender_key(name, lease)  # an empty name is allowed, as etcd allows it
        put = rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, target=CREATE, result=EQUAL, create_revision=0)],
            success=[put],
            failure=[rpc.RequestOp(request_range=rpc.RangeRequest(key=key)), put],
        )
        response = await self.app.local_write("Txn", txn, caller)
        written = response.header.revision
        if response.succeeded:
            return key, written, written
        return key, response.responses[0].response_range.kvs[0].create_revision, written

    async def _wait_for_turn(self, name: bytes, revision: int, caller: Caller | None) -> None:
        """Wait until no contender key created before ``revision`` is left."""
        prefix = name + b"/"
        while True:
            self._may_read(caller, prefix, prefix_end(prefix))
            before = await self.app.local_read(_first_by_create(prefix, revision - 1))
            if not before.kvs:
                return
            with contextlib.suppress(errors.Compacted):
                await self.app.wait_for_event(
                    before.kvs[0].key, b"", before.header.revision, deletes_only=True
                )

    async def _still_exists(self, key: bytes, caller: Caller | None = None) -> kv_pb2.KeyValue:
        self._may_read(caller, key)
        got = await self.app.local_read(rpc.RangeRequest(key=key))
        if not got.kvs:
            raise SessionExpired()
        return got.kvs[0]

    async def _acquire(
        self, name: bytes, lease: int, value: bytes, caller: Caller | None
    ) -> tuple[bytes, int]:
        key, revision, written = await self._enter(name, lease, value, caller)
        try:
            await self._wait_for_turn(name, revision, caller)
            await self._still_exists(key, caller)
        except BaseException:
            # A waiter that gives up leaves no key behind to block others, unless a later
            # attempt with the same lease took the key over: it may hold the lock by now.
            abandon = rpc.TxnRequest(
                compare=[rpc.Compare(key=key, target=MOD, result=EQUAL, mod_revision=written)],
                success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=key))],
            )
            with contextlib.suppress(errors.ApiError):
                await self.app.local_write("Txn", abandon)
            raise
        return key, revision

    # -- v3lock --------------------------------------------------------------------------------

    async def lock(
        self, request: lock.LockRequest, caller: Caller | None = None
    ) -> lock.LockResponse:
        key, _ = await self._acquire(request.name, request.lease, b"", caller)
        return lock.LockResponse(header=self.app.header(), key=key)

    async def unlock(
        self, request: lock.UnlockRequest, caller: Caller | None = None
    ) -> lock.UnlockResponse:
        response = await self.app.local_write(
            "DeleteRange", rpc.DeleteRangeRequest(key=request.key), caller
        )
        return lock.UnlockResponse(header=response.header)

    # -- v3election ----------------------------------------------------------------------------

    async def campaign(
        self, request: election.CampaignRequest, caller: Caller | None = None
    ) -> election.CampaignResponse:
        key, revision = await self._acquire(request.name, request.lease, request.value, caller)
        current = await self._still_exists(key, caller)
        if current.value != request.value:  # an earlier campaign of this lease left another value
            await self._proclaim(key, revision, request.lease, request.value, caller)
        leader = election.LeaderKey(name=request.name, key=key, rev=revision, lease=request.lease)
        return election.CampaignResponse(header=self.app.header(), leader=leader)

    async def _proclaim(
        self, key: bytes, revision: int, lease: int, value: bytes, caller: Caller | None
    ):
        txn = rpc.TxnRequest(
            compare=[rpc.Compare(key=key, target=CREATE, result=EQUAL, create_revision=revision)],
            success=[rpc.RequestOp(request_put=rpc.PutRequest(key=key, value=value, lease=lease))],
        )
        response = await self.app.local_write("Txn", txn, caller)
        if not response.succeeded:
            raise ElectionNotLeader()
        return response

    async def proclaim(
        self, request: election.ProclaimRequest, caller: Caller | None = None
    ) -> election.ProclaimResponse:
        leader = _leader_of(request)
        response = await self._proclaim(leader.key, leader.rev, leader.lease, request.value, caller)
        return election.ProclaimResponse(header=response.header)

    async def leader(
        self, request: election.LeaderRequest, caller: Caller | None = None
    ) -> election.LeaderResponse:
        got = await self.app.local_read(_first_by_create(request.name + b"/"))
        if not got.kvs:
            raise ElectionNoLeader()
        return election.LeaderResponse(header=got.header, kv=got.kvs[0])

    async def resign(
        self, request: election.ResignRequest, caller: Caller | None = None
    ) -> election.ResignResponse:
        leader = _leader_of(request)
        txn = rpc.TxnRequest(
            compare=[
                rpc.Compare(key=leader.key, target=CREATE, result=EQUAL, create_revision=leader.rev)
            ],
            success=[rpc.RequestOp(request_delete_range=rpc.DeleteRangeRequest(key=leader.key))],
        )
        response = await self.app.local_write("Txn", txn, caller)
        return election.ResignResponse(header=response.header)

    async def observe(self, request: election.LeaderRequest, send) -> None:
        """Send the leader's key and value now (once there is one) and on every change of
        leader or proclamation, until cancelled."""
        prefix = request.name + b"/"
        last = None
        while True:
            got = await self.app.local_read(_first_by_create(prefix))
            if got.kvs:
                kv = got.kvs[0]
                if (kv.key, kv.mod_revision) != last:
                    last = (kv.key, kv.mod_revision)
                    send(election.LeaderResponse(header=got.header, kv=kv))
            with contextlib.suppress(errors.Compacted):
                await self.app.wait_for_event(prefix, prefix_end(prefix), got.header.revision)
