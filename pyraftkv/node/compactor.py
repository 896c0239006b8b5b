"""Auto-compaction (``--auto-compaction-mode``, ``--auto-compaction-retention``), as etcd's.

A pure policy: the caller passes the time and the store's revision (on the leader, ten
times a second) and gets back a revision to compact to, when one is due.

- periodic: keep ``retention`` seconds of history. Every ``min(retention, 1 h)`` compact
  to the newest revision seen at least ``retention`` ago (the revision is sampled every
  tenth of the retention, or every minute if that is shorter).
- revision: keep ``retention`` revisions. Every 5 minutes compact to the current revision
  minus ``retention``.

A member that becomes leader starts afresh, so it never compacts history it has not
watched age.
"""

from __future__ import annotations

from collections import deque

PERIODIC = "periodic"
REVISION = "revision"
MAX_PERIOD_S = 3600.0
MAX_SAMPLE_S = 60.0
REVISION_PERIOD_S = 300.0


class Compactor:
    """When to compact, and to which revision."""

    def __init__(self, mode: str, retention: float) -> None:
        if mode not in (PERIODIC, REVISION):
            raise ValueError(f"unknown auto-compaction mode {mode!r}")
        self.mode = mode
        self.retention = retention
        self.period = min(retention, MAX_PERIOD_S) if mode == PERIODIC else REVISION_PERIOD_S
        self._sample_every = min(retention / 10, MAX_SAMPLE_S)
        self.reset()

    def reset(self) -> None:
        """Forget what was seen (this member stopped leading)."""
        self._samples: deque[tuple[float, int]] = deque()  # (time, revision), oldest first
        self._next_due: float | None = None
        self._compacted = 0

    def due(self, now: float, revision: int) -> int | None:
        """Note the store's revision at ``now``; the revision to compact to, if it is time."""
        if self._next_due is None:
            self._next_due = now + self.period
        samples = self._samples
        if self.mode == PERIODIC and (not samples or now - samples[-1][0] >= self._sample_every):
            samples.append((now, revision))
        if now < self._next_due:
            return None
        self._next_due = now + self.period
        target = self._target(now, revision)
        if target <= self._compacted:
            return None
        self._compacted = target
        return target

    def _target(self, now: float, revision: int) -> int:
        if self.mode == REVISION:
            return revision - int(self.retention)
        cutoff, samples = now - self.retention, self._samples
        while len(samples) > 1 and samples[1][0] <= cutoff:
            samples.popleft()  # keep only the newest sample at or before the cutoff
        return samples[0][1] if samples and samples[0][0] <= cutoff else 0
