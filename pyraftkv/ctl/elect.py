"""elect: campaign in a leader election and lead until interrupted, or (-l) print every
leader the election has (etcdctl's elect, on the member's election service).

A candidate campaigns with a lease of its own (60 s, etcd's session default, kept alive):
if its process dies, its candidacy ends when the lease expires and the next candidate, in
campaign order, leads.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from ..client.aio import AsyncClient
from ..client.connection import ConnectionLost
from ..errors import ApiError
from ..proto import rpc_pb2 as rpc
from ..proto import v3election_pb2 as election_pb2
from ..protocol.methods import BY_NAME
from .command import ALL_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlError
from .flags import Flag
from .invocation import Invocation, arg_bytes
from .session import (
    DEFAULT_SESSION_TTL_S,
    FOREVER_S,
    Session,
    first_of,
    stop_signals,
    unless_stopped,
)

RECONNECT_PAUSE_S = 0.1


@command(
    "elect",
    summary="Observes and participates in leader election",
    usage="<election-name> [proposal]",
    flags=(Flag("listen", "bool", False, "observation mode", short="l"),),
    formats=ALL_FORMATS,  # as etcdctl, only a leader to print finds the format wanting
    description="""Observes and participates in leader election.

With a proposal: campaigns with it, prints the leader key (and the proposal) once elected,
and leads until interrupted (Ctrl-C or SIGTERM), then resigns. With -l: prints the
leader's key and value now and on every change, until interrupted.""",
)
async def elect(inv: Invocation) -> None:
    """Campaign and lead until stopped, or listen to the election's leaders."""
    if len(inv.args) not in (1, 2):
        raise CtlError(
            "elect takes one election name argument and an optional proposal argument",
            EXIT_BAD_ARGS,
        )
    if len(inv.args) == 1 and not inv.opts.listen:
        raise CtlError("no proposal argument but -l not set", EXIT_BAD_ARGS)
    if len(inv.args) == 2 and inv.opts.listen:
        raise CtlError("proposal given but -l is set", EXIT_BAD_ARGS)
    name = arg_bytes(inv.args[0])
    client = await inv.client()
    with stop_signals() as stop:
        if inv.opts.listen:
            await _listen(inv, client, name, stop)
        else:
            await _campaign(inv, client, name, arg_bytes(inv.args[1]), stop)


async def _campaign(
    inv: Invocation, client: AsyncClient, name: bytes, proposal: bytes, stop: asyncio.Event
) -> None:
    session = await Session.open(client, DEFAULT_SESSION_TTL_S)
    try:
        request = election_pb2.CampaignRequest(name=name, lease=session.lease_id, value=proposal)
        won = await unless_stopped(client.call("Campaign", request, FOREVER_S), stop)
        leader = won.leader
        # etcdctl shows its leadership as a get of its key.
        inv.printer.get(await client.call("Range", rpc.RangeRequest(key=leader.key)))
        inv.stdout.flush()
        if await first_of(stop, session.expired) is session.expired:
            raise CtlError("elect: session expired", EXIT_ERROR)
        await client.call("Resign", election_pb2.ResignRequest(leader=leader))
    finally:
        await session.close()


async def _listen(inv: Invocation, client: AsyncClient, name: bytes, stop: asyncio.Event) -> None:
    """Print each leader (as etcdctl does: a get answer holding just the leader's key-value)
    until stopped."""

    async def follow() -> None:
        async for resp in leaders(client, name):
            inv.printer.get(rpc.RangeResponse(header=resp.header, kvs=[resp.kv]))
            inv.stdout.flush()

    follower = asyncio.ensure_future(follow())
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait((follower, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (follower, stopper):
            task.cancel()
    if follower.done() and not follower.cancelled():
        follower.result()  # raises what ended it (e.g. a format that cannot show a leader)


async def leaders(client: AsyncClient, name: bytes) -> AsyncIterator[election_pb2.LeaderResponse]:
    """The election's leader now (once there is one), then on every change of leader or
    value; a lost connection reopens the stream on another member, and what both streams
    saw is reported once."""
    request = election_pb2.LeaderRequest(name=name).SerializeToString()
    last: tuple[bytes, int] | None = None
    while True:
        stream = None
        try:
            stream = (await client.connection()).open_stream(BY_NAME["Observe"].number)
            stream.send(request)
            while True:
                resp = election_pb2.LeaderResponse.FromString(await stream.receive())
                if (resp.kv.key, resp.kv.mod_revision) != last:
                    last = (resp.kv.key, resp.kv.mod_revision)
                    yield resp
        except (ConnectionLost, ApiError):
            await asyncio.sleep(RECONNECT_PAUSE_S)
        finally:
            if stream is not None:
                stream.close()
