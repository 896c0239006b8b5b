"""alarm list / alarm disarm / defrag: etcdctl's maintenance commands."""

from __future__ import annotations

import asyncio

from ..admin.defrag import defragment as offline_defragment
from ..client.aio import normalize_endpoint
from ..errors import ConfigError
from ..proto import rpc_pb2 as rpc
from .command import NO_FIELDS, RESPONSE_FORMATS, command, group
from .endpoint import _FAILURES, CLUSTER_FLAG, _error_text, target_endpoints
from .errors import EXIT_ERROR
from .flags import Flag
from .invocation import Invocation

group("alarm", "Alarm related commands")


def _print_alarms(inv: Invocation, response: rpc.AlarmResponse) -> None:
    """etcdctl's output: one "memberID:<id> alarm:<TYPE> " line per alarm (simple), or the
    response (json; etcd's has no header)."""
    if inv.printer.name == "json":
        inv.printer._json(response)
        return
    if inv.printer.name == "protobuf":
        inv.stdout.write(response.SerializeToString())
        return
    for alarm in response.alarms:
        inv.write(f"memberID:{alarm.memberID} alarm:{rpc.AlarmType.Name(alarm.alarm)} ")


@command("alarm", "list", summary="Lists all alarms", formats=NO_FIELDS)
async def alarm_list(inv: Invocation) -> None:
    """Print every alarm raised in the cluster."""
    _print_alarms(inv, await (await inv.client()).alarm_list())


@command("alarm", "disarm", summary="Disarms all alarms", formats=NO_FIELDS)
async def alarm_disarm(inv: Invocation) -> None:
    """Clear every alarm (as etcd's client does: list them, then deactivate each)."""
    disarmed = await (await inv.client()).alarm_disarm()
    _print_alarms(inv, disarmed)


@command(
    "defrag",
    summary="Defragments the storage of the etcd members with given endpoints",
    formats=RESPONSE_FORMATS,  # its lines, whatever the format, as etcdctl's
    flags=(
        CLUSTER_FLAG,
        Flag(
            "data-dir",
            "str",
            "",
            "the data dir of a stopped member whose store to defragment (offline)",
        ),
    ),
    description="""Rewrites each member's backend file as a compacted copy (the member serves
nothing else meanwhile), one endpoint after another. With --data-dir, rewrites the store
of a stopped member in place instead (refused while the member runs; nothing is printed
on success, as etcdctl prints nothing).""",
)
async def defrag(inv: Invocation) -> int | None:
    """Defragment each endpoint in turn (or one stopped member's data dir); exit 1 if any
    failed."""
    if inv.opts.data_dir:
        try:
            await asyncio.get_running_loop().run_in_executor(
                None, offline_defragment, inv.opts.data_dir
            )
        except ConfigError as exc:
            inv.write(f"Failed to defragment etcd data[{inv.opts.data_dir}] ({exc})", err=True)
            return EXIT_ERROR
        return None
    failed = False
    for endpoint in await target_endpoints(inv):
        try:
            client = inv.new_client([normalize_endpoint(endpoint)])
            await client.call("Defragment", rpc.DefragmentRequest())
        except _FAILURES as exc:
            failed = True
            reason = _error_text(exc)
            inv.write(f"Failed to defragment etcd member[{endpoint}] ({reason})", err=True)
            continue
        inv.write(f"Finished defragmenting etcd member[{endpoint}]")
    return EXIT_ERROR if failed else None
