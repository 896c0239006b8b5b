"""A quiet leader's two processes share one CPU: the policy alone, then CpuPairing on real
processes (their affinity read back from the kernel)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyraftkv.node.cpu_pairing import (
    PAIR_BELOW,
    SPREAD_ABOVE,
    SPREAD_HOLD_CHECKS,
    CpuPairing,
    PairingPolicy,
)

QUIET, MIDDLE, BUSY = PAIR_BELOW / 2, (PAIR_BELOW + SPREAD_ABOVE) / 2, SPREAD_ABOVE + 0.05


def test_a_quiet_leader_pairs_and_a_follower_never_does():
    policy = PairingPolicy()
    assert policy.decide(leading=False, cpu_share=0.0) is None
    assert policy.decide(leading=True, cpu_share=MIDDLE) is None
    assert policy.decide(leading=True, cpu_share=QUIET) is True
    assert policy.paired
    assert policy.decide(leading=True, cpu_share=QUIET) is None  # already paired


def test_a_paired_leader_spreads_only_when_busy_then_waits_before_pairing_again():
    policy = PairingPolicy()
    assert policy.decide(True, QUIET) is True
    assert policy.decide(True, MIDDLE) is None  # between the two thresholds: stays paired
    assert policy.decide(True, BUSY) is False
    for _ in range(SPREAD_HOLD_CHECKS - 1):
        assert policy.decide(True, QUIET) is None, "paired again before the hold ended"
    assert policy.decide(True, QUIET) is True


def test_losing_leadership_spreads_at_once_and_leading_again_pairs_at_once():
    policy = PairingPolicy()
    assert policy.decide(True, QUIET) is True
    assert policy.decide(False, QUIET) is False
    assert policy.decide(True, QUIET) is True


def _python(code: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", code])


def _affinity_of_all_threads(pid: int) -> set[frozenset[int]]:
    return {frozenset(os.sched_getaffinity(int(tid))) for tid in os.listdir(f"/proc/{pid}/task")}


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        process.kill()
        process.wait()


needs_two_cpus = pytest.mark.skipif(
    len(os.sched_getaffinity(0)) < 2, reason="pairing needs at least two CPUs to choose from"
)


@needs_two_cpus
def test_quiet_processes_are_pinned_to_one_cpu_and_freed_when_not_leading(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    # One of the two runs a thread, so every thread must follow, not just the main one.
    processes += [
        _python("import time; time.sleep(60)"),
        _python("import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"),
    ]
    time.sleep(0.3)
    pairing = CpuPairing(processes[0].pid, processes[1].pid)
    pairing.check(leading=True)  # the first check only measures
    assert _affinity_of_all_threads(processes[1].pid) == {allowed}
    time.sleep(0.3)
    pairing.check(leading=True)
    pinned = _affinity_of_all_threads(processes[0].pid) | _affinity_of_all_threads(processes[1].pid)
    assert len(pinned) == 1 and len(next(iter(pinned))) == 1, pinned
    assert len(os.listdir(f"/proc/{processes[1].pid}/task")) == 2
    time.sleep(0.3)
    pairing.check(leading=False)
    for process in processes:
        assert _affinity_of_all_threads(process.pid) == {allowed}


@needs_two_cpus
def test_a_pair_that_keeps_its_cpu_busy_is_spread(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    processes += [
        _python("import time; time.sleep(60)"),
        _python("import time; time.sleep(1.0)\nwhile True: pass"),  # quiet, then busy
    ]
    pairing = CpuPairing(processes[0].pid, processes[1].pid)
    pairing.check(leading=True)
    time.sleep(0.3)
    pairing.check(leading=True)
    assert len(os.sched_getaffinity(processes[1].pid)) == 1, "a quiet pair was not pinned"
    deadline = time.monotonic() + 10
    while _affinity_of_all_threads(processes[1].pid) != {allowed}:
        assert time.monotonic() < deadline, "a busy pair stayed on one CPU"
        time.sleep(0.3)
        pairing.check(leading=True)
    assert _affinity_of_all_threads(processes[0].pid) == {allowed}
