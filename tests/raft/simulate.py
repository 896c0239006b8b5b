"""Deterministic cluster simulator for the Raft core, driven by one seed.

Each member is a RaftCore wrapped in a simulated shell that follows the persistence rule
of pyraftkv/raft/ready.py: it sends Ready.messages at once, persists the Ready after a
random delay (in order), then sends Ready.persisted_messages and advances. A crash loses
every Ready not yet persisted; a restart rebuilds the core from only the persisted hard
state, snapshot metadata and WAL entries. The network drops, delays, reorders and
duplicates messages and honours partitions (asymmetric ones too). Snapshots (compaction
and transfer), membership changes, leader transfers, ReadIndex and leaders telling
followers how far their logs are durable (RaftCore.send_durable_to) run under all of it.

Safety is checked after every step (see Checker); then the faults heal and liveness is
checked: a leader within a bounded number of ticks, and a proposal committed everywhere.

Replay one seed:   python -m tests.raft.simulate --seed 1234 --members 3 -v
Soak many seeds:   python -m tests.raft.simulate --seeds 100000 --members 5
"""

from __future__ import annotations

import argparse
import heapq
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pyraftkv.raft import (
    EMPTY_SNAPSHOT,
    ConfChange,
    ConfChangeType,
    Config,
    Entry,
    HardState,
    Message,
    MessageType,
    ProposalRefused,
    RaftCore,
    Ready,
    Role,
    SnapshotMeta,
    decode_message,
    encode_message,
)

ELECTION_TICKS = 10
FAULT_TICKS = 200
LIVENESS_TICKS = 20 * ELECTION_TICKS
MAX_EVENTS_PER_TICK = 5000


class SafetyViolation(AssertionError):
    """An invariant of Raft does not hold."""


@dataclass
class Storage:
    """What a member's shell has made durable: exactly what survives a crash."""

    hard_state: HardState = HardState()
    snapshot: SnapshotMeta = EMPTY_SNAPSHOT
    wal: list[Entry] = field(default_factory=list)  # after replay: contiguous indexes

    def write_entries(self, entries: list[Entry]) -> None:
        """WAL replay semantics: an entry at index k replaces everything from k on."""
        wal = self.wal
        if wal:
            keep = entries[0].index - wal[0].index
            if keep <= 0:
                wal.clear()
            else:
                del wal[keep:]
        if wal and wal[-1].index + 1 != entries[0].index:
            wal.clear()
        wal.extend(entries)

    def write_snapshot(self, meta: SnapshotMeta) -> None:
        """Snapshot record: entries at or below it are dropped. Entries above it stay,
        even when the snapshot replaced the log; restore must discard the stale ones."""
        self.snapshot = meta
        self.wal = [e for e in self.wal if e.index > meta.index]


@dataclass
class Member:
    """One simulated member: its core, its shell's queues and its application."""

    id: int
    core: RaftCore | None
    storage: Storage = field(default_factory=Storage)
    incarnation: int = 0
    unpersisted: list[Ready] = field(default_factory=list)
    app_applied: int = 0  # the application's applied index (its state = the log prefix)
    compact_every: int = 10
    last_commit: int = 0


class Checker:
    """The invariants, checked incrementally as members externalize state."""

    def __init__(self) -> None:
        self.leader_of_term: dict[int, int] = {}
        self.entries: dict[tuple[int, int], tuple[int, bytes, int]] = {}  # log matching
        self.committed: dict[int, int] = {}  # index -> term, as any member committed it
        self.max_committed = 0
        self.applied: dict[int, tuple[int, bytes]] = {}

    def fail(self, what: str) -> None:
        raise SafetyViolation(what)

    def became_leader(self, core: RaftCore) -> None:
        """Election safety and leader completeness."""
        other = self.leader_of_term.setdefault(core.term, core.id)
        if other != core.id:
            self.fail(f"two leaders in term {core.term}: {other:x} and {core.id:x}")
        log = core.log
        for index in range(log.snapshot.index + 1, self.max_committed + 1):
            if log.term(index) != self.committed[index]:
                self.fail(
                    f"leader {core.id:x} of term {core.term} lacks committed entry "
                    f"{index} (term {self.committed[index]}, has {log.term(index)})"
                )
        snap = log.snapshot
        if snap.index and self.committed.get(snap.index, snap.term) != snap.term:
            self.fail(f"leader {core.id:x} snapshot {snap} disagrees with committed log")

    def appended(self, core: RaftCore, entries: list[Entry]) -> None:
        """Log matching: an (index, term) always names the same data after the same term."""
        log = core.log
        prev_term = log.term(entries[0].index - 1)
        for entry in entries:
            key = (entry.index, entry.term)
            seen = (entry.type, entry.data, prev_term)
            known = self.entries.setdefault(key, seen)
            if known != seen and prev_term is not None:
                self.fail(
                    f"log matching: member {core.id:x} holds {entry} after term "
                    f"{prev_term}, another holds {known}"
                )
            prev_term = entry.term

    def commit_moved(self, member: Member) -> None:
        """Commit never goes back; every member commits the same entry at an index."""
        core = member.core
        log = core.log
        if log.committed < member.last_commit:
            self.fail(
                f"member {core.id:x} commit went back from {member.last_commit} to {log.committed}"
            )
        for index in range(max(member.last_commit, log.snapshot.index) + 1, log.committed + 1):
            term = log.term(index)
            known = self.committed.setdefault(index, term)
            if known != term:
                self.fail(
                    f"member {core.id:x} committed index {index} at term {term}, "
                    f"another member at term {known}"
                )
        if log.snapshot.index > member.last_commit:
            snap = log.snapshot
            if self.committed.setdefault(snap.index, snap.term) != snap.term:
                self.fail(f"member {core.id:x} snapshot {snap} is not the committed log")
        member.last_commit = log.committed
        if log.committed > self.max_committed:
            for index in range(self.max_committed + 1, log.committed + 1):
                if index not in self.committed:
                    self.fail(f"committed index {index} never recorded")
            self.max_committed = log.committed

    def apply(self, member: Member, entry: Entry) -> None:
        """State machine safety and exactly-once application."""
        if entry.index != member.app_applied + 1:
            self.fail(f"member {member.id:x} applied {entry.index} after {member.app_applied}")
        seen = (entry.term, entry.data)
        known = self.applied.setdefault(entry.index, seen)
        if known != seen:
            self.fail(
                f"member {member.id:x} applied {seen} at {entry.index}, another applied {known}"
            )
        member.app_applied = entry.index

    def install(self, member: Member, meta: SnapshotMeta) -> None:
        """An installed snapshot is the committed prefix and moves the application on."""
        if meta.index <= member.app_applied:
            self.fail(
                f"member {member.id:x} installs snapshot {meta.index} at applied "
                f"{member.app_applied}"
            )
        known = self.applied.get(meta.index)
        if known is None or known[0] != meta.term:
            self.fail(f"snapshot {meta} does not match applied entry {known}")
        member.app_applied = meta.index


@dataclass
class Faults:
    """How hostile this seed's world is during the fault phase."""

    drop: float
    duplicate: float
    max_delay: int
    crash: float
    partition: float
    codec_sample: float


class Simulation:
    """A cluster of simulated members on a simulated network, all driven by one seed."""

    def __init__(self, seed: int, members: int, log: Callable[[str], None] | None = None):
        self.seed = seed
        self.rng = random.Random(seed)
        self.log = log
        self.checker = Checker()
        self.config = Config(
            election_ticks=ELECTION_TICKS,
            heartbeat_ticks=1,
            max_msg_bytes=self.rng.choice([64, 4096]),
            max_inflight_msgs=self.rng.choice([1, 4, 64]),
            max_committed_bytes_per_ready=self.rng.choice([32, 1 << 20]),
            pre_vote=self.rng.random() < 0.75,
            check_quorum=self.rng.random() < 0.75,
            # odd seeds as the node runs the core (not from rng: seeds replay as before)
            lazy_commit=seed % 2 == 1,
            lazy_followers=seed % 2 == 1,
        )
        rng = self.rng
        self.faults = Faults(
            drop=rng.choice([0.0, 0.02, 0.1, 0.25]),
            duplicate=rng.choice([0.0, 0.02, 0.1]),
            max_delay=rng.choice([0, 1, 2, 3]),
            crash=rng.choice([0.0, 0.002, 0.01]),
            partition=rng.choice([0.0, 0.01, 0.03]),
            codec_sample=0.1,
        )
        self.now = 0
        self.events: list[tuple[int, int, str, object]] = []
        self.event_seq = 0
        self.blocked: set[tuple[int, int]] = set()
        self.initial = list(range(1, members + 1))
        self.spare = [members + 1, members + 2]
        self.removed: set[int] = set()
        self.members: dict[int, Member] = {}
        self.payload_seq = 0
        self.read_floor: dict[bytes, int] = {}
        self.stats = {"reads": 0, "snapshots": 0, "conf_changes": 0, "crashes": 0}
        bootstrap = {node: f"member-{node}".encode() for node in self.initial}
        for node in self.initial:
            core = RaftCore.bootstrap(node, bootstrap, self.config, random.Random(rng.random()))
            self.members[node] = Member(node, core, compact_every=rng.choice([3, 10, 40]))

    # ---------------------------------------------------------------- plumbing

    def say(self, text: str) -> None:
        if self.log:
            self.log(f"[{self.now:4d}] {text}")

    def schedule(self, delay: int, kind: str, payload: object) -> None:
        self.event_seq += 1
        heapq.heappush(self.events, (self.now + delay, self.event_seq, kind, payload))

    def send(self, msg: Message, faulty: bool) -> None:
        if msg.type is MessageType.SNAP:
            self.send_snapshot(msg, faulty)
            return
        if (msg.sender, msg.to) in self.blocked:
            return
        rng = self.rng
        if faulty and rng.random() < self.faults.drop:
            return
        if rng.random() < self.faults.codec_sample:
            encoded = encode_message(msg)
            if decode_message(encoded) != msg:
                raise SafetyViolation(f"codec round trip changed {msg}")
        delay = int(rng.random() * ((self.faults.max_delay if faulty else 1) + 1))
        self.schedule(delay, "deliver", msg)
        if faulty and rng.random() < self.faults.duplicate:
            self.schedule(int(rng.random() * (self.faults.max_delay + 4)), "deliver", msg)

    def send_snapshot(self, msg: Message, faulty: bool) -> None:
        sender = self.members[msg.sender]
        if msg.snapshot != sender.storage.snapshot:
            raise SafetyViolation(
                f"member {msg.sender:x} sends snapshot {msg.snapshot} it "
                f"has not persisted ({sender.storage.snapshot})"
            )
        ok = not (faulty and self.rng.random() < self.faults.drop * 2)
        delay = self.rng.randint(1, 3 + self.faults.max_delay)
        self.schedule(delay, "snapshot", (msg, sender.incarnation, ok))

    def finish_snapshot(self, msg: Message, incarnation: int, ok: bool, faulty: bool) -> None:
        """The snapshot stream ends: the receiver's shell steps the SNAP message into its
        core once the data is in; the sender's shell reports the outcome."""
        receiver = self.members[msg.to]
        ok = ok and receiver.core is not None and (msg.sender, msg.to) not in self.blocked
        if ok:
            receiver.core.step(msg)
            self.drive(receiver, faulty)
        sender = self.members[msg.sender]
        if sender.core is not None and sender.incarnation == incarnation:
            sender.core.report_snapshot(msg.to, ok)
            self.drive(sender, faulty)

    def alive(self) -> list[Member]:
        return [m for m in self.members.values() if m.core is not None]

    # ---------------------------------------------------------------- the shell

    def drive(self, member: Member, faulty: bool) -> None:
        """Run member's shell: take every Ready, send, queue persistence, apply."""
        core = member.core
        checker = self.checker
        for _ in range(100):
            if core.has_ready() is False:
                break
            ready = core.ready()
            if ready.soft_state is not None:
                self.say(
                    f"{member.id:x} is {ready.soft_state.role.name} of term "
                    f"{ready.soft_state.term}, leader {ready.soft_state.leader_id:x}"
                )
                if ready.soft_state.role == Role.LEADER:
                    checker.became_leader(core)
            if ready.entries:
                checker.appended(core, ready.entries)
            for msg in ready.messages:
                self.send(msg, faulty)
            for entry in ready.committed_entries:
                checker.apply(member, entry)
                self.stats["conf_changes"] += entry.type == 1
            for read in ready.read_states:
                floor = self.read_floor[read.context]
                if read.index < floor:
                    raise SafetyViolation(
                        f"read {read.context!r} at {member.id:x} got index "
                        f"{read.index}, but {floor} was committed before"
                    )
                self.stats["reads"] += 1
            member.unpersisted.append(ready)
            delay = int(self.rng.random() * 3) if faulty else 0
            self.schedule(delay, "persist", (member.id, member.incarnation))
            checker.commit_moved(member)
            self.maybe_compact(member)
        else:
            raise SafetyViolation(f"member {member.id:x} never runs out of Ready")
        checker.commit_moved(member)

    def persist_one(self, member: Member, faulty: bool) -> None:
        """The oldest queued Ready becomes durable: write, then send, then advance."""
        ready = member.unpersisted.pop(0)
        storage = member.storage
        if ready.snapshot is not None:
            storage.write_snapshot(ready.snapshot)
            self.checker.install(member, ready.snapshot)
            self.stats["snapshots"] += 1
        if ready.entries:
            storage.write_entries(ready.entries)
        if ready.hard_state is not None:
            storage.hard_state = ready.hard_state
        for msg in ready.persisted_messages:
            self.send(msg, faulty)
        core = member.core
        core.advance(ready)
        if ready.entries and core.role == Role.LEADER and self.rng.random() < 0.5:
            # As the shell does for a follower whose writer waits (RaftCore.send_durable_to).
            for node in sorted(core.membership.members()):
                core.send_durable_to(node)
        self.drive(member, faulty)

    def maybe_compact(self, member: Member) -> None:
        core = member.core
        if member.app_applied - core.log.snapshot.index >= member.compact_every:
            meta = core.compact(member.app_applied)
            member.storage.write_snapshot(meta)  # the application's snapshot is durable
            self.say(f"{member.id:x} compacts to {meta.index}")

    def crash(self, member: Member) -> None:
        self.say(f"{member.id:x} crashes, losing {len(member.unpersisted)} unpersisted Readies")
        member.core = None
        member.unpersisted = []
        self.stats["crashes"] += 1
        member.incarnation += 1
        if self.rng.random() < 0.5:
            member.app_applied = member.storage.snapshot.index  # application state lost too

    def restart(self, member: Member, faulty: bool) -> None:
        storage = member.storage
        member.app_applied = max(member.app_applied, storage.snapshot.index)
        member.core = RaftCore(
            member.id,
            self.config,
            random.Random(self.rng.random()),
            hard_state=storage.hard_state,
            snapshot=storage.snapshot,
            entries=list(storage.wal),
            applied=member.app_applied,
        )
        member.last_commit = member.core.log.committed
        self.say(
            f"{member.id:x} restarts at term {storage.hard_state.term}, commit "
            f"{member.core.log.committed}, snapshot {storage.snapshot.index}"
        )
        self.drive(member, faulty)

    # ---------------------------------------------------------------- client operations

    def random_ops(self, faulty: bool) -> None:
        rng = self.rng
        live = self.alive()
        if not live:
            return
        leader = self.leader()
        member = self.members[leader.id] if leader and rng.random() < 0.6 else rng.choice(live)
        core = member.core
        roll = rng.random()
        try:
            if roll < 0.45:
                count = rng.randint(1, 3)
                payloads = []
                for _ in range(count):
                    self.payload_seq += 1
                    payloads.append(b"p%d" % self.payload_seq)
                core.propose(payloads)
            elif roll < 0.65:
                self.payload_seq += 1
                context = b"r%d" % self.payload_seq
                self.read_floor[context] = self.checker.max_committed
                core.read_index(context)
            elif roll < 0.70:
                self.change_membership(core)
            elif roll < 0.72 and core.membership.voters:
                core.transfer_leadership(rng.choice(sorted(core.membership.voters)))
        except ProposalRefused:
            pass
        self.drive(member, faulty)

    def change_membership(self, core: RaftCore) -> None:
        rng = self.rng
        membership = core.membership
        choice = rng.random()
        if choice < 0.4 and self.spare:
            node = self.spare[0]
            core.propose_conf_change(ConfChange(ConfChangeType.ADD_LEARNER, node, b"new"))
            self.spare.pop(0)
            self.members[node] = Member(
                node,
                RaftCore(node, self.config, random.Random(rng.random())),
                compact_every=rng.choice([3, 10, 40]),
            )
            self.say(f"{core.id:x} adds learner {node:x}")
        elif choice < 0.7 and membership.learners:
            node = rng.choice(sorted(membership.learners))
            core.propose_conf_change(ConfChange(ConfChangeType.PROMOTE_LEARNER, node))
            self.say(f"{core.id:x} promotes {node:x}")
        elif len(membership.voters) > 2 or membership.learners:
            node = rng.choice(sorted(membership.members()))
            core.propose_conf_change(ConfChange(ConfChangeType.REMOVE_MEMBER, node))
            self.say(f"{core.id:x} removes {node:x}")

    # ---------------------------------------------------------------- faults

    def random_faults(self) -> None:
        rng, faults = self.rng, self.faults
        for member in self.members.values():
            if member.core is not None and rng.random() < faults.crash:
                self.crash(member)
            elif member.core is None and rng.random() < 0.1:
                self.restart(member, True)
        if rng.random() < faults.partition:
            nodes = sorted(self.members)
            side = {n for n in nodes if rng.random() < 0.5}
            symmetric = rng.random() < 0.5
            for a in side:
                for b in nodes:
                    if b not in side:
                        self.blocked.add((a, b))
                        if symmetric:
                            self.blocked.add((b, a))
            self.say(f"partition {sorted(side)} {'<->' if symmetric else '->'} the rest")
        elif self.blocked and rng.random() < 0.1:
            self.blocked.clear()
            self.say("partition heals")

    # ---------------------------------------------------------------- time

    def run_tick(self, faulty: bool) -> None:
        rng = self.rng
        if faulty:
            self.random_faults()
        for _ in range(rng.randint(0, 3)):
            self.random_ops(faulty)
        live = self.alive()
        rng.shuffle(live)
        for member in live:
            member.core.tick()
            if self.config.lazy_commit:
                member.core.send_commit()  # as the node's shell does after a short delay
            if self.config.lazy_followers and self.now % 3 == 0:  # as for a forwarded write
                other = sorted(self.members)[self.now // 3 % len(self.members)]
                member.core.send_first_to(other)
                member.core.send_commit_to(other)
            self.drive(member, faulty)
        self.run_events(faulty)
        self.now += 1

    def run_events(self, faulty: bool) -> None:
        events = self.events
        for _ in range(MAX_EVENTS_PER_TICK):
            if not events or events[0][0] > self.now:
                return
            _, _, kind, payload = heapq.heappop(events)
            if kind == "deliver":
                msg = payload
                member = self.members.get(msg.to)
                if member is None or member.core is None or (msg.sender, msg.to) in self.blocked:
                    continue
                member.core.step(msg)
                self.drive(member, faulty)
            elif kind == "persist":
                node, incarnation = payload
                member = self.members[node]
                if member.core is not None and member.incarnation == incarnation:
                    self.persist_one(member, faulty)
            else:
                self.finish_snapshot(*payload, faulty)
        raise SafetyViolation("event storm: too many events in one tick")

    def leader(self) -> RaftCore | None:
        """The live leader of the highest term, if any."""
        leaders = [m.core for m in self.alive() if m.core.role == Role.LEADER]
        return max(leaders, key=lambda c: c.term) if leaders else None

    def run(self) -> None:
        """Fault phase, then heal, then check liveness."""
        for _ in range(FAULT_TICKS):
            self.run_tick(faulty=True)
        self.say("---- faults heal")
        self.blocked.clear()
        for member in self.members.values():
            if member.core is None:
                self.restart(member, False)
        self.check_liveness()

    def check_liveness(self) -> None:
        marker = b"liveness-%d" % self.seed
        proposed_at = None
        for _ in range(LIVENESS_TICKS):
            self.run_tick(faulty=False)
            leader = self.leader()
            if leader is None:
                continue
            if proposed_at is None:
                try:
                    proposed_at = leader.propose([marker])
                    self.say(f"liveness proposal at {proposed_at} on {leader.id:x}")
                except ProposalRefused:
                    continue
                self.drive(self.members[leader.id], False)
                continue
            voters = leader.membership.voters
            applied = [self.members[v].app_applied for v in voters]
            entry = self.checker.applied.get(proposed_at)
            if entry is not None and entry[1] == marker and min(applied) >= proposed_at:
                return
            if entry is not None and entry[1] != marker:
                proposed_at = None  # overwritten by a newer leader: propose again
        raise SafetyViolation(
            f"liveness: no leader committing a proposal within {LIVENESS_TICKS} ticks after "
            f"healing (leader={self.leader() and self.leader().id}, proposed at {proposed_at})"
        )


def replay_command(seed: int, members: int) -> str:
    """The one command that replays a seed verbosely."""
    return f"python -m tests.raft.simulate --seed {seed} --members {members} -v"


def run_seed(seed: int, members: int, verbose: bool = False) -> Simulation:
    """Run one seed; raises SafetyViolation (with the replay command) on failure."""
    sim = Simulation(seed, members, log=print if verbose else None)
    try:
        sim.run()
    except AssertionError as err:
        raise SafetyViolation(
            f"seed {seed} ({members} members) failed: {err}\n"
            f"replay: {replay_command(seed, members)}"
        ) from err
    return sim


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--seeds", type=int, default=1000, help="run seeds [start, start+N)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--members", type=int, default=3, choices=(3, 5))
    parser.add_argument("-v", "--verbose", action="store_true", help="print every event")
    args = parser.parse_args(argv)
    seeds = [args.seed] if args.seed is not None else range(args.start, args.start + args.seeds)
    started = time.perf_counter()
    for count, seed in enumerate(seeds, 1):
        try:
            sim = run_seed(seed, args.members, args.verbose)
        except SafetyViolation as err:
            print(err, file=sys.stderr)
            return 1
        if args.seed is not None:
            print(f"seed {seed}: ok, commit {sim.checker.max_committed}, {sim.stats}")
        elif count % 1000 == 0:
            print(f"{count} seeds ok ({time.perf_counter() - started:.0f} s)")
    print(f"{len(seeds)} seeds ok in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
