"""What both of a member's processes do at their entry point: stop at once on a bug or on
a broken invariant, and (for the Raft process) die with the parent."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

# Exit status of a process stopped by an internal error (BSD's EX_SOFTWARE).
EXIT_INTERNAL_ERROR = 70


def stop_now(log: logging.Logger, message: str) -> None:
    """A broken invariant: log why and exit at once. Running on in a state nobody reasoned
    about could do harm; the WAL keeps everything acknowledged, a restart recovers."""
    log.critical("%s", message)
    logging.shutdown()
    os._exit(EXIT_INTERNAL_ERROR)


def crash_on_error(log: logging.Logger, what: str):
    """An asyncio exception handler that stops ``what`` once an exception escaped a
    callback (a bug), after logging it."""

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        loop.default_exception_handler(context)
        stop_now(log, f"internal error, stopping {what}")

    return handler


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when its parent (the application process) dies."""
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # it died before the prctl took effect
        os._exit(1)
