"""While a leader takes one batch of writes at a time, its application and Raft processes
share one CPU.

Each write crosses between a member's two processes twice on the leader (the proposal down
the ring, the commit back up). When the woken process runs on another CPU, each crossing
costs a cross-CPU wake-up (about 20 us on the 2-core VM measured, against 2-3 us on the
same CPU) and a cold cache: for one writer waiting on each answer, about 15 % of a put
(bench/README.md, "Two processes on one CPU"). While each batch of writes goes down only
once the one before it is answered, the two processes take turns and never have work at
once, so one CPU loses them nothing: the application process then pins both to the CPU
it last ran on. Once batches overlap (concurrent writers: the application takes new
writes while the Raft process waits for the disk and the peers), or writes come through
other members (their clients wait on those members' applications, not this one's), or
the two fill their CPU (reads, watches), or the member stops leading, both get back every
CPU they were allowed at start. Followers are left to the kernel.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

log = logging.getLogger("pyraftkv.app")

# Share of the write batches of a check sent while an earlier one was unanswered.
PAIR_OVERLAP = 0.05
SPREAD_OVERLAP = 0.2
# The two processes' CPU time over a check, as a share of one CPU.
SPREAD_ABOVE = 0.9
# Checks a leader stays spread after its load made it spread (load often comes in waves).
SPREAD_HOLD_CHECKS = 5

_TICKS_PER_S = os.sysconf("SC_CLK_TCK")


class PairingPolicy:
    """When to pair and when to spread, given what each check measured (pure)."""

    def __init__(self) -> None:
        self.paired = False
        self._hold = 0

    def decide(self, leading: bool, overlap: float, cpu_share: float) -> bool | None:
        """True: pair now; False: spread now; None: leave things as they are. ``overlap``:
        the share of write batches sent while an earlier one was unanswered."""
        if self._hold:
            self._hold -= 1
        busy = cpu_share > SPREAD_ABOVE
        if self.paired:
            if leading and overlap <= SPREAD_OVERLAP and not busy:
                return None
            self.paired = False
            if leading:
                self._hold = SPREAD_HOLD_CHECKS
            return False
        if leading and overlap <= PAIR_OVERLAP and not busy and not self._hold:
            self.paired = True
            return True
        return None


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS_PER_S


def last_cpu(pid: int) -> int:
    """The CPU process ``pid`` last ran on."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[36])


def set_affinity(pid: int, cpus: set[int]) -> None:
    """Let every thread of process ``pid`` run only on ``cpus`` (threads it starts later
    inherit their creator's set)."""
    for tid in os.listdir(f"/proc/{pid}/task"):
        with contextlib.suppress(ProcessLookupError):  # the thread ended meanwhile
            os.sched_setaffinity(int(tid), cpus)


class CpuPairing:
    """Measures the application and Raft processes at each check and pins or frees them."""

    def __init__(self, application_pid: int, raft_pid: int) -> None:
        self._pids = (application_pid, raft_pid)
        self._allowed = os.sched_getaffinity(0)
        self._policy = PairingPolicy()
        self._last: tuple[float, float] | None = None  # (monotonic s, CPU s of both)
        self.enabled = len(self._allowed) > 1

    def check(self, leading: bool, overlap: float) -> None:
        """Once a second or so: pair or spread the two processes as the policy says.
        ``overlap``: the share of write batches since the last check that went down while
        an earlier one was unanswered."""
        if not self.enabled:
            return
        try:
            now, used = time.monotonic(), sum(cpu_seconds(pid) for pid in self._pids)
            last, self._last = self._last, (now, used)
            if last is None or now <= last[0]:
                return
            share = (used - last[1]) / (now - last[0])
            decision = self._policy.decide(leading, overlap, share)
            if decision is True:
                cpu = last_cpu(self._pids[0])
                if cpu not in self._allowed:
                    cpu = min(self._allowed)
                for pid in self._pids:
                    set_affinity(pid, {cpu})
                log.info(
                    "leading one write at a time: the application and Raft processes now "
                    "share CPU %d",
                    cpu,
                )
            elif decision is False:
                for pid in self._pids:
                    set_affinity(pid, self._allowed)
                why = "not leading" if not leading else f"{share:.0%} of a CPU used"
                log.info(
                    "the application and Raft processes may use every CPU again (%s, "
                    "%.0f%% of writes concurrent or forwarded)",
                    why,
                    overlap * 100,
                )
        except OSError as exc:  # /proc unreadable, affinity refused: leave the kernel be
            self.enabled = False
            log.warning("not pairing the two processes on one CPU: %s", exc)
            for pid in self._pids:
                with contextlib.suppress(OSError):
                    set_affinity(pid, self._allowed)
