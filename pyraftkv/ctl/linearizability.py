"""check linearizability: run concurrent read/write/compare-and-set clients against the
cluster for a while, then check the recorded history with pyraftkv's linearizability
checker. Prints "linearizable: N ops ..." (exit 0) or the smallest failing window (exit 1).
No etcd tool has it; with --serializable, reads are served from each member's local state,
so a stale member shows up as a counterexample."""

from __future__ import annotations

import time
from collections import Counter

import grpc

from ..check import workload
from ..check.grpc_kv import GrpcKV
from ..check.linearizability import CAS, check
from .command import command
from .errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlError
from .flags import Flag
from .invocation import Invocation


@command(
    "check",
    "linearizability",
    summary="Check that the cluster's reads, writes and compare-and-sets are linearizable",
    usage="[options]",
    flags=(
        Flag("duration", "duration", 30.0, "How long the clients run."),
        Flag("clients", "int", 10, "Concurrent clients, each with its own connection."),
        Flag("keys", "int", 5, "Keys the clients share."),
        Flag("serializable", "bool", False, "Serializable (local, possibly stale) reads."),
        Flag(
            "protocol",
            "str",
            "native",
            "native (pyraftkv's own) or grpc (etcd's v3 gRPC API: any etcd v3 cluster).",
        ),
        Flag(
            "prefix",
            "str",
            "/pyraftkv-check-linearizability/",
            "Where the keys live (under <prefix><run id>/, deleted at the end).",
        ),
    ),
    description="""Clients spread over --endpoints read, write unique values and
compare-and-set on --keys keys for --duration. Writes whose outcome is unknown (timeouts,
lost connections) may have taken effect at any time after they were sent, or never. The
history is checked key by key; on failure the smallest failing window of operations is
printed and the exit code is 1. --protocol grpc speaks etcd's v3 gRPC API, so etcd
clusters can be checked too (pyraftkv serves it on the same client port).""",
)
async def check_linearizability(inv: Invocation) -> int | None:
    """Run the workload, check the history, report."""
    if inv.opts.clients < 1 or inv.opts.keys < 1 or inv.opts.duration <= 0:
        raise CtlError("--clients, --keys and --duration must be positive")
    if inv.opts.protocol not in ("native", "grpc"):
        raise CtlError(f"unknown --protocol {inv.opts.protocol!r} (native or grpc)", EXIT_BAD_ARGS)
    work = workload.Workload(
        duration_s=inv.opts.duration,
        clients=inv.opts.clients,
        keys=inv.opts.keys,
        serializable=inv.opts.serializable,
        prefix=inv.opts.prefix.encode(),
        op_timeout_s=min(inv.settings.command_timeout, 5.0),
    )
    if inv.opts.protocol == "grpc":
        make_client = await _grpc_clients(inv, work)
    else:
        await inv.client()  # a clear error now if no endpoint answers
        make_client = inv.new_client
    started = time.monotonic()
    history = await workload.run(inv.settings.endpoints, work, make_client)
    elapsed = time.monotonic() - started
    checking = time.monotonic()
    report = check(history)
    report.time_unit = (1_000_000, "ms")
    kinds = Counter(op.kind for op in history)
    swapped = sum(1 for op in history if op.kind == CAS and op.ok)
    lines = report.lines()
    lines[0] += (
        f"; {kinds['read']} reads, {kinds['write']} writes, {kinds['cas']} cas "
        f"({swapped} swapped) by {work.clients} clients in {elapsed:.1f}s, "
        f"checked in {time.monotonic() - checking:.1f}s"
    )
    for line in lines:
        inv.write(line)
    return None if report.ok else EXIT_ERROR


async def _grpc_clients(inv: Invocation, work: workload.Workload) -> workload.ClientFactory:
    """A factory of gRPC clients, after one read proved an endpoint answers."""
    settings = inv.settings

    def make_client(endpoints) -> GrpcKV:
        return GrpcKV(
            list(endpoints),
            timeout=work.op_timeout_s,
            tls=settings.tls,
            user=settings.user,
            password=settings.password,
        )

    try:
        probe = make_client(settings.endpoints)
    except (ValueError, OSError) as exc:
        raise CtlError(str(exc), EXIT_BAD_ARGS) from None
    try:
        for _ in settings.endpoints:
            try:
                await probe.get(work.prefix, serializable=True)
                break
            except workload.FAILURES as exc:
                failure = exc.details() if isinstance(exc, grpc.RpcError) else exc
        else:
            raise CtlError(f"no endpoint answers over gRPC: {failure}", EXIT_BAD_CONNECTION)
    finally:
        await probe.close()
    return make_client
