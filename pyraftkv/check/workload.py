"""The linearizability workload: concurrent clients doing read, write and compare-and-set
on a few keys with unique values, each operation recorded with its call and return times.

Reads that fail are left out (they say nothing). A write or compare-and-set that fails in
any way is recorded with an unknown outcome: the client cannot tell whether it was applied
(a timeout, a lost connection), and the checker lets it take effect at any time after its
call or never. A client never retries a write on its own, so nothing is applied twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import grpc

from ..client.aio import AsyncClient
from ..client.connection import ConnectionLost
from ..client.requests import Compare
from ..client.requests import Op as TxnOp
from ..errors import ApiError
from .linearizability import CAS, READ, WRITE, Op

# What a call may raise when the cluster is in trouble (natively or over gRPC).
FAILURES = (ApiError, ConnectionLost, OSError, asyncio.TimeoutError, grpc.RpcError)

# Share of each kind (the rest are compare-and-sets).
READ_SHARE = 0.5
WRITE_SHARE = 0.25


@dataclass
class Workload:
    """What to run: how long, how many clients and keys, which reads."""

    duration_s: float = 30.0
    clients: int = 10
    keys: int = 5
    serializable: bool = False
    prefix: bytes = b"/pyraftkv-check-linearizability/"
    op_timeout_s: float = 2.0
    seed: int = field(default_factory=time.time_ns)

    def key(self, i: int) -> bytes:
        """Key ``i`` of this run: under the prefix and the run's seed, so it starts absent
        without a delete first (a delete that timed out could still apply mid-run)."""
        return self.prefix + b"%d/%d" % (self.seed, i)


# A client with AsyncClient's get, put, txn, delete and close: AsyncClient or GrpcKV.
KVClient = Any
ClientFactory = Callable[[Sequence[str]], KVClient]


async def _client_loop(
    number: int, client: KVClient, work: Workload, deadline: float, history: list[Op]
) -> None:
    rng = random.Random(work.seed * 1000 + number)
    seen: dict[bytes, bytes | None] = {}  # last value this client saw, the cas's expectation
    sequence = 0
    while time.monotonic() < deadline:
        key = work.key(rng.randrange(work.keys))
        roll = rng.random()
        sequence += 1
        value = b"%d-%d" % (number, sequence)
        call = time.monotonic_ns()
        if roll < READ_SHARE:
            try:
                reply = await client.get(key, serializable=work.serializable)
            except FAILURES:
                await asyncio.sleep(0.05)
                continue
            found = reply.kvs[0].value if reply.kvs else None
            history.append(Op(number, key, READ, call, time.monotonic_ns(), value=found))
            seen[key] = found
        elif roll < READ_SHARE + WRITE_SHARE:
            try:
                await client.put(key, value)
            except FAILURES:
                history.append(Op(number, key, WRITE, call, None, value=value))
                await asyncio.sleep(0.05)
                continue
            history.append(Op(number, key, WRITE, call, time.monotonic_ns(), value=value))
            seen[key] = value
        else:
            expected = seen.get(key)
            compare = (
                Compare.version(key) == 0 if expected is None else Compare.value(key) == expected
            )
            try:
                reply = await client.txn(
                    compare=[compare], success=[TxnOp.put(key, value)], failure=[TxnOp.get(key)]
                )
            except FAILURES:
                history.append(Op(number, key, CAS, call, None, value=value, expected=expected))
                await asyncio.sleep(0.05)
                continue
            ret = time.monotonic_ns()
            history.append(
                Op(number, key, CAS, call, ret, value=value, expected=expected, ok=reply.succeeded)
            )
            if reply.succeeded:
                seen[key] = value
            else:  # the failure branch read the value the cas did not expect
                kvs = reply.responses[0].response_range.kvs
                seen[key] = kvs[0].value if kvs else None


async def run(
    endpoints: Sequence[str], work: Workload, make_client: ClientFactory | None = None
) -> list[Op]:
    """Run the workload against ``endpoints`` and return its history. Each client has its
    own connection, the clients spread over the endpoints (so serializable reads hit every
    member); the run's keys are deleted at the end (if the cluster lets)."""
    endpoints = list(endpoints)
    if make_client is None:

        def make_client(eps: Sequence[str]) -> KVClient:
            return AsyncClient(list(eps), timeout=work.op_timeout_s)

    clients = [
        make_client(endpoints[i % len(endpoints) :] + endpoints[: i % len(endpoints)])
        for i in range(work.clients)
    ]
    try:
        history: list[Op] = []
        deadline = time.monotonic() + work.duration_s
        await asyncio.gather(
            *(_client_loop(i, c, work, deadline, history) for i, c in enumerate(clients))
        )
        with contextlib.suppress(*FAILURES):
            await clients[0].delete(work.key(0)[:-1], prefix=True)
        return history
    finally:
        for client in clients:
            await client.close()
