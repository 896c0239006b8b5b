"""lock: acquire a named distributed lock, then hold it until interrupted or run a command
while holding it (etcdctl's lock, on the member's lock service).

The lock is held with a lease of the command's own (``--ttl`` seconds, kept alive): if
pyraftkvctl dies, the lock frees itself when the lease expires. With a command, the command
gets ETCD_LOCK_KEY (the key that holds the lock) and ETCD_LOCK_REV (the revision it was
acquired at) in its environment, the names etcdctl uses.
"""

from __future__ import annotations

import asyncio

from ..proto import rpc_pb2 as rpc
from ..proto import v3lock_pb2 as lock_pb2
from .child import ChildFailed, environment, run_child
from .command import ALL_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, CtlError
from .flags import Flag
from .invocation import Invocation, arg_bytes
from .session import FOREVER_S, Session, first_of, stop_signals, unless_stopped


@command(
    "lock",
    summary="Acquires a named lock",
    usage="<lockname> [exec-command arg1 arg2 ...]",
    flags=(Flag("ttl", "int", 10, "timeout for session"),),
    formats=ALL_FORMATS,  # a command's run prints nothing of ours, so any format will do
    description="""Acquires a named lock, in the order asked (first come, first served).

Without a command, prints the key that holds the lock and keeps it until interrupted
(Ctrl-C or SIGTERM), then releases it. With a command, runs it while holding the lock,
with ETCD_LOCK_KEY and ETCD_LOCK_REV in its environment, and releases the lock when it
ends. Options after the lock name are read as pyraftkvctl's: put the command after '--'
when it has some ($ lock mylock -- sh -c 'echo $ETCD_LOCK_KEY').""",
)
async def lock(inv: Invocation) -> None:
    """Hold the lock until stopped, or for the run of a command."""
    if not inv.args:
        raise CtlError(
            "lock takes a lock name argument and an optional command to execute", EXIT_BAD_ARGS
        )
    name, argv = arg_bytes(inv.args[0]), inv.args[1:]
    client = await inv.client()
    with stop_signals() as stop:
        session = await Session.open(client, inv.opts.ttl)
        try:
            request = lock_pb2.LockRequest(name=name, lease=session.lease_id)
            locked = await unless_stopped(client.call("Lock", request, FOREVER_S), stop)
            if argv:
                await _run_locked(inv, argv, locked)
            else:
                await _hold(inv, session, stop, locked.key)
        finally:
            await session.close()


async def _run_locked(inv: Invocation, argv: list[str], locked: lock_pb2.LockResponse) -> None:
    """Run the command holding the lock, then release it; the command's failure (or else the
    release's) is the command's error. A stop meanwhile waits for the command, as etcdctl's
    does."""
    env = {
        "ETCD_LOCK_KEY": locked.key.decode("utf-8", "surrogateescape"),
        "ETCD_LOCK_REV": str(locked.header.revision),
    }
    inv.stdout.flush()
    try:
        await run_child(inv, argv, environment(env, override=False))
    except ChildFailed as exc:
        failure: str | None = exc.reason
    else:
        failure = None
    client = await inv.client()
    try:
        await client.call("Unlock", lock_pb2.UnlockRequest(key=locked.key))
    finally:
        if failure is not None:  # reported before a failed release, as etcdctl does
            raise CtlError(failure, EXIT_ERROR)


async def _hold(inv: Invocation, session: Session, stop: asyncio.Event, key: bytes) -> None:
    """Print the lock's key (as etcdctl does, as a get of it), then hold the lock until
    stopped (release it, exit 0) or the session's lease is lost (exit 1)."""
    client = await inv.client()
    held = await client.call("Range", rpc.RangeRequest(key=key))
    if not held.kvs:
        raise CtlError("lock lost on init", EXIT_ERROR)
    inv.printer.get(held)
    inv.stdout.flush()
    if await first_of(stop, session.expired) is session.expired:
        raise CtlError("session expired", EXIT_ERROR)
    await client.call("Unlock", lock_pb2.UnlockRequest(key=key))
