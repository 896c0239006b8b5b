"""Corruption checks, as etcd's: members compare HashKV of their stores at one revision.

- Initial (``--experimental-initial-corrupt-check``): before it serves, a restarting member
  asks each peer for HashKV at its own revision; a different hash with the same compaction
  revision means its data (or theirs) is damaged, and it refuses to start.
- Periodic (``--experimental-corrupt-check-time``): the leader asks every peer for HashKV at
  its current revision and compares the hashes of the members compacted alike, its own
  included. The members whose hash differs from the majority's get the CORRUPT alarm, named
  by their ids, through the log (writes are then refused cluster-wide until it is
  disarmed): a damaged leader outvoted by followers that agree names itself. Without a
  majority, the leader's hash is taken as the reference (etcd's rule).

Peers are asked over the peer channel (peer_transport.CHANNEL_HASHKV: the peer URLs with
the member's peer TLS, as etcd asks over its peer port), so client TLS, client certificates
and auth do not stand in the way; a peer that cannot answer (down, behind that revision,
compacted past it) is skipped with a warning."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from ssl import SSLContext
from typing import Any

from google.protobuf.message import DecodeError

from .. import errors
from ..admin.cluster import Url
from ..proto import rpc_pb2 as rpc
from ..protocol.methods import BY_NAME
from .alarms import CORRUPT
from .peer_transport import HASH_FAILED, HASH_OK, PeerProtocolError, ask_hash_kv

log = logging.getLogger("pyraftkv.corrupt")

ASK_TIMEOUT_S = 5.0


def answer_peer(app: Any, body: bytes) -> bytes:
    """This member's answer to a peer's HashKV request (peer_transport's answer frame)."""
    try:
        request = rpc.HashKVRequest.FromString(body)
        value, compact_revision = app.store.hash_kv(request.revision)
    except errors.ApiError as exc:
        return HASH_FAILED + exc.message.encode()
    except DecodeError:
        return HASH_FAILED + b"malformed HashKV request"
    response = rpc.HashKVResponse(
        header=app.header(), hash=value, compact_revision=compact_revision
    )
    return HASH_OK + response.SerializeToString()


async def _ask(
    app: Any, ssl: SSLContext, member_id: int, urls: list[str], request: bytes
) -> rpc.HashKVResponse | BaseException:
    """One peer's HashKV (trying its peer URLs in turn), or why it gave none."""
    failure: BaseException = errors.ApiError("no peer URL to ask")
    for text in urls:
        try:
            url = Url.parse(text, "peerURLs")
            answer = await ask_hash_kv(
                (url.host, url.port, text.startswith("https://")),
                ssl,
                app.cluster_id,
                app.member_id,
                member_id,
                request,
                ASK_TIMEOUT_S,
            )
        except (errors.ConfigError, OSError, PeerProtocolError, asyncio.TimeoutError) as exc:
            failure = exc
            continue
        if answer[:1] == HASH_OK:
            try:
                return rpc.HashKVResponse.FromString(answer[1:])
            except DecodeError:
                return errors.ApiError("malformed HashKV answer")
        return errors.ApiError(answer[1:].decode(errors="replace"))
    return failure


async def peer_hashes(app: Any, revision: int, ssl: SSLContext) -> dict[int, rpc.HashKVResponse]:
    """HashKV at ``revision`` from every other member that answers, by member id."""
    peers = [
        (member.ID, list(member.peerURLs))
        for member in app.members.to_rpc()
        if app.member_id != member.ID
    ]
    request = rpc.HashKVRequest(revision=revision).SerializeToString()
    answers = await asyncio.gather(*(_ask(app, ssl, m, urls, request) for m, urls in peers))
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


def outvoted(app: Any, revision: int, hashes: dict[int, rpc.HashKVResponse]) -> list[int]:
    """The members (this one included) whose hash at ``revision`` differs from the one a
    majority of the comparable members hold; this member's hash when none has a majority."""
    mine, compact_revision = app.store.hash_kv(revision)
    held = {m: a.hash for m, a in hashes.items() if a.compact_revision == compact_revision}
    held[app.member_id] = mine
    reference, count = Counter(held.values()).most_common(1)[0]
    if 2 * count <= len(held):
        reference = mine
    return sorted(m for m, value in held.items() if value != reference)


async def initial_check(app: Any, ssl: SSLContext) -> None:
    """Refuse to start (ConfigError) when a peer's hash differs from this member's."""
    revision = app.store.revision
    log.info("initial corruption check: comparing HashKV at revision %d with peers", revision)
    bad = mismatched(app, revision, await peer_hashes(app, revision, ssl))
    if bad:
        raise errors.ConfigError(
            f"found data inconsistency with peers: HashKV at revision {revision} differs from "
            f"member(s) {', '.join(f'{m:x}' for m in bad)}; this member's data may be damaged "
            "(restore it from a peer or a backup)"
        )
    log.info("initial corruption check passed at revision %d", revision)


async def periodic_check(app: Any, ssl: SSLContext) -> None:
    """On the leader: raise CORRUPT for each member whose hash differs from the majority's."""
    if app.leader_id != app.member_id:
        return
    revision = app.store.revision
    hashes = await peer_hashes(app, revision, ssl)
    try:
        damaged = outvoted(app, revision, hashes)
    except errors.ApiError as exc:  # compacted past it meanwhile: the next check will do
        log.warning("corruption check at revision %d skipped: %s", revision, exc.message)
        return
    for member_id in damaged:
        if app.alarms.has_for(member_id, CORRUPT):
            continue
        log.error(
            "corruption check: member %x's HashKV at revision %d differs from the one most "
            "members hold (%d compared); raising the CORRUPT alarm",
            member_id,
            revision,
            len(hashes) + 1,
        )
        request = rpc.AlarmRequest(
            action=rpc.AlarmRequest.ACTIVATE, memberID=member_id, alarm=CORRUPT
        )
        app.propose(None, BY_NAME["Alarm"].number, request.SerializeToString())
