"""watch: print every change of a key or range until interrupted, or run a command per event.

``watch KEY [RANGE_END] [--] [COMMAND ARGS...]``: with a command after ``--``, each event
is printed and then the command runs with ETCD_WATCH_REVISION, ETCD_WATCH_EVENT_TYPE,
ETCD_WATCH_KEY and ETCD_WATCH_VALUE in its environment (the names etcdctl uses, so
scripts written for it keep working).
"""

from __future__ import annotations

import shlex

from ..errors import ApiError
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from .child import ChildFailed, environment, run_child
from .command import RESPONSE_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, CtlError
from .flags import Flag
from .gotext import go_quote
from .invocation import Invocation, arg_bytes

WATCH_FLAGS = (
    Flag("prefix", "bool", False, "Watch on a prefix if prefix is set"),
    Flag("rev", "int", 0, "Revision to start watching"),
    Flag("prev-kv", "bool", False, "get the previous key-value pair before the event happens"),
    Flag("progress-notify", "bool", False, "get periodic watch progress notification from server"),
)


def watch_env(resp: rpc.WatchResponse, event: kv_pb2.Event) -> dict[str, str]:
    """The variables etcdctl gives the command it runs for ``event``."""
    return {
        "ETCD_WATCH_REVISION": str(resp.header.revision),
        "ETCD_WATCH_EVENT_TYPE": go_quote(kv_pb2.Event.EventType.Name(event.type)),
        "ETCD_WATCH_KEY": go_quote(event.kv.key),
        "ETCD_WATCH_VALUE": go_quote(event.kv.value),
    }


async def run_for_event(inv: Invocation, argv: list[str], env: dict[str, str]) -> None:
    """Run ``argv`` once with ``env`` added; its output goes to our stdout and stderr."""
    try:
        await run_child(inv, argv, environment(env))
    except ChildFailed as exc:
        raise CtlError(f"command {shlex.join(argv)!r} error ({exc.reason})", EXIT_ERROR) from None


@command(
    "watch",
    summary="Watches events stream on keys or prefixes",
    usage="[options] <key or prefix> [range_end] [--] [exec-command arg1 arg2 ...]",
    flags=WATCH_FLAGS,
    formats=RESPONSE_FORMATS,
)
async def watch(inv: Invocation) -> None:
    """Print (or run a command for) every event until interrupted."""
    args = inv.args if inv.dash_at is None else inv.args[: inv.dash_at]
    exec_argv = [] if inv.dash_at is None else inv.args[inv.dash_at :]
    if not 1 <= len(args) <= 2:
        raise CtlError(
            "watch command needs one argument as key and an optional argument as range_end",
            EXIT_BAD_ARGS,
        )
    if inv.dash_at is not None and not exec_argv:
        raise CtlError("no command given after '--'", EXIT_BAD_ARGS)
    if len(args) == 2 and inv.opts.prefix:
        raise CtlError("`range_end` and `--prefix` are mutually exclusive", EXIT_BAD_ARGS)
    client = await inv.client()
    try:
        watcher = await client.watch(
            arg_bytes(args[0]),
            arg_bytes(args[1]) if len(args) == 2 else None,
            prefix=inv.opts.prefix,
            start_revision=inv.opts.rev,
            prev_kv=inv.opts.prev_kv,
            progress_notify=inv.opts.progress_notify,
        )
    except ApiError as exc:
        response = getattr(exc, "response", None)
        if response is None:
            raise
        _canceled(inv, response)
    async for resp in watcher.responses():
        if resp.canceled:
            _canceled(inv, resp)
        if not resp.events:
            inv.write(f"progress notify: {resp.header.revision}")
        inv.printer.watch(resp)
        inv.stdout.flush()
        for event in resp.events if exec_argv else ():
            await run_for_event(inv, exec_argv, watch_env(resp, event))
    raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED)


def _canceled(inv: Invocation, resp: rpc.WatchResponse) -> None:
    """The server ended the watch (e.g. its start revision was compacted): say so, exit 5."""
    reason = resp.cancel_reason or (
        "etcdserver: mvcc: required revision has been compacted" if resp.compact_revision else ""
    )
    inv.write(f"watch was canceled ({reason})", err=True)
    inv.printer.watch(resp)
    raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED)
