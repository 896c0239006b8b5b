"""A tiny in-memory cluster for unit tests: persists every Ready at once (following the
persistence rule), passes messages directly, and lets tests cut links or hold messages."""

from __future__ import annotations

import random
from collections.abc import Iterable

from pyraftkv.raft import (
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    RaftCore,
    Ready,
    Role,
)

CONFIG = Config(election_ticks=10, heartbeat_ticks=1)


def log_of(terms: Iterable[int]) -> list[Entry]:
    """Entries 1..n with the given terms (data names index and term)."""
    return [Entry(t, i, 0, b"%d@%d" % (i, t)) for i, t in enumerate(terms, 1)]


class Network:
    """Members by id; deliver() runs every shell until nothing moves."""

    def __init__(
        self,
        ids: Iterable[int] = (1, 2, 3),
        config: Config = CONFIG,
        seed: int = 0,
        cores: dict[int, RaftCore] | None = None,
    ) -> None:
        ids = list(ids)
        self.config = config
        if cores is None:
            members = {i: b"m%d" % i for i in ids}
            cores = {
                i: RaftCore.bootstrap(i, members, config, random.Random(seed * 100 + i))
                for i in ids
            }
        self.cores = cores
        self.cut: set[tuple[int, int]] = set()  # (from, to) links that drop everything
        self.dropped_types: set[MessageType] = set()
        self.inflight: list[Message] = []
        self.sent: list[Message] = []  # everything ever sent, for assertions
        self.applied: dict[int, list[Entry]] = {i: [] for i in cores}
        self.read_states: dict[int, list] = {i: [] for i in cores}
        self.installed: dict[int, list] = {i: [] for i in cores}

    def __getitem__(self, node: int) -> RaftCore:
        return self.cores[node]

    def add(self, node: int) -> RaftCore:
        """Start a brand-new, empty member (to be added by a conf change)."""
        core = RaftCore(node, self.config, random.Random(node))
        self.cores[node] = core
        self.applied[node], self.read_states[node], self.installed[node] = [], [], []
        return core

    def isolate(self, node: int) -> None:
        for other in self.cores:
            if other != node:
                self.cut |= {(node, other), (other, node)}

    def heal(self) -> None:
        self.cut.clear()

    def handle_ready(self, node: int, ready: Ready) -> None:
        """What a shell does with a Ready, persisting instantly."""
        self.applied[node].extend(ready.committed_entries)
        self.read_states[node].extend(ready.read_states)
        if ready.snapshot is not None:
            self.installed[node].append(ready.snapshot)
        self._send(ready.messages)
        self._send(ready.persisted_messages)
        self.cores[node].advance(ready)

    def _send(self, messages: list[Message]) -> None:
        for msg in messages:
            self.sent.append(msg)
            if (msg.sender, msg.to) not in self.cut and msg.type not in self.dropped_types:
                self.inflight.append(msg)

    def flush(self) -> None:
        """Take and handle every member's Ready once (no delivery)."""
        for node, core in self.cores.items():
            while core.has_ready():
                self.handle_ready(node, core.ready())

    def deliver(self, rounds: int = 1000) -> None:
        """Deliver messages until the cluster is quiet."""
        for _ in range(rounds):
            self.flush()
            if not self.inflight:
                return
            batch, self.inflight = self.inflight, []
            for msg in batch:
                if msg.to in self.cores:
                    self.cores[msg.to].step(msg)
        raise AssertionError("cluster never went quiet")

    def tick(self, node: int, times: int = 1) -> None:
        for _ in range(times):
            self.cores[node].tick()
        self.deliver()

    def tick_all(self, times: int = 1) -> None:
        for _ in range(times):
            for core in self.cores.values():
                core.tick()
            self.deliver()

    def campaign(self, node: int) -> None:
        """Make node time out and run an election (others do not tick)."""
        core = self.cores[node]
        for _ in range(2 * self.config.election_ticks):
            core.tick()
            if core.role != Role.FOLLOWER:
                break
        self.deliver()

    def leader(self) -> RaftCore:
        leaders = [c for c in self.cores.values() if c.role == Role.LEADER]
        assert len(leaders) == 1, [(c.id, c.role) for c in self.cores.values()]
        return leaders[0]

    def terms(self, node: int) -> list[int]:
        log = self.cores[node].log
        return [log.term(i) for i in range(log.first_index, log.last_index + 1)]


def restored(
    node: int,
    terms: list[int],
    term: int,
    voters: Iterable[int],
    config: Config = CONFIG,
    commit: int = 0,
) -> RaftCore:
    """A member restarted with the given log (after the bootstrap conf entries)."""
    members = {i: b"" for i in voters}
    boot = RaftCore.bootstrap(node, members, config, random.Random(0))
    base = list(boot.log.entries)
    entries = base + [
        Entry(t, len(base) + i, 0, b"%d@%d" % (len(base) + i, t)) for i, t in enumerate(terms, 1)
    ]
    return RaftCore(
        node,
        config,
        random.Random(node),
        entries=entries,
        hard_state=HardState(term, 0, max(commit, len(base))),
    )
