"""The leader's lease bookkeeping with 10,000 live leases: what each keep-alive costs
(renew) and what the periodic expiry scan costs (every 100 ms on the leader).

    pytest bench/test_bench_leases.py --benchmark-only
"""

from __future__ import annotations

import pytest

from pyraftkv.mvcc.store import MVCCStore
from pyraftkv.node.lessor import Lessor
from pyraftkv.proto import rpc_pb2 as rpc

LEASES = 10_000


@pytest.fixture(scope="module")
def lessor(tmp_path_factory):
    """A leading lessor holding LEASES leases of 10 s (granted through a real store)."""
    lessor = Lessor(min_ttl=1)
    with MVCCStore(str(tmp_path_factory.mktemp("leases") / "db")) as store:
        with store.write_batch(1) as batch:
            for lease_id in range(1, LEASES + 1):
                lessor.grant(batch, rpc.LeaseGrantRequest(ID=lease_id, TTL=10))
        lessor.promote(extend_s=0.5)
        yield lessor


def test_renew_every_lease_once(benchmark, lessor) -> None:
    """One keep-alive per lease: the lessor's share of a keep-alive's server cost."""
    ids = list(lessor.leases)

    def renew_all() -> int:
        return sum(lessor.renew(lease_id) for lease_id in ids)

    assert benchmark(renew_all) == 10 * LEASES
    benchmark.extra_info["leases"] = LEASES


def test_expiry_scan_with_nothing_due(benchmark, lessor) -> None:
    """The leader's periodic look for leases past their deadline."""
    assert benchmark(lessor.expired, 1.5) == []
    benchmark.extra_info["leases"] = LEASES
