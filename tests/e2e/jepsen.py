"""A Jepsen-style run: concurrent read/write/compare-and-set clients (pyraftkv.check's
workload) against a LocalCluster while a nemesis injects faults, then the history is
checked for linearizability. Used by tests/e2e/test_jepsen.py (short) and bench/jepsen.py
(long)."""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import threading
import time
from dataclasses import dataclass, field

from pyraftkv.check import workload
from pyraftkv.check.linearizability import Report, check
from pyraftkv.client.connection import ConnectionLost
from pyraftkv.errors import ApiError
from pyraftkv.proto import rpc_pb2 as rpc

from .harness import LocalCluster, Member
from .nemesis import Network, app_pid, paused, raft_pid

# Every fault the nemesis knows; each is injected, held for a while, then healed.
FAULTS = (
    "isolate-leader",  # the leader alone on one side
    "split",  # a random minority cut off from the majority (2/1 of 3, 3/2 of 5)
    "bridge",  # two halves cannot talk, one member talks to both
    "kill",  # kill -9 a random member (both processes), restart it
    "pause-raft",  # SIGSTOP a member's Raft process alone
    "pause-app",  # SIGSTOP a member's application process alone
    "pause-leader-raft",  # SIGSTOP the leader's Raft process
    "move-leader",  # transfer leadership to a follower
    "slow",  # every link delayed 20-60 ms, batches reordered
    "membership",  # remove a follower, wipe it, add it back as a new member
)


@dataclass
class Nemesis:
    """Injects ``faults`` one after another, ``spacing_s`` apart, each held ``hold_s``."""

    cluster: LocalCluster
    network: Network
    faults: list[str]
    spacing_s: float
    hold_s: float
    rng: random.Random
    done: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def run(self) -> None:
        for name in self.faults:
            time.sleep(self.spacing_s)
            try:
                self._inject(name)
                self.done.append(name)
            except Exception as exc:  # a fault that could not be injected is reported
                self.errors.append(f"{name}: {exc!r}")
            finally:
                self.network.heal()
                self._restart_stopped()

    def _leader(self) -> Member:
        return self.cluster.wait_leader(timeout=10)

    def _any(self) -> Member:
        return self.rng.choice(self.cluster.members)

    def _inject(self, name: str) -> None:
        cluster, network, hold = self.cluster, self.network, self.hold_s
        if name == "isolate-leader":
            network.isolate(self._leader())
            time.sleep(hold)
        elif name == "split":
            members = list(cluster.members)
            self.rng.shuffle(members)
            minority = (len(members) - 1) // 2
            network.partition(members[:minority], members[minority:])
            time.sleep(hold)
        elif name == "bridge":
            members = list(cluster.members)
            self.rng.shuffle(members)
            half = (len(members) - 1) // 2
            network.partition(members[1 : 1 + half], members[1 + half :])  # [0] bridges
            time.sleep(hold)
        elif name == "kill":
            victim = self._any()
            cluster.kill(victim)
            time.sleep(hold)
            cluster.start_member(victim, wait=False)
        elif name in ("pause-raft", "pause-app", "pause-leader-raft"):
            victim = self._leader() if name == "pause-leader-raft" else self._any()
            pid = app_pid(victim) if name == "pause-app" else raft_pid(victim)
            with paused(pid):
                time.sleep(hold)
        elif name == "move-leader":
            leader = self._leader()
            target = self.rng.choice([m for m in cluster.members if m is not leader])
            with cluster.client([leader], timeout=5.0) as c:
                c.move_leader(network.member_id(target))
        elif name == "membership":
            self._replace_member(hold)
        elif name == "slow":
            for a in cluster.members:
                for b in cluster.members:
                    if a is not b:
                        network.delay(a, b, self.rng.randrange(20, 60), jitter_ms=20)
            time.sleep(hold)
        else:
            raise ValueError(f"unknown fault {name}")

    def _replace_member(self, hold: float) -> None:
        """Remove a follower, wipe its data, then add it back under a new member id."""
        cluster, network = self.cluster, self.network
        leader = self._leader()
        victim = self.rng.choice([m for m in cluster.members if m is not leader])
        with cluster.client([leader], timeout=5.0) as c:
            c.call("MemberRemove", rpc.MemberRemoveRequest(ID=network.member_id(victim)))
        with contextlib.suppress(ProcessLookupError):  # (it may have stopped by itself)
            cluster.kill(victim)
        shutil.rmtree(victim.data_dir)
        network.forget(victim)
        time.sleep(hold)
        peer_url = f"http://{victim.address}:{victim.peer_port}"
        deadline = time.monotonic() + 15
        while True:  # refused while the cluster is not yet healthy again
            try:
                with cluster.client(timeout=5.0) as c:
                    c.call("MemberAdd", rpc.MemberAddRequest(peerURLs=[peer_url]))
                break
            except (ApiError, ConnectionLost):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        if "--initial-cluster-state" not in victim.extra_args:
            victim.extra_args += ["--initial-cluster-state", "existing"]
        cluster.start_member(victim, wait=False)

    def _restart_stopped(self) -> None:
        for m in self.cluster.members:
            if not m.running:
                with contextlib.suppress(ProcessLookupError):
                    self.cluster.kill(m)
                self.cluster.start_member(m, wait=False)


@dataclass
class RunResult:
    report: Report
    faults: list[str]
    fault_errors: list[str]
    elapsed_s: float


def run(
    cluster: LocalCluster,
    network: Network,
    faults: list[str],
    *,
    duration_s: float,
    clients: int = 8,
    keys: int = 3,
    hold_s: float = 1.0,
    seed: int = 0,
    serializable: bool = False,
) -> RunResult:
    """Run the workload for ``duration_s`` while the nemesis injects ``faults`` spread over
    it; then heal, wait for every member, and check the history."""
    rng = random.Random(seed)
    spacing = max(0.1, duration_s / len(faults) - hold_s) if faults else duration_s
    nemesis = Nemesis(cluster, network, list(faults), spacing, hold_s, rng)
    thread = threading.Thread(target=nemesis.run, daemon=True)
    work = workload.Workload(
        duration_s=duration_s,
        clients=clients,
        keys=keys,
        op_timeout_s=3.0,
        seed=seed,
        serializable=serializable,
    )
    started = time.monotonic()
    thread.start()
    history = asyncio.run(workload.run(cluster.endpoints, work))
    thread.join(60)
    assert not thread.is_alive(), "the nemesis did not finish"
    for m in cluster.members:
        cluster.wait_serving(m)
    cluster.wait_leader()
    elapsed = time.monotonic() - started
    return RunResult(check(history), nemesis.done, nemesis.errors, elapsed)


def cluster_answers(cluster: LocalCluster) -> bool:
    """Whether a write goes through after the run (the cluster recovered)."""
    try:
        with cluster.client(timeout=10.0) as c:
            c.put("jepsen/after", "ok")
        return True
    except (ApiError, ConnectionLost):
        return False
