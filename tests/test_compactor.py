"""The auto-compaction policy, driven with a fake clock."""

import pytest

from pyraftkv.node.compactor import Compactor


def run(compactor, until, revision_at, step=0.1, start=0.0):
    """Call due() every step seconds; the (time, revision) of each compaction asked for."""
    asked, now = [], start
    while now <= until:
        target = compactor.due(now, revision_at(now))
        if target is not None:
            asked.append((round(now, 1), target))
        now = round(now + step, 6)
    return asked


def test_periodic_keeps_the_retention_window_of_history():
    # One write a second: revision r at time r - 1.
    asked = run(Compactor("periodic", 10.0), 35, lambda t: int(t) + 1)
    assert [t for t, _ in asked] == [10.0, 20.0, 30.0]
    for now, target in asked:
        # The newest revision seen at least 10 s ago (sampled each second).
        assert now - 11 <= target - 1 <= now - 10


def test_periodic_period_is_capped_at_an_hour():
    compactor = Compactor("periodic", 72 * 3600.0)
    assert compactor.period == 3600.0


def test_revision_mode_keeps_the_last_retention_revisions_every_five_minutes():
    asked = run(Compactor("revision", 1000), 901, lambda t: 100 * int(t), step=1.0)
    assert asked == [(300.0, 29_000), (600.0, 59_000), (900.0, 89_000)]


def test_nothing_is_asked_twice_or_below_zero():
    assert run(Compactor("revision", 1000), 901, lambda t: 50, step=1.0) == []
    frozen = run(Compactor("periodic", 5.0), 30, lambda t: 7)
    assert frozen == [(5.0, 7)]  # the revision never moved after the first compaction


def test_a_new_leader_starts_afresh():
    compactor = Compactor("periodic", 10.0)
    assert run(compactor, 25, lambda t: int(t) + 1) == [(10.0, 1), (20.0, 11)]
    compactor.reset()
    # Nothing it saw before counts: the first compaction comes a whole period after the
    # reset, to the revision it saw then.
    assert run(compactor, 40, lambda t: int(t) + 1, start=26) == [(36.0, 27)]


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError):
        Compactor("hourly", 1.0)
