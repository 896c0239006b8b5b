"""alarm list / alarm disarm / defrag: etcdctl's maintenance commands."""

from __future__ import annotations

from ..client.aio import normalize_endpoint
from ..proto import rpc_pb2 as rpc
from .command import command, group
from .endpoint import _FAILURES, CLUSTER_FLAG, _error_text, target_endpoints
from .errors import EXIT_ERROR
from .invocation import Invocation

group("alarm", "Alarm related commands")


def _print_alarms(inv: Invocation, response: rpc.AlarmResponse) -> None:
    """etcdctl's output: one "memberID:<id> alarm:<TYPE> " line per alarm (simple), or the
    response (json; etcd's has no header)."""
    if inv.printer.name == "json":
        inv.printer._json(response)
        return
    for alarm in response.alarms:
        inv.write(f"memberID:{alarm.memberID} alarm:{rpc.AlarmType.Name(alarm.alarm)} ")


@command("alarm", "list", summary="Lists all alarms")
async def alarm_list(inv: Invocation) -> None:
    """Print every alarm raised in the cluster."""
    _print_alarms(inv, await (await inv.client()).alarm_list())


@command("alarm", "disarm", summary="Disarms all alarms")
async def alarm_disarm(inv: Invocation) -> None:
    """Clear every alarm (as etcd's client does: list them, then deactivate each)."""
    disarmed = await (await inv.client()).alarm_disarm()
    _print_alarms(inv, disarmed)


@command(
    "defrag",
    summary="Defragments the storage of the etcd members with given endpoints",
    flags=(CLUSTER_FLAG,),
    description="""Rewrites each member's backend file as a compacted copy (the member serves
nothing else meanwhile), one endpoint after another.""",
)
async def defrag(inv: Invocation) -> int | None:
    """Defragment each endpoint in turn; exit 1 if any failed."""
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
