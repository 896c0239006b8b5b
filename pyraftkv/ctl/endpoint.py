"""endpoint status / health / hashkv: ask each endpoint in --endpoints (or --cluster).

Endpoints are asked concurrently, each through its own single-endpoint client (no
fail-over: the point is to learn about that member), and reported in --endpoints order.
"""

from __future__ import annotations

import asyncio
import time

from ..client.aio import normalize_endpoint
from ..errors import PyraftkvError
from ..proto import rpc_pb2 as rpc
from .command import NO_PROTOBUF, command, group
from .errors import EXIT_ERROR, CtlError
from .flags import Flag
from .gotext import go_duration
from .invocation import Invocation
from .printers import EndpointHealth

group("endpoint", "Endpoint related commands")

CLUSTER_FLAG = Flag("cluster", "bool", False, "use all endpoints from the cluster member list")


async def target_endpoints(inv: Invocation) -> list[str]:
    """--endpoints, or with --cluster every member's client URLs from member list."""
    if not inv.opts.cluster:
        return list(inv.settings.endpoints)
    members = await (await inv.client()).call("MemberList", rpc.MemberListRequest())
    return [url for member in members.members for url in member.clientURLs]


# What can go wrong asking one endpoint; it is reported and the others still answer.
_FAILURES = (PyraftkvError, OSError, ValueError, asyncio.TimeoutError)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "context deadline exceeded"
    return str(exc) or type(exc).__name__


async def ask_each(
    inv: Invocation, method: str, request, what: str
) -> tuple[list, BaseException | None]:
    """Call ``method`` on every target endpoint at once.

    Returns [(endpoint, response)] of those that answered, and the last failure (None if
    none failed); each failure is reported on stderr as "Failed to get the <what> of
    endpoint ...".
    """
    endpoints = await target_endpoints(inv)

    async def ask(endpoint: str):
        try:
            return await inv.new_client([normalize_endpoint(endpoint)]).call(method, request)
        except _FAILURES as exc:
            return exc

    answers, failed = [], None
    results = await asyncio.gather(*(ask(e) for e in endpoints))
    for endpoint, result in zip(endpoints, results, strict=True):
        if isinstance(result, BaseException):
            failed = result
            inv.write(
                f"Failed to get the {what} of endpoint {endpoint} ({_error_text(result)})", err=True
            )
        else:
            answers.append((endpoint, result))
    return answers, failed


@command(
    "endpoint",
    "status",
    summary="Prints out the status of endpoints specified in `--endpoints` flag",
    flags=(CLUSTER_FLAG,),
    formats=NO_PROTOBUF,
    description="""Prints out the status of endpoints specified in `--endpoints` flag.
The simple output is: endpoint, ID, version, db size, is leader, is learner, raft term,
raft index, raft applied index, errors.""",
)
async def endpoint_status(inv: Invocation) -> int | None:
    """Print each endpoint's status; exit 1 if any did not answer."""
    statuses, failed = await ask_each(inv, "Status", rpc.StatusRequest(), "status")
    for _endpoint, status in statuses:
        status.ClearField("write_stages")  # pyraftkv's stage trace: not in etcdctl's output
    inv.printer.endpoint_status(statuses)
    return EXIT_ERROR if failed else None


@command(
    "endpoint",
    "health",
    summary="Checks the healthiness of endpoints specified in `--endpoints` flag",
    flags=(CLUSTER_FLAG,),
    formats=NO_PROTOBUF,
    description="""Checks the healthiness of endpoints specified in `--endpoints` flag.
An endpoint is healthy when it serves a linearizable read (which needs a working leader
and quorum) within --command-timeout.""",
)
async def endpoint_health(inv: Invocation) -> None:
    """Check each endpoint with a linearizable read; exit 1 if any fails."""
    endpoints = await target_endpoints(inv)

    async def check(endpoint: str) -> EndpointHealth:
        started = time.perf_counter_ns()
        try:
            client = inv.new_client([normalize_endpoint(endpoint)])
            await client.call("Range", rpc.RangeRequest(key=b"health"))
        except _FAILURES as exc:
            took = go_duration(time.perf_counter_ns() - started)
            return EndpointHealth(endpoint, False, took, _error_text(exc))
        return EndpointHealth(endpoint, True, go_duration(time.perf_counter_ns() - started))

    results = await asyncio.gather(*(check(e) for e in endpoints))
    inv.printer.endpoint_health(results)
    if not all(r.healthy for r in results):
        raise CtlError("unhealthy cluster", EXIT_ERROR)


@command(
    "endpoint",
    "hashkv",
    summary="Prints the KV history hash for each endpoint in --endpoints",
    flags=(
        CLUSTER_FLAG,
        Flag("rev", "int", 0, "maximum revision to hash (default: all revisions)"),
    ),
    formats=NO_PROTOBUF,
)
async def endpoint_hashkv(inv: Invocation) -> int | None:
    """Print each endpoint's KV history hash."""
    request = rpc.HashKVRequest(revision=inv.opts.rev)
    hashes, failed = await ask_each(inv, "HashKV", request, "hash")
    inv.printer.endpoint_hashkv(hashes)
    if failed is not None:  # etcdctl names the last failure again, as its error
        raise CtlError(_error_text(failed), EXIT_ERROR)
    return None
