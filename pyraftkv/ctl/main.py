"""``pyraftkvctl``: find the command, parse its flags, run it, turn failures into exit codes.

``run(argv, stdin, stdout, stderr, environ)`` is the whole program as a function (tests
call it in-process); ``main()`` is the console script. Errors print ``Error: <message>``
on stderr and exit 1 (or etcdctl's more specific code), as etcdctl does.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import os
import signal
import sys
from collections.abc import Mapping, Sequence

from ..client.connection import ConnectionLost
from ..errors import ApiError
from . import (  # noqa: F401  (each registers its commands)
    auth,
    check,
    elect,
    endpoint,
    kv,
    lease,
    linearizability,
    lock,
    maintenance,
    make_mirror,
    member,
    snapshot,
    txn,
    watch,
)
from .command import COMMANDS, GROUPS, Command
from .errors import EXIT_BAD_FEATURE, CtlError
from .flags import UsageError, parse_flags, takes_value
from .help import PROGRAM, command_help, group_help, root_help
from .invocation import (
    GLOBAL_FLAGS,
    HELP_FLAG,
    Invocation,
    ask_password,
    binary_stream,
    settings_from,
)

EXIT_BROKEN_PIPE = 141  # what a shell reports for a process killed by SIGPIPE
EXIT_SIGINT = 130  # what a shell reports for a process ended by Ctrl-C
_TOP_FLAGS = (*GLOBAL_FLAGS, HELP_FLAG)


def _top_flag(token: str):
    if token.startswith("--"):
        name = token[2:].partition("=")[0]
        return next((f for f in _TOP_FLAGS if f.name == name), None)
    return next((f for f in _TOP_FLAGS if f.short and f.short == token[1:2]), None)


def resolve(argv: Sequence[str]) -> tuple[tuple[str, ...], list[str]]:
    """Split argv into the command's words (e.g. ("member", "list")) and everything else.

    Global flags may come before the command; the command's own flags come after it.
    ``help [command]`` resolves to ("help", *command).
    """
    path: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        i += 1
        if token.startswith("-") and token not in ("-", "--"):
            rest.append(token)
            flag = _top_flag(token)
            if flag is not None and takes_value(flag, token) and i < len(argv):
                rest.append(argv[i])
                i += 1
            continue
        if token == "--" or tuple(path) in COMMANDS:
            rest.extend(argv[i - 1 :])
            break
        path.append(token)
        words = tuple(path[1:] if path[0] == "help" else path)
        if words in COMMANDS or words == () or (len(words) == 1 and words[0] in GROUPS):
            continue
        if len(words) == 1:
            raise UsageError(f'unknown command "{token}" for "{PROGRAM}"', command=PROGRAM)
        parent = f"{PROGRAM} {words[0]}"
        raise UsageError(f'unknown command "{token}" for "{parent}"', command=parent)
    return tuple(path), rest


def _help_for(path: tuple[str, ...]) -> str:
    """Help for the whole program, a command, or a group (resolve() checked the words)."""
    if not path:
        return root_help()
    if path in COMMANDS:
        return command_help(COMMANDS[path])
    return group_help(path[0])


async def _invoke(inv: Invocation) -> int:
    try:
        return await inv.command.handler(inv) or 0
    except ApiError as exc:
        raise CtlError(exc.message) from None
    except ConnectionLost as exc:
        raise CtlError(str(exc)) from None
    finally:
        await inv.close()


def _run_async(coroutine) -> int:
    """asyncio.run, also from a thread that already runs an event loop (e.g. a test)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _execute(command: Command, rest: list[str], streams, environ: Mapping[str, str]) -> int:
    stdin, stdout, stderr = streams
    try:
        parsed = parse_flags((*_TOP_FLAGS, *command.flags), rest)
    except UsageError as exc:
        exc.command = f"{PROGRAM} {command.name}"
        raise
    if parsed.values.help:
        stdout.write(command_help(command).encode())
        return 0
    settings = settings_from(parsed, environ)
    if settings.write_out not in command.formats:
        raise CtlError(f"{settings.write_out} not supported as output format", EXIT_BAD_FEATURE)
    if settings.user and settings.password is None:
        try:
            settings = dataclasses.replace(settings, password=ask_password(stdin, stdout))
        except KeyboardInterrupt:
            return EXIT_SIGINT
    inv = Invocation(
        command,
        parsed.values,
        parsed.args,
        parsed.dash_at,
        settings,
        stdin,
        stdout,
        stderr,
    )
    try:
        return _run_async(_invoke(inv))
    except KeyboardInterrupt:
        return EXIT_SIGINT


def run(
    argv: Sequence[str],
    stdin=None,
    stdout=None,
    stderr=None,
    environ: Mapping[str, str] | None = None,
) -> int:
    """Run pyraftkvctl with ``argv`` (without the program name); return the exit code.

    Streams may be binary or text (default: the process's); ``environ`` defaults to
    os.environ and supplies PYRAFTKVCTL_* / ETCDCTL_* settings.
    """
    stdin = binary_stream(sys.stdin if stdin is None else stdin, reading=True)
    stdout = binary_stream(sys.stdout if stdout is None else stdout)
    stderr = binary_stream(sys.stderr if stderr is None else stderr)
    environ = os.environ if environ is None else environ
    try:
        path, rest = resolve(argv)
        if path in COMMANDS:
            return _execute(COMMANDS[path], rest, (stdin, stdout, stderr), environ)
        parse_flags(_TOP_FLAGS, rest)  # only global flags may go with help
        stdout.write(_help_for(path[1:] if path[:1] == ("help",) else path).encode())
        return 0
    except UsageError as exc:
        stderr.write(f"Error: {exc.message}\n".encode())
        stderr.write(f"Run '{exc.command} --help' for usage.\n".encode())
        return exc.exit_code
    except CtlError as exc:
        stderr.write(f"Error: {exc.message}\n".encode())
        return exc.exit_code
    except BrokenPipeError:
        return EXIT_BROKEN_PIPE
    finally:
        for stream in (stdout, stderr):
            with contextlib.suppress(BrokenPipeError, ValueError):
                stream.flush()


def main() -> int:
    """The ``pyraftkvctl`` console script."""
    code = run(sys.argv[1:])
    if code == EXIT_SIGINT:
        # Interrupted: end as killed by SIGINT, as etcdctl does, so a calling shell or
        # script can tell (and stop too).
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code
