"""The in-memory Raft log of one member: a snapshot followed by the entries after it.

The whole log since the last snapshot is kept in memory (the shell restores it from the
WAL at start), so reads never touch storage. Three cursors describe how far the entries
have travelled outside the core:

    snapshot.index <= applied <= committed <= last_index
    persisted <= last_index          (prefix known durable in the WAL)
    unstable_from - 1 <= last_index  (entries from unstable_from on are not yet in a Ready)
"""

from __future__ import annotations

from .types import EMPTY_SNAPSHOT, Entry, SnapshotMeta


class RaftLog:
    """Entries after a snapshot, plus the commit, apply, persist and hand-out cursors."""

    __slots__ = ("snapshot", "entries", "committed", "applied", "persisted", "unstable_from")

    def __init__(self, snapshot: SnapshotMeta = EMPTY_SNAPSHOT) -> None:
        self.snapshot = snapshot
        self.entries: list[Entry] = []
        self.committed = snapshot.index
        self.applied = snapshot.index  # handed to the application in a Ready
        self.persisted = snapshot.index
        self.unstable_from = snapshot.index + 1

    def check(self) -> None:
        """Assert the cursor order in this module's docstring and that the entries are
        contiguous after the snapshot (a broken one is a bug in the core: stop)."""
        snap, last = self.snapshot.index, self.last_index
        assert snap <= self.applied <= self.committed <= last, (
            snap,
            self.applied,
            self.committed,
            last,
        )
        assert self.applied <= self.persisted <= last, (self.applied, self.persisted, last)
        assert snap < self.unstable_from <= last + 1, (snap, self.unstable_from, last)
        assert not self.entries or (
            self.entries[0].index == snap + 1 and self.entries[-1].index == last
        ), (snap, self.entries[0].index, self.entries[-1].index, last)

    @property
    def first_index(self) -> int:
        """The first index still held as an entry (snapshot.index + 1)."""
        return self.snapshot.index + 1

    @property
    def last_index(self) -> int:
        """The index of the last entry (or of the snapshot when there is none)."""
        return self.snapshot.index + len(self.entries)

    def last_term(self) -> int:
        """The term of the last entry (or of the snapshot)."""
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term(self, index: int) -> int | None:
        """The term at index; None when index is compacted away or beyond the log."""
        offset = index - self.snapshot.index
        if offset == 0:
            return self.snapshot.term
        if 0 < offset <= len(self.entries):
            return self.entries[offset - 1].term
        return None

    def matches(self, index: int, term: int) -> bool:
        """Whether the log holds an entry (or the snapshot) at index with term."""
        return self.term(index) == term

    def is_up_to_date(self, last_index: int, last_term: int) -> bool:
        """Raft §5.4.1: a log is at least as up to date as ours when its last term is
        higher, or equal with a last index at least ours."""
        our_term = self.last_term()
        return last_term > our_term or (last_term == our_term and last_index >= self.last_index)

    def slice(self, lo: int, hi: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries [lo, hi) limited to about max_bytes of data (always at least one).
        lo must be >= first_index."""
        assert self.first_index <= lo <= hi <= self.last_index + 1, (lo, hi)
        base = self.snapshot.index + 1
        entries = self.entries
        if hi - lo <= 1:
            return tuple(entries[lo - base : hi - base])
        size = 0
        for i in range(lo - base, hi - base):
            size += len(entries[i].data)
            if size > max_bytes and i > lo - base:
                return tuple(entries[lo - base : i])
        return tuple(entries[lo - base : hi - base])

    def keep_tail(self, index: int, max_entries: int, max_bytes: int) -> int:
        """Where to compact to so that the entries after it, up to index, are at most
        max_entries and max_bytes of data: the log kept in memory below a snapshot for
        followers that lag a little. snapshot.index when everything fits."""
        base = self.snapshot.index + 1
        size = 0
        lo = index + 1
        while lo > base and index + 1 - lo < max_entries:
            size += len(self.entries[lo - 1 - base].data)
            if size > max_bytes:
                break
            lo -= 1
        return lo - 1

    def append(self, entries: list[Entry] | tuple[Entry, ...]) -> None:
        """Append entries that directly follow the last one (the leader's path)."""
        assert entries[0].index == self.last_index + 1, (entries[0].index, self.last_index)
        self.entries.extend(entries)
        self.check()

    def truncate_and_append(self, entries: tuple[Entry, ...]) -> None:
        """Replace everything from entries[0].index on with entries (the follower's path)."""
        start = entries[0].index
        assert self.committed < start <= self.last_index + 1, (start, self.committed)
        del self.entries[start - self.snapshot.index - 1 :]
        self.entries.extend(entries)
        self.unstable_from = min(self.unstable_from, start)
        self.persisted = min(self.persisted, start - 1)
        self.check()

    def find_conflict(self, entries: tuple[Entry, ...]) -> int:
        """Index of the first of entries whose term differs from ours (or which we lack);
        0 when we hold them all."""
        for entry in entries:
            if self.term(entry.index) != entry.term:
                return entry.index
        return 0

    def find_conflict_by_term(self, index: int, term: int) -> int:
        """The largest index <= index whose term is <= term (or the snapshot index).
        Used on both sides of the fast back-off after a rejected append."""
        index = min(index, self.last_index)
        while index > self.snapshot.index:
            entry_term = self.entries[index - self.snapshot.index - 1].term
            if entry_term <= term:
                return index
            index -= 1
        return self.snapshot.index

    def commit_to(self, index: int) -> bool:
        """Raise committed to index (never lowers it); True when it moved."""
        if index <= self.committed:
            return False
        assert index <= self.last_index, (index, self.last_index)
        self.committed = index
        return True

    def restore(self, snapshot: SnapshotMeta) -> None:
        """Drop the whole log and restart it at snapshot (a snapshot received from a leader)."""
        self.snapshot = snapshot
        self.entries = []
        self.committed = self.applied = self.persisted = snapshot.index
        self.unstable_from = snapshot.index + 1

    def compact(self, snapshot: SnapshotMeta) -> None:
        """Drop the entries up to snapshot.index, which the application has snapshotted."""
        assert self.snapshot.index < snapshot.index <= self.applied, snapshot
        del self.entries[: snapshot.index - self.snapshot.index]
        self.snapshot = snapshot
        self.check()

    def take_unstable(self) -> list[Entry]:
        """The entries not yet handed out for persistence; marks them handed out."""
        start = self.unstable_from - self.snapshot.index - 1
        if start >= len(self.entries):
            return []
        out = self.entries[start:]
        self.unstable_from = self.last_index + 1
        return out

    def has_unstable(self) -> bool:
        """Whether take_unstable would return entries."""
        return self.unstable_from <= self.last_index

    def persisted_to(self, index: int, term: int) -> None:
        """The WAL now holds the log up to (index, term); ignored when that entry has since
        been replaced (a newer Ready will report the replacement)."""
        if index > self.persisted and self.term(index) == term:
            self.persisted = index

    def applicable_to(self) -> int:
        """The highest index the application may apply: committed and durable here."""
        return min(self.committed, self.persisted)

    def take_committed(self, max_bytes: int) -> tuple[Entry, ...]:
        """Committed, locally durable entries not yet handed to the application."""
        hi = self.applicable_to()
        if hi <= self.applied:
            return ()
        out = self.slice(self.applied + 1, hi + 1, max_bytes)
        assert out[0].index == self.applied + 1, (out[0].index, self.applied)
        self.applied = out[-1].index
        return out
