"""KeyIndex (C B+tree of revision histories) against a plain-Python model of etcd's keyIndex."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from pyraftkv.keyindex import DroppedRevision, KeyIndex, KeyState, RangeItem
from pyraftkv.mvcc.records import revision_key, tombstone_key
from pyraftkv.proto.kv_pb2 import KeyValue

# ---- reference model: etcd's keyIndex, written the way etcd describes it ----------------


@dataclass
class Generation:
    created: int = 0
    ver: int = 0
    revs: list[tuple[int, int]] = field(default_factory=list)


class ModelKey:
    """A key's generations; the last one is empty once the key is deleted."""

    def __init__(self) -> None:
        self.gens = [Generation()]

    def put(self, main: int, sub: int) -> tuple[int, int]:
        g = self.gens[-1]
        if not g.revs:
            g.created = main
        g.revs.append((main, sub))
        g.ver += 1
        return g.created, g.ver

    def tombstone(self, main: int, sub: int) -> bool:
        if not self.gens[-1].revs:
            return False
        self.put(main, sub)
        self.gens.append(Generation())
        return True

    def get(self, at_rev: int) -> KeyState | None:
        last = len(self.gens) - 1
        for i in range(last, -1, -1):
            g = self.gens[i]
            if not g.revs:
                continue
            if i != last and g.revs[-1][0] <= at_rev:
                return None  # deleted at or before at_rev
            if g.revs[0][0] <= at_rev:
                n = max(j for j, r in enumerate(g.revs) if r[0] <= at_rev)
                main, sub = g.revs[n]
                return KeyState(main, sub, g.created, g.ver - (len(g.revs) - n - 1))
        return None

    def compact(self, at_rev: int) -> list[tuple[int, int, bool]]:
        """etcd's rule; returns the dropped revisions with their tombstone flag."""
        before = self.all_revisions()
        gi = 0
        while gi < len(self.gens) - 1 and self.gens[gi].revs[-1][0] <= at_rev:
            gi += 1
        g = self.gens[gi]
        keep_from = None
        for j in range(len(g.revs) - 1, -1, -1):
            if g.revs[j][0] <= at_rev:
                keep_from = j
                break
        if keep_from is not None:
            g.revs = g.revs[keep_from:]
        self.gens = self.gens[gi:]
        after = set(self.all_revisions())
        return [r for r in before if r not in after]

    def all_revisions(self) -> list[tuple[int, int, bool]]:
        out = []
        for i, g in enumerate(self.gens):
            for j, (main, sub) in enumerate(g.revs):
                out.append((main, sub, i < len(self.gens) - 1 and j == len(g.revs) - 1))
        return out

    def records(self) -> list[tuple[int, int, int, int, bool]]:
        """(main, sub, create, version, tombstone) of each revision held, as the store
        keeps them."""
        out = []
        for i, g in enumerate(self.gens):
            first_version = g.ver - len(g.revs) + 1
            for j, (main, sub) in enumerate(g.revs):
                tomb = i < len(self.gens) - 1 and j == len(g.revs) - 1
                out.append((main, sub, 0 if tomb else g.created, first_version + j, tomb))
        return out

    def empty(self) -> bool:
        return len(self.gens) == 1 and not self.gens[0].revs


class ModelIndex:
    def __init__(self) -> None:
        self.keys: dict[bytes, ModelKey] = {}

    def put(self, key: bytes, main: int, sub: int) -> tuple[int, int]:
        return self.keys.setdefault(key, ModelKey()).put(main, sub)

    def tombstone(self, key: bytes, main: int, sub: int) -> bool:
        mk = self.keys.get(key)
        return mk is not None and mk.tombstone(main, sub)

    def get(self, key: bytes, at_rev: int) -> KeyState | None:
        mk = self.keys.get(key)
        return mk.get(at_rev) if mk else None

    def range(self, start: bytes, end: bytes | None, at_rev: int, limit: int):
        live = []
        for key in sorted(self.keys):
            if key < start or (end and key >= end):
                continue
            state = self.keys[key].get(at_rev)
            if state:
                live.append(RangeItem(key, *state))
        return (live[:limit] if limit else live), len(live)

    def compact(self, at_rev: int) -> list[DroppedRevision]:
        dropped = []
        for key in sorted(self.keys):
            dropped += [DroppedRevision(*r) for r in self.keys[key].compact(at_rev)]
            if self.keys[key].empty():
                del self.keys[key]
        return dropped

    def records(self):
        out = []
        for key, mk in self.keys.items():
            out += [
                (main, sub, key, create, version, tomb)
                for main, sub, create, version, tomb in mk.records()
            ]
        return sorted(out)


def stored(key: bytes, main: int, sub: int, create: int, version: int, tomb: bool, lease=0):
    """A record as the MVCC store keeps it in LMDB: (revision key, serialized KeyValue)."""
    if tomb:
        return tombstone_key(main, sub), KeyValue(key=key, mod_revision=main).SerializeToString()
    kv = KeyValue(
        key=key, create_revision=create, mod_revision=main, version=version, value=b"v", lease=lease
    )
    return revision_key(main, sub), kv.SerializeToString()


def restore(index: KeyIndex, records: list[tuple[bytes, bytes]]) -> list[int]:
    keys, values = zip(*records, strict=True) if records else ((), ())
    return index.restore_records(list(keys), list(values))


def restored_from(model: ModelIndex) -> KeyIndex:
    """A fresh KeyIndex rebuilt from the model's records, the way the store reopens."""
    index = KeyIndex()
    records = [
        stored(key, main, sub, create, version, tomb)
        for main, sub, key, create, version, tomb in model.records()
    ]
    assert restore(index, records) == []
    return index


# ---- stateful comparison ----------------------------------------------------------------

KEYS = st.sampled_from([b"a", b"a\x00", b"ab", b"b", b"ba", b"c", b"\x00", b"\xff", b"long-key-xx"])
BOUNDS = st.one_of(st.none(), KEYS)


class KeyIndexMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.index = KeyIndex()
        self.model = ModelIndex()
        self.main = 1
        self.sub = 0
        self.compacted = 0

    def next_rev(self, same_main: bool) -> tuple[int, int]:
        if same_main:
            self.sub += 1
        else:
            self.main += 1
            self.sub = 0
        return self.main, self.sub

    @rule(key=KEYS, same_main=st.booleans(), replacing=st.booleans())
    def put(self, key: bytes, same_main: bool, replacing: bool) -> None:
        main, sub = self.next_rev(same_main)
        if replacing:
            prev = self.model.get(key, main)
            expected = (*self.model.put(key, main, sub), *(prev[:2] if prev else (-1, -1)))
            assert self.index.put_replacing(key, main, sub) == expected
        else:
            assert self.index.put(key, main, sub) == self.model.put(key, main, sub)

    @rule(key=KEYS, same_main=st.booleans())
    def tombstone(self, key: bytes, same_main: bool) -> None:
        main, sub = self.next_rev(same_main)
        assert self.index.tombstone(key, main, sub) == self.model.tombstone(key, main, sub)

    @rule(key=KEYS)
    def stale_put_is_rejected(self, key: bytes) -> None:
        state = self.model.get(key, self.main)
        if state is None:
            return
        with pytest.raises(ValueError):
            self.index.put(key, state.mod_main, state.mod_sub)
        assert self.index.get(key, self.main) == state

    @rule(key=KEYS, back=st.integers(0, 30))
    def get(self, key: bytes, back: int) -> None:
        at = max(self.compacted, self.main - back)
        assert self.index.get(key, at) == self.model.get(key, at)

    @rule(start=KEYS, end=BOUNDS, back=st.integers(0, 30), limit=st.integers(0, 4))
    def range(self, start: bytes, end: bytes | None, back: int, limit: int) -> None:
        at = max(self.compacted, self.main - back)
        expected = self.model.range(start, end, at, limit)
        assert self.index.range(start, end, at, limit) == expected
        assert self.index.count(start, end, at) == expected[1]
        revs, total = self.index.range_revisions(start, end, at, limit)
        assert revs == [(i.mod_main, i.mod_sub) for i in expected[0]] and total == expected[1]

    @precondition(lambda self: self.main > self.compacted)
    @rule(data=st.data())
    def compact(self, data) -> None:
        at = data.draw(st.integers(self.compacted, self.main))
        witness = [
            (k, r, self.model.get(k, r)) for k in self.model.keys for r in range(at, self.main + 1)
        ]
        assert self.index.compact(at) == self.model.compact(at)
        self.compacted = at
        # Reads at or after the compaction point are unchanged.
        for key, rev, state in witness:
            assert self.index.get(key, rev) == state

    @rule()
    def reopen(self) -> None:
        self.index = restored_from(self.model)

    @invariant()
    def same_keys(self) -> None:
        assert len(self.index) == len(self.model.keys)
        keys, revisions, _ = self.index.stats()
        assert revisions == sum(len(mk.all_revisions()) for mk in self.model.keys.values())


TestKeyIndexModel = KeyIndexMachine.TestCase
TestKeyIndexModel.settings = settings(max_examples=150, stateful_step_count=60, deadline=None)


# ---- scale: deep trees, splits, compaction rebuilds ---------------------------------------


def test_many_keys_against_model_through_compactions_and_restore() -> None:
    rng = random.Random(7)
    index, model = KeyIndex(), ModelIndex()
    keys = [rng.randbytes(rng.randint(1, 12)) for _ in range(6000)]
    keys += [b"k%06d" % i for i in range(6000)]  # shared prefixes, sequential runs
    main = 1
    compacted = 0
    for _round in range(4):
        for _ in range(15000):
            main += 1
            key = rng.choice(keys)
            if rng.random() < 0.2:
                assert index.tombstone(key, main, 0) == model.tombstone(key, main, 0)
            else:
                assert index.put(key, main, 0) == model.put(key, main, 0)
        at = rng.randint(compacted, main)
        assert index.compact(at) == model.compact(at)
        compacted = at
        for at in (compacted, (compacted + main) // 2, main):
            assert index.range(b"", None, at) == model.range(b"", None, at, 0)
            start, end = sorted(rng.sample(keys, 2))
            assert index.range(start, end, at, 50) == model.range(start, end, at, 50)
        assert len(index) == len(model.keys)
    restored = restored_from(model)
    assert restored.range(b"", None, main) == index.range(b"", None, main)
    assert restored.stats()[:2] == index.stats()[:2]


def test_sequential_inserts_then_compact_everything_away() -> None:
    index = KeyIndex()
    n = 70000  # > 64 * 64 leaves worth: three levels
    for i in range(n):
        index.put(b"key/%08d" % i, 2 + i, 0)
    assert len(index) == n
    assert index.get(b"key/%08d" % 12345, n + 2) == KeyState(12347, 0, 12347, 1)
    items, total = index.range(b"key/00001000", b"key/00001010", n + 2)
    assert total == 10 and [it.key for it in items] == [b"key/%08d" % i for i in range(1000, 1010)]
    for i in range(n):
        assert index.tombstone(b"key/%08d" % i, n + 2 + i, 0)
    assert index.count(b"", None, 2 * n + 5) == 0
    assert index.count(b"", None, n + 1) == n
    dropped = index.compact(2 * n + 5)
    assert len(dropped) == 2 * n and sum(d.tombstone for d in dropped) == n
    assert len(index) == 0 and index.stats()[1] == 0
    assert index.range(b"", None, 2 * n + 5) == ([], 0)
    # The emptied index is usable again.
    assert index.put(b"again", 3 * n, 0) == (3 * n, 1)
    assert index.range(b"", None, 3 * n) == ([RangeItem(b"again", 3 * n, 0, 3 * n, 1)], 1)


# ---- unit rules ---------------------------------------------------------------------------


def test_generations_versions_and_reads_at_old_revisions() -> None:
    index = KeyIndex()
    assert index.put(b"k", 2, 0) == (2, 1)
    assert index.put(b"k", 3, 0) == (2, 2)
    assert index.tombstone(b"k", 4, 0)
    assert index.put(b"k", 6, 1) == (6, 1)
    assert index.get(b"k", 1) is None
    assert index.get(b"k", 3) == KeyState(3, 0, 2, 2)
    assert index.get(b"k", 4) is None and index.get(b"k", 5) is None
    assert index.get(b"k", 6) == KeyState(6, 1, 6, 1)


def test_tombstone_of_absent_or_deleted_key_changes_nothing() -> None:
    index = KeyIndex()
    assert not index.tombstone(b"k", 2, 0)
    assert len(index) == 0
    index.put(b"k", 3, 0)
    assert index.tombstone(b"k", 4, 0)
    assert not index.tombstone(b"k", 5, 0)
    assert index.stats()[1] == 2


def test_compaction_keeps_newest_revision_at_or_below_the_point() -> None:
    index = KeyIndex()
    for main in (2, 3, 4):
        index.put(b"k", main, 0)
    index.put(b"other", 5, 0)
    assert index.compact(3) == [DroppedRevision(2, 0, False)]
    assert index.get(b"k", 3) == KeyState(3, 0, 2, 2)
    assert index.get(b"k", 4) == KeyState(4, 0, 2, 3)
    assert index.compact(10) == [DroppedRevision(3, 0, False)]
    assert index.get(b"k", 10) == KeyState(4, 0, 2, 3)


def test_compaction_drops_ended_generations_with_their_tombstone() -> None:
    index = KeyIndex()
    index.put(b"k", 2, 0)
    index.tombstone(b"k", 3, 0)
    index.put(b"k", 4, 0)
    index.tombstone(b"gone", 3, 1)  # never existed: no-op
    index.put(b"gone", 2, 1)
    index.tombstone(b"gone", 4, 1)
    assert index.compact(2) == []
    assert index.compact(3) == [DroppedRevision(2, 0, False), DroppedRevision(3, 0, True)]
    assert index.get(b"k", 4) == KeyState(4, 0, 4, 1)
    assert index.compact(4) == [DroppedRevision(2, 1, False), DroppedRevision(4, 1, True)]
    assert len(index) == 1


@pytest.mark.parametrize(
    ("main", "sub"),
    [(-1, 0), (5, -1), (5, 1 << 62)],
)
def test_revisions_out_of_range_are_rejected(main: int, sub: int) -> None:
    index = KeyIndex()
    with pytest.raises(ValueError, match="out of range"):
        index.put(b"k", main, sub)
    assert len(index) == 0


def test_put_not_newer_than_the_newest_revision_changes_nothing() -> None:
    index = KeyIndex()
    index.put(b"k", 5, 2)
    for main, sub in ((5, 2), (5, 1), (4, 9)):
        with pytest.raises(ValueError, match="not newer"):
            index.put(b"k", main, sub)
        with pytest.raises(ValueError, match="not newer"):
            index.tombstone(b"k", main, sub)
    assert index.put(b"k", 5, 3) == (5, 2)
    assert index.stats()[1] == 2


def test_restore_rejects_records_that_do_not_continue_the_history() -> None:
    index = KeyIndex()
    with pytest.raises(ValueError, match="does not continue"):
        index.restore(b"k", 3, 0, 0, 0, True)  # tombstone of an unknown key
    index.restore(b"k", 5, 0, 2, 4, False)  # mid-generation after a compaction
    assert index.get(b"k", 5) == KeyState(5, 0, 2, 4)
    with pytest.raises(ValueError):
        index.restore(b"k", 6, 0, 2, 7, False)  # version gap
    with pytest.raises(ValueError):
        index.restore(b"k", 6, 0, 3, 5, False)  # another create revision
    index.restore(b"k", 6, 0, 2, 5, False)
    index.restore(b"k", 7, 0, 0, 0, True)
    records = [stored(b"j", 8, 0, 8, 1, False), stored(b"j", 9, 0, 0, 0, True)]
    with pytest.raises(ValueError, match="does not continue"):
        restore(index, [*records, stored(b"j", 10, 0, 0, 0, True)])
    assert index.get(b"j", 8) == KeyState(8, 0, 8, 1) and index.get(b"j", 9) is None
    assert index.get(b"k", 7) is None and index.get(b"k", 6) == KeyState(6, 0, 2, 5)


def test_wrong_argument_types_and_limits() -> None:
    index = KeyIndex()
    with pytest.raises(TypeError):
        index.put("text", 2, 0)  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        index.range(b"", None, 5, limit=-1)
    assert len(index) == 0


def test_long_and_binary_keys_order_by_bytes() -> None:
    index = KeyIndex()
    keys = [b"", b"\x00", b"\x00\x00", b"a" * 9, b"a" * 8, b"a" * 8 + b"\x00", b"\xff" * 1000]
    for i, key in enumerate(keys):
        index.put(key, 2 + i, 0)
    items, total = index.range(b"", None, 100)
    assert [it.key for it in items] == sorted(keys) and total == len(keys)
    assert index.range(b"a" * 8, b"a" * 9, 100)[1] == 2


def test_restore_records_reports_the_puts_with_a_lease() -> None:
    index = KeyIndex()
    records = [
        stored(b"a", 2, 0, 2, 1, False, lease=7),
        stored(b"b", 3, 0, 3, 1, False),
        stored(b"a", 4, 0, 0, 0, True),
        stored(b"c", 5, 0, 5, 1, False, lease=9),
    ]
    assert restore(index, records) == [0, 3]
    assert index.get(b"a", 5) is None and index.get(b"c", 5) == KeyState(5, 0, 5, 1)


@pytest.mark.parametrize(
    "record",
    [
        (b"short", b""),  # not a revision key
        (revision_key(2, 0) + b"x", b""),  # 17 bytes without the tombstone mark
        (revision_key(2, 0), b"\x0a\x05ab"),  # key field cut short
        (revision_key(2, 0), b"\x10\xff"),  # varint cut short
        (revision_key(2, 0), b"\x00\x01"),  # field number 0
        (revision_key(2, 0), b"\x0b"),  # a group: not in KeyValue
        (revision_key(2, 0), b"\x0a\x01a\x10\x03\x20\x01"),  # created after its revision
    ],
)
def test_restore_records_refuses_malformed_records(record: tuple[bytes, bytes]) -> None:
    index = KeyIndex()
    good = stored(b"k", 1, 0, 1, 1, False)
    with pytest.raises(ValueError, match="malformed or does not continue") as refused:
        restore(index, [good, record, stored(b"z", 3, 0, 3, 1, False)])
    assert repr(record[0]) in str(refused.value)  # it names the bad record


def test_restore_records_skips_fields_it_does_not_need() -> None:
    kv = KeyValue(key=b"k", create_revision=4, mod_revision=4, version=1, value=b"x" * 300)
    extra = b"\x39" + b"\x00" * 8 + b"\x45" + b"\x00" * 4  # fields 7 (fixed64), 8 (fixed32)
    index = KeyIndex()
    assert restore(index, [(revision_key(4, 0), kv.SerializeToString() + extra)]) == []
    assert index.get(b"k", 4) == KeyState(4, 0, 4, 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(
                st.binary(max_size=18), st.builds(revision_key, st.integers(0, 50), st.just(0))
            ),
            st.binary(max_size=40),
        ),
        max_size=8,
    )
)
def test_restore_records_takes_any_bytes_without_crashing(records) -> None:
    """A damaged store file gives a ValueError, never a crash or a read past a record."""
    index = KeyIndex()
    try:
        restore(index, records)
    except ValueError as exc:
        assert "malformed or does not continue" in str(exc)
    assert index.stats()[0] <= len(records)
