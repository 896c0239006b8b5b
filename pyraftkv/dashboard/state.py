"""What the dashboard shows, computed from polls of the members (no I/O here).

Each second the poller hands ``ClusterView.update`` one ``MemberSample`` per endpoint: the
member's Status (or None when it did not answer), its /metrics text, the member list and
alarms as one member reported them. The view keeps a short history to turn counters into
rates and histograms into recent percentiles, notices leader and membership changes for
the event log, and renders everything as one JSON-ready dict for the page.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field

from ..node.write_trace import STAGES

WINDOW_S = 5.0  # rates and percentiles cover about the last five seconds
HISTORY = 120  # points kept for the throughput chart (two minutes at one poll a second)
EVENTS = 200  # event log lines kept

Samples = dict[str, float]  # "name{labels}" -> value


def parse_metrics(text: str) -> Samples:
    """Prometheus text format -> {sample name with its labels: value}; comments and
    lines that do not parse are skipped (a scrape of another version must not stop the
    dashboard)."""
    out: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name, _, value = line.rpartition(" ")
        try:
            out[name] = float(value)
        except ValueError:
            continue
    return out


def histogram(samples: Samples, name: str, labels: str = "") -> list[tuple[float, float]]:
    """The cumulative buckets of one histogram: [(upper bound, count), ...] by bound;
    ``labels`` are the series' own labels before ``le`` (e.g. 'stage="apply"')."""
    prefix = f'{name}_bucket{{{labels + "," if labels else ""}le="'
    buckets = []
    for key, value in samples.items():
        if key.startswith(prefix):
            bound = key[len(prefix) : -2]
            buckets.append((math.inf if bound == "+Inf" else float(bound), value))
    return sorted(buckets)


def bucket_delta(
    new: list[tuple[float, float]], old: list[tuple[float, float]]
) -> list[tuple[float, float]]:
    """Cumulative buckets of what was observed between two scrapes (new - old); the new
    ones alone when the bounds differ or a counter went back (a restarted member)."""
    if [b for b, _ in new] != [b for b, _ in old] or any(
        n < o for (_, n), (_, o) in zip(new, old, strict=True)
    ):
        return new
    return [(b, n - o) for (b, n), (_, o) in zip(new, old, strict=True)]


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q-quantile of cumulative buckets, interpolated inside its bucket as Prometheus'
    histogram_quantile does; None with no observations."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (
                count - lower_count
            )
        lower_bound, lower_count = bound, count
    return lower_bound


@dataclass
class MemberSample:
    """One poll of one endpoint."""

    endpoint: str
    status: dict | None  # StatusResponse fields, None when the member did not answer
    metrics: Samples = field(default_factory=dict)
    members: list[dict] | None = None  # the member list, as this member answered it
    alarms: list[dict] | None = None  # the cluster's alarms, as this member answered them
    error: str = ""


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


class ClusterView:
    """The dashboard's picture of one cluster, advanced by one poll at a time."""

    def __init__(self, endpoints: list[str], clock=time.time) -> None:
        self.endpoints = endpoints
        self._clock = clock
        self._polls: deque[tuple[float, dict[str, MemberSample]]] = deque()
        self.throughput: deque[dict] = deque(maxlen=HISTORY)
        self.events: deque[dict] = deque(maxlen=EVENTS)
        self._leader: int | None = None
        self._members: dict[int, str] | None = None
        self._answering: set[str] = set()
        self._down: set[str] = set()
        self.last: dict = {}

    def _event(self, at: float, text: str) -> None:
        self.events.appendleft({"time": at, "text": text})

    def update(self, samples: list[MemberSample]) -> dict:
        """Takes one poll of every endpoint; returns (and keeps as ``last``) the page's
        state."""
        now = self._clock()
        by_endpoint = {s.endpoint: s for s in samples}
        self._polls.append((now, by_endpoint))
        while len(self._polls) > 2 and now - self._polls[1][0] >= WINDOW_S:
            self._polls.popleft()
        old_at, old = self._polls[0]
        span = now - old_at

        members = next((s.members for s in samples if s.members is not None), None)
        names = {m["ID"]: m.get("name") or f"{m['ID']:x}" for m in members or []}
        self._note_membership(now, names if members is not None else None)
        leaders = {s.status["leader"] for s in samples if s.status and s.status.get("leader")}
        leader = max(leaders, key=lambda i: self._term_of(samples, i)) if leaders else 0
        self._note_leader(now, leader, names)
        self._note_health(now, samples)

        rows = []
        for endpoint in self.endpoints:
            sample = by_endpoint.get(endpoint) or MemberSample(endpoint, None)
            rows.append(self._row(sample, leader, names))
        leader_sample = next(
            (s for s in samples if s.status and s.status["header"]["member_id"] == leader), None
        )
        writes = reads = None
        if span > 0:
            writes = self._rate(leader_sample, old, "etcd_debugging_mvcc_current_revision", span)
            reads = sum(
                r
                for s in samples
                if (r := self._rate(s, old, 'pyraftkv_requests_total{method="Range"}', span))
                is not None
            )
        point = {"time": now, "writes": writes, "reads": reads}
        if span > 0:
            self.throughput.append(point)
        metrics = leader_sample.metrics if leader_sample else {}
        old_metrics = (
            old[leader_sample.endpoint].metrics
            if leader_sample and (leader_sample.endpoint in old)
            else {}
        )
        self.last = {
            "time": now,
            "leader": names.get(leader, f"{leader:x}") if leader else None,
            "leader_id": f"{leader:x}" if leader else None,
            "members": rows,
            "alarms": next((s.alarms for s in samples if s.alarms is not None), []),
            "writes_per_s": writes,
            "reads_per_s": reads,
            "watchers": sum(
                int(s.metrics.get("etcd_debugging_mvcc_watcher_total", 0)) for s in samples
            ),
            "leases": int(metrics["pyraftkv_leases"]) if "pyraftkv_leases" in metrics else None,
            "latency_ms": self._latency(metrics, old_metrics),
            "wal_fsync": self._fsync(metrics, old_metrics),
            "stages": self._stages(metrics, old_metrics),
            "throughput": list(self.throughput),
            "events": list(self.events),
        }
        return self.last

    # -- what changed --------------------------------------------------------------------

    @staticmethod
    def _term_of(samples: list[MemberSample], leader: int) -> int:
        return max(
            (s.status["raftTerm"] for s in samples if s.status and s.status["leader"] == leader),
            default=0,
        )

    def _note_leader(self, now: float, leader: int, names: dict[int, str]) -> None:
        if leader == (self._leader or 0):
            return
        if leader:
            name = names.get(leader, f"{leader:x}")
            verb = "is the leader" if self._leader is None else "became the leader"
            self._event(now, f"{name} ({leader:x}) {verb}")
        elif self._leader:
            self._event(now, "no leader")
        self._leader = leader

    def _note_membership(self, now: float, names: dict[int, str] | None) -> None:
        if names is None:
            return
        if self._members is not None:
            for member_id in names.keys() - self._members.keys():
                self._event(now, f"member {names[member_id]} ({member_id:x}) added")
            for member_id in self._members.keys() - names.keys():
                self._event(now, f"member {self._members[member_id]} ({member_id:x}) removed")
        self._members = names

    def _note_health(self, now: float, samples: list[MemberSample]) -> None:
        """An endpoint that stops answering, and one that answers again afterwards (one
        not answering yet when the dashboard starts is just shown down)."""
        for sample in samples:
            endpoint = sample.endpoint
            if sample.status is None and endpoint in self._answering:
                self._answering.discard(endpoint)
                self._down.add(endpoint)
                self._event(now, f"{endpoint} stopped answering")
            elif sample.status is not None and endpoint not in self._answering:
                self._answering.add(endpoint)
                if endpoint in self._down:
                    self._down.discard(endpoint)
                    self._event(now, f"{endpoint} answers again")

    # -- figures -------------------------------------------------------------------------

    def _row(self, sample: MemberSample, leader: int, names: dict[int, str]) -> dict:
        status = sample.status
        if status is None:
            return {"endpoint": sample.endpoint, "role": "down", "healthy": False,
                    "error": sample.error}  # fmt: skip
        member_id = status["header"]["member_id"]
        role = (
            "learner"
            if status.get("isLearner")
            else ("leader" if member_id == leader else "follower")
        )
        return {
            "endpoint": sample.endpoint,
            "name": names.get(member_id, f"{member_id:x}"),
            "id": f"{member_id:x}",
            "role": role,
            "term": status["raftTerm"],
            "raft_index": status["raftIndex"],
            "applied_index": status["raftAppliedIndex"],
            "db_size": status["dbSize"],
            "db_size_in_use": status.get("dbSizeInUse", 0),
            "healthy": bool(status["leader"]) and not status.get("errors"),
            "alarms": list(status.get("errors", [])),
        }

    @staticmethod
    def _rate(
        sample: MemberSample | None, old: dict[str, MemberSample], name: str, span: float
    ) -> float | None:
        if sample is None or name not in sample.metrics:
            return None
        before = old.get(sample.endpoint)
        if before is None or name not in before.metrics:
            return None
        delta = sample.metrics[name] - before.metrics[name]
        return round(delta / span, 1) if delta >= 0 else None

    @staticmethod
    def _latency(metrics: Samples, old: Samples) -> dict:
        name = "pyraftkv_write_duration_seconds"
        recent = bucket_delta(histogram(metrics, name), histogram(old, name))
        return {f"p{int(q * 100)}": _ms(quantile(recent, q)) for q in (0.5, 0.9, 0.99)}

    @staticmethod
    def _fsync(metrics: Samples, old: Samples) -> list[dict]:
        """The leader's WAL fdatasync histogram over the window: count per bucket."""
        name = "etcd_disk_wal_fsync_duration_seconds"
        recent = bucket_delta(histogram(metrics, name), histogram(old, name))
        out, below = [], 0.0
        for bound, count in recent:
            out.append({"le_ms": None if math.isinf(bound) else _ms(bound), "count": count - below})
            below = count
        return out

    @staticmethod
    def _stages(metrics: Samples, old: Samples) -> list[dict]:
        name = "pyraftkv_write_stage_duration_seconds"
        out = []
        for stage in STAGES:
            labels = f'stage="{stage}"'
            recent = bucket_delta(histogram(metrics, name, labels), histogram(old, name, labels))
            out.append(
                {"stage": stage, "p50_ms": _ms(quantile(recent, 0.5)),
                 "p99_ms": _ms(quantile(recent, 0.99))}
            )  # fmt: skip
        return out
