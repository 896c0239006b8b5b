"""A linearizability checker for histories of read, write and compare-and-set on registers.

Each key is an independent register (linearizability is compositional), so a history is
split by key and each part searched on its own. The search is Wing and Gong's, with Lowe's
memoization as in Porcupine: walk the time-ordered call/return entries, linearize a pending
call whenever the model accepts it, backtrack at a return whose call is not yet linearized,
and never visit the same (linearized set, register state) twice.

An operation whose outcome is unknown (the client timed out or lost its connection) has no
return: it may have taken effect at any moment after its call, or never. Its return is
placed after everything else, so the search may linearize it anywhere after its call;
linearizing it last is the same as "never", as nothing after it observes it.

The register state is a set of values it may hold (a known state is a set of one). Sets let
a window of the history start from any value the register could hold at its start, which
is how a failing history is narrowed to its smallest failing window, cut at quiescent
points (no operation with a known outcome in flight).

Pure: no I/O, no clocks; times are whatever integers the recorder used.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

READ = "read"
WRITE = "write"
CAS = "cas"
KINDS = (READ, WRITE, CAS)

Value = bytes | None  # None: the key does not exist
State = frozenset  # of Value: the values the register may hold


@dataclass(frozen=True)
class Op:
    """One client operation on one key.

    read: ``value`` is what it returned. write: ``value`` is what it wrote. cas: set
    ``value`` if the register holds ``expected``; ``ok`` says whether it did. ``ret`` is
    None when the outcome is unknown (writes and cas only: a read without an answer says
    nothing and is left out by the recorder); then ``ok`` is None too.
    """

    client: int
    key: bytes
    kind: str
    call: int
    ret: int | None
    value: Value = None
    expected: Value = None
    ok: bool | None = None

    def __post_init__(self) -> None:
        assert self.kind in KINDS, self.kind
        assert self.ret is None or self.ret >= self.call, (self.call, self.ret)
        assert self.kind != READ or self.ret is not None, "a read needs its answer"
        assert self.kind != CAS or (self.ok is None) == (self.ret is None)

    @property
    def unknown(self) -> bool:
        return self.ret is None

    def describe(self, base: int = 0, unit: int = 1) -> str:
        """One line for a report: who, what, when (times as (t - base) / unit)."""
        ret = "?" if self.ret is None else f"{(self.ret - base) / unit:g}"
        span = f"[{(self.call - base) / unit:g}, {ret}]"
        if self.kind == READ:
            what = f"read -> {_show(self.value)}"
        elif self.kind == WRITE:
            what = f"write {_show(self.value)}"
        else:
            what = f"cas {_show(self.expected)} -> {_show(self.value)}"
            if self.ok is not None:
                what += " ok" if self.ok else " failed"
        if self.unknown:
            what += " (outcome unknown)"
        return f"client {self.client} {span} {what}"


def _show(value: Value) -> str:
    return "<absent>" if value is None else repr(value)


def step(state: State, op: Op) -> State | None:
    """The register model: the state after ``op``, or None if ``op`` cannot happen here."""
    if op.kind == READ:
        return frozenset((op.value,)) if op.value in state else None
    if op.kind == WRITE:
        return frozenset((op.value,))
    if op.ok is None:  # applied now if the register holds `expected`, else a no-op
        if op.expected not in state:
            return state
        return (state - {op.expected}) | {op.value}
    if op.ok:
        return frozenset((op.value,)) if op.expected in state else None
    rest = state - {op.expected}
    return rest or None


class _Entry:
    """A call or return in the doubly linked list the search lifts entries out of."""

    __slots__ = ("id", "op", "is_call", "match", "prev", "next")

    def __init__(self, id: int, op: Op | None, is_call: bool) -> None:
        self.id, self.op, self.is_call = id, op, is_call
        self.match: _Entry | None = None
        self.prev: _Entry | None = None
        self.next: _Entry | None = None


def _entries(ops: Sequence[Op]) -> _Entry:
    """The list head (a sentinel) of calls and returns in time order; calls first on ties
    (operations that touch in time count as concurrent)."""
    last = max((op.ret for op in ops if op.ret is not None), default=0)
    last = max(last, max((op.call for op in ops), default=0)) + 1
    events = []
    for i, op in enumerate(ops):
        call, ret = _Entry(i, op, True), _Entry(i, op, False)
        call.match, ret.match = ret, call
        events.append(((op.call, 0, i), call))
        events.append(((last if op.ret is None else op.ret, 1, i), ret))
    events.sort(key=lambda e: e[0])
    head = prev = _Entry(-1, None, False)
    for _, entry in events:
        prev.next, entry.prev = entry, prev
        prev = entry
    return head


def _lift(entry: _Entry) -> None:
    entry.prev.next = entry.next
    if entry.next is not None:
        entry.next.prev = entry.prev
    ret = entry.match
    ret.prev.next = ret.next
    if ret.next is not None:
        ret.next.prev = ret.prev


def _unlift(entry: _Entry) -> None:
    ret = entry.match
    ret.prev.next = ret
    if ret.next is not None:
        ret.next.prev = ret
    entry.prev.next = entry
    if entry.next is not None:
        entry.next.prev = entry


def linearizable(ops: Sequence[Op], initial: State = frozenset((None,))) -> bool:
    """Whether ``ops`` (all on one key) have a linearization from a register that may hold
    any value in ``initial``."""
    head = _entries(ops)
    seen: set[tuple[int, State]] = set()
    stack: list[tuple[_Entry, State]] = []
    linearized = 0
    state = initial
    entry = head.next
    while head.next is not None:
        if entry.is_call:
            after = step(state, entry.op)
            if after is not None:
                marked = linearized | (1 << entry.id)
                if (marked, after) not in seen:
                    seen.add((marked, after))
                    stack.append((entry, state))
                    state, linearized = after, marked
                    _lift(entry)
                    entry = head.next
                    continue
            entry = entry.next
        else:
            if not stack:
                return False
            entry, state = stack.pop()
            linearized &= ~(1 << entry.id)
            _unlift(entry)
            entry = entry.next
    return True


@dataclass
class KeyHistory:
    """One key's operations cut into segments at quiescent points, for window searches."""

    ops: list[Op]  # known outcome, by call time
    unknown: list[Op]  # unknown outcome, by call time
    cuts: list[int] = field(default_factory=list)  # segment starts, indexes into ops

    @classmethod
    def of(cls, ops: Iterable[Op]) -> KeyHistory:
        ordered = sorted(ops, key=lambda op: (op.call, op.ret is None))
        known = [op for op in ordered if not op.unknown]
        unknown = [op for op in ordered if op.unknown]
        cuts = [0]
        latest_ret = None
        for i, op in enumerate(known):
            if i and latest_ret < op.call:
                cuts.append(i)
            latest_ret = op.ret if latest_ret is None else max(latest_ret, op.ret)
        return cls(known, unknown, cuts)

    @property
    def segments(self) -> int:
        return len(self.cuts)

    def _bound(self, segment: int) -> int:
        return self.cuts[segment] if segment < len(self.cuts) else len(self.ops)

    def window(self, first: int, end: int) -> tuple[list[Op], State]:
        """The operations of segments [first, end) and the states the register may be in
        at the window's start.

        Unknown-outcome operations called before the window's end are all included (one
        called earlier may still take effect inside it; one already applied and applied
        again only allows more, so a failing window still proves a violation). The start
        state is any value written before the window (or absence) unless it starts at the
        beginning.
        """
        lo, hi = self._bound(first), self._bound(end)
        ops = self.ops[lo:hi]
        if not ops:
            return [], frozenset((None,))
        start, stop = ops[0].call, max(op.ret for op in ops)
        ops = ops + [op for op in self.unknown if op.call <= stop]
        if first == 0:
            return ops, frozenset((None,))
        before = [op for op in self.ops[:lo] if op.kind != READ]
        before += [op for op in self.unknown if op.call < start]
        return ops, frozenset([None] + [op.value for op in before])

    def size(self, first: int, end: int) -> int:
        return len(self.window(first, end)[0])

    def fails(self, first: int, end: int) -> bool:
        ops, initial = self.window(first, end)
        return not linearizable(ops, initial)


def smallest_window(history: KeyHistory) -> list[Op]:
    """The failing window with the fewest operations in a failing key history.

    Failing is monotone: a window that fails still fails when widened on either side. So
    the earliest failing end is found by bisection over prefixes and its latest failing
    start by bisection too; then a sweep over later ends looks only at windows smaller
    than the best so far (each check stays small), moving the start right as it goes.
    """
    segments = history.segments
    assert history.fails(0, segments), "the key's history is linearizable"
    lo, hi = 1, segments  # the smallest failing end
    while lo < hi:
        mid = (lo + hi) // 2
        if history.fails(0, mid):
            hi = mid
        else:
            lo = mid + 1
    end = hi
    lo, hi = 0, end - 1  # its largest failing start
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if history.fails(mid, end):
            lo = mid
        else:
            hi = mid - 1
    best = (lo, end)
    size = history.size(lo, end)
    start = lo + 1  # windows starting at or before best's start and ending later hold it
    for end in range(best[1] + 1, segments + 1):
        while start < end and history.size(start, end) >= size:
            start += 1
        if start >= end or not history.fails(start, end):
            continue  # (no window ending here starting later fails either)
        while start + 1 < end and history.fails(start + 1, end):
            start += 1
        best, size = (start, end), history.size(start, end)
        start += 1
    ops, _ = history.window(*best)
    return sorted(ops, key=lambda op: op.call)


@dataclass
class Report:
    """The verdict on a whole history."""

    ok: bool
    ops: int  # operations checked (unknown outcomes included)
    unknown: int  # of which the outcome was unknown
    keys: int
    failed_key: bytes | None = None
    window: list[Op] = field(default_factory=list)
    # How the window's times print: relative to its first call, in this many time units
    # per printed unit, with this suffix (the workload records nanoseconds: ms).
    time_unit: tuple[int, str] = (1, "")

    def lines(self) -> list[str]:
        """A human report: a one-line verdict, then the counterexample window if any."""
        if self.ok:
            return [
                f"linearizable: {self.ops} ops on {self.keys} keys "
                f"({self.unknown} with unknown outcome)"
            ]
        out = [
            f"not linearizable: {self.ops} ops on {self.keys} keys; smallest failing window: "
            f"{len(self.window)} ops on key {self.failed_key!r}"
        ]
        unit, suffix = self.time_unit
        base = min(op.call for op in self.window)
        if suffix:
            out.append(f"  (times in {suffix} from the window's first call; ? = no answer)")
        out += ["  " + op.describe(base, unit) for op in self.window]
        return out


def check(ops: Iterable[Op]) -> Report:
    """Check a whole history, key by key; on failure find the smallest failing window over
    all failing keys."""
    by_key: dict[bytes, list[Op]] = {}
    for op in ops:
        by_key.setdefault(op.key, []).append(op)
    total = sum(len(v) for v in by_key.values())
    unknown = sum(op.unknown for v in by_key.values() for op in v)
    report = Report(True, total, unknown, len(by_key))
    for key in sorted(by_key, key=lambda k: (k is None, k)):
        history = KeyHistory.of(by_key[key])
        if not history.fails(0, history.segments):
            continue
        window = smallest_window(history)
        if report.ok or len(window) < len(report.window):
            report.ok, report.failed_key, report.window = False, key, window
    return report
