"""While its member follows and serves no client, the application process yields the CPU to
the processes that are on a write's path.

A follower's application applies each committed entry a little after its Raft process
acknowledged it, and nobody waits for that apply unless a client of this member does. On
a machine that several members share (tests, benchmarks, a developer's box) or that other
work keeps busy, that apply often runs just when a leader's process wakes with a write's
commit, and the woken process waits for a CPU: one writer's put took about 10 % longer
(bench/README.md, "One writer below etcd"). So while this member follows, its clients sent
nothing since the last check and nobody watches here, the application process lowers its
weight: the nice value of its autogroup (/proc/self/autogroup), which any process may
raise and lower again between 0 and 19. Within a tick (0.1 s) after it leads, or a client
sends or watches, it takes its weight back; and for ten checks when yielding made it wait
for a CPU over half the time (its applies falling behind on a saturated machine).

An autogroup is a session's: only a process that leads its session (started by a service
manager, a container runtime or ``setsid``, as ``pyraftkv cluster`` starts its members)
yields, so a member started from a shell never lowers the shell's weight. Where
autogroups do not apply (kernel.sched_autogroup_enabled=0, or a CPU cgroup of its own)
the setting changes nothing; a ``--single-process`` member never yields (its Raft side
is in the same process).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time

log = logging.getLogger("pyraftkv.app")

AUTOGROUP = "/proc/self/autogroup"
YIELD_NICE = 19
# Share of a check's time the process waited for a CPU, while yielding, that ends the
# yielding for HOLD_CHECKS checks.
STARVED_SHARE = 0.5
HOLD_CHECKS = 10


class YieldPolicy:
    """When to yield and when to take the weight back, given each check (pure)."""

    def __init__(self) -> None:
        self.yielding = False
        self._hold = 0

    def decide(self, following: bool, requests: int, watchers: int, waited: float) -> bool | None:
        """True: yield now; False: stop yielding now; None: leave it as it is. ``requests``
        were served and ``waited`` is the share of the time spent waiting for a CPU, both
        since the last check."""
        if self._hold:
            self._hold -= 1
        if self.yielding and waited > STARVED_SHARE:
            self._hold = HOLD_CHECKS
        want = following and not requests and not watchers and not self._hold
        if want == self.yielding:
            return None
        self.yielding = want
        return want


def _run_delay_ns() -> int:
    """Nanoseconds this thread (the event loop's) has waited runnable for a CPU."""
    with open("/proc/thread-self/schedstat") as f:
        return int(f.read().split()[1])


def _autogroup_nice() -> int:
    with open(AUTOGROUP) as f:
        return int(f.read().split()[-1])  # "/autogroup-123 nice 0"


def _set_autogroup_nice(nice: int) -> None:
    with open(AUTOGROUP, "w") as f:
        f.write(str(nice))


class FollowerYield:
    """Checks the policy once a second or so, and at every tick whether work came (``poll``),
    and sets this process's autogroup weight."""

    def __init__(self) -> None:
        self._policy = YieldPolicy()
        self._served = 0
        try:
            self._nice = _autogroup_nice()  # what to return to (0 unless set from outside)
            self._last = (time.monotonic(), _run_delay_ns())
            self.enabled = self._nice < YIELD_NICE and os.getsid(0) == os.getpid()
        except (OSError, ValueError, IndexError):
            self.enabled = False

    def check(self, following: bool, served: int, watchers: int) -> None:
        """Once a second or so. ``served``: client requests served since the start (a
        running count)."""
        if not self.enabled:
            return
        requests, self._served = served - self._served, served
        try:
            now, delay = time.monotonic(), _run_delay_ns()
        except (OSError, ValueError, IndexError) as exc:
            self._give_up(exc)
            return
        (then, delay_then), self._last = self._last, (now, delay)
        waited = (delay - delay_then) / 1e9 / (now - then) if now > then else 0.0
        decision = self._policy.decide(following, requests, watchers, waited)
        if decision is True:
            self._set(YIELD_NICE, "following with no client here: the application yields the CPU")
        elif decision is False:
            self._set(
                self._nice,
                "the application takes its CPU weight back (%s)"
                % (
                    f"it waited for a CPU {waited:.0%} of the time"
                    if waited > STARVED_SHARE
                    else "leading, or serving clients here"
                ),
            )

    def poll(self, following: bool, served: int, watchers: int) -> None:
        """At every tick: a yielding application that leads now, or whose clients sent or
        watch, takes its weight back at once rather than at the next check."""
        if self._policy.yielding and (not following or served != self._served or watchers):
            self._policy.yielding = False
            self._set(
                self._nice,
                "the application takes its CPU weight back at once (%s)"
                % ("no longer following" if not following else "a client here"),
            )

    def _set(self, nice: int, message: str) -> None:
        try:
            _set_autogroup_nice(nice)
        except OSError as exc:
            self._give_up(exc)
            return
        log.info("%s", message)

    def _give_up(self, exc: BaseException) -> None:
        self.enabled = False
        log.warning("not yielding the CPU while following: %s", exc)
        if self._policy.yielding:
            with contextlib.suppress(OSError):
                _set_autogroup_nice(self._nice)
