"""A member whose clients write one at a time has its two processes share one CPU: the
policy alone, then CpuPairing on real processes (their affinity read back from the
kernel)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from pyraftkv.node.cpu_pairing import (
    FOLLOWER_IDLE_CHECKS,
    PAIR_OVERLAP,
    SPREAD_ABOVE,
    SPREAD_HOLD_CHECKS,
    SPREAD_OVERLAP,
    CpuPairing,
    PairingPolicy,
    Writes,
)

SOME, MANY = (PAIR_OVERLAP + SPREAD_OVERLAP) / 2, SPREAD_OVERLAP + 0.1
QUIET, BUSY = SPREAD_ABOVE / 2, SPREAD_ABOVE + 0.05
IDLE_LEADER = Writes(leading=True)
ONE_WRITER = Writes(leading=True, batches=500)
CONCURRENT = Writes(leading=True, batches=500, overlap=MANY)


def test_a_leader_taking_one_write_at_a_time_pairs():
    policy = PairingPolicy()
    assert policy.decide(Writes(True, 500, SOME), QUIET) is None  # neither one nor many
    assert policy.decide(ONE_WRITER, BUSY) is None  # its CPU is full
    assert policy.decide(Writes(True, forwarded=True), QUIET) is None  # writes via followers
    assert policy.decide(ONE_WRITER, QUIET) is True
    assert policy.paired
    assert policy.decide(ONE_WRITER, QUIET) is None  # already
    assert policy.decide(IDLE_LEADER, QUIET) is None  # an idle leader stays paired


def test_an_idle_leader_pairs_an_idle_follower_does_not_a_writing_follower_does():
    assert PairingPolicy().decide(IDLE_LEADER, QUIET) is True
    assert PairingPolicy().decide(Writes(leading=False), QUIET) is None
    assert PairingPolicy().decide(Writes(leading=False, batches=500), QUIET) is True
    concurrent_follower = Writes(leading=False, batches=500, overlap=MANY)
    assert PairingPolicy().decide(concurrent_follower, QUIET) is None


def test_a_paired_leader_spreads_under_load_then_waits_before_pairing_again():
    for load, share in ((CONCURRENT, QUIET), (ONE_WRITER, BUSY), (Writes(True, 9, 0, True), 0)):
        policy = PairingPolicy()
        assert policy.decide(ONE_WRITER, QUIET) is True
        assert policy.decide(Writes(True, 500, SOME), QUIET) is None  # between thresholds
        assert policy.decide(load, share) is False, load
        for _ in range(SPREAD_HOLD_CHECKS - 1):
            assert policy.decide(ONE_WRITER, QUIET) is None, "paired again during the hold"
        assert policy.decide(ONE_WRITER, QUIET) is True


def test_a_role_change_spreads_and_the_new_role_pairs_on_its_own_terms():
    policy = PairingPolicy()
    assert policy.decide(ONE_WRITER, QUIET) is True
    assert policy.decide(Writes(leading=False, batches=500), QUIET) is False  # demoted
    assert policy.decide(Writes(leading=False, batches=500), QUIET) is True  # no hold
    assert policy.decide(IDLE_LEADER, QUIET) is False  # elected
    assert policy.decide(IDLE_LEADER, QUIET) is True


def test_a_follower_whose_clients_stop_writing_is_freed_after_a_while():
    policy = PairingPolicy()
    assert policy.decide(Writes(leading=False, batches=3), QUIET) is True
    for _ in range(FOLLOWER_IDLE_CHECKS - 1):
        assert policy.decide(Writes(leading=False), QUIET) is None
    assert policy.decide(Writes(leading=False, batches=1), QUIET) is None  # writes again
    for _ in range(FOLLOWER_IDLE_CHECKS - 1):
        assert policy.decide(Writes(leading=False), QUIET) is None
    assert policy.decide(Writes(leading=False), QUIET) is False


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
def test_quiet_processes_are_pinned_to_one_cpu_and_freed_on_a_role_change(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    # One of the two runs a thread, so every thread must follow, not just the main one.
    processes += [
        _python("import time; time.sleep(60)"),
        _python("import threading, time; threading.Thread(target=time.sleep, args=(60,)).start()"),
    ]
    time.sleep(0.3)  # past their start-up
    pairing = CpuPairing(processes[0].pid, processes[1].pid)  # measures, changes nothing
    assert _affinity_of_all_threads(processes[1].pid) == {allowed}
    time.sleep(0.3)
    pairing.check(IDLE_LEADER)
    pinned = _affinity_of_all_threads(processes[0].pid) | _affinity_of_all_threads(processes[1].pid)
    assert len(pinned) == 1 and len(next(iter(pinned))) == 1, pinned
    assert len(os.listdir(f"/proc/{processes[1].pid}/task")) == 2
    time.sleep(0.3)
    pairing.check(Writes(leading=False))
    for process in processes:
        assert _affinity_of_all_threads(process.pid) == {allowed}


@needs_two_cpus
def test_overlapping_batches_spread_a_pair(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    processes += [_python("import time; time.sleep(60)"), _python("import time; time.sleep(60)")]
    time.sleep(0.3)
    pairing = CpuPairing(processes[0].pid, processes[1].pid)
    time.sleep(0.2)
    pairing.check(IDLE_LEADER)
    assert len(os.sched_getaffinity(processes[1].pid)) == 1, "an idle leader: not paired"
    time.sleep(0.2)
    pairing.check(CONCURRENT)
    for process in processes:
        assert _affinity_of_all_threads(process.pid) == {allowed}


@needs_two_cpus
def test_a_pair_that_keeps_its_cpu_busy_is_spread(processes):
    allowed = frozenset(os.sched_getaffinity(0))
    processes += [
        _python("import time; time.sleep(60)"),
        _python("import time; time.sleep(1.0)\nwhile True: pass"),  # quiet, then busy
    ]
    time.sleep(0.3)
    pairing = CpuPairing(processes[0].pid, processes[1].pid)
    time.sleep(0.3)
    pairing.check(IDLE_LEADER)
    assert len(os.sched_getaffinity(processes[1].pid)) == 1, "a quiet pair was not pinned"
    deadline = time.monotonic() + 10
    while _affinity_of_all_threads(processes[1].pid) != {allowed}:
        assert time.monotonic() < deadline, "a busy pair stayed on one CPU"
        time.sleep(0.3)
        pairing.check(IDLE_LEADER)
    assert _affinity_of_all_threads(processes[0].pid) == {allowed}


@needs_two_cpus
def test_the_wakeup_benchmark_behind_pairing_runs():
    script = os.path.join(os.path.dirname(__file__), "..", "bench", "cross_cpu_wakeup.py")
    out = subprocess.run(
        [sys.executable, script, "--count", "50"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line.split(" round trip")[0].strip() for line in out] == [
        "one CPU (both pinned together)",
        "two CPUs (pinned apart)",
        "left to the kernel",
    ]
    assert all(float(line.split("p50")[1].split("us")[0]) > 0 for line in out)
