"""While a member's clients write one at a time, its application and Raft processes share one
CPU.

A write crosses between the two processes twice on the member its client talks to (the
proposal down the ring, the commit back up). When the woken process runs on another CPU,
each crossing costs a cross-CPU wake-up (15-20 us more than on the same CPU on the 2-core
VM measured: bench/cross_cpu_wakeup.py) and a cold cache: for one writer waiting on each
answer, about 15 % of a put (bench/README.md, "Two processes on one CPU"). While each
batch of writes goes down only once the one before it is answered, the two processes take
turns and never have work at once, so one CPU loses them nothing: the application process
then pins both to the CPU it last ran on. That is checked once a second, for the leader
(idle, or taking its own clients' writes) and for a follower whose clients write (it
forwards them).

Both get back every CPU they were allowed at start once batches overlap (concurrent
writers: the application takes new writes while the Raft process waits for the disk and
the peers), or the two fill their CPU (reads, watches), or a leader applies writes that
came through followers (their writers wait on those members' applications, not this
one's): then they stay apart for a few checks. They are freed too when the member's role
changes, and a follower's when its clients have not written for a while (its Raft process
is on the path of everyone's writes).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass

from .process_stats import cpu_seconds, last_cpu

log = logging.getLogger("pyraftkv.app")

# Share of the write batches of a check sent while an earlier one was unanswered.
PAIR_OVERLAP = 0.05
SPREAD_OVERLAP = 0.2
# The two processes' CPU time over a check, as a share of one CPU.
SPREAD_ABOVE = 0.9
# Checks the two stay apart after load spread them (load often comes in waves).
SPREAD_HOLD_CHECKS = 5
# Checks in a row without writes of its own clients after which a follower is freed.
FOLLOWER_IDLE_CHECKS = 10


@dataclass(frozen=True)
class Writes:
    """What the application saw of writes since the last check."""

    leading: bool
    batches: int = 0  # write batches of its own clients sent down
    overlap: float = 0.0  # share of them sent while an earlier one was unanswered
    forwarded: bool = False  # it applied writes that came through another member


class PairingPolicy:
    """When to pair and when to spread, given what each check measured (pure)."""

    def __init__(self) -> None:
        self.paired = False
        self._hold = 0
        self._idle = 0
        self._leading = False

    def decide(self, writes: Writes, cpu_share: float) -> bool | None:
        """True: pair now; False: spread now; None: leave things as they are."""
        leading = writes.leading
        role_changed, self._leading = leading != self._leading, leading
        self._idle = 0 if writes.batches else self._idle + 1
        if self._hold:
            self._hold -= 1
        load = (
            cpu_share > SPREAD_ABOVE
            or writes.overlap > SPREAD_OVERLAP
            or (leading and writes.forwarded)
        )
        if self.paired:
            idle_follower = not leading and self._idle >= FOLLOWER_IDLE_CHECKS
            if not (load or role_changed or idle_follower):
                return None
            self.paired = False
            if load:
                self._hold = SPREAD_HOLD_CHECKS
            return False
        on_path = leading or writes.batches > 0  # a follower's clients write through it
        if on_path and writes.overlap <= PAIR_OVERLAP and not load and not self._hold:
            self.paired = True
            return True
        return None


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
        with contextlib.suppress(OSError):  # the first check then decides already
            self._last = self._measure()

    def _measure(self) -> tuple[float, float]:
        return time.monotonic(), sum(cpu_seconds(pid) for pid in self._pids)

    def check(self, writes: Writes) -> None:
        """Once a second or so: pair or spread the two processes as the policy says."""
        if not self.enabled:
            return
        try:
            now, used = self._measure()
            last, self._last = self._last, (now, used)
            if last is None or now <= last[0]:
                return
            share = (used - last[1]) / (now - last[0])
            decision = self._policy.decide(writes, share)
            if decision is True:
                cpu = last_cpu(self._pids[0])
                if cpu not in self._allowed:
                    cpu = min(self._allowed)
                for pid in self._pids:
                    set_affinity(pid, {cpu})
                log.info(
                    "one write at a time (%s): the application and Raft processes now share CPU %d",
                    "leading" if writes.leading else "following",
                    cpu,
                )
            elif decision is False:
                for pid in self._pids:
                    set_affinity(pid, self._allowed)
                log.info(
                    "the application and Raft processes may use every CPU again (%s; %.0f%% "
                    "of a CPU used, %.0f%% of write batches concurrent%s)",
                    "leading" if writes.leading else "following",
                    share * 100,
                    writes.overlap * 100,
                    ", writes forwarded here" if writes.leading and writes.forwarded else "",
                )
        except OSError as exc:  # /proc unreadable, affinity refused: leave the kernel be
            self.enabled = False
            log.warning("not pairing the two processes on one CPU: %s", exc)
            for pid in self._pids:
                with contextlib.suppress(OSError):
                    set_affinity(pid, self._allowed)
