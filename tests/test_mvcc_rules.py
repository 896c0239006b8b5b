"""etcd v3's rules, one by one, on MVCCStore (expected values worked out on etcd 3.4), and
every bad input: its etcd error and a store left unchanged."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyraftkv import errors
from pyraftkv.mvcc import MVCCStore, WriteBatch, prefix_end
from pyraftkv.proto import kv_pb2, rpc_pb2

RR = rpc_pb2.RangeRequest
Compare = rpc_pb2.Compare
DR = rpc_pb2.DeleteRangeRequest
Txn = rpc_pb2.TxnRequest
Event = kv_pb2.Event
KV = kv_pb2.KeyValue
ALL = RR(key=b"\x00", range_end=b"\x00")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[MVCCStore]:
    s = MVCCStore(tmp_path / "mvcc", map_size=64 << 20)
    yield s
    s.close()


def apply(store: MVCCStore, fn: Callable[[WriteBatch], Any]) -> Any:
    with store.write_batch(store.applied_index + 1) as batch:
        return fn(batch)


def put(store: MVCCStore, key: bytes, value: bytes = b"v", **kw: Any):
    return apply(store, lambda b: b.put(rpc_pb2.PutRequest(key=key, value=value, **kw)))


def delete(store: MVCCStore, key: bytes, range_end: bytes = b"", prev_kv: bool = False):
    return apply(store, lambda b: b.delete_range(DR(key=key, range_end=range_end, prev_kv=prev_kv)))


def txn(store: MVCCStore, **kw: Any):
    return apply(store, lambda b: b.txn(Txn(**kw)))


def op(req: Any) -> rpc_pb2.RequestOp:
    field = {
        RR: "request_range",
        rpc_pb2.PutRequest: "request_put",
        DR: "request_delete_range",
        Txn: "request_txn",
    }[type(req)]
    return rpc_pb2.RequestOp(**{field: req})


def P(key: bytes, value: bytes | None = None, **kw: Any) -> rpc_pb2.PutRequest:  # noqa: N802
    if value is None:
        value = b"" if kw.get("ignore_value") else b"v"
    return rpc_pb2.PutRequest(key=key, value=value, **kw)


def keys(resp: rpc_pb2.RangeResponse) -> list[bytes]:
    return [kv.key for kv in resp.kvs]


def fingerprint(store: MVCCStore) -> tuple:
    return store.revision, store.compact_revision, store.hash_kv(), store.range(ALL)


def assert_rejected(store: MVCCStore, call: Callable[[WriteBatch], Any], error: type) -> None:
    """The call raises error inside a batch, the batch stays usable, and nothing changed."""
    before = fingerprint(store)
    with store.write_batch(store.applied_index + 1) as batch:
        with pytest.raises(error):
            call(batch)
        assert (store.revision, store.compact_revision) == before[:2]
    assert fingerprint(store) == before


# ---- put ----------------------------------------------------------------------------------


def test_put_revisions_versions_and_prev_kv(store: MVCCStore) -> None:
    resp, events = put(store, b"k", b"1")
    assert resp.header.revision == 2 and not resp.HasField("prev_kv")
    assert events == [
        Event(
            type=Event.PUT,
            kv=KV(key=b"k", value=b"1", create_revision=2, mod_revision=2, version=1),
        )
    ]
    resp, events = put(store, b"k", b"2", prev_kv=True)
    assert resp.prev_kv == KV(key=b"k", value=b"1", create_revision=2, mod_revision=2, version=1)
    assert events[0].kv.version == 2 and events[0].kv.create_revision == 2
    assert events[0].prev_kv == resp.prev_kv
    resp, _ = put(store, b"k", b"3")
    assert not resp.HasField("prev_kv")
    delete(store, b"k")
    _, events = put(store, b"k", b"again")
    assert (events[0].kv.create_revision, events[0].kv.version) == (6, 1)
    assert not events[0].HasField("prev_kv")


def test_put_ignore_value_and_ignore_lease_keep_the_old_ones(store: MVCCStore) -> None:
    put(store, b"k", b"old", lease=7)
    resp, events = put(store, b"k", b"", ignore_value=True, prev_kv=True)
    assert events[0].kv.value == b"old" and events[0].kv.lease == 0
    put(store, b"k", b"x", lease=9)
    _, events = put(store, b"k", b"new", ignore_lease=True)
    assert (events[0].kv.value, events[0].kv.lease) == (b"new", 9)


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (P(b""), errors.EmptyKey),
        (P(b"k", b"v", ignore_value=True), errors.ValueProvided),
        (P(b"k", lease=5, ignore_lease=True), errors.LeaseProvided),
        (P(b"missing", b"", ignore_value=True), errors.KeyNotFound),
        (P(b"missing", b"x", ignore_lease=True), errors.KeyNotFound),
        (P(b"k", b"x" * 2000), errors.RequestTooLarge),
    ],
)
def test_bad_puts_are_rejected_and_change_nothing(tmp_path: Path, req, error) -> None:
    with MVCCStore(tmp_path / "s", max_request_bytes=1000) as store:
        put(store, b"k", b"1")
        assert_rejected(store, lambda b: b.put(req), error)


def test_lease_hook_decides_which_leases_exist(tmp_path: Path) -> None:
    asked: list[int] = []

    def lease_exists(lease: int) -> bool:
        asked.append(lease)
        return lease == 5

    with MVCCStore(tmp_path / "s", lease_exists=lease_exists) as store:
        _, events = put(store, b"k", lease=5)
        assert events[0].kv.lease == 5
        assert_rejected(store, lambda b: b.put(P(b"k", lease=6)), errors.LeaseNotFound)
        put(store, b"k", b"no lease")
        assert asked == [5, 6]


# ---- delete range -------------------------------------------------------------------------


def test_delete_range_deletes_live_keys_in_one_revision(store: MVCCStore) -> None:
    for key in (b"a", b"b/1", b"b/2", b"c"):
        put(store, key)
    resp, events = delete(store, b"b/", prefix_end(b"b/"), prev_kv=True)
    assert (resp.header.revision, resp.deleted) == (6, 2)
    assert [kv.key for kv in resp.prev_kvs] == [b"b/1", b"b/2"]
    assert [e.type for e in events] == [Event.DELETE] * 2
    assert [e.kv for e in events] == [KV(key=k, mod_revision=6) for k in (b"b/1", b"b/2")]
    assert [e.prev_kv.mod_revision for e in events] == [3, 4]
    resp, _ = delete(store, b"b/1")
    assert (resp.header.revision, resp.deleted, store.revision) == (6, 0, 6)
    resp, _ = delete(store, b"a")
    assert not resp.prev_kvs and resp.deleted == 1


@pytest.mark.parametrize(
    ("key", "range_end", "deleted"),
    [
        (b"b", b"", [b"b"]),
        (b"b", b"\x00", [b"b", b"bb", b"c"]),
        (b"a", b"bb", [b"a", b"b"]),
        (b"\x00", b"\x00", [b"a", b"b", b"bb", b"c"]),
        (b"c", b"a", []),
        (b"b", prefix_end(b"b"), [b"b", b"bb"]),
    ],
)
def test_delete_range_end_rules(store: MVCCStore, key, range_end, deleted) -> None:
    for k in (b"a", b"b", b"bb", b"c"):
        put(store, k)
    _, events = delete(store, key, range_end)
    assert [e.kv.key for e in events] == deleted


def test_bad_deletes_are_rejected(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "s", max_request_bytes=100) as store:
        put(store, b"k")
        assert_rejected(store, lambda b: b.delete_range(DR(key=b"")), errors.EmptyKey)
        assert_rejected(store, lambda b: b.delete_range(DR(key=b"k" * 200)), errors.RequestTooLarge)


def test_delete_keys_deletes_many_keys_in_one_revision(store: MVCCStore) -> None:
    for key in (b"a", b"b", b"c"):
        put(store, key)
    rev, events = apply(store, lambda b: b.delete_keys([b"c", b"a", b"missing"]))
    assert rev == 5 and [(e.kv.key, e.kv.mod_revision) for e in events] == [(b"c", 5), (b"a", 5)]
    assert keys(store.range(ALL)) == [b"b"]
    assert apply(store, lambda b: b.delete_keys([b"a"])) == (5, [])


# ---- range --------------------------------------------------------------------------------


@pytest.fixture
def filled(store: MVCCStore) -> MVCCStore:
    put(store, b"a", b"3")  # rev 2
    put(store, b"b", b"1")  # rev 3
    put(store, b"b/1", b"2")  # rev 4
    put(store, b"a", b"0")  # rev 5: a version 2
    put(store, b"c", b"4")  # rev 6
    return store


@pytest.mark.parametrize(
    ("key", "range_end", "expected"),
    [
        (b"b", b"", [b"b"]),
        (b"b", prefix_end(b"b"), [b"b", b"b/1"]),
        (b"b", b"\x00", [b"b", b"b/1", b"c"]),
        (b"\x00", b"\x00", [b"a", b"b", b"b/1", b"c"]),
        (b"a", b"b/1", [b"a", b"b"]),
        (b"c", b"a", []),
        (b"zz", b"", []),
    ],
)
def test_range_end_rules(filled: MVCCStore, key, range_end, expected) -> None:
    resp = filled.range(RR(key=key, range_end=range_end))
    assert keys(resp) == expected and resp.count == len(expected)
    assert resp.header.revision == 6


def test_range_limit_more_count_and_count_only(filled: MVCCStore) -> None:
    resp = filled.range(RR(key=b"a", range_end=b"\x00", limit=2))
    assert keys(resp) == [b"a", b"b"] and resp.more and resp.count == 4
    resp = filled.range(RR(key=b"a", range_end=b"\x00", limit=4))
    assert len(resp.kvs) == 4 and not resp.more
    for no_limit in (2**63 - 1, -1):  # as etcd: every key (the largest once took a member down)
        resp = filled.range(RR(key=b"a", range_end=b"\x00", limit=no_limit))
        assert len(resp.kvs) == 4 and not resp.more
    resp = filled.range(RR(key=b"a", range_end=b"\x00", count_only=True, limit=1))
    assert not resp.kvs and resp.count == 4 and not resp.more
    assert filled.range(RR(key=b"a", count_only=True)).count == 1
    resp = filled.range(RR(key=b"a", range_end=b"\x00", keys_only=True))
    assert all(kv.value == b"" for kv in resp.kvs) and resp.kvs[0].version == 2


def test_range_at_old_revisions(filled: MVCCStore) -> None:
    assert filled.range(RR(key=b"a", revision=4)).kvs[0].value == b"3"
    assert filled.range(RR(key=b"a", revision=5)).kvs[0].value == b"0"
    assert filled.range(RR(key=b"a", revision=4)).header.revision == 6
    assert keys(filled.range(RR(key=b"\x00", range_end=b"\x00", revision=3))) == [b"a", b"b"]
    assert not filled.range(RR(key=b"a", revision=1)).kvs
    assert filled.range(RR(key=b"a", revision=-5)).kvs[0].value == b"0"
    with pytest.raises(errors.FutureRevision):
        filled.range(RR(key=b"a", revision=7))


@pytest.mark.parametrize(
    ("order", "target", "expected"),
    [
        (RR.NONE, RR.KEY, [b"a", b"b", b"b/1", b"c"]),
        (RR.ASCEND, RR.KEY, [b"a", b"b", b"b/1", b"c"]),
        (RR.DESCEND, RR.KEY, [b"c", b"b/1", b"b", b"a"]),
        (RR.NONE, RR.VALUE, [b"a", b"b", b"b/1", b"c"]),  # a target alone sorts ascending
        (RR.DESCEND, RR.VALUE, [b"c", b"b/1", b"b", b"a"]),
        (RR.ASCEND, RR.MOD, [b"b", b"b/1", b"a", b"c"]),
        (RR.DESCEND, RR.CREATE, [b"c", b"b/1", b"b", b"a"]),
        (RR.DESCEND, RR.VERSION, [b"a", b"b", b"b/1", b"c"]),  # ties keep key order
    ],
)
def test_range_sort(filled: MVCCStore, order, target, expected) -> None:
    put(filled, b"a", b"5")  # value order now: b(1) b/1(2) c(4) a(5)
    if target == RR.VALUE:
        expected = {RR.NONE: [b"b", b"b/1", b"c", b"a"], RR.DESCEND: [b"a", b"c", b"b/1", b"b"]}[
            order
        ]
    if target == RR.MOD:
        expected = [b"b", b"b/1", b"c", b"a"]
    resp = filled.range(RR(key=b"a", range_end=b"\x00", sort_order=order, sort_target=target))
    assert keys(resp) == expected


def test_range_sort_with_limit_reads_one_past_the_limit_first(filled: MVCCStore) -> None:
    # etcd: a sort target without an order fetches limit+1 keys in key order, then sorts.
    resp = filled.range(RR(key=b"a", range_end=b"\x00", limit=1, sort_target=RR.MOD))
    assert keys(resp) == [b"b"] and resp.more
    resp = filled.range(
        RR(key=b"a", range_end=b"\x00", limit=1, sort_target=RR.MOD, sort_order=RR.ASCEND)
    )
    assert keys(resp) == [b"b"] and resp.more
    resp = filled.range(
        RR(key=b"a", range_end=b"\x00", limit=1, sort_target=RR.MOD, sort_order=RR.DESCEND)
    )
    assert keys(resp) == [b"c"]


def test_range_revision_filters_keep_the_unfiltered_count(filled: MVCCStore) -> None:
    def r(**kw: int) -> rpc_pb2.RangeResponse:
        return filled.range(RR(key=b"a", range_end=b"\x00", **kw))

    assert keys(r(min_mod_revision=4)) == [b"a", b"b/1", b"c"] and r(min_mod_revision=4).count == 4
    assert keys(r(max_mod_revision=4)) == [b"b", b"b/1"]
    assert keys(r(min_create_revision=3, max_create_revision=4)) == [b"b", b"b/1"]
    resp = r(min_mod_revision=4, limit=2)
    assert keys(resp) == [b"a", b"b/1"] and resp.more


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (RR(key=b""), errors.EmptyKey),
        (RR(key=b"a", sort_order=3), errors.InvalidArgument),
        (RR(key=b"a", sort_target=5), errors.InvalidArgument),
    ],
)
def test_bad_ranges_are_rejected(filled: MVCCStore, req, error) -> None:
    with pytest.raises(error):
        filled.range(req)
    assert_rejected(filled, lambda b: b.range(req), error)


# ---- txn ----------------------------------------------------------------------------------


def _cmp(target: int, result: int, key: bytes = b"k", **kw: Any) -> Compare:
    return Compare(key=key, target=target, result=result, **kw)


@pytest.mark.parametrize(
    ("compare", "succeeds"),
    [
        (_cmp(Compare.VALUE, Compare.EQUAL, value=b"v2"), True),
        (_cmp(Compare.VALUE, Compare.NOT_EQUAL, value=b"v2"), False),
        (_cmp(Compare.VALUE, Compare.GREATER, value=b"v1"), True),
        (_cmp(Compare.VALUE, Compare.LESS, value=b"v1"), False),
        (_cmp(Compare.VERSION, Compare.EQUAL, version=2), True),
        (_cmp(Compare.VERSION, Compare.LESS, version=2), False),
        (_cmp(Compare.CREATE, Compare.EQUAL, create_revision=2), True),
        (_cmp(Compare.CREATE, Compare.GREATER, create_revision=1), True),
        (_cmp(Compare.MOD, Compare.EQUAL, mod_revision=3), True),
        (_cmp(Compare.MOD, Compare.NOT_EQUAL, mod_revision=3), False),
        (_cmp(Compare.LEASE, Compare.EQUAL, lease=4), True),
        (_cmp(Compare.LEASE, Compare.GREATER, lease=4), False),
        # A missing key: a VALUE compare always fails, the others compare against zero.
        (_cmp(Compare.VALUE, Compare.NOT_EQUAL, key=b"nope", value=b"x"), False),
        (_cmp(Compare.VERSION, Compare.EQUAL, key=b"nope", version=0), True),
        (_cmp(Compare.CREATE, Compare.LESS, key=b"nope", create_revision=1), True),
        # The union holding another field than the target's compares against zero.
        (_cmp(Compare.VERSION, Compare.GREATER, value=b"zzz"), True),
        # Over a range every key must hold.
        (_cmp(Compare.VERSION, Compare.GREATER, range_end=prefix_end(b"k"), version=0), True),
        (_cmp(Compare.VALUE, Compare.EQUAL, range_end=prefix_end(b"k"), value=b"v2"), False),
        (_cmp(Compare.CREATE, Compare.EQUAL, key=b"l", range_end=b"m", create_revision=0), True),
    ],
)
def test_txn_compares(store: MVCCStore, compare: Compare, succeeds: bool) -> None:
    put(store, b"k", b"v1", lease=4)
    put(store, b"k", b"v2", lease=4)
    put(store, b"k2", b"other")
    resp, events = txn(store, compare=[compare], success=[op(RR(key=b"k"))])
    assert resp.succeeded is succeeds and events == []
    assert resp.header.revision == 4 and store.revision == 4
    assert len(resp.responses) == (1 if succeeds else 0)


def test_txn_is_one_revision_and_reads_see_earlier_writes(store: MVCCStore) -> None:
    put(store, b"a", b"1")
    put(store, b"c", b"gone")
    resp, events = txn(
        store,
        success=[
            op(RR(key=b"a")),
            op(P(b"a", b"2")),
            op(RR(key=b"a")),
            op(P(b"b", b"3")),
            op(DR(key=b"c")),
            op(RR(key=b"a", range_end=b"\x00")),
        ],
    )
    assert resp.header.revision == 4 and store.revision == 4
    r = resp.responses
    assert r[0].response_range.header.revision == 3 and r[0].response_range.kvs[0].value == b"1"
    assert r[1].response_put.header.revision == 4
    assert r[2].response_range.header.revision == 4 and r[2].response_range.kvs[0].value == b"2"
    assert r[4].response_delete_range.deleted == 1
    assert keys(r[5].response_range) == [b"a", b"b"]
    assert [(e.type, e.kv.key, e.kv.mod_revision) for e in events] == [
        (Event.PUT, b"a", 4),
        (Event.PUT, b"b", 4),
        (Event.DELETE, b"c", 4),
    ]
    assert events[0].prev_kv.value == b"1" and events[2].prev_kv.value == b"gone"
    # Sub-revisions order the changes: the history replays them in the same order.
    assert store.events(4, b"\x00", b"\x00") == [Event(type=e.type, kv=e.kv) for e in events]


def test_read_only_and_no_op_txns_make_no_revision(store: MVCCStore) -> None:
    put(store, b"a")
    resp, events = txn(store, success=[op(RR(key=b"a"))])
    assert resp.header.revision == 2 and events == []
    resp, events = txn(store, success=[op(DR(key=b"nothing"))])
    assert resp.header.revision == 2 and store.revision == 2
    assert resp.responses[0].response_delete_range.header.revision == 2


def test_nested_txn_compares_see_the_state_before_the_txn(store: MVCCStore) -> None:
    inner = Txn(
        compare=[_cmp(Compare.VALUE, Compare.EQUAL, key=b"n", value=b"1")],
        success=[op(P(b"m", b"yes"))],
        failure=[op(P(b"m", b"no"))],
    )
    resp, events = txn(store, success=[op(P(b"n", b"1")), op(inner)])
    nested = resp.responses[1].response_txn
    assert not nested.succeeded and nested.HasField("header") and nested.header.revision == 0
    assert nested.responses[0].response_put.header.revision == 2
    assert store.range(RR(key=b"m")).kvs[0].value == b"no"
    assert [e.kv.key for e in events] == [b"n", b"m"]


def _many(n: int) -> list[rpc_pb2.RequestOp]:
    return [op(P(b"k%03d" % i)) for i in range(n)]


@pytest.mark.parametrize(
    ("req", "error"),
    [
        (Txn(success=_many(129)), errors.TooManyTxnOps),
        (Txn(compare=[_cmp(Compare.VERSION, Compare.EQUAL)] * 129), errors.TooManyTxnOps),
        # Nested txns get what the outer level leaves of the budget.
        (
            Txn(success=[op(RR(key=b"a"))] * 100 + [op(Txn(success=[op(RR(key=b"a"))] * 29))]),
            errors.TooManyTxnOps,
        ),
        (Txn(compare=[_cmp(Compare.VERSION, Compare.EQUAL, key=b"")]), errors.EmptyKey),
        (Txn(success=[op(P(b""))]), errors.EmptyKey),
        (Txn(failure=[op(RR(key=b""))]), errors.EmptyKey),
        (Txn(success=[op(DR(key=b""))]), errors.EmptyKey),
        (Txn(success=[op(Txn(success=[op(P(b""))]))]), errors.EmptyKey),
        (Txn(success=[op(P(b"k", b"v", ignore_value=True))]), errors.ValueProvided),
        (Txn(success=[rpc_pb2.RequestOp()]), errors.KeyNotFound),
        (Txn(compare=[_cmp(9, Compare.EQUAL)]), errors.InvalidArgument),
        (Txn(compare=[_cmp(Compare.VALUE, 7)]), errors.InvalidArgument),
        (Txn(success=[op(RR(key=b"a", sort_target=9))]), errors.InvalidArgument),
        (Txn(success=[op(P(b"d")), op(P(b"d"))]), errors.DuplicateKeyInTxn),
        (Txn(success=[op(P(b"d")), op(DR(key=b"d"))]), errors.DuplicateKeyInTxn),
        (Txn(success=[op(P(b"d1")), op(DR(key=b"d", range_end=b"e"))]), errors.DuplicateKeyInTxn),
        (Txn(success=[op(P(b"d")), op(Txn(success=[op(P(b"d"))]))]), errors.DuplicateKeyInTxn),
        (
            Txn(success=[op(Txn(success=[op(P(b"d"))])), op(Txn(failure=[op(P(b"d"))]))]),
            errors.DuplicateKeyInTxn,
        ),
        (Txn(success=[op(DR(key=b"d")), op(Txn(success=[op(P(b"d"))]))]), errors.DuplicateKeyInTxn),
        (Txn(success=[op(Txn(success=[op(DR(key=b"d"))])), op(P(b"d"))]), errors.DuplicateKeyInTxn),
        # Stricter than etcd 3.4: a "\0" range_end covers every key from its start.
        (Txn(success=[op(DR(key=b"a", range_end=b"\x00")), op(P(b"b"))]), errors.DuplicateKeyInTxn),
        # Checked against the state before the txn, along the branch taken.
        (Txn(success=[op(P(b"nokey", ignore_value=True))]), errors.KeyNotFound),
        (Txn(success=[op(P(b"nokey", b"x", ignore_lease=True))]), errors.KeyNotFound),
        (
            Txn(
                compare=[_cmp(Compare.VERSION, Compare.EQUAL, version=0)],
                failure=[op(P(b"nokey", ignore_value=True))],
            ),
            errors.KeyNotFound,
        ),
        (Txn(success=[op(RR(key=b"k", revision=5))]), errors.FutureRevision),
        # Even after a write, the txn's own revision is in the future for a read in it.
        (Txn(success=[op(P(b"z")), op(RR(key=b"k", revision=5))]), errors.FutureRevision),
        (Txn(success=[op(RR(key=b"k", revision=2)), op(P(b"z"))]), errors.Compacted),
    ],
)
def test_bad_txns_are_rejected_and_change_nothing(store: MVCCStore, req: Txn, error) -> None:
    put(store, b"k")
    put(store, b"a")
    put(store, b"k", b"2")
    apply(store, lambda b: b.compact(rpc_pb2.CompactionRequest(revision=3)))
    assert_rejected(store, lambda b: b.txn(req), error)


def test_allowed_txn_shapes(store: MVCCStore) -> None:
    put(store, b"d", b"0")
    # The two branches of one nested txn may put the same key; deletes may overlap.
    txn(store, success=[op(Txn(success=[op(P(b"d", b"1"))], failure=[op(P(b"d", b"2"))]))])
    txn(store, success=[op(DR(key=b"d")), op(DR(key=b"d", range_end=b"e"))])
    assert txn(store, success=_many(128))[0].header.revision == 5
    # An unchosen branch's ignore_value on a missing key is not checked.
    resp, _ = txn(store, failure=[op(P(b"nokey", ignore_value=True))])
    assert resp.succeeded


def test_txn_lease_checks_follow_the_branch_taken(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "s", lease_exists=lambda lease: lease == 1) as store:
        assert_rejected(
            store, lambda b: b.txn(Txn(success=[op(P(b"k", lease=2))])), errors.LeaseNotFound
        )
        resp, events = txn(store, success=[op(P(b"k", lease=1))], failure=[op(P(b"k", lease=2))])
        assert events[0].kv.lease == 1


def test_bad_txn_request_size(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "s", max_request_bytes=500) as store:
        assert_rejected(
            store, lambda b: b.txn(Txn(success=[op(P(b"k", b"x" * 600))])), errors.RequestTooLarge
        )


def test_max_txn_ops_is_configurable(tmp_path: Path) -> None:
    with MVCCStore(tmp_path / "s", max_txn_ops=2) as store:
        assert_rejected(store, lambda b: b.txn(Txn(success=_many(3))), errors.TooManyTxnOps)
        txn(store, success=_many(2))


# ---- compaction ---------------------------------------------------------------------------


def compact(store: MVCCStore, rev: int) -> rpc_pb2.CompactionResponse:
    return apply(store, lambda b: b.compact(rpc_pb2.CompactionRequest(revision=rev)))


def record_count(store: MVCCStore) -> int:
    with store._env.begin() as txn_:
        return txn_.stat(store._kv_db)["entries"]


def test_compaction_rules(store: MVCCStore) -> None:
    assert compact(store, 0).header.revision == 1  # etcd accepts 0 once on a fresh store
    assert_rejected(
        store, lambda b: b.compact(rpc_pb2.CompactionRequest(revision=0)), errors.Compacted
    )
    for value in (b"1", b"2", b"3"):
        put(store, b"k", value)  # revs 2, 3, 4
    put(store, b"gone")  # rev 5
    delete(store, b"gone")  # rev 6
    assert_rejected(
        store, lambda b: b.compact(rpc_pb2.CompactionRequest(revision=7)), errors.FutureRevision
    )
    assert record_count(store) == 5
    assert compact(store, 3).header.revision == 6 and store.compact_revision == 3
    assert record_count(store) == 4  # k@2 dropped
    with pytest.raises(errors.Compacted):
        store.range(RR(key=b"k", revision=2))
    assert store.range(RR(key=b"k", revision=3)).kvs[0].value == b"2"
    for rev in (2, 3):
        assert_rejected(
            store,
            lambda b, r=rev: b.compact(rpc_pb2.CompactionRequest(revision=r)),
            errors.Compacted,
        )
    compact(store, 6)
    assert record_count(store) == 1  # only k@4: gone's generation ended at or below 6
    assert store.range(RR(key=b"k")).kvs[0].value == b"3"
    assert store.revision == 6


def test_compaction_inside_a_batch_applies_to_later_reads(store: MVCCStore) -> None:
    put(store, b"k", b"1")
    put(store, b"k", b"2")

    def run(b: WriteBatch) -> None:
        b.compact(rpc_pb2.CompactionRequest(revision=3))
        with pytest.raises(errors.Compacted):
            b.range(RR(key=b"k", revision=2))
        b.put(P(b"k", b"3"))

    apply(store, run)
    assert store.range(RR(key=b"k")).kvs[0].version == 3
