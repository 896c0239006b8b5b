"""lease grant / revoke / timetolive / list / keep-alive, with etcdctl's messages and exit
codes (a failed timetolive, list or keep-alive exits 2, as etcdctl's do)."""

from __future__ import annotations

from ..client.aio import AsyncClient, KeepAlive
from ..client.connection import ConnectionLost
from ..errors import ApiError, LeaseNotFound
from ..proto import rpc_pb2 as rpc
from .command import ALL_FORMATS, RESPONSE_FORMATS, command, group
from .errors import EXIT_BAD_ARGS, EXIT_BAD_CONNECTION, EXIT_ERROR, CtlError
from .flags import Flag, go_parse_int
from .invocation import Invocation
from .kv import parse_lease_id
from .session import renewals

group("lease", "Lease related commands")


def parse_ttl(text: str) -> int:
    """A TTL in whole seconds (decimal)."""
    try:
        return go_parse_int(text)
    except ValueError as exc:
        raise CtlError(f"bad TTL ({exc})", EXIT_BAD_ARGS) from None


def lease_from_args(text: str) -> int:
    """A lease ID argument, in hex as etcdctl prints them."""
    try:
        return parse_lease_id(text)
    except ValueError as exc:
        raise CtlError(f"bad lease ID arg ({exc}), expecting ID in Hex", EXIT_BAD_ARGS) from None


def _one_lease(inv: Invocation, missing: str) -> int:
    if len(inv.args) != 1:
        raise CtlError(missing, EXIT_BAD_ARGS)
    return lease_from_args(inv.args[0])


@command("lease", "grant", summary="Creates leases", usage="<ttl>", formats=RESPONSE_FORMATS)
async def lease_grant(inv: Invocation) -> None:
    """Grant a lease of <ttl> seconds (the cluster may raise it to its minimum TTL)."""
    if len(inv.args) != 1:
        raise CtlError("lease grant command needs TTL argument", EXIT_BAD_ARGS)
    ttl = parse_ttl(inv.args[0])
    try:
        resp = await (await inv.client()).call("LeaseGrant", rpc.LeaseGrantRequest(TTL=ttl))
    except (ApiError, ConnectionLost) as exc:
        raise CtlError(f"failed to grant lease ({_reason(exc)})", EXIT_ERROR) from None
    inv.printer.lease_grant(resp)


@command("lease", "revoke", summary="Revokes leases", usage="<leaseID>", formats=RESPONSE_FORMATS)
async def lease_revoke(inv: Invocation) -> None:
    """Revoke a lease; every key attached to it is deleted."""
    lease_id = _one_lease(inv, "lease revoke command needs 1 argument")
    try:
        resp = await (await inv.client()).call("LeaseRevoke", rpc.LeaseRevokeRequest(ID=lease_id))
    except (ApiError, ConnectionLost) as exc:
        raise CtlError(f"failed to revoke lease ({_reason(exc)})", EXIT_ERROR) from None
    inv.printer.lease_revoke(lease_id, resp)


def _reason(exc: ApiError | ConnectionLost) -> str:
    return exc.message if isinstance(exc, ApiError) else str(exc)


async def _call_or_exit_2(inv: Invocation, method: str, request):
    """A call whose failure etcdctl reports as a bad connection (exit 2)."""
    try:
        return await (await inv.client()).call(method, request)
    except (ApiError, ConnectionLost) as exc:
        raise CtlError(_reason(exc), EXIT_BAD_CONNECTION) from None


@command(
    "lease",
    "timetolive",
    summary="Get lease information",
    usage="<leaseID> [options]",
    flags=(Flag("keys", "bool", False, "Get keys attached to this lease"),),
    formats=RESPONSE_FORMATS,
)
async def lease_timetolive(inv: Invocation) -> None:
    """Granted and remaining TTL of a lease (and its keys with --keys)."""
    lease_id = _one_lease(inv, "lease timetolive command needs lease ID as argument")
    request = rpc.LeaseTimeToLiveRequest(ID=lease_id, keys=inv.opts.keys)
    resp = await _call_or_exit_2(inv, "LeaseTimeToLive", request)
    inv.printer.lease_time_to_live(resp, keys=inv.opts.keys)


@command("lease", "list", summary="List all active leases", formats=RESPONSE_FORMATS)
async def lease_list(inv: Invocation) -> None:
    """Every lease that exists (etcdctl ignores arguments here, and so do we)."""
    inv.printer.lease_leases(await _call_or_exit_2(inv, "LeaseLeases", rpc.LeaseLeasesRequest()))


@command(
    "lease",
    "keep-alive",
    summary="Keeps leases alive (renew)",
    usage="[options] <leaseID>",
    flags=(
        Flag(
            "once",
            "bool",
            False,
            "Resets the keep-alive time to its original value and exits immediately",
        ),
    ),
    formats=ALL_FORMATS,  # like etcdctl, only a renewal to print finds the format wanting
)
async def lease_keep_alive(inv: Invocation) -> None:
    """Renew a lease a third of its TTL after each renewal until interrupted or it is gone."""
    lease_id = _one_lease(inv, "lease keep-alive command needs lease ID as argument")
    client = inv.new_client()  # connected by the first keep-alive, which may retry
    if inv.opts.once:
        inv.printer.lease_keep_alive(await _keep_alive_once(client, lease_id))
        return
    # Before the first renewal, etcd's client waits the dial timeout and a second.
    async for resp in renewals(client, lease_id, inv.settings.dial_timeout + 1):
        inv.printer.lease_keep_alive(resp)
        inv.stdout.flush()
    inv.printer.lease_keep_alive_ended(lease_id)


async def _keep_alive_once(client: AsyncClient, lease_id: int) -> rpc.LeaseKeepAliveResponse:
    keeper = KeepAlive(client, lease_id)
    try:
        resp = await keeper.once()
    except (ApiError, ConnectionLost) as exc:
        raise CtlError(_reason(exc), EXIT_BAD_CONNECTION) from None
    finally:
        keeper.close()
    if resp.TTL <= 0:
        raise CtlError(LeaseNotFound.default_message, EXIT_BAD_CONNECTION)  # as etcd's client
    return resp
