"""Leases: etcd's lessor. Which leases exist (and which keys each holds) is state machine
state, changed only by applying the log, so it is the same on every member. When a lease
expires is decided by the leader's clock alone: the leader tracks deadlines, renews them on
keep-alives and proposes a revoke through the log when one passes. A follower never
expires anything. A member that becomes leader extends every deadline by an election
timeout first, so no lease expires because of the election.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Callable, Iterable

from .. import errors
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc

LEASE_META_PREFIX = b"lease/"
# etcd's largest TTL (MaxLeaseTTL).
MAX_TTL_S = 9_000_000_000
_ID = struct.Struct(">q")
_TTL = struct.Struct(">q")
NEVER = math.inf
PUT = kv_pb2.Event.PUT


class TooLargeTTL(errors.ApiError):
    code = errors.OUT_OF_RANGE  # as etcd's
    default_message = "etcdserver: too large lease TTL"


def min_ttl_s(election_timeout_ms: int) -> int:
    """etcd's minimum lease TTL: one and a half election timeouts, in whole seconds."""
    return math.ceil(1.5 * election_timeout_ms / 1000)


class Lease:
    """One lease: its granted TTL, the keys it holds and (on the leader) its deadline."""

    __slots__ = ("id", "ttl", "keys", "deadline", "revoking_until")

    def __init__(self, lease_id: int, ttl: int) -> None:
        self.id = lease_id
        self.ttl = ttl
        self.keys: set[bytes] = set()
        self.deadline = NEVER
        self.revoking_until = 0.0


class Lessor:
    """All leases of this member."""

    def __init__(self, min_ttl: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.min_ttl = min_ttl
        self._clock = clock
        self.leases: dict[int, Lease] = {}
        # The lease each leased key holds (the inverse of Lease.keys): an overwrite or delete
        # detaches its key without the store reading the key's previous version.
        self.lease_of: dict[bytes, int] = {}
        self.primary = False  # True while this member leads: only then do deadlines run

    # -- start-up --------------------------------------------------------------------------

    def load(self, store) -> None:
        """Rebuild from the store: the leases (metadata) and the keys holding them."""
        self.leases.clear()
        self.lease_of.clear()
        for name, value in store.meta_items(LEASE_META_PREFIX):
            (lease_id,) = _ID.unpack(name[len(LEASE_META_PREFIX) :])
            (ttl,) = _TTL.unpack(value)
            self.leases[lease_id] = Lease(lease_id, ttl)
        for lease_id, keys in store.keys_by_lease().items():
            lease = self.leases.get(lease_id)
            if lease is not None:
                lease.keys.update(keys)
                self.lease_of.update(dict.fromkeys(keys, lease_id))
        if self.primary:
            self.promote(0.0)

    # -- applying the log (every member, deterministic) -----------------------------------------

    def exists(self, lease_id: int) -> bool:
        return lease_id in self.leases

    def grant(self, batch, request: rpc.LeaseGrantRequest) -> rpc.LeaseGrantResponse:
        """Apply a LeaseGrant (the proposer already chose the id)."""
        if request.ID <= 0:
            raise errors.InvalidArgument("etcdserver: lease ID must be positive")
        if request.ID in self.leases:
            raise errors.LeaseExists()
        if request.TTL > MAX_TTL_S:
            raise TooLargeTTL()
        ttl = max(request.TTL, self.min_ttl)
        lease = Lease(request.ID, ttl)
        if self.primary:
            lease.deadline = self._clock() + ttl
        self.leases[lease.id] = lease
        batch.put_meta(LEASE_META_PREFIX + _ID.pack(lease.id), _TTL.pack(ttl))
        return rpc.LeaseGrantResponse(ID=lease.id, TTL=ttl)

    def revoke(self, batch, lease_id: int) -> tuple[rpc.LeaseRevokeResponse, list]:
        """Apply a LeaseRevoke: every key it holds is deleted in one revision."""
        lease = self.leases.get(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        events: list = []
        if lease.keys:
            _, events = batch.delete_keys(sorted(lease.keys))
            for key in lease.keys:
                self.lease_of.pop(key, None)
        del self.leases[lease_id]
        batch.delete_meta(LEASE_META_PREFIX + _ID.pack(lease_id))
        return rpc.LeaseRevokeResponse(), events

    def on_events(self, events: Iterable[kv_pb2.Event]) -> None:
        """Follow attach and detach from applied events: a put holds its key on kv.lease
        (0: none), a delete frees it."""
        leases, lease_of = self.leases, self.lease_of
        for event in events:
            key = event.kv.key
            new = event.kv.lease if event.type == PUT else 0
            old = lease_of.get(key, 0)
            if old == new:
                continue
            if old:
                del lease_of[key]
                if old in leases:  # always, while lease_of and Lease.keys agree
                    leases[old].keys.discard(key)
            if new and new in leases:
                leases[new].keys.add(key)
                lease_of[key] = new

    # -- time (leader only) -------------------------------------------------------------------

    def promote(self, extend_s: float) -> None:
        """This member leads now: every lease gets a full TTL plus ``extend_s`` from now."""
        self.primary = True
        now = self._clock()
        for lease in self.leases.values():
            lease.deadline = now + lease.ttl + extend_s
            lease.revoking_until = 0.0

    def demote(self) -> None:
        """This member no longer leads: deadlines stop running here."""
        self.primary = False
        for lease in self.leases.values():
            lease.deadline = NEVER

    def renew(self, lease_id: int) -> int:
        """A keep-alive on the leader: the lease's TTL, or 0 when it does not exist or its
        deadline has passed (its revoke may already be on its way through the log: the
        keep-alive must not tell the client it lives on, as etcd's Renew does not)."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return 0
        now = self._clock()
        if lease.deadline <= now:
            return 0
        lease.deadline = now + lease.ttl
        return lease.ttl

    def remaining(self, lease_id: int) -> int:
        """Whole seconds left (rounded down, as etcd reports them: 59 just after a grant of
        60), -1 when the lease is gone; meaningful on the leader."""
        lease = self.leases.get(lease_id)
        if lease is None:
            return -1
        if lease.deadline == NEVER:
            return lease.ttl
        return max(0, math.floor(lease.deadline - self._clock()))

    def expired(self, retry_s: float) -> list[int]:
        """Leases past their deadline that need a revoke proposal now (each at most once
        every ``retry_s`` seconds, in case a proposal is lost)."""
        if not self.primary:
            return []
        now = self._clock()
        due = []
        for lease in self.leases.values():
            if lease.deadline <= now and lease.revoking_until <= now:
                lease.revoking_until = now + retry_s
                due.append(lease.id)
        return due
