"""Faults a test injects into a LocalCluster's members: find a member's two processes,
pause and resume either one alone (SIGSTOP/SIGCONT); cut, slow and heal the network
between members (Network)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
from collections.abc import Iterator

from pyraftkv.node.peer_faults import ENV as PEER_FAULTS_ENV

from .harness import LocalCluster, Member


def raft_pid(member: Member) -> int:
    """The pid of the member's Raft process (the application process's only child), or of
    the member itself when it runs its Raft side in one process (``--single-process``)."""
    assert member.process is not None
    pid = member.process.pid
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        children = [int(c) for c in f.read().split()]
    if "--single-process" in member.extra_args:
        assert children == [], children
        return pid
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


class Network:
    """The peer links of a LocalCluster's members, cut or slowed on demand through each
    member's peer-faults file (pyraftkv/node/peer_faults.py). Make it before the cluster
    starts: the file's path goes into each member's environment."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        self.paths = {m.name: m.data_dir + ".faults.json" for m in cluster.members}
        for m in cluster.members:
            m.env[PEER_FAULTS_ENV] = self.paths[m.name]
        self._ids: dict[str, int] = {}
        self.rules: dict[str, dict] = {m.name: {} for m in cluster.members}

    def member_id(self, member: Member) -> int:
        if member.name not in self._ids:
            status = self.cluster.status(member)
            assert status is not None, f"{member.name} does not answer"
            self._ids[member.name] = status.header.member_id
        return self._ids[member.name]

    def forget(self, member: Member) -> None:
        """The member will come back under a new id (removed and added again)."""
        self._ids.pop(member.name, None)

    def _write(self, member: Member) -> None:
        path = self.paths[member.name]
        with open(path + ".tmp", "w") as f:
            json.dump(self.rules[member.name], f)
        os.replace(path + ".tmp", path)

    def cut(self, sender: Member, receiver: Member) -> None:
        """Lose everything ``sender`` sends to ``receiver`` (one way)."""
        drop = set(self.rules[sender.name].get("drop", ()))
        drop.add(self.member_id(receiver))
        self.rules[sender.name]["drop"] = sorted(drop)
        self._write(sender)

    def partition(self, *groups: list[Member]) -> None:
        """Members talk only within their group (every link between groups cut both ways)."""
        for group in groups:
            for other in groups:
                if other is not group:
                    for a in group:
                        for b in other:
                            self.cut(a, b)

    def isolate(self, member: Member) -> None:
        self.partition([member], [m for m in self.cluster.members if m is not member])

    def delay(self, sender: Member, receiver: Member, ms: int, jitter_ms: int = 0) -> None:
        rules = self.rules[sender.name]
        rules.setdefault("delay_ms", {})[str(self.member_id(receiver))] = ms
        rules["jitter_ms"] = jitter_ms
        self._write(sender)

    def heal(self) -> None:
        for m in self.cluster.members:
            self.rules[m.name] = {}
            self._write(m)
