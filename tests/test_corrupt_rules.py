"""Which members the periodic corruption check names (corrupt_check.outvoted)."""

from __future__ import annotations

from types import SimpleNamespace

from pyraftkv.node.corrupt_check import outvoted
from pyraftkv.proto import rpc_pb2 as rpc

ME = 1


def app(mine: int, compact_revision: int = -1) -> SimpleNamespace:
    store = SimpleNamespace(hash_kv=lambda revision: (mine, compact_revision))
    return SimpleNamespace(member_id=ME, store=store)


def answers(**hashes: int) -> dict[int, rpc.HashKVResponse]:
    return {
        int(name[1:]): rpc.HashKVResponse(hash=value, compact_revision=-1)
        for name, value in hashes.items()
    }


def test_a_peer_outvoted_by_the_others_is_named():
    assert outvoted(app(7), 10, answers(m2=7, m3=9)) == [3]
    assert outvoted(app(7), 10, answers(m2=8, m3=9, m4=7, m5=7)) == [2, 3]


def test_a_leader_outvoted_by_agreeing_peers_names_itself():
    assert outvoted(app(7), 10, answers(m2=9, m3=9)) == [ME]
    assert outvoted(app(7), 10, answers(m2=9, m3=9, m4=9, m5=7)) == [ME, 5]


def test_without_a_majority_the_leaders_hash_is_the_reference():
    assert outvoted(app(7), 10, answers(m2=9)) == [2]
    assert outvoted(app(7), 10, answers(m2=9, m3=9, m4=7)) == [2, 3]
    assert outvoted(app(7), 10, {}) == []


def test_members_compacted_elsewhere_are_not_compared():
    other = {2: rpc.HashKVResponse(hash=9, compact_revision=5)}
    assert outvoted(app(7), 10, {**other, **answers(m3=7)}) == []
