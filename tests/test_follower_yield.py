"""A follower's application serving no client yields the CPU: the policy alone, then
FollowerYield in a process of its own session (its autogroup read back from the kernel)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pyraftkv.node.follower_yield import HOLD_CHECKS, STARVED_SHARE, YieldPolicy

CALM, STARVED = STARVED_SHARE / 2, STARVED_SHARE + 0.1


def test_an_idle_follower_yields_a_leader_or_a_serving_follower_does_not():
    policy = YieldPolicy()
    assert policy.decide(False, 0, 0, CALM) is None  # leading
    assert policy.decide(True, 3, 0, CALM) is None  # its clients sent requests
    assert policy.decide(True, 0, 1, CALM) is None  # someone watches here
    assert policy.decide(True, 0, 0, CALM) is True
    assert policy.yielding
    assert policy.decide(True, 0, 0, CALM) is None  # already
    assert policy.decide(True, 1, 0, CALM) is False  # a client came
    assert policy.decide(True, 0, 0, CALM) is True
    assert policy.decide(False, 0, 0, CALM) is False  # it leads now


def test_a_follower_made_to_wait_takes_its_weight_back_for_a_while():
    policy = YieldPolicy()
    assert policy.decide(True, 0, 0, CALM) is True
    assert policy.decide(True, 0, 0, STARVED) is False
    for _ in range(HOLD_CHECKS - 1):
        assert policy.decide(True, 0, 0, CALM) is None
        assert not policy.yielding
    assert policy.decide(True, 0, 0, CALM) is True
    # Waiting while not yielding is the machine's business, not a reason to hold.
    policy = YieldPolicy()
    assert policy.decide(False, 0, 0, STARVED) is None
    assert policy.decide(True, 0, 0, CALM) is True


CHECKS = """
from pyraftkv.node.follower_yield import FollowerYield
y = FollowerYield()
assert y.enabled
for following, served, watchers in {steps}:
    y.check(following, served, watchers)
    print(open("/proc/self/autogroup").read().split()[-1], flush=True)
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups here")
def test_the_autogroup_weight_is_lowered_and_given_back():
    steps = [(True, 0, 0), (True, 0, 0), (True, 5, 0), (False, 5, 0), (True, 5, 0)]
    out = subprocess.run(
        [sys.executable, "-c", CHECKS.format(steps=steps)],
        start_new_session=True,  # an autogroup of its own, not this test run's
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == ["19", "19", "0", "0", "19"]


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups here")
def test_a_process_that_does_not_lead_its_session_never_yields():
    """Its autogroup is its session's (here this test run's): lowering it would slow the
    rest of the session."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json; from pyraftkv.node.follower_yield import FollowerYield; "
            "y = FollowerYield(); y.check(True, 0, 0); "
            "print(json.dumps([y.enabled, open('/proc/self/autogroup').read()]))",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    # The file is empty in the kernel's first session (a CI runner's, often): compare it whole.
    with open("/proc/self/autogroup") as f:
        ours = f.read()
    assert json.loads(out) == [False, ours]


POLLS = """
from pyraftkv.node.follower_yield import FollowerYield
y = FollowerYield()
def nice():
    print(open("/proc/self/autogroup").read().split()[-1], flush=True)
y.check(True, 0, 0); nice()
y.poll(True, 0, 0); nice()  # nothing new: still yielding
y.poll(True, 1, 0); nice()  # a client's request: its weight back at once
y.check(True, 1, 0); nice()  # the check saw that request: stays
y.check(True, 1, 0); nice()  # a quiet check: yields again
y.poll(True, 1, 2); nice()  # someone watches here
y.check(True, 1, 0); nice()
y.poll(False, 1, 0); nice()  # it leads
"""


@pytest.mark.skipif(not os.path.exists("/proc/self/autogroup"), reason="no autogroups here")
def test_work_arriving_between_checks_takes_the_weight_back_at_once():
    out = subprocess.run(
        [sys.executable, "-c", POLLS],
        start_new_session=True,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout.split()
    assert out == ["19", "19", "0", "0", "19", "0", "19", "0"]
