"""A leader taking one batch of writes at a time has its two processes share one CPU: the
policy alone, then CpuPairing on real processes (their affinity read back from the
kernel)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyraftkv.node.cpu_pairing import (
    PAIR_OVERLAP,
    SPREAD_ABOVE,
    SPREAD_HOLD_CHECKS,
    SPREAD_OVERLAP,
    CpuPairing,
    PairingPolicy,
)

ALONE, SOME, MANY = 0.0, (PAIR_OVERLAP + SPREAD_OVERLAP) / 2, SPREAD_OVERLAP + 0.1
QUIET, BUSY = SPREAD_ABOVE / 2, SPREAD_ABOVE + 0.05


def test_a_leader_taking_one_batch_at_a_time_pairs_and_a_follower_never_does():
    policy = PairingPolicy()
    assert policy.decide(leading=False, overlap=ALONE, cpu_share=QUIET) is None
    assert policy.decide(leading=True, overlap=SOME, cpu_share=QUIET) is None
    assert policy.decide(leading=True, overlap=ALONE, cpu_share=BUSY) is None
    assert policy.decide(leading=True, overlap=ALONE, cpu_share=QUIET) is True
    assert policy.paired
    assert policy.decide(leading=True, overlap=ALONE, cpu_share=QUIET) is None  # already


def test_a_paired_leader_spreads_when_batches_overlap_then_waits_before_pairing_again():
    policy = PairingPolicy()
    assert policy.decide(True, ALONE, QUIET) is True
    assert policy.decide(True, SOME, QUIET) is None  # between the two thresholds: stays
    assert policy.decide(True, MANY, QUIET) is False
    for _ in range(SPREAD_HOLD_CHECKS - 1):
        assert policy.decide(True, ALONE, QUIET) is None, "paired again before the hold ended"
    assert policy.decide(True, ALONE, QUIET) is True


def test_a_paired_leader_that_fills_its_cpu_spreads():
    policy = PairingPolicy()
    assert policy.decide(True, ALONE, QUIET) is True
    assert policy.decide(True, ALONE, BUSY) is False
    assert not policy.paired


def test_losing_leadership_spreads_at_once_and_leading_again_pairs_at_once():
    policy = PairingPolicy()
    assert policy.decide(True, ALONE, QUIET) is True
    assert policy.decide(False, ALONE, QUIET) is False
    assert policy.decide(True, ALONE, QUIET) is True


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
    pairing.check(leading=True, overlap=ALONE)  # the first check only measures
    assert _affinity_of_all_threads(processes[1].pid) == {allowed}
    time.sleep(0.3)
    pairing.check(leading=True, overlap=ALONE)
    pinned = _affinity_of_all_threads(processes[0].pid) | _affinity_of_all_threads(processes[1].pid)
    assert len(pinned) == 1 and len(next(iter(pinned))) == 1, pinned
    assert len(os.listdir(f"/proc/{processes[1].pid}/task")) == 2
    time.sleep(0.3)
    pairing.check(leading=False, overlap=ALONE)
    for process in processes:
        assert _affinity_of_all_threads(process.pid) == {allowed}


@needs_two_cpus
def test_overlapping_batches_spread_a_pair(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    processes += [_python("import time; time.sleep(60)"), _python("import time; time.sleep(60)")]
    pairing = CpuPairing(processes[0].pid, processes[1].pid)
    pairing.check(leading=True, overlap=ALONE)
    time.sleep(0.2)
    pairing.check(leading=True, overlap=ALONE)
    assert len(os.sched_getaffinity(processes[1].pid)) == 1, "one batch at a time: not paired"
    time.sleep(0.2)
    pairing.check(leading=True, overlap=MANY)
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
    pairing.check(leading=True, overlap=ALONE)
    time.sleep(0.3)
    pairing.check(leading=True, overlap=ALONE)
    assert len(os.sched_getaffinity(processes[1].pid)) == 1, "a quiet pair was not pinned"
    deadline = time.monotonic() + 10
    while _affinity_of_all_threads(processes[1].pid) != {allowed}:
        assert time.monotonic() < deadline, "a busy pair stayed on one CPU"
        time.sleep(0.3)
        pairing.check(leading=True, overlap=ALONE)
    assert _affinity_of_all_threads(processes[0].pid) == {allowed}
