"""Leader election on the member's election service (etcd's v3election):
``AsyncElection`` / ``Election`` and ``observe_leader``.

Candidates hold keys ``name/<lease id>``; the oldest one leads and its value is the
election's value. Campaign waits for leadership; a leader whose process dies loses its
key when its lease expires, and the next candidate (in campaign order) takes over.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from ..errors import ApiError, ElectionNoLeader, ElectionNotLeader, NoLeader, NotLeader, TimedOut
from ..proto import kv_pb2
from ..proto import v3election_pb2 as election_pb2
from ..protocol.methods import BY_NAME
from .connection import Connection, ConnectionLost
from .leases import AsyncLease, check_ttl
from .locks import DEFAULT_TTL_S
from .requests import Bytesish, to_bytes

if TYPE_CHECKING:
    from .aio import AsyncClient
    from .sync import BlockingIterator, Client

OBSERVE = BY_NAME["Observe"].number
RETRY_PAUSE_S = 0.1


async def observe_leader(client: AsyncClient, name: bytes) -> AsyncIterator[kv_pb2.KeyValue]:
    """The election's leader key-value now (once there is one), then on every change of
    leader or value. A lost connection or an election in the cluster reopens the stream on
    another member; a change is reported once even if both streams saw it."""
    request = election_pb2.LeaderRequest(name=name).SerializeToString()
    last: tuple[bytes, int] | None = None
    while True:
        connection: Connection | None = None
        stream = None
        try:
            connection = await client.connection()
            stream = connection.open_stream(OBSERVE)
            stream.send(request)
            while True:
                kv = election_pb2.LeaderResponse.FromString(await stream.receive()).kv
                if (kv.key, kv.mod_revision) != last:
                    last = (kv.key, kv.mod_revision)
                    yield kv
        except (ConnectionLost, NotLeader, NoLeader, TimedOut) as exc:
            if connection is not None and isinstance(exc, ConnectionLost):
                client._drop(connection)
            await asyncio.sleep(RETRY_PAUSE_S)
        finally:
            if stream is not None:
                stream.close()


class AsyncElection:
    """One election seen by one candidate: ``election = client.election("name")``, then
    ``await election.campaign("my address")`` ... ``await election.resign()``."""

    def __init__(self, client: AsyncClient, name: Bytesish) -> None:
        self.name = to_bytes(name)
        if not self.name:
            raise ValueError("an election needs a name")
        self._client = client
        # Proof of our leadership (None while we do not lead).
        self.leader_key: election_pb2.LeaderKey | None = None
        # The lease campaign granted itself (None when the caller gave one).
        self.lease: AsyncLease | None = None

    @property
    def is_leader(self) -> bool:
        """True from a won campaign to resign, unless our own lease was lost meanwhile."""
        return self.leader_key is not None and not (self.lease is not None and self.lease.expired)

    async def campaign(
        self,
        value: Bytesish,
        *,
        lease_id: int = 0,
        ttl: int = DEFAULT_TTL_S,
        timeout: float | None = None,
    ) -> election_pb2.LeaderKey:
        """Wait until we lead, then publish ``value``. Without ``lease_id`` the candidacy
        gets its own lease of ``ttl`` seconds, kept alive until ``resign``."""
        if self.leader_key is not None:
            raise RuntimeError(f"already leader of election {self.name!r}")
        own = None
        if not lease_id:
            own = await AsyncLease(self._client, check_ttl(ttl)).grant()
            lease_id = own.id
        try:
            leader = await self._client.campaign(self.name, lease_id, value, timeout)
        except BaseException:
            if own is not None:  # our candidate key goes with the lease
                await asyncio.shield(own.revoke())
            raise
        self.leader_key, self.lease = leader, own
        return leader

    async def proclaim(self, value: Bytesish) -> None:
        """Publish a new value as the leader (ElectionNotLeader once leadership is lost)."""
        if self.leader_key is None:
            raise ElectionNotLeader()
        await self._client.proclaim(self.leader_key, value)

    async def leader(self) -> kv_pb2.KeyValue | None:
        """The current leader's key and value, or None when nobody leads."""
        try:
            return await self._client.leader(self.name)
        except ElectionNoLeader:
            return None

    def observe(self) -> AsyncIterator[kv_pb2.KeyValue]:
        """Async iterator over the leader's key-value: now, then on every change."""
        return observe_leader(self._client, self.name)

    async def resign(self) -> None:
        """Stop leading (or campaigning); the next candidate in line takes over."""
        leader, lease = self.leader_key, self.lease
        self.leader_key = self.lease = None
        if lease is not None:
            await lease.revoke()  # deletes our key with the lease
        elif leader is not None:
            await self._client.resign(leader)

    async def __aenter__(self) -> AsyncElection:
        return self

    async def __aexit__(self, *exc_info) -> None:
        with contextlib.suppress(ApiError, ConnectionLost):
            await self.resign()


class Election:
    """The blocking client's election: ``election = client.election("name")``."""

    def __init__(self, client: Client, election: AsyncElection) -> None:
        self._client = client
        self._election = election

    @property
    def name(self) -> bytes:
        return self._election.name

    @property
    def leader_key(self) -> election_pb2.LeaderKey | None:
        return self._election.leader_key

    @property
    def is_leader(self) -> bool:
        return self._election.is_leader

    @property
    def lease(self) -> AsyncLease | None:
        return self._election.lease

    def campaign(
        self,
        value: Bytesish,
        *,
        lease_id: int = 0,
        ttl: int = DEFAULT_TTL_S,
        timeout: float | None = None,
    ) -> election_pb2.LeaderKey:
        """Block until we lead, then publish ``value`` (see AsyncElection.campaign)."""
        return self._client._run(
            self._election.campaign(value, lease_id=lease_id, ttl=ttl, timeout=timeout)
        )

    def proclaim(self, value: Bytesish) -> None:
        self._client._run(self._election.proclaim(value))

    def leader(self) -> kv_pb2.KeyValue | None:
        """The current leader's key and value, or None when nobody leads."""
        return self._client._run(self._election.leader())

    def observe(self) -> BlockingIterator[kv_pb2.KeyValue]:
        """Blocking iterator over the leader's key-value: now, then on every change."""
        return self._client._iterate(self._election.observe())

    def resign(self) -> None:
        self._client._run(self._election.resign())

    def __enter__(self) -> Election:
        return self

    def __exit__(self, *exc_info) -> None:
        with contextlib.suppress(ApiError, ConnectionLost):
            self.resign()
