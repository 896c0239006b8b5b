"""What the kernel says of a process (/proc): CPU time, memory, open files, start time.

Read at each /metrics scrape for both processes of a member (the Prometheus process
collector's figures for the one serving it, the Raft process's beside them), and by the
CPU pairing once a second.
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> list[str]:
    """The fields of /proc/PID/stat after the command name (field 3 onwards)."""
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()


def _cpu(fields: list[str]) -> float:
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads."""
    return _cpu(_stat(pid))


def last_cpu(pid: int) -> int:
    """The CPU process ``pid`` last ran on."""
    return int(_stat(pid)[36])


@functools.cache
def _boot_time() -> float:
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith("btime "):
                return float(line.split()[1])
    raise OSError("no btime in /proc/stat")


class ProcessStats(NamedTuple):
    cpu_seconds: float
    resident_bytes: int
    virtual_bytes: int
    start_time_seconds: float  # since the Unix epoch
    open_fds: int
    max_fds: int


def read(pid: int) -> ProcessStats:
    """Process ``pid``'s figures now; OSError if it is gone or /proc is unreadable."""
    fields = _stat(pid)
    soft_limit = -1
    with open(f"/proc/{pid}/limits") as f:
        for line in f:
            if line.startswith("Max open files"):
                soft_limit = int(line.split()[3])
    return ProcessStats(
        cpu_seconds=_cpu(fields),
        resident_bytes=int(fields[21]) * _PAGE_BYTES,
        virtual_bytes=int(fields[20]),
        start_time_seconds=_boot_time() + int(fields[19]) / _TICKS_PER_S,
        open_fds=len(os.listdir(f"/proc/{pid}/fd")),
        max_fds=soft_limit,
    )
