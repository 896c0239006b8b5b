"""Corruption checks, as etcd's: members compare HashKV of their stores at one revision.

- Initial (``--experimental-initial-corrupt-check``): before it serves, a restarting member
  asks each peer for HashKV at its own revision; a different hash with the same compaction
  revision means its data (or theirs) is damaged, and it refuses to start.
- Periodic (``--experimental-corrupt-check-time``): the leader asks every peer for HashKV at
  its current revision; a peer whose hash differs gets the CORRUPT alarm, named by its id,
  through the log (writes are then refused cluster-wide until it is disarmed).

Peers are asked on their client URLs; a peer that cannot answer (down, behind that
revision, compacted past it, auth or client TLS in the way) is skipped with a warning."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from .. import errors
from ..client.aio import AsyncClient
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from .alarms import CORRUPT

log = logging.getLogger("pyraftkv.corrupt")

ASK_TIMEOUT_S = 5.0


async def peer_hashes(app: Any, revision: int) -> dict[int, rpc.HashKVResponse]:
    """HashKV at ``revision`` from every other member that answers, by member id."""
    peers = [
        (member.ID, [u for u in member.clientURLs if u.startswith("http://")])
        for member in app.members.to_rpc()
        if app.member_id != member.ID and member.clientURLs
    ]

    async def ask(urls: list[str]) -> rpc.HashKVResponse | BaseException:
        if not urls:
            return errors.ApiError("no plain-http client URL to ask")
        try:
            async with AsyncClient(urls, timeout=ASK_TIMEOUT_S, tls=False) as client:
                return await client.hash_kv(revision)
        except (errors.PyraftkvError, OSError, asyncio.TimeoutError) as exc:
            return exc

    answers = await asyncio.gather(*(ask(urls) for _, urls in peers))
    hashes = {}
    for (member_id, _), answer in zip(peers, answers, strict=True):
        if isinstance(answer, BaseException):
            log.warning(
                "corruption check: member %x gave no hash at revision %d: %s",
                member_id,
                revision,
                answer or type(answer).__name__,
            )
        else:
            hashes[member_id] = answer
    return hashes


def mismatched(app: Any, revision: int, hashes: dict[int, rpc.HashKVResponse]) -> list[int]:
    """The members whose hash at ``revision`` differs from this member's (only those that
    compacted to the same revision are comparable)."""
    mine, compact_revision = app.store.hash_kv(revision)
    return [
        member_id
        for member_id, answer in hashes.items()
        if answer.compact_revision == compact_revision and answer.hash != mine
    ]


async def initial_check(app: Any) -> None:
    """Refuse to start (ConfigError) when a peer's hash differs from this member's."""
    revision = app.store.revision
    log.info("initial corruption check: comparing HashKV at revision %d with peers", revision)
    bad = mismatched(app, revision, await peer_hashes(app, revision))
    if bad:
        raise errors.ConfigError(
            f"found data inconsistency with peers: HashKV at revision {revision} differs from "
            f"member(s) {', '.join(f'{m:x}' for m in bad)}; this member's data may be damaged "
            "(restore it from a peer or a backup)"
        )
    log.info("initial corruption check passed at revision %d", revision)


async def periodic_check(app: Any) -> None:
    """On the leader: raise CORRUPT for each member whose hash differs from the leader's."""
    if app.leader_id != app.member_id:
        return
    revision = app.store.revision
    for member_id in mismatched(app, revision, await peer_hashes(app, revision)):
        if app.alarms.has_for(member_id, CORRUPT):
            continue
        log.error(
            "corruption check: member %x's HashKV at revision %d differs from the leader's; "
            "raising the CORRUPT alarm",
            member_id,
            revision,
        )
        request = rpc.AlarmRequest(
            action=rpc.AlarmRequest.ACTIVATE, memberID=member_id, alarm=CORRUPT
        )
        app.propose(None, BY_NAME["Alarm"].number, request.SerializeToString())
