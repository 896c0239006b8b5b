"""watch: print every change of a key or range until interrupted, or run a command per event.

``watch KEY [RANGE_END] [--] [COMMAND ARGS...]``: with a command after ``--``, each event
is printed and then the command runs with ETCD_WATCH_REVISION, ETCD_WATCH_EVENT_TYPE,
ETCD_WATCH_KEY and ETCD_WATCH_VALUE in its environment (the names etcdctl uses, so
scripts written for it keep working).
"""

from __future__ import annotations

import asyncio
import io
import os
import threading
from asyncio import FIRST_COMPLETED

from ..client.aio import Watcher
from ..client.connection import ConnectionLost
from ..errors import ApiError, NoLeader
from ..proto import kv_pb2
from ..proto import rpc_pb2 as rpc
from .child import ChildFailed, environment, run_child
from .command import RESPONSE_FORMATS, command
from .errors import EXIT_BAD_ARGS, EXIT_ERROR, EXIT_INTERRUPTED, EXIT_INVALID_INPUT, CtlError
from .flags import Flag, UsageError, parse_flags
from .gotext import go_quote
from .invocation import Invocation, arg_bytes
from .txn import split_words

WATCH_FLAGS: tuple[Flag, ...] = (
    Flag("prefix", "bool", False, "Watch on a prefix if prefix is set"),
    Flag("rev", "int", 0, "Revision to start watching"),
    Flag("prev-kv", "bool", False, "get the previous key-value pair before the event happens"),
    Flag("progress-notify", "bool", False, "get periodic watch progress notification from server"),
)

# A line of watch -i takes the command's flags (-i among them, ignored), as etcdctl's does.
_LINE_FLAGS = (*WATCH_FLAGS, Flag("interactive", "bool", False, "Interactive mode", short="i"))


def watch_env(resp: rpc.WatchResponse, event: kv_pb2.Event) -> dict[str, str]:
    """The variables etcdctl gives the command it runs for ``event``."""
    return {
        "ETCD_WATCH_REVISION": str(resp.header.revision),
        "ETCD_WATCH_EVENT_TYPE": go_quote(kv_pb2.Event.EventType.Name(event.type)),
        "ETCD_WATCH_KEY": go_quote(event.kv.key),
        "ETCD_WATCH_VALUE": go_quote(event.kv.value),
    }


class ExecFailed(Exception):
    """The command run for an event failed: etcdctl says so on stderr (no "Error:") and
    exits 1."""


async def run_for_event(inv: Invocation, argv: list[str], env: dict[str, str]) -> None:
    """Run ``argv`` once with ``env`` added; its output goes to our stdout and stderr."""
    try:
        await run_child(inv, argv, environment(env))
    except ChildFailed as exc:
        words = " ".join(go_quote(arg) for arg in argv)  # Go's %q of a []string
        inv.write(f"command [{words}] error ({exc.reason})", err=True)
        raise ExecFailed from None


@command(
    "watch",
    summary="Watches events stream on keys or prefixes",
    usage="[options] <key or prefix> [range_end] [--] [exec-command arg1 arg2 ...]",
    flags=_LINE_FLAGS,
    formats=RESPONSE_FORMATS,
    description="""Watches a key, a range or a prefix and prints every change until interrupted.

With -i, reads watch requests from standard input instead, one a line, each starting a
watch of its own: "watch [options] <key or prefix> [range_end] [--] [exec-command ...]",
or "progress" to ask every watch for a progress notification. Input ends the command.""",
)
async def watch(inv: Invocation) -> int | None:
    """Print (or run a command for) every event until interrupted."""
    if inv.opts.interactive:
        return await _interactive(inv)
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
    try:
        watcher = await _start(inv, inv.opts, args)
    except ApiError as exc:
        _canceled(inv, _cancel_of(exc))
        raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED) from None
    except ConnectionLost as exc:
        _leaderless(inv, exc)
        raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED) from None
    if await _print_responses(inv, watcher, exec_argv):
        return EXIT_ERROR
    raise CtlError("watch is canceled by the server", EXIT_INTERRUPTED)


async def _start(inv: Invocation, opts, args: list[str]) -> Watcher:
    client = await inv.client()
    return await client.watch(
        arg_bytes(args[0]),
        arg_bytes(args[1]) if len(args) == 2 else None,
        prefix=opts.prefix,
        start_revision=opts.rev,
        prev_kv=opts.prev_kv,
        progress_notify=opts.progress_notify,
        require_leader=True,  # as etcdctl's: a member cut off from the others ends it
    )


def _cancel_of(exc: ApiError) -> rpc.WatchResponse:
    """The server's cancel reply behind a failed watch creation (re-raise if none)."""
    response = getattr(exc, "response", None)
    if response is None:
        raise exc
    return response


async def _print_responses(inv: Invocation, watcher: Watcher, exec_argv: list[str]) -> bool:
    """Print every reply of ``watcher`` (running ``exec_argv`` per event) until the server
    ends the watch; True if a command run for an event failed."""
    try:
        async for resp in watcher.responses():
            if resp.canceled:
                _canceled(inv, resp)
                return False
            if not resp.events:
                inv.write(f"progress notify: {resp.header.revision}")
            inv.printer.watch(resp)
            inv.stdout.flush()
            for event in resp.events if exec_argv else ():
                try:
                    await run_for_event(inv, exec_argv, watch_env(resp, event))
                except ExecFailed:
                    return True
    except ConnectionLost as exc:
        _leaderless(inv, exc)
    return False


def _leaderless(inv: Invocation, exc: ConnectionLost) -> None:
    """The watch ended because no member it could reach had a leader: say so as etcdctl
    does when its member ends a watch that way (re-raise any other loss)."""
    if not isinstance(exc.__cause__, NoLeader):
        raise exc
    inv.write(f"watch was canceled ({exc.__cause__.message})", err=True)


def _canceled(inv: Invocation, resp: rpc.WatchResponse) -> None:
    """The server ended the watch (e.g. its start revision was compacted): say so."""
    reason = resp.cancel_reason or (
        "etcdserver: mvcc: required revision has been compacted" if resp.compact_revision else ""
    )
    inv.write(f"watch was canceled ({reason})", err=True)
    inv.printer.watch(resp)


# -- watch -i ----------------------------------------------------------------------------------


def _read_lines(stdin, loop: asyncio.AbstractEventLoop, lines: asyncio.Queue) -> None:
    """Feed stdin's lines to ``lines`` (b"" at its end; an unfinished last line is dropped,
    as etcdctl drops it), from a daemon thread: a blocked read must not keep the command
    from ending. A real file is read unbuffered, so no buffer lock is held at exit."""
    try:
        fd = stdin.fileno()
    except (AttributeError, OSError, io.UnsupportedOperation):
        fd = None
    pending = b""
    while True:
        chunk = stdin.readline() if fd is None else os.read(fd, 65536)
        if not chunk or (fd is None and not chunk.endswith(b"\n")):
            loop.call_soon_threadsafe(lines.put_nowait, b"")
            return
        pending += chunk
        while b"\n" in pending:
            line, _, pending = pending.partition(b"\n")
            loop.call_soon_threadsafe(lines.put_nowait, line + b"\n")


async def _interactive(inv: Invocation) -> int | None:
    """etcdctl's watch -i: a watch per "watch ..." line of stdin, until stdin ends."""
    loop = asyncio.get_running_loop()
    lines: asyncio.Queue[bytes] = asyncio.Queue()
    threading.Thread(target=_read_lines, args=(inv.stdin, loop, lines), daemon=True).start()
    watchers: list[Watcher] = []
    printing: set[asyncio.Task] = set()
    reading = asyncio.ensure_future(lines.get())
    try:
        while True:
            done, _ = await asyncio.wait({reading, *printing}, return_when=FIRST_COMPLETED)
            for task in done - {reading}:
                printing.discard(task)
                if task.result():
                    return EXIT_ERROR
            if reading not in done:
                continue
            raw = reading.result()
            if not raw:
                raise CtlError("Error reading watch request line: EOF", EXIT_INVALID_INPUT)
            reading = asyncio.ensure_future(lines.get())
            started = await _request(inv, raw.decode("utf-8", "surrogateescape"), watchers)
            if started is not None:
                watcher, exec_argv = started
                watchers.append(watcher)
                printing.add(asyncio.ensure_future(_print_responses(inv, watcher, exec_argv)))
    finally:
        reading.cancel()
        for task in printing:
            task.cancel()
        await asyncio.gather(reading, *printing, return_exceptions=True)
        for watcher in watchers:
            await watcher.cancel()


async def _request(inv: Invocation, line: str, watchers: list[Watcher]):
    """Act on one line: start a watch (returned with its command), ask for progress, or
    say what is wrong with the line (etcdctl's words), on stderr."""
    line = line.removesuffix("\n")
    try:
        words = split_words(line)
    except ValueError as exc:
        raise CtlError(str(exc), EXIT_INVALID_INPUT) from None
    if not words:
        inv.write(f"Invalid command: {line} (watch and progress supported)", err=True)
        return None
    if words[0] == "progress":
        for watcher in watchers:
            await watcher.request_progress()
        return None
    if words[0] != "watch":
        inv.write(f"Invalid command {line} (only support watch)", err=True)
        return None
    if len(words) < 2:
        inv.write(f"Invalid command {line} (command type or key is not provided)", err=True)
        return None
    if words[-1] == "--":
        raise CtlError(
            "bad number of arguments (found separator --, but no commands)", EXIT_BAD_ARGS
        )
    try:
        parsed = parse_flags(_LINE_FLAGS, words[1:])
    except UsageError as exc:
        raise CtlError(exc.message, EXIT_BAD_ARGS) from None
    dash = len(parsed.args) if parsed.dash_at is None else parsed.dash_at
    args, exec_argv = parsed.args[:dash], parsed.args[dash:]
    if not 1 <= len(args) <= 2:
        raise CtlError("bad number of arguments", EXIT_BAD_ARGS)
    if len(args) == 2 and parsed.values.prefix:
        message = "`range_end` and `--prefix` are mutually exclusive"
        inv.write(f"Invalid command {line} ({message})", err=True)
        return None
    try:
        return await _start(inv, parsed.values, args), exec_argv
    except ApiError as exc:
        _canceled(inv, _cancel_of(exc))
        return None
    except ConnectionLost as exc:
        _leaderless(inv, exc)
        return None
