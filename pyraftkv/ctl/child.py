"""Running a user's command from pyraftkvctl (watch ... -- cmd, lock name cmd).

The child writes straight to our stdout and stderr when they are real files (so its output
and ours interleave in order), reads nothing (stdin is /dev/null, as with Go's exec), and
gets extra environment variables on top of ours.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Mapping

from .invocation import Invocation


class ChildFailed(Exception):
    """The command could not start, or exited unsuccessfully; ``reason`` is Go's wording
    (``exit status 3``, ``signal: killed``, ``exec: "x": executable file not found in
    $PATH``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _target(stream):
    """A file descriptor the child may write to directly, or PIPE to copy its output."""
    try:
        stream.flush()
        return stream.fileno()
    except (AttributeError, OSError, ValueError):
        return asyncio.subprocess.PIPE


# Go's names for the signals a child is most often killed by.
_SIGNAL_NAMES = {
    signal.SIGHUP: "hangup",
    signal.SIGINT: "interrupt",
    signal.SIGQUIT: "quit",
    signal.SIGABRT: "aborted",
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGPIPE: "broken pipe",
    signal.SIGTERM: "terminated",
}


def exit_reason(returncode: int) -> str:
    """How Go's exec reports a child's unsuccessful end."""
    if returncode >= 0:
        return f"exit status {returncode}"
    number = -returncode
    try:
        name = _SIGNAL_NAMES.get(signal.Signals(number), f"signal {number}")
    except ValueError:
        name = f"signal {number}"
    return f"signal: {name}"


def _start_reason(program: str, exc: OSError) -> str:
    if isinstance(exc, FileNotFoundError) and "/" not in program:
        return f'exec: "{program}": executable file not found in $PATH'
    return f"fork/exec {program}: {(exc.strerror or str(exc)).lower()}"


async def run_child(inv: Invocation, argv: list[str], env: Mapping[str, str]) -> None:
    """Run ``argv`` to its end with ``env`` in its environment; raise ChildFailed if it
    cannot start or does not exit 0."""
    try:
        child = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=_target(inv.stdout),
            stderr=_target(inv.stderr),
            env=dict(env),
        )
    except OSError as exc:
        raise ChildFailed(_start_reason(argv[0], exc)) from None
    out, err = await child.communicate()
    if out:
        inv.stdout.write(out)
    if err:
        inv.stderr.write(err)
    if child.returncode:
        raise ChildFailed(exit_reason(child.returncode))


def environment(extra: Mapping[str, str], *, override: bool = True) -> dict[str, str]:
    """Our environment plus ``extra``; with ``override=False`` a variable already set keeps
    its value (etcdctl's lock lists its variables before the inherited ones, and Go's exec
    keeps the last of two values)."""
    if override:
        return {**os.environ, **extra}
    return {**extra, **os.environ}
