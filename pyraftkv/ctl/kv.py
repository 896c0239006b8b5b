"""put, get, del and compaction, with etcdctl's flags, argument rules and messages.

The request builders are shared with txn, whose request lines use the same flags.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import BinaryIO

from ..client.requests import delete_request, put_request, range_request
from ..proto import rpc_pb2 as rpc
from .command import ALL_FORMATS, RESPONSE_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_BAD_FEATURE, EXIT_ERROR, CtlError
from .flags import Flag, go_parse_int
from .invocation import Invocation, arg_bytes


def parse_lease_id(text: str) -> int:
    """A lease ID given in hex (as etcdctl prints them); raise ValueError if it is not."""
    return go_parse_int(text, 16)


PUT_FLAGS = (
    Flag("lease", "str", "0", "lease ID (in hexadecimal) to attach to the key"),
    Flag("prev-kv", "bool", False, "return the previous key-value pair before modification"),
    Flag("ignore-value", "bool", False, "updates the key using its current value"),
    Flag("ignore-lease", "bool", False, "updates the key using its current lease"),
)

GET_FLAGS = (
    Flag("consistency", "str", "l", "Linearizable(l) or Serializable(s)"),
    Flag("order", "str", "", "Order of results; ASCEND or DESCEND (ASCEND by default)"),
    Flag("sort-by", "str", "", "Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION"),
    Flag("limit", "int", 0, "Maximum number of results"),
    Flag("prefix", "bool", False, "Get keys with matching prefix"),
    Flag(
        "from-key",
        "bool",
        False,
        "Get keys that are greater than or equal to the given key using byte compare",
    ),
    Flag("rev", "int", 0, "Specify the kv revision"),
    Flag("keys-only", "bool", False, "Get only the keys"),
    Flag("count-only", "bool", False, "Get only the count"),
    Flag(
        "print-value-only", "bool", False, 'Only write values when using the "simple" output format'
    ),
)

DEL_FLAGS = (
    Flag("prefix", "bool", False, "delete keys with matching prefix"),
    Flag("prev-kv", "bool", False, "return deleted key-value pairs"),
    Flag(
        "from-key",
        "bool",
        False,
        "delete keys that are greater than or equal to the given key using byte compare",
    ),
)

_SORT_TARGETS = {
    "CREATE": "create",
    "KEY": "key",
    "MODIFY": "mod",
    "VALUE": "value",
    "VERSION": "version",
    "": "key",
}
_SORT_ORDERS = {"ASCEND": "ascend", "DESCEND": "descend", "": "none"}


def key_and_range(command_name: str, opts: SimpleNamespace, args: list[str]):
    """(key, range_end or None) from ``<key> [range_end]`` and --prefix / --from-key."""
    if not 1 <= len(args) <= 2:
        raise CtlError(
            f"{command_name} command needs one argument as key and an optional argument "
            "as range_end",
            EXIT_BAD_ARGS,
        )
    if opts.prefix and opts.from_key:
        raise CtlError(
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
            EXIT_BAD_ARGS,
        )
    if len(args) == 2 and (opts.prefix or opts.from_key):
        raise CtlError(
            "too many arguments, only accept one argument when `--prefix` or `--from-key` is set",
            EXIT_BAD_ARGS,
        )
    return arg_bytes(args[0]), (arg_bytes(args[1]) if len(args) == 2 else None)


def build_put(opts: SimpleNamespace, args: list[str], stdin: BinaryIO | None) -> rpc.PutRequest:
    """The PutRequest of ``put <key> [value]``; the value comes from stdin when omitted."""
    if not args or len(args) > 2:
        raise CtlError(
            "put command needs 1 argument and input from stdin or 2 arguments", EXIT_BAD_ARGS
        )
    if opts.ignore_value and len(args) > 1:
        raise CtlError(
            "put command needs only 1 argument when 'ignore-value' is set", EXIT_BAD_ARGS
        )
    value = b""
    if not opts.ignore_value:
        if len(args) == 2:
            value = arg_bytes(args[1])
        else:
            value = stdin.read() if stdin is not None else b""
            if not value:
                raise CtlError(
                    "put command needs 1 argument and input from stdin or 2 arguments",
                    EXIT_BAD_ARGS,
                )
    try:
        lease = parse_lease_id(opts.lease)
    except ValueError as exc:
        raise CtlError(f"bad lease ID ({exc}), expecting ID in Hex", EXIT_BAD_ARGS) from None
    return put_request(
        arg_bytes(args[0]),
        value,
        lease=lease,
        prev_kv=opts.prev_kv,
        ignore_value=opts.ignore_value,
        ignore_lease=opts.ignore_lease,
    )


def build_range(opts: SimpleNamespace, args: list[str]) -> rpc.RangeRequest:
    """The RangeRequest of ``get`` with its flags."""
    key, range_end = key_and_range("get", opts, args)
    if opts.consistency not in ("l", "s"):
        raise CtlError(f'unknown consistency flag "{opts.consistency}"', EXIT_BAD_FEATURE)
    order = _SORT_ORDERS.get(opts.order.upper())
    if order is None:
        raise CtlError(f"bad sort order {opts.order}", EXIT_BAD_FEATURE)
    target = _SORT_TARGETS.get(opts.sort_by.upper())
    if target is None:
        raise CtlError(f"bad sort target {opts.sort_by}", EXIT_BAD_FEATURE)
    if target == "key" and order == "ascend":
        order = "none"  # keys come back in ascending order anyway (as etcd's client does)
    if opts.keys_only and opts.count_only:
        raise CtlError(
            "`--keys-only` and `--count-only` cannot be set at the same time, choose one",
            EXIT_BAD_ARGS,
        )
    return range_request(
        key,
        range_end,
        prefix=opts.prefix,
        from_key=opts.from_key,
        revision=opts.rev,
        limit=opts.limit,
        keys_only=opts.keys_only,
        count_only=opts.count_only,
        serializable=opts.consistency == "s",
        sort_order=order,
        sort_target=target,
    )


def build_delete(opts: SimpleNamespace, args: list[str]) -> rpc.DeleteRangeRequest:
    """The DeleteRangeRequest of ``del`` with its flags."""
    key, range_end = key_and_range("del", opts, args)
    return delete_request(
        key, range_end, prefix=opts.prefix, from_key=opts.from_key, prev_kv=opts.prev_kv
    )


@command(
    "put",
    summary="Puts the given key into the store",
    usage="[options] <key> <value> (<value> can also be given from stdin)",
    flags=PUT_FLAGS,
    formats=RESPONSE_FORMATS,
    description="""Puts the given key into the store.

When <value> begins with '-', <value> is interpreted as a flag.
Insert '--' for workaround:

$ put <key> -- <value>
$ put -- <key> <value>

If <value> isn't given as a command line argument and '--ignore-value' is not specified,
this command tries to read the value from standard input.

When --ignore-lease is set, the key keeps its current lease; when --ignore-value is
set, the key keeps its current value.""",
)
async def put(inv: Invocation) -> None:
    """Put one key."""
    request = build_put(inv.opts, inv.args, inv.stdin)
    client = await inv.client()
    inv.printer.put(await client.call("Put", request))


@command(
    "get",
    summary="Gets the key or a range of keys",
    usage="[options] <key> [range_end]",
    flags=GET_FLAGS,
    formats=RESPONSE_FORMATS,
)
async def get(inv: Invocation) -> None:
    """Read a key or a range."""
    request = build_range(inv.opts, inv.args)
    client = await inv.client()
    resp = await client.call("Range", request)
    if inv.opts.count_only:
        inv.printer.count(resp)
    else:
        inv.printer.get(resp, value_only=inv.opts.print_value_only)


@command(
    "del",
    summary="Removes the specified key or range of keys [key, range_end)",
    usage="[options] <key> [range_end]",
    flags=DEL_FLAGS,
    formats=RESPONSE_FORMATS,
)
async def delete(inv: Invocation) -> None:
    """Delete a key or a range."""
    request = build_delete(inv.opts, inv.args)
    client = await inv.client()
    inv.printer.delete(await client.call("DeleteRange", request))


@command(
    "compaction",
    summary="Compacts the event history",
    usage="[options] <revision>",
    flags=(
        Flag(
            "physical",
            "bool",
            False,
            "'true' to wait for compaction to physically remove all old revisions",
        ),
    ),
    formats=ALL_FORMATS,
)
async def compaction(inv: Invocation) -> None:
    """Compact the history up to a revision."""
    if len(inv.args) != 1:
        raise CtlError("compaction command needs 1 argument", EXIT_BAD_ARGS)
    try:
        revision = go_parse_int(inv.args[0])
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_ERROR) from None
    client = await inv.client()
    resp = await client.call(
        "Compact", rpc.CompactionRequest(revision=revision, physical=inv.opts.physical)
    )
    inv.printer.compaction(revision, resp)
