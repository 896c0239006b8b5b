"""Faults a test injects into a LocalCluster's members: find a member's two processes,
pause and resume either one alone (SIGSTOP/SIGCONT)."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator

from .harness import Member


def raft_pid(member: Member) -> int:
    """The pid of the member's Raft process (the application process's only child)."""
    assert member.process is not None
    pid = member.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    assert len(children) == 1, children
    return children[0]


def app_pid(member: Member) -> int:
    assert member.process is not None
    return member.process.pid


@contextlib.contextmanager
def paused(pid: int) -> Iterator[None]:
    """SIGSTOP ``pid`` for the block, SIGCONT after (also when the block fails)."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
