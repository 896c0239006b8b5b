"""The per-write stage trace: where a write's time goes, stage by stage, across both
processes of the member that took it.

A sampled proposal batch (at most one per ``--write-trace-interval`` ms, 10 by default:
a single writer has about one write in eight traced, heavy load a far smaller share) carries
clock readings with it: the application process stamps it when its first write arrived
(read from the client's socket; when it joined the batch for a write of the member's
own) and when the batch went down the ring; the Raft process when it
popped it, sent the AppendEntries, finished the WAL write and the fdatasync, learned the
entry committed on a majority and pushed it up the ring; the application process again
when it popped it, applied it and wrote the replies (then it commits the LMDB
transaction: the entry is already durable in a majority's WAL). The readings are
CLOCK_MONOTONIC (``time.monotonic_ns``), which is one clock for every process on Linux.

The differences between consecutive readings are the stages. A leader sends to its
followers while its own WAL write runs, and a majority may answer before the leader's own
fdatasync ends: a reading earlier than the one before it counts as that one, so no stage is
negative and the stages of a write add up to its whole time. Every write of a traced batch
is counted once per stage: the histograms are per write.

A write taken by a follower is traced on that follower, in histograms of its own (stage
names prefixed ``forwarded/`` in the Status call, pyraftkv_forwarded_write_* on /metrics),
with the same stages seen from there: ``propose`` runs until the leader's AppendEntries
brings the entry back (the forward, the leader's append and send), ``wal_write`` and
``wal_fsync`` are the follower's own, and ``quorum`` ends when the follower learns the
entry committed (the leader's acknowledgement round and its commit notice).
"""

from __future__ import annotations

import time
from bisect import bisect_left

from ..proto import rpc_pb2 as rpc

# The readings, in order. The first two are the application's, the next six the Raft
# process's (they travel down and back up the ring), the last three the application's.
RECEIVED, BATCHED, RAFT_IN, SENT, WAL_WRITTEN, WAL_SYNCED, QUORUM, COMMITTED = range(8)
RAFT_READINGS = 8  # readings carried up in a TRACE message
READINGS = 11  # with ring-up arrival, applied, reply written

# Stage i lasts from reading i to reading i + 1.
STAGES = (
    "batch",  # first write arrived -> parsed, checked, batched, batch sent down the ring
    "ring_down",  # -> the Raft process popped it
    "propose",  # -> appended to the Raft log and AppendEntries sent to the followers
    "wal_write",  # -> the leader's WAL write done (waits for an fdatasync in progress)
    "wal_fsync",  # -> the leader's fdatasync done
    "quorum",  # -> a majority has it (followers' write, fsync, acknowledgement)
    "commit",  # -> committed entry pushed up the ring
    "ring_up",  # -> the application process popped it
    "apply",  # -> applied in the open LMDB transaction, responses built
    "reply",  # -> replies written to the client sockets
)

# 10 us doubling to about 1.3 s: wide enough for a loopback hop and a slow fsync.
STAGE_BUCKETS = tuple(0.00001 * 2**k for k in range(18))
# etcd's buckets (checked against etcd 3.4's /metrics).
ETCD_DISK_BUCKETS = tuple(0.001 * 2**k for k in range(14))
ETCD_RTT_BUCKETS = tuple(0.0001 * 2**k for k in range(16))
# Stage names of the writes a follower took, in the Status call.
FORWARDED = "forwarded/"
# Traces waiting for their entry; a leader change can orphan some, so keep a bound.
MAX_OPEN_TRACES = 256


class Histogram:
    """Prometheus-style histogram with fixed upper bounds; ``observe`` may weigh a sample."""

    __slots__ = ("bounds", "counts", "count", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)  # per bucket, the last one unbounded
        self.count = 0
        self.sum = 0.0

    def observe(self, seconds: float, weight: int = 1) -> None:
        self.counts[bisect_left(self.bounds, seconds)] += weight
        self.count += weight
        self.sum += seconds * weight

    def lines(self, name: str, labels: str = "") -> list[str]:
        """Bucket, sum and count lines (no HELP/TYPE); ``labels`` like ``To="1"``."""
        sep = "," if labels else ""
        out = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append(f'{name}_bucket{{{labels}{sep}le="{bound:g}"}} {running}')
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        tail = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{tail} {self.sum!r}")
        out.append(f"{name}_count{tail} {self.count}")
        return out


def stage_seconds(readings: list[int]) -> list[float]:
    """Each stage's length from the readings; a missing (0) or early reading counts as the
    one before it, so the stages are never negative and add up to the whole."""
    out = []
    previous = readings[0]
    for reading in readings[1:]:
        if reading > previous:
            out.append((reading - previous) / 1e9)
            previous = reading
        else:
            out.append(0.0)
    return out


class StageHistograms:
    """One histogram per stage, and one of the whole."""

    def __init__(self) -> None:
        self.stages = [Histogram(STAGE_BUCKETS) for _ in STAGES]
        self.total = Histogram(STAGE_BUCKETS)

    def observe(self, seconds: list[float], writes: int) -> None:
        for histogram, value in zip(self.stages, seconds, strict=True):
            histogram.observe(value, writes)
        self.total.observe(sum(seconds), writes)

    def status(self, prefix: str) -> list[rpc.WriteStageHistogram]:
        if not self.total.count:
            return []
        named = [*zip(STAGES, self.stages, strict=True), ("total", self.total)]
        return [
            rpc.WriteStageHistogram(
                stage=prefix + name, upper_bounds=h.bounds, counts=h.counts, sum_seconds=h.sum
            )
            for name, h in named
        ]


class WriteTrace:
    """The application side: open traces by entry index, and the stage histograms."""

    def __init__(self) -> None:
        # entry index -> readings so far, and the histograms the write goes to
        self.open: dict[int, tuple[list[int], StageHistograms]] = {}
        self.taken = StageHistograms()  # writes taken by this member as leader
        self.forwarded = StageHistograms()  # writes this member took as a follower
        self.backend_commit = Histogram(ETCD_DISK_BUCKETS)
        self.peer_rtt: dict[int, Histogram] = {}

    def arrived(self, index: int, readings: list[int], forwarded: bool) -> None:
        """The Raft process's readings for entry ``index``, just popped from the ring;
        ``forwarded`` when this member took the write as a follower."""
        if len(self.open) >= MAX_OPEN_TRACES:
            self.open.pop(next(iter(self.open)))
        histograms = self.forwarded if forwarded else self.taken
        self.open[index] = ([*readings, time.monotonic_ns()], histograms)

    def applied(self, done: list[tuple[int, int]]) -> list:
        """Entries (index, writes) just applied, their responses built: stamp them. What
        this returns goes to ``replied`` once their replies are written."""
        now = time.monotonic_ns()
        taken = []
        for index, writes in done:
            trace = self.open.pop(index, None)
            if trace is not None and writes:
                readings, histograms = trace
                readings.append(now)
                taken.append((readings, writes, histograms))
        return taken

    @staticmethod
    def replied(taken: list[tuple[list[int], int, StageHistograms]]) -> None:
        """The replies of writes ``applied`` returned are written: record them."""
        now = time.monotonic_ns()
        for readings, writes, histograms in taken:
            readings.append(now)
            histograms.observe(stage_seconds(readings), writes)

    def status(self) -> list[rpc.WriteStageHistogram]:
        """The stage histograms for the Status call (``pyraftkvctl check perf`` reads them),
        each set followed by the whole (stage ``total``), a follower's forwarded writes under
        ``forwarded/`` names; nothing for a set until one of its writes was traced."""
        return self.taken.status("") + self.forwarded.status(FORWARDED)

    def observe_rtt(self, peer: int, seconds: float) -> None:
        histogram = self.peer_rtt.get(peer)
        if histogram is None:
            histogram = self.peer_rtt[peer] = Histogram(ETCD_RTT_BUCKETS)
        histogram.observe(seconds)
