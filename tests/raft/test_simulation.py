"""Seeded cluster simulations (see simulate.py). Every seed checks safety after each step
and liveness after the faults heal; a failure names the command that replays it.

PYRAFTKV_SIM_SEEDS=N runs N seeds per cluster size (default 300, about 55 s of the
suite on 2 cores: the default suite's budget); PYRAFTKV_SIM_SEED=S runs just seed S. For
long soaks use `python -m tests.raft.simulate --seeds 100000`."""

from __future__ import annotations

import os

import pytest

from .simulate import run_seed

SEEDS = int(os.environ.get("PYRAFTKV_SIM_SEEDS", "300"))
ONE_SEED = os.environ.get("PYRAFTKV_SIM_SEED")
CHUNKS = 10


def seed_range(chunk: int) -> range:
    if ONE_SEED is not None:
        return range(int(ONE_SEED), int(ONE_SEED) + 1) if chunk == 0 else range(0)
    per_chunk = -(-SEEDS // CHUNKS)
    return range(chunk * per_chunk, min(SEEDS, (chunk + 1) * per_chunk))


@pytest.mark.parametrize("members", [3, 5])
@pytest.mark.parametrize("chunk", range(CHUNKS))
def test_simulated_cluster_stays_safe_and_live(members: int, chunk: int) -> None:
    committed = 0
    for seed in seed_range(chunk):
        sim = run_seed(seed, members)  # raises with the replay command on failure
        committed += sim.checker.max_committed
    if seed_range(chunk):
        assert committed > 0, "the simulated clusters never committed anything"


def test_a_broken_core_is_caught() -> None:
    """The simulator can fail: a core that grants every vote must break election safety
    within a few seeds."""
    from pyraftkv.raft import core as raft_core

    original = raft_core.RaftCore._handle_vote_request

    def grant_everything(self, msg):  # noqa: ANN001, ANN202
        self.vote = 0
        self.lead = 0
        original(self, msg)

    raft_core.RaftCore._handle_vote_request = grant_everything
    try:
        with pytest.raises(AssertionError, match="replay: python -m tests.raft.simulate"):
            for seed in range(200):
                run_seed(seed, 5)
    finally:
        raft_core.RaftCore._handle_vote_request = original


def test_followers_commit_with_the_leader_and_a_careless_rule_is_caught() -> None:
    """The simulated leaders tell followers how far their logs are durable: followers do
    commit by it (RaftCore._commit_with_leader) across seeds, and taking any leader and
    follower for a majority breaks leader completeness with five members."""
    from pyraftkv.raft import core as raft_core

    rule, majority = raft_core.RaftCore._commit_with_leader, raft_core.RaftCore._majority_with
    commits = 0

    def counted(self):  # noqa: ANN001, ANN202
        nonlocal commits
        before = self.log.committed
        rule(self)
        commits += self.log.committed > before

    try:
        raft_core.RaftCore._commit_with_leader = counted
        for seed in range(20):
            run_seed(seed, 3)
        assert commits > 0
        raft_core.RaftCore._majority_with = lambda self, other: other != self.id
        with pytest.raises(AssertionError, match="replay: python -m tests.raft.simulate"):
            for seed in range(300):
                run_seed(seed, 5)
    finally:
        raft_core.RaftCore._commit_with_leader = rule
        raft_core.RaftCore._majority_with = majority
