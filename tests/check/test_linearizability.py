"""The linearizability checker on hand-made histories (linearizable and not), its smallest
failing window, and a cross-check against brute force on small random histories."""

from __future__ import annotations

import itertools
import random

import pytest

from pyraftkv.check.linearizability import CAS, READ, WRITE, KeyHistory, Op, check, linearizable

K = b"k"


def w(client, call, ret, value, key=K):
    return Op(client, key, WRITE, call, ret, value=value)


def r(client, call, ret, value, key=K):
    return Op(client, key, READ, call, ret, value=value)


def cas(client, call, ret, expected, new, ok, key=K):
    return Op(client, key, CAS, call, ret, value=new, expected=expected, ok=ok)


# -- hand-made histories -------------------------------------------------------------------


def test_sequential_history_is_linearizable():
    ops = [r(0, 0, 1, None), w(0, 2, 3, b"a"), r(1, 4, 5, b"a"), cas(1, 6, 7, b"a", b"b", True)]
    ops += [cas(0, 8, 9, b"a", b"c", False), r(0, 10, 11, b"b")]
    assert check(ops).ok


def test_stale_read_after_a_completed_write_is_not_linearizable():
    ops = [w(0, 0, 1, b"a"), w(0, 2, 3, b"b"), r(1, 4, 5, b"a")]
    report = check(ops)
    assert not report.ok
    assert report.failed_key == K


def test_concurrent_read_may_see_either_value():
    assert check([w(0, 0, 1, b"a"), w(0, 2, 10, b"b"), r(1, 3, 4, b"a"), r(1, 5, 6, b"b")]).ok
    # ... but not go back once it saw the new one
    report = check([w(0, 0, 1, b"a"), w(0, 2, 10, b"b"), r(1, 3, 4, b"b"), r(1, 5, 6, b"a")])
    assert not report.ok


def test_read_of_a_value_never_written_is_not_linearizable():
    assert not check([r(0, 0, 1, b"x")]).ok


def test_cas_success_needs_the_expected_value():
    assert not check([w(0, 0, 1, b"a"), cas(1, 2, 3, b"z", b"b", True)]).ok
    assert not check([w(0, 0, 1, b"a"), cas(1, 2, 3, b"a", b"b", False)]).ok
    assert check([w(0, 0, 1, b"a"), cas(1, 2, 3, b"z", b"b", False)]).ok


def test_two_cas_from_the_same_value_cannot_both_succeed():
    ops = [w(0, 0, 1, b"a"), cas(1, 2, 10, b"a", b"b", True), cas(2, 3, 9, b"a", b"c", True)]
    assert not check(ops).ok


def test_unknown_write_may_take_effect_late_or_never():
    lost = w(0, 0, None, b"x")
    assert check([lost, r(1, 5, 6, None)]).ok  # never (so far)
    assert check([lost, r(1, 5, 6, None), r(1, 7, 8, b"x")]).ok  # later
    assert check([lost, r(1, 5, 6, b"x"), r(1, 7, 8, b"x")]).ok  # at once
    # once seen it stays, unless overwritten
    assert not check([lost, r(1, 5, 6, b"x"), r(1, 7, 8, None)]).ok


def test_unknown_write_cannot_take_effect_before_its_call():
    assert not check([r(1, 0, 1, b"x"), w(0, 5, None, b"x")]).ok


def test_unknown_cas_applies_only_if_the_value_matched():
    ops = [w(0, 0, 1, b"a"), cas(1, 2, None, b"a", b"b", None), r(0, 5, 6, b"b")]
    assert check(ops).ok
    ops = [w(0, 0, 1, b"a"), cas(1, 2, None, b"z", b"b", None), r(0, 5, 6, b"b")]
    assert not check(ops).ok


def test_keys_are_independent():
    ops = [w(0, 0, 1, b"a", key=b"x"), w(1, 0, 1, b"b", key=b"y"), r(0, 2, 3, b"a", key=b"x")]
    ops.append(r(1, 2, 3, b"b", key=b"y"))
    report = check(ops)
    assert report.ok and report.keys == 2 and report.ops == 4
    bad = ops + [r(2, 4, 5, b"b", key=b"x")]
    report = check(bad)
    assert not report.ok and report.failed_key == b"x"


def test_window_is_the_few_ops_around_the_violation():
    """A long linearizable history with one stale read in its middle: the report names a
    window of the write the read missed and the read, not the whole history."""
    ops, t = [], 0
    for i in range(200):
        ops.append(w(i % 3, t, t + 1, b"v%d" % i))
        ops.append(r((i + 1) % 3, t + 2, t + 3, b"v%d" % i))
        t += 4
    stale = r(9, t + 10, t + 11, b"v150")
    ops.append(stale)
    for i in range(200, 260):
        ops.append(w(0, t + 20 + 4 * i, t + 21 + 4 * i, b"v%d" % i))
    report = check(ops)
    assert not report.ok
    assert stale in report.window
    assert len(report.window) <= 3, [op.describe() for op in report.window]
    text = "\n".join(report.lines())
    assert "not linearizable" in text and "v150" in text
    report.time_unit = (2, "pairs of ticks")
    lines = report.lines()
    assert "times in pairs of ticks" in lines[1]
    assert lines[2].startswith("  client ") and "[0, " in lines[2], lines


def test_window_keeps_concurrent_ops_it_needs():
    """A read that is only wrong given a concurrent write's completion: the window holds
    both, and it is not linearizable on its own."""
    ops = [w(0, 0, 1, b"a")]
    ops += [w(1, 10, 20, b"b"), r(2, 21, 22, b"a"), w(0, 30, 31, b"c"), r(0, 32, 33, b"c")]
    report = check(ops)
    assert not report.ok
    assert r(2, 21, 22, b"a") in report.window and w(1, 10, 20, b"b") in report.window
    history = KeyHistory.of(report.window)
    assert history.fails(0, history.segments)


# -- brute force cross-check ---------------------------------------------------------------


def brute_force(ops: list[Op]) -> bool:
    """Every order of every subset of the unknown-outcome ops plus all known ones that keeps
    real-time order, run against an exact register from absence."""
    known = [op for op in ops if not op.unknown]
    unknown = [op for op in ops if op.unknown]
    for size in range(len(unknown) + 1):
        for chosen in itertools.combinations(unknown, size):
            for order in itertools.permutations(known + list(chosen)):
                if _legal(order):
                    return True
    return False


def _legal(order) -> bool:
    for i, a in enumerate(order):
        for b in order[i + 1 :]:
            if b.ret is not None and b.ret < a.call:  # b finished before a began
                return False
    value = None
    for op in order:
        if op.kind == READ:
            if op.value != value:
                return False
        elif op.kind == WRITE:
            value = op.value
        elif op.ok is None:
            if value == op.expected:
                value = op.value
        elif op.ok != (value == op.expected):
            return False
        elif op.ok:
            value = op.value
    return True


def random_history(rng: random.Random, size: int) -> list[Op]:
    values = [None, b"a", b"b", b"c"]
    ops = []
    for client in range(size):
        call = rng.randrange(20)
        ret = call + rng.randrange(1, 8)
        kind = rng.choice((READ, WRITE, CAS))
        if kind != READ and rng.random() < 0.2:
            ret = None
        if kind == READ:
            ops.append(r(client, call, ret, rng.choice(values)))
        elif kind == WRITE:
            ops.append(w(client, call, ret, rng.choice(values[1:])))
        else:
            ok = None if ret is None else rng.random() < 0.5
            ops.append(cas(client, call, ret, rng.choice(values), rng.choice(values[1:]), ok))
    return ops


@pytest.mark.parametrize("seed", range(4))
def test_search_agrees_with_brute_force(seed):
    rng = random.Random(seed)
    verdicts = {True: 0, False: 0}
    for _ in range(300):
        ops = random_history(rng, rng.randrange(1, 7))
        expected = brute_force(ops)
        assert linearizable(ops) == expected, [op.describe() for op in ops]
        assert check(ops).ok == expected
        verdicts[expected] += 1
    assert verdicts[True] > 20 and verdicts[False] > 20, verdicts


@pytest.mark.parametrize("seed", range(2))
def test_reported_window_fails_by_brute_force(seed):
    """The window has no linearization from absence if it starts the history, or from any
    value written before it otherwise: a real counterexample."""
    rng = random.Random(100 + seed)
    checked = 0
    while checked < 60:
        ops = random_history(rng, rng.randrange(3, 7))
        report = check(ops)
        if report.ok:
            continue
        checked += 1
        assert set(report.window) <= set(ops)
        history = KeyHistory.of(report.window)
        window_ops = list(report.window)
        first = min((op for op in ops if not op.unknown), key=lambda op: op.call)
        starts = {None}
        if first not in report.window:
            begin = min(op.call for op in report.window if not op.unknown)
            starts |= {op.value for op in ops if op.kind != READ and op.call < begin}
        for start in starts:
            prelude = [] if start is None else [w(-1, -10, -9, start)]
            assert not brute_force(prelude + window_ops), [op.describe() for op in window_ops]
        assert history.segments >= 1


@pytest.mark.parametrize("seed", range(2))
def test_window_is_the_smallest_failing_window(seed):
    """No window between quiescent points with fewer ops fails (exhaustive over windows)."""
    rng = random.Random(200 + seed)
    checked = 0
    while checked < 60:
        ops = random_history(rng, rng.randrange(3, 9))
        report = check(ops)
        if report.ok:
            continue
        checked += 1
        history = KeyHistory.of(ops)
        sizes = [
            len(history.window(a, b)[0])
            for a in range(history.segments)
            for b in range(a + 1, history.segments + 1)
            if history.fails(a, b)
        ]
        assert len(report.window) == min(sizes)
